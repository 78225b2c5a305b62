// Agent b: LangGraph.js (a StateGraph with a ToolNode) traced by
// OpenInference's LangChain instrumentation, driven by a scripted chat
// model that returns tool calls.
//
// The run of crm.mjs (ToolNode turns the update's error into a ToolMessage
// with status "error" for the model). Spans (openinference.span.kind):
//   crm-email-fix (CHAIN, root: the graph) > agent (CHAIN) > ScriptedChatModel (LLM)
//                                          > tools (CHAIN) > crm_* (TOOL)
//                                          > route conditions (CHAIN)
import { LangChainInstrumentation } from "@arizeai/openinference-instrumentation-langchain";
import * as CallbackManagerModule from "@langchain/core/callbacks/manager";
import { crmTools, systemPrompt, turns, userPrompt } from "./crm.mjs";
import { check, modelLatencyMs, sleep, startTracing } from "./otel.mjs";

// Tracing first, then the instrumentation, then LangChain itself: the
// instrumentation patches the callback manager every run goes through.
const tracing = startTracing("crm-agent-langgraph");
new LangChainInstrumentation().manuallyInstrument(CallbackManagerModule);

const { BaseChatModel } = await import("@langchain/core/language_models/chat_models");
const { AIMessage, HumanMessage, SystemMessage } = await import("@langchain/core/messages");
const { tool } = await import("@langchain/core/tools");
const { END, MessagesAnnotation, START, StateGraph } = await import("@langchain/langgraph");
const { ToolNode, toolsCondition } = await import("@langchain/langgraph/prebuilt");

// ScriptedChatModel is a fake tool-calling chat model (@langchain/core's
// FakeListChatModel only answers text): one AIMessage per turn of crm.mjs.
class ScriptedChatModel extends BaseChatModel {
  static lc_name() {
    return "ScriptedChatModel";
  }
  calls = 0;
  _llmType() {
    return "scripted";
  }
  bindTools() {
    return this;
  }
  async _generate() {
    await sleep(modelLatencyMs);
    const turn = turns[this.calls++];
    const id = `msg_${this.calls}`;
    const message = turn.text !== undefined
      ? new AIMessage({ content: turn.text, id })
      : new AIMessage({ content: "", id, tool_calls: [{ id: turn.toolCallId, name: turn.toolName, args: turn.input, type: "tool_call" }] });
    return {
      generations: [{ message, text: turn.text ?? "" }],
      llmOutput: { tokenUsage: { promptTokens: 120, completionTokens: 30, totalTokens: 150 } },
    };
  }
}

// LangChain tools return strings (the ToolMessage's content).
const tools = Object.entries(crmTools()).map(([name, t]) =>
  tool(async (input) => JSON.stringify(await t.run(input)), { name, description: t.description, schema: t.schema }),
);

const model = new ScriptedChatModel({}).bindTools(tools);
const graph = new StateGraph(MessagesAnnotation)
  .addNode("agent", async (state) => ({ messages: [await model.invoke(state.messages)] }))
  .addNode("tools", new ToolNode(tools))
  .addEdge(START, "agent")
  .addConditionalEdges("agent", toolsCondition, ["tools", END])
  .addEdge("tools", "agent")
  .compile();

const out = await graph.invoke(
  {
    messages: [
      new SystemMessage(systemPrompt),
      new HumanMessage(userPrompt),
    ],
  },
  {
    runName: "crm-email-fix",
    configurable: { thread_id: "conv_langgraph_0001" },
    metadata: { user_id: "ops@company.com" },
  },
);

const toolMessages = out.messages.filter((m) => m.getType() === "tool");
check(toolMessages.length === 3, `3 tool messages, got ${toolMessages.length}`);
check(toolMessages[1].status === "error", `the first update failed, got status ${toolMessages[1].status}`);
check(out.messages.at(-1).content === turns[3].text, "final answer");
await tracing.finish();
