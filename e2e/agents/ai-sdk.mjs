// Agent a: the Vercel AI SDK (generateText) with its own telemetry
// (experimental_telemetry), driven by a scripted mock model from ai/test.
//
// The run of crm.mjs. Spans:
//   ai.generateText (root) > ai.generateText.doGenerate (one per model step)
//                          > ai.toolCall (one per tool call)
import { generateText, stepCountIs, tool } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { crmTools, systemPrompt, turns, userPrompt } from "./crm.mjs";
import { check, modelLatencyMs, sleep, startTracing } from "./otel.mjs";

const tracing = startTracing("crm-agent-ai-sdk");

const usage = {
  inputTokens: { total: 120, noCache: 120, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 30, text: 30, reasoning: undefined },
};

const model = new MockLanguageModelV3({
  provider: "mock-provider",
  modelId: "mock-crm-model",
  doGenerate: async () => {
    await sleep(modelLatencyMs);
    const n = model.doGenerateCalls.length; // this call is already counted
    const turn = turns[n - 1];
    const response = { id: `resp_${n}`, modelId: "mock-crm-model", timestamp: new Date("2026-01-01T00:00:00Z") };
    if (turn.text !== undefined) {
      return { content: [{ type: "text", text: turn.text }], finishReason: { unified: "stop", raw: "stop" }, usage, warnings: [], response };
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

const tools = Object.fromEntries(
  Object.entries(crmTools()).map(([name, t]) => [name, tool({ description: t.description, inputSchema: t.schema, execute: t.run })]),
);

const result = await generateText({
  model,
  tools,
  stopWhen: stepCountIs(6),
  system: systemPrompt,
  prompt: userPrompt,
  experimental_telemetry: {
    isEnabled: true,
    functionId: "crm-email-fix",
    metadata: { sessionId: "conv_ai_sdk_0001", userId: "ops@company.com" },
  },
});

check(result.steps.length === 4, `4 steps, got ${result.steps.length}`);
check(result.steps[1].content.some((p) => p.type === "tool-error"), "step 2 holds the tool error");
check(result.text === turns[3].text, `final text, got ${JSON.stringify(result.text)}`);
await tracing.finish();
