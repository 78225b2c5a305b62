// Explicit tags on a framework's span: the Vercel AI SDK again, through
// streamText this time, where the update tool sets agentaudit's audit.*
// attributes by hand on its own ai.toolCall span (the active span while a
// tool runs). The collector must take these hand-set values over whatever
// it would derive from the framework's attributes.
//
// The run of crm.mjs without the failure: crm_lookup_contact (untagged),
// crm_update_contact (tagged), the answer. Spans:
//   ai.streamText (root) > ai.streamText.doStream (one per model step)
//                        > ai.toolCall (one per tool call)
import { trace } from "@opentelemetry/api";
import { simulateReadableStream, stepCountIs, streamText, tool } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { answer, crmTools, lookup, systemPrompt, update, userPrompt } from "./crm.mjs";
import { check, modelLatencyMs, startTracing } from "./otel.mjs";

const tracing = startTracing("crm-agent-explicit");

const turns = [lookup, update("call_update_1"), answer];

const usage = {
  inputTokens: { total: 120, noCache: 120, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 30, text: 30, reasoning: undefined },
};

const model = new MockLanguageModelV3({
  provider: "mock-provider",
  modelId: "mock-crm-model",
  doStream: async () => {
    const n = model.doStreamCalls.length;
    const turn = turns[n - 1];
    const chunks = [
      { type: "stream-start", warnings: [] },
      { type: "response-metadata", id: `resp_${n}`, modelId: "mock-crm-model", timestamp: new Date("2026-01-01T00:00:00Z") },
    ];
    if (turn.text !== undefined) {
      chunks.push(
        { type: "text-start", id: "text_1" },
        { type: "text-delta", id: "text_1", delta: turn.text },
        { type: "text-end", id: "text_1" },
        { type: "finish", finishReason: { unified: "stop", raw: "stop" }, usage },
      );
    } else {
      chunks.push(
        { type: "tool-call", toolCallId: turn.toolCallId, toolName: turn.toolName, input: JSON.stringify(turn.input) },
        { type: "finish", finishReason: { unified: "tool-calls", raw: "tool_calls" }, usage },
      );
    }
    return { stream: simulateReadableStream({ chunks, initialDelayInMs: modelLatencyMs, chunkDelayInMs: null }) };
  },
});

const crm = crmTools({ failOnce: false });
const tools = {
  crm_lookup_contact: tool({
    description: crm.crm_lookup_contact.description,
    inputSchema: crm.crm_lookup_contact.schema,
    execute: crm.crm_lookup_contact.run,
  }),
  crm_update_contact: tool({
    description: crm.crm_update_contact.description,
    inputSchema: crm.crm_update_contact.schema,
    execute: async (input) => {
      const span = trace.getActiveSpan(); // the SDK's ai.toolCall span
      span?.setAttributes({
        "audit.action.type": "write",
        "audit.execution.id": "exec_explicit_0001",
        "audit.target.system": "HubSpot CRM",
        "audit.target.resource": `Contact #${input.contactId} (${input.field} field)`,
        "audit.value.proposed": input.value,
        "audit.value.previous": "jane@olddomain.com",
        "audit.reasoning": "Email bounced; the user gave the new address",
        "audit.approver": "auto-approve:crm-email-fix",
      });
      const result = await crm.crm_update_contact.run(input);
      span?.setAttribute("audit.result", result.status);
      return result;
    },
  }),
};

const result = streamText({
  model,
  tools,
  stopWhen: stepCountIs(5),
  system: systemPrompt,
  prompt: userPrompt,
  experimental_telemetry: {
    isEnabled: true,
    functionId: "crm-email-fix",
    metadata: { sessionId: "conv_explicit_0001", userId: "ops@company.com" },
  },
});

const text = await result.text;
const steps = await result.steps;
check(steps.length === 3, `3 steps, got ${steps.length}`);
check(text === answer.text, `final text, got ${JSON.stringify(text)}`);
await tracing.finish();
