// Approvals with the Vercel AI SDK: the CRM update tool asks agentaudit's
// approval service (docs/APPROVALS.md) before it writes, waits for a
// person's decision, and then performs exactly the approved write inside a
// span tagged with writeAttributes(approval), or refuses when the change
// was rejected or expired. The helper is @agentaudit/approvals
// (clients/js).
//
// The run of crm.mjs without the failure: crm_lookup_contact, then
// crm_update_contact (approval, then the write), then the answer, which
// says whether the address changed. Spans:
//   ai.generateText (root) > ai.generateText.doGenerate, ai.toolCall
//                          ai.toolCall (crm_update_contact) > crm.update_contact (the write, audit-tagged)
//
// Environment:
//   AGENTAUDIT_APPROVALS_URL     the service (default http://127.0.0.1:4320)
//   AGENTAUDIT_TOKEN             the agent's bearer token, for the service and,
//                                unless OTEL_EXPORTER_OTLP_HEADERS is set, for OTLP
//   AGENTAUDIT_EXECUTION_ID      the run's execution id (default: a new one)
//   AGENTAUDIT_APPROVAL_TIMEOUT  how long to wait for a person, ms (default 600000)
//   OTEL_EXPORTER_OTLP_ENDPOINT  as otel.mjs reads it
//
// Each step is one JSON line on stdout, for a test to follow:
//   {"event":"approval_requested","id":"apr_…","status":"pending","execution_id":"…"}
//   {"event":"decided","id":"apr_…","status":"approved","approver":"alice@example.com"}
//   {"event":"written","id":"apr_…","result":"200 OK (field updated)"}  or  {"event":"refused",…}
//   {"event":"done","text":"…"}
// (otel.mjs adds a last line, not JSON: how many spans were exported.)
import { randomBytes } from "node:crypto";
import { SpanStatusCode, trace } from "@opentelemetry/api";
import { decisionError, isApproved, requestApproval, waitForDecision, writeAttributes } from "@agentaudit/approvals";
import { generateText, stepCountIs, tool } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { crmTools, lookup, systemPrompt, update, userPrompt } from "./crm.mjs";
import { check, modelLatencyMs, sleep, startTracing } from "./otel.mjs";

const token = process.env.AGENTAUDIT_TOKEN || "";
if (token && !process.env.OTEL_EXPORTER_OTLP_HEADERS && !process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) {
  // The collector of testdata/agentaudit-approvals.yaml authenticates
  // OTLP too: the write's sender is then the agent that asked.
  process.env.OTEL_EXPORTER_OTLP_HEADERS = `Authorization=Bearer%20${encodeURIComponent(token)}`;
}
const tracing = startTracing("crm-agent-approval");
const tracer = trace.getTracer("crm-agent-approval");
const executionId = process.env.AGENTAUDIT_EXECUTION_ID || `exec_${randomBytes(6).toString("hex")}`;
const timeoutMs = Number(process.env.AGENTAUDIT_APPROVAL_TIMEOUT || 600_000);

const emit = (event) => console.log(JSON.stringify(event));

const crm = crmTools({ failOnce: false });
let outcome; // what the update tool did, for the model's answer

const tools = {
  crm_lookup_contact: tool({
    description: crm.crm_lookup_contact.description,
    inputSchema: crm.crm_lookup_contact.schema,
    execute: crm.crm_lookup_contact.run,
  }),
  crm_update_contact: tool({
    description: crm.crm_update_contact.description,
    inputSchema: crm.crm_update_contact.schema,
    execute: async (input, { toolCallId, abortSignal }) => {
      // 1. Ask: the service records the request in the trail, bound to
      //    this exact change.
      const requested = await requestApproval({
        executionId,
        targetSystem: "HubSpot CRM",
        targetResource: `Contact #${input.contactId} (${input.field} field)`,
        proposedValue: input.value,
        previousValue: "jane@olddomain.com",
        reasoning: "Email bounced; the user gave the new address",
        tool: "crm_update_contact",
        agentName: "crm-agent",
        serviceName: "crm-agent-approval",
        principal: "ops@company.com",
        span: trace.getActiveSpan(), // the SDK's ai.toolCall: the request joins the run's trace
        idempotencyKey: `${executionId}/${toolCallId}`, // a restarted agent gets its approval back
        signal: abortSignal,
      });
      emit({ event: "approval_requested", id: requested.id, status: requested.status, execution_id: executionId });

      // 2. Wait for a person (or the auto policy): the long poll rides
      //    out collector restarts.
      const approval = await waitForDecision(requested.id, { signal: abortSignal });
      emit({ event: "decided", id: approval.id, status: approval.status, approver: approval.decision?.approver ?? null });
      if (!isApproved(approval)) {
        outcome = { written: false, reason: decisionError(approval).message };
        emit({ event: "refused", id: approval.id, reason: outcome.reason });
        return { status: "not written", reason: outcome.reason };
      }

      // 3. Write exactly what was approved, in a span that names the
      //    approval: verify checks the one against the other.
      return tracer.startActiveSpan("crm.update_contact", { attributes: writeAttributes(approval) }, async (span) => {
        try {
          const result = await crm.crm_update_contact.run({ ...input, value: approval.proposed_value });
          span.setAttribute("audit.result", result.status);
          outcome = { written: true };
          emit({ event: "written", id: approval.id, result: result.status });
          return result;
        } catch (err) {
          span.recordException(err);
          span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
          throw err;
        } finally {
          span.end();
        }
      });
    },
  }),
};

const usage = {
  inputTokens: { total: 120, noCache: 120, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 30, text: 30, reasoning: undefined },
};
const turns = [lookup, update("call_update_1")];
const model = new MockLanguageModelV3({
  provider: "mock-provider",
  modelId: "mock-crm-model",
  doGenerate: async () => {
    await sleep(modelLatencyMs);
    const n = model.doGenerateCalls.length; // this call is already counted
    const response = { id: `resp_${n}`, modelId: "mock-crm-model", timestamp: new Date("2026-01-01T00:00:00Z") };
    const turn = turns[n - 1];
    if (turn === undefined) {
      const text = outcome?.written
        ? "Jane Doe's email is now jane@newdomain.com (contact 48291)."
        : `Jane Doe's email is unchanged: ${outcome?.reason ?? "the update did not run"}.`;
      return { content: [{ type: "text", text }], finishReason: { unified: "stop", raw: "stop" }, usage, warnings: [], response };
    }
    return {
      content: [{ type: "tool-call", toolCallId: turn.toolCallId, toolName: turn.toolName, input: JSON.stringify(turn.input) }],
      finishReason: { unified: "tool-calls", raw: "tool_calls" },
      usage,
      warnings: [],
      response,
    };
  },
});

const result = await generateText({
  model,
  tools,
  stopWhen: stepCountIs(5),
  system: systemPrompt,
  prompt: userPrompt,
  abortSignal: AbortSignal.timeout(timeoutMs),
  experimental_telemetry: {
    isEnabled: true,
    functionId: "crm-email-fix",
    metadata: { sessionId: executionId, userId: "ops@company.com" },
  },
});

check(result.steps.length === 3, `3 steps, got ${result.steps.length}`);
check(outcome !== undefined, "the update tool ran");
emit({ event: "done", written: outcome.written, text: result.text });
await tracing.finish();
