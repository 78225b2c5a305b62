// Agent c: the OpenTelemetry GenAI semantic conventions (as of
// semantic-conventions v1.41.0, the last release that held them: the
// "invoke agent internal", "inference" and "execute tool" spans), written
// by hand with the plain OpenTelemetry JS SDK, as an application whose
// framework has no instrumentation does. Only the attributes those
// conventions document.
//
// The run of crm.mjs, in the agent's loop: a chat call, a tool call, ….
// Spans:
//   invoke_agent CRM Assistant (INTERNAL, root) > chat mock-crm-model (CLIENT, one per model call)
//                                                > execute_tool crm_* (INTERNAL, one per tool call)
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { crmTools, turns } from "./crm.mjs";
import { check, modelLatencyMs, sleep, startTracing } from "./otel.mjs";

const tracing = startTracing("crm-agent-genai");
const tracer = trace.getTracer("crm-agent", "1.0.0");

const agent = { id: "agent_crm_7f3b", name: "CRM Assistant", version: "1.0.0", description: "Keeps CRM contacts current" };
const conversationId = "conv_genai_0001";
const provider = "mock-provider";
const modelName = "mock-crm-model";
const tools = crmTools();

// chat is one model call, the conventions' inference span; the (scripted)
// model answers with the next turn.
async function chat(n) {
  return tracer.startActiveSpan(
    `chat ${modelName}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": modelName,
        "gen_ai.conversation.id": conversationId,
      },
    },
    async (span) => {
      await sleep(modelLatencyMs);
      const turn = turns[n];
      span.setAttributes({
        "gen_ai.response.model": modelName,
        "gen_ai.response.id": `resp_${n + 1}`,
        "gen_ai.response.finish_reasons": [turn.text !== undefined ? "stop" : "tool_calls"],
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
      });
      span.end();
      return turn;
    },
  );
}

// executeTool runs one tool call in an execute_tool span.
async function executeTool(call) {
  const t = tools[call.toolName];
  return tracer.startActiveSpan(
    `execute_tool ${call.toolName}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.toolName,
        "gen_ai.tool.call.id": call.toolCallId,
        "gen_ai.tool.description": t.description,
        "gen_ai.tool.type": "function",
        // Opt-In; OTel JS has no map-valued attributes, so JSON strings, as
        // the conventions allow ("MAY be recorded as a JSON string").
        "gen_ai.tool.call.arguments": JSON.stringify(call.input),
      },
    },
    async (span) => {
      try {
        const result = await t.run(call.input);
        span.setAttribute("gen_ai.tool.call.result", JSON.stringify(result));
        return { ok: true, result };
      } catch (err) {
        span.recordException(err);
        span.setAttribute("error.type", err.name);
        span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
        return { ok: false, error: err.message };
      } finally {
        span.end();
      }
    },
  );
}

const outcomes = await tracer.startActiveSpan(
  `invoke_agent ${agent.name}`,
  {
    kind: SpanKind.INTERNAL,
    attributes: {
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.provider.name": provider,
      "gen_ai.agent.id": agent.id,
      "gen_ai.agent.name": agent.name,
      "gen_ai.agent.version": agent.version,
      "gen_ai.agent.description": agent.description,
      "gen_ai.conversation.id": conversationId,
      "gen_ai.request.model": modelName,
    },
  },
  async (span) => {
    const outcomes = [];
    for (let n = 0; ; n++) {
      const turn = await chat(n);
      if (turn.text !== undefined) {
        break;
      }
      outcomes.push(await executeTool(turn));
    }
    span.setAttributes({
      "gen_ai.response.model": modelName,
      "gen_ai.usage.input_tokens": 480,
      "gen_ai.usage.output_tokens": 120,
    });
    span.end();
    return outcomes;
  },
);

check(outcomes.length === 3, `3 tool calls, got ${outcomes.length}`);
check(!outcomes[1].ok && outcomes[2].ok, "the first update failed, the second worked");
await tracing.finish();
