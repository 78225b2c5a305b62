// Approvals with the Vercel AI SDK's own tool-approval hook: the CRM update
// tool declares needsApproval, so generateText does not run it but stops
// with a tool-approval-request. The app asks agentaudit's approval service
// (docs/APPROVALS.md) about exactly that call, waits for a person's
// decision, answers the SDK with a tool-approval-response (approved, or
// denied with the reason) and calls generateText again with the messages:
// the SDK then runs the tool, which performs the approved write inside a
// span tagged with writeAttributes(approval), or sends the model the
// refusal. The helper is @agentaudit/approvals (clients/js).
//
// The run of crm.mjs without the failure: crm_lookup_contact, then
// crm_update_contact, held for approval; after the decision, the update
// (or its denial) and the answer, which says whether the address changed.
// Spans, one trace:
//   crm-email-fix (root, the run) > ai.generateText > ai.generateText.doGenerate (2), ai.toolCall (lookup)
//                                 > ai.generateText > ai.toolCall (crm_update_contact) > crm.update_contact (the write, audit-tagged)
//                                                   > ai.generateText.doGenerate (the answer)
//
// Environment:
//   AGENTAUDIT_APPROVALS_URL     the service (default http://127.0.0.1:4320)
//   AGENTAUDIT_TOKEN             the agent's bearer token, for the service and,
//                                unless OTEL_EXPORTER_OTLP_HEADERS is set, for OTLP
//   AGENTAUDIT_EXECUTION_ID      the run's execution id (default: a new one)
//   AGENTAUDIT_APPROVAL_TIMEOUT  how long the run may take, waiting for a person included, ms (default 600000)
//   OTEL_EXPORTER_OTLP_ENDPOINT  as otel.mjs reads it
//
// Each step is one JSON line on stdout, for a test to follow:
//   {"event":"approval_requested","id":"apr_…","status":"pending","execution_id":"…"}
//   {"event":"decided","id":"apr_…","status":"approved","approver":"alice@example.com"}
//   {"event":"written","id":"apr_…","result":"200 OK (field updated)"}  or  {"event":"refused",…}
//   {"event":"done","written":true,"text":"…"}
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
const signal = AbortSignal.timeout(Number(process.env.AGENTAUDIT_APPROVAL_TIMEOUT || 600_000));

const emit = (event) => console.log(JSON.stringify(event));

const crm = crmTools({ failOnce: false });
// The decided approvals by tool call id: the app fills it before it
// answers the SDK, the update tool reads what it may write from it.
const approvals = new Map();
const writes = [];

const tools = {
  crm_lookup_contact: tool({
    description: crm.crm_lookup_contact.description,
    inputSchema: crm.crm_lookup_contact.schema,
    execute: crm.crm_lookup_contact.run,
  }),
  crm_update_contact: tool({
    description: crm.crm_update_contact.description,
    inputSchema: crm.crm_update_contact.schema,
    // The SDK runs execute only for a call answered with approved: true.
    needsApproval: true,
    execute: async (input, { toolCallId }) => {
      const approval = approvals.get(toolCallId);
      if (!isApproved(approval)) {
        // Not reached through the SDK; a write without its approval
        // would be reported by verify anyway.
        throw new Error(`crm_update_contact ${toolCallId}: no approval from agentaudit`);
      }
      // Write exactly what was approved, in a span that names the
      // approval: verify checks the one against the other.
      return tracer.startActiveSpan("crm.update_contact", { attributes: writeAttributes(approval) }, async (span) => {
        try {
          const result = await crm.crm_update_contact.run({ ...input, value: approval.proposed_value });
          span.setAttribute("audit.result", result.status);
          writes.push(result);
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

// The scripted model: the lookup, the update, then an answer from what the
// SDK sent back for the update (its result, or execution-denied and why).
const usage = {
  inputTokens: { total: 120, noCache: 120, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 30, text: 30, reasoning: undefined },
};
const turns = [lookup, update("call_update_1")];
const model = new MockLanguageModelV3({
  provider: "mock-provider",
  modelId: "mock-crm-model",
  doGenerate: async ({ prompt }) => {
    await sleep(modelLatencyMs);
    const n = model.doGenerateCalls.length; // this call is already counted
    const response = { id: `resp_${n}`, modelId: "mock-crm-model", timestamp: new Date("2026-01-01T00:00:00Z") };
    const turn = turns[n - 1];
    if (turn === undefined) {
      const out = prompt
        .filter((m) => m.role === "tool")
        .flatMap((m) => m.content)
        .find((p) => p.type === "tool-result" && p.toolName === "crm_update_contact")?.output;
      const text =
        out?.type === "json"
          ? "Jane Doe's email is now jane@newdomain.com (contact 48291)."
          : `Jane Doe's email is unchanged: ${out?.reason ?? "the update did not run"}.`;
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

const settings = {
  model,
  tools,
  stopWhen: stepCountIs(5),
  system: systemPrompt,
  abortSignal: signal,
  experimental_telemetry: {
    isEnabled: true,
    functionId: "crm-email-fix",
    metadata: { sessionId: executionId, userId: "ops@company.com" },
  },
};

// One span for the run: both generateText calls and the approval request
// (which names it) are in its trace.
await tracer.startActiveSpan("crm-email-fix", async (run) => {
  try {
    const messages = [{ role: "user", content: userPrompt }];

    // 1. The model looks the contact up and calls the update tool; the SDK
    //    holds that call back and stops with a tool-approval-request.
    const first = await generateText({ ...settings, messages });
    messages.push(...first.response.messages);
    const held = first.content.filter((p) => p.type === "tool-approval-request");
    check(first.steps.length === 2, `2 steps before the approval, got ${first.steps.length}`);
    check(held.length === 1 && held[0].toolCall.toolName === "crm_update_contact", "one approval request, for the update");
    check(writes.length === 0, "nothing written before the decision");

    const responses = [];
    for (const { approvalId, toolCall } of held) {
      const { input, toolCallId } = toolCall;
      // 2. Ask agentaudit about exactly this call: the service records the
      //    request in the trail, bound to the change.
      const requested = await requestApproval({
        executionId,
        targetSystem: "HubSpot CRM",
        targetResource: `Contact #${input.contactId} (${input.field} field)`,
        proposedValue: input.value,
        previousValue: "jane@olddomain.com",
        reasoning: "Email bounced; the user gave the new address",
        tool: toolCall.toolName,
        agentName: "crm-agent",
        serviceName: "crm-agent-approval",
        principal: "ops@company.com",
        span: run, // the request joins the run's trace
        idempotencyKey: `${executionId}/${toolCallId}`, // a restarted agent gets its approval back
        signal,
      });
      emit({ event: "approval_requested", id: requested.id, status: requested.status, execution_id: executionId });

      // 3. Wait for a person (or the auto policy): the long poll rides out
      //    collector restarts.
      const approval = await waitForDecision(requested.id, { signal });
      emit({ event: "decided", id: approval.id, status: approval.status, approver: approval.decision?.approver ?? null });
      approvals.set(toolCallId, approval);
      if (isApproved(approval)) {
        responses.push({ type: "tool-approval-response", approvalId, approved: true });
      } else {
        const reason = decisionError(approval).message;
        emit({ event: "refused", id: approval.id, reason });
        responses.push({ type: "tool-approval-response", approvalId, approved: false, reason });
      }
    }

    // 4. Answer the SDK: it runs the approved call (the write) or sends the
    //    model the denial, and the model answers.
    messages.push({ role: "tool", content: responses });
    const second = await generateText({ ...settings, messages });
    const approved = isApproved(approvals.get(held[0].toolCall.toolCallId));
    check(second.steps.length === 1, `1 step after the approval, got ${second.steps.length}`);
    check(writes.length === (approved ? 1 : 0), `${approved ? "one write" : "no write"}, got ${writes.length}`);
    emit({ event: "done", written: writes.length > 0, text: second.text });
  } finally {
    run.end();
  }
});
await tracing.finish();
