package capture

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
)

func span(name string, attrs map[string]any) ptrace.Span {
	s := ptrace.NewSpan()
	s.SetName(name)
	s.SetTraceID(pcommon.TraceID{1, 2, 3})
	s.SetSpanID(pcommon.SpanID{4, 5, 6})
	s.SetStartTimestamp(1_000)
	s.SetEndTimestamp(5_000)
	if err := s.Attributes().FromRaw(attrs); err != nil {
		panic(err)
	}
	return s
}

func derivedOf(t *testing.T, s ptrace.Span) map[string]string {
	t.Helper()
	v, ok := s.Attributes().Get(entry.KeyValidation)
	require.True(t, ok, "no audit.validation")
	var ps []entry.Problem
	require.NoError(t, json.Unmarshal([]byte(v.Str()), &ps))
	out := map[string]string{}
	for _, p := range ps {
		if p.Kind == ProblemDerived {
			out[p.Field] = p.Detail
		}
	}
	return out
}

var all = Config{Conventions: []string{GenAI, OpenInference, VercelAI}}

func TestToolCalls(t *testing.T) {
	cases := []struct {
		name  string
		span  ptrace.Span
		want  map[string]any // audit keys after Apply
		gone  []string       // framework keys moved
		kept  []string       // framework keys left
		conv  string
		tool  string
		rules []ToolRule
	}{
		{
			name: "genai",
			span: span("execute_tool crm_update_contact", map[string]any{
				"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm_update_contact", "gen_ai.tool.call.id": "call_1",
				"gen_ai.tool.call.arguments": `{"id":48291,"email":"jane@new.example"}`, "gen_ai.tool.call.result": `{"ok":true}`,
				"gen_ai.conversation.id": "conv-7", "gen_ai.agent.name": "Support agent",
			}),
			want: map[string]any{entry.KeyActionType: "write", entry.KeyTargetSystem: "crm_update_contact", entry.KeyExecutionID: "conv-7",
				entry.KeyValueProposed: `{"id":48291,"email":"jane@new.example"}`, entry.KeyResult: `{"ok":true}`},
			gone:  []string{"gen_ai.tool.call.arguments", "gen_ai.tool.call.result"},
			kept:  []string{"gen_ai.tool.call.id", "gen_ai.tool.name", "gen_ai.agent.name"},
			conv:  GenAI,
			tool:  "crm_update_contact",
			rules: []ToolRule{{Match: "search_*", Action: ActionIgnore}, {Match: "crm_update_*", Action: "write"}},
		},
		{
			name: "genai, tool name from the span name, no rule",
			span: span("execute_tool lookup", map[string]any{"gen_ai.operation.name": "execute_tool"}),
			want: map[string]any{entry.KeyActionType: "tool_call", entry.KeyTargetSystem: "lookup"},
			conv: GenAI, tool: "lookup",
		},
		{
			name: "openinference",
			span: span("crm_lookup", map[string]any{"openinference.span.kind": "TOOL", "tool.name": "crm_lookup",
				"input.value": `{"id":1}`, "output.value": "Jane", "session.id": "sess-1"}),
			want: map[string]any{entry.KeyActionType: "read", entry.KeyTargetSystem: "crm_lookup", entry.KeyExecutionID: "sess-1",
				entry.KeyValueProposed: `{"id":1}`, entry.KeyResult: "Jane"},
			gone:  []string{"input.value", "output.value"},
			conv:  OpenInference,
			tool:  "crm_lookup",
			rules: []ToolRule{{Match: "crm_lookup", Action: "read"}},
		},
		{
			name: "vercel ai",
			span: span("ai.toolCall", map[string]any{"ai.operationId": "ai.toolCall", "ai.toolCall.name": "weather",
				"ai.toolCall.id": "c1", "ai.toolCall.args": `{"city":"Oslo"}`, "ai.toolCall.result": `"rain"`,
				"ai.telemetry.functionId": "trip-planner", "ai.telemetry.metadata.sessionId": "s-9"}),
			want: map[string]any{entry.KeyActionType: "tool_call", entry.KeyTargetSystem: "weather", entry.KeyExecutionID: "s-9",
				entry.KeyAgentName: "trip-planner", entry.KeyValueProposed: `{"city":"Oslo"}`, entry.KeyResult: `"rain"`},
			gone: []string{"ai.toolCall.args", "ai.toolCall.result"},
			kept: []string{"ai.toolCall.id", "ai.telemetry.functionId"},
			conv: VercelAI, tool: "weather",
		},
		{
			name: "explicit audit keys win",
			span: span("execute_tool crm", map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm",
				"gen_ai.tool.call.arguments": "derived", entry.KeyValueProposed: "hand-set", entry.KeyTargetSystem: "HubSpot CRM"}),
			want: map[string]any{entry.KeyActionType: "tool_call", entry.KeyTargetSystem: "HubSpot CRM", entry.KeyValueProposed: "hand-set"},
			gone: []string{"gen_ai.tool.call.arguments"},
			conv: GenAI, tool: "crm",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := all
			cfg.Tools = tc.rules
			require.NoError(t, cfg.Validate())
			c := New(cfg)
			m := c.Match(tc.span)
			require.Equal(t, Captured, m.Outcome)
			assert.Equal(t, tc.conv, m.Convention)
			assert.False(t, m.Agent())
			assert.Equal(t, tc.tool, m.tool)
			c.Apply(tc.span, m, nil, Executions{})
			attrs := tc.span.Attributes()
			for k, v := range tc.want {
				got, ok := attrs.Get(k)
				if assert.True(t, ok, k) {
					assert.Equal(t, v, got.AsRaw(), k)
				}
			}
			for _, k := range tc.gone {
				_, ok := attrs.Get(k)
				assert.False(t, ok, "%s moved", k)
			}
			for _, k := range tc.kept {
				_, ok := attrs.Get(k)
				assert.True(t, ok, "%s kept", k)
			}
			d := derivedOf(t, tc.span)
			for k := range tc.want {
				if v, _ := tc.span.Attributes().Get(k); k == entry.KeyValueProposed && v.Str() == "hand-set" || k == entry.KeyTargetSystem && v.Str() == "HubSpot CRM" {
					assert.NotContains(t, d, k, "a sender's own key is not marked derived")
				} else {
					assert.Contains(t, d[k], tc.conv+": ", k)
				}
			}
			// The span is now hand-tagged as far as capture goes: idempotent.
			assert.Equal(t, NotFramework, c.Match(tc.span).Outcome)
		})
	}
}

// TestToolCallError: an erroring tool's result comes from its error, as for
// any audit span; its output, if any, stays an attribute.
func TestToolCallError(t *testing.T) {
	s := span("execute_tool pay", map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "pay",
		"gen_ai.tool.call.result": "partial", "error.type": "CardDeclined"})
	s.Status().SetCode(ptrace.StatusCodeError)
	c := New(all)
	c.Apply(s, c.Match(s), nil, Executions{})
	_, ok := s.Attributes().Get(entry.KeyResult)
	assert.False(t, ok)
	e := auditspan.FromSpan(pcommon.NewResource(), s, auditspan.Options{})
	assert.Equal(t, "error: CardDeclined", e.Result)
	assert.Contains(t, e.Attributes, `"gen_ai.tool.call.result":"partial"`)
}

func TestAgentRuns(t *testing.T) {
	for _, tc := range []struct {
		name, conv string
		span       ptrace.Span
		target     string
	}{
		{"genai", GenAI, span("invoke_agent Support", map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Support", "gen_ai.conversation.id": "conv-7"}), "Support"},
		{"openinference", OpenInference, span("agent", map[string]any{"openinference.span.kind": "AGENT", "agent.name": "Researcher"}), "Researcher"},
		{"vercel ai", VercelAI, span("ai.generateText", map[string]any{"ai.operationId": "ai.generateText", "ai.telemetry.functionId": "planner"}), "planner"},
		{"no name", GenAI, span("invoke_agent", map[string]any{"gen_ai.operation.name": "invoke_agent"}), "agent"},
		{"langgraph: the root chain's name", OpenInference, span("crm-email-fix", map[string]any{"openinference.span.kind": "CHAIN"}), "crm-email-fix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(all)
			m := c.Match(tc.span)
			require.Equal(t, Captured, m.Outcome)
			require.True(t, m.Agent())
			tc.span.Status().SetCode(ptrace.StatusCodeError)
			tc.span.Attributes().PutStr("error.type", "Timeout")
			slice := ptrace.NewSpanSlice()
			c.Apply(tc.span, m, slice.AppendEmpty, Executions{})
			require.Equal(t, 1, slice.Len())
			start := slice.At(0)
			res := pcommon.NewResource()
			se := auditspan.FromSpan(res, start, auditspan.Options{})
			ee := auditspan.FromSpan(res, tc.span, auditspan.Options{})
			assert.Equal(t, "start", se.ActionType)
			assert.Equal(t, "end", ee.ActionType)
			assert.Equal(t, tc.target, se.TargetSystem)
			assert.Equal(t, tc.target, ee.TargetSystem)
			assert.Equal(t, int64(1000), se.TimeUnixNano)
			assert.Equal(t, int64(1000), *se.EndTimeUnixNano)
			assert.Equal(t, int64(5000), ee.TimeUnixNano)
			assert.Equal(t, int64(5000), *ee.EndTimeUnixNano)
			assert.Equal(t, "started", se.Result)
			assert.Equal(t, "error: Timeout", ee.Result, "the end's result from the span's status")
			assert.Equal(t, se.SpanID, ee.SpanID)
			assert.Contains(t, *se.Validation, `"problem":"derived"`)
			assert.Contains(t, *ee.Validation, `"detail":"`+tc.conv+`: `)
		})
	}
}

func TestMatchOutcomes(t *testing.T) {
	tool := func() ptrace.Span {
		return span("execute_tool search_web", map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_web"})
	}
	assert.Equal(t, Missed, New(Config{}).Match(tool()).Outcome, "capture off: a tool call is missed")
	assert.Equal(t, Missed, New(Config{Conventions: []string{OpenInference}}).Match(tool()).Outcome, "another convention on")
	assert.Equal(t, Ignored, New(Config{Conventions: []string{GenAI}, Tools: []ToolRule{{Match: "search_*", Action: ActionIgnore}}}).Match(tool()).Outcome)
	assert.Equal(t, Captured, New(Config{Conventions: []string{GenAI}, Tools: []ToolRule{{Match: "crm_*", Action: ActionIgnore}}}).Match(tool()).Outcome)
	handTagged := tool()
	handTagged.Attributes().PutStr(entry.KeyActionType, "read")
	assert.Equal(t, NotFramework, New(all).Match(handTagged).Outcome, "hand-tagged")
	for _, s := range []ptrace.Span{
		span("GET /", map[string]any{"http.request.method": "GET"}),
		span("chat gpt-4o", map[string]any{"gen_ai.operation.name": "chat"}),
		span("llm", map[string]any{"openinference.span.kind": "LLM"}),
		span("ai.generateText.doGenerate", map[string]any{"ai.operationId": "ai.generateText.doGenerate"}),
	} {
		assert.Equal(t, NotFramework, New(all).Match(s).Outcome, s.Name())
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Conventions: []string{"genai", "langsmith", "genai"}, Tools: []ToolRule{{Match: "[", Action: "write"}, {Match: "", Action: "delete"}}}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{`"langsmith" is not a convention`, `lists "genai" twice`, `rule 1: "match" "[" is not a glob`,
		`rule 2: "match" is empty`, `rule 2: "action" "delete"`} {
		assert.Contains(t, err.Error(), want)
	}
	err = (&Config{Tools: []ToolRule{{Match: "x", Action: "read"}}}).Validate()
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "nothing is captured"))
	require.NoError(t, (&Config{}).Validate())
}

// TestExecutionsOfATrace: a GenAI tool span takes the conversation id of
// another span of its trace in the request; another trace's does not
// leak; an OpenInference root CHAIN is an agent run, a nested one is not;
// the AI SDK's userId names the principal.
func TestExecutionsOfATrace(t *testing.T) {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	agent := spans.AppendEmpty()
	span("invoke_agent", map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-1"}).CopyTo(agent)
	tool := spans.AppendEmpty()
	span("execute_tool x", map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "x"}).CopyTo(tool)
	other := spans.AppendEmpty()
	span("execute_tool y", map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "y"}).CopyTo(other)
	other.SetTraceID(pcommon.TraceID{7})
	c := New(all)
	ex := c.Executions(td)
	require.Equal(t, map[pcommon.TraceID]string{tool.TraceID(): "conv-1"}, ex.ids)
	c.Apply(tool, c.Match(tool), nil, ex)
	c.Apply(other, c.Match(other), nil, ex)
	id, _ := tool.Attributes().Get(entry.KeyExecutionID)
	assert.Equal(t, "conv-1", id.Str())
	assert.Contains(t, derivedOf(t, tool)[entry.KeyExecutionID], "another span of the trace")
	_, ok := other.Attributes().Get(entry.KeyExecutionID)
	assert.False(t, ok, "another trace: the trace id, defaulted later")
	assert.Nil(t, New(Config{Conventions: []string{OpenInference}}).Executions(td).ids, "GenAI off: no conversation id")
	assert.Equal(t, Executions{}, New(Config{Conventions: []string{VercelAI}}).Executions(td), "neither GenAI nor OpenInference: no scan")

	root := span("graph", map[string]any{"openinference.span.kind": "CHAIN"})
	nested := span("agent", map[string]any{"openinference.span.kind": "CHAIN"})
	nested.SetParentSpanID(pcommon.SpanID{1})
	assert.True(t, c.Match(root).Agent())
	assert.Equal(t, NotFramework, c.Match(nested).Outcome)

	v := span("ai.toolCall", map[string]any{"ai.operationId": "ai.toolCall", "ai.toolCall.name": "t", "ai.telemetry.metadata.userId": "maria@example.com"})
	c.Apply(v, c.Match(v), nil, Executions{})
	p, _ := v.Attributes().Get(entry.KeyEndUserID)
	assert.Equal(t, "maria@example.com", p.Str())
}

// tree is one request's spans, all of trace 1 unless moved: each with its
// id and its parent's (0: a root).
type tree struct {
	td    ptrace.Traces
	spans ptrace.SpanSlice
}

func newTree() *tree {
	td := ptrace.NewTraces()
	return &tree{td: td, spans: td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()}
}

func (tr *tree) add(name string, id, parent byte, attrs map[string]any) ptrace.Span {
	s := tr.spans.AppendEmpty()
	span(name, attrs).CopyTo(s)
	s.SetSpanID(pcommon.SpanID{id})
	if parent != 0 {
		s.SetParentSpanID(pcommon.SpanID{parent})
	}
	return s
}

func strOf(s ptrace.Span, key string) string {
	v, ok := s.Attributes().Get(key)
	if !ok {
		return "<none>"
	}
	return v.Str()
}

// TestAgentOfEnclosingSpan: a GenAI execute_tool span and an OpenInference
// TOOL span, which name no agent, take the agent of the nearest agent span
// of their convention that encloses them in the request, marked derived;
// a tool span that names its agent keeps it, and nothing of another trace,
// another convention or a span outside the request is taken.
func TestAgentOfEnclosingSpan(t *testing.T) {
	tr := newTree()
	invoke := func(id, name string) map[string]any {
		return map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": id, "gen_ai.agent.name": name}
	}
	tool := func(name string, more ...string) map[string]any {
		m := map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return m
	}
	// Sent as OTel SDKs send them: a span when it ends, the agents last.
	inner := tr.add("execute_tool search", 4, 3, tool("search"))
	viaStep := tr.add("execute_tool plan", 6, 5, tool("plan"))
	outer := tr.add("execute_tool notify", 7, 1, tool("notify"))
	own := tr.add("execute_tool own", 8, 3, tool("own", "gen_ai.agent.name", "Hand-named"))
	orphan := tr.add("execute_tool orphan", 9, 99, tool("orphan"))
	other := tr.add("execute_tool other", 10, 1, tool("other"))
	other.SetTraceID(pcommon.TraceID{7})
	tr.add("step", 5, 3, map[string]any{})
	tr.add("invoke_agent Researcher", 3, 1, invoke("agent_r", "Researcher"))
	tr.add("invoke_agent Orchestrator", 1, 0, invoke("agent_o", "Orchestrator"))
	// OpenInference: LangGraph's root CHAIN (the graph) > tools > TOOL,
	// and an AGENT span inside another graph.
	oiTool := tr.add("crm_lookup", 22, 21, map[string]any{"openinference.span.kind": "TOOL", "tool.name": "crm_lookup"})
	tr.add("tools", 21, 20, map[string]any{"openinference.span.kind": "CHAIN"})
	tr.add("crm-email-fix", 20, 0, map[string]any{"openinference.span.kind": "CHAIN"})
	agentTool := tr.add("web_search", 32, 31, map[string]any{"openinference.span.kind": "TOOL", "tool.name": "web_search"})
	tr.add("Researcher", 31, 30, map[string]any{"openinference.span.kind": "AGENT", "agent.name": "Research agent"})
	tr.add("research-graph", 30, 0, map[string]any{"openinference.span.kind": "CHAIN"})
	// A GenAI tool under an OpenInference agent only: another convention.
	mixed := tr.add("execute_tool mixed", 33, 31, tool("mixed"))

	c := New(all)
	ex := c.Executions(tr.td)
	for _, s := range []ptrace.Span{inner, viaStep, outer, own, orphan, other, oiTool, agentTool, mixed} {
		c.Apply(s, c.Match(s), nil, ex)
	}
	for _, tc := range []struct {
		span         ptrace.Span
		id, name     string
		idFrom, from string // the derived details; "" when not derived
	}{
		{inner, "agent_r", "Researcher", "genai: from gen_ai.agent.id of the enclosing invoke_agent span, in the same request",
			"genai: from gen_ai.agent.name of the enclosing invoke_agent span, in the same request"},
		{viaStep, "agent_r", "Researcher", "genai: from gen_ai.agent.id of the enclosing invoke_agent span, in the same request",
			"genai: from gen_ai.agent.name of the enclosing invoke_agent span, in the same request"},
		{outer, "agent_o", "Orchestrator", "genai: from gen_ai.agent.id of the enclosing invoke_agent span, in the same request",
			"genai: from gen_ai.agent.name of the enclosing invoke_agent span, in the same request"},
		{own, "<none>", "Hand-named", "", ""},
		{orphan, "<none>", "<none>", "", ""},
		{other, "<none>", "<none>", "", ""},
		{oiTool, "<none>", "crm-email-fix", "", "openinference: from the name of the enclosing root CHAIN span, in the same request"},
		{agentTool, "<none>", "Research agent", "", "openinference: from agent.name of the enclosing AGENT span, in the same request"},
		{mixed, "<none>", "<none>", "", ""},
	} {
		name := tc.span.Name()
		assert.Equal(t, tc.id, strOf(tc.span, entry.KeyAgentID), "%s: agent id", name)
		assert.Equal(t, tc.name, strOf(tc.span, entry.KeyAgentName), "%s: agent name", name)
		d := derivedOf(t, tc.span)
		assert.Equal(t, tc.idFrom, d[entry.KeyAgentID], "%s: agent id derived", name)
		assert.Equal(t, tc.from, d[entry.KeyAgentName], "%s: agent name derived", name)
	}

	// Only the conventions captured: with GenAI alone, an OpenInference
	// root CHAIN is no agent span.
	gen := New(Config{Conventions: []string{GenAI}})
	assert.Len(t, gen.Executions(tr.td).agents, 2)

	// A cycle of parent ids (a sender can send any) ends.
	cyc := newTree()
	a := cyc.add("execute_tool a", 1, 2, tool("a"))
	cyc.add("execute_tool b", 2, 1, tool("b"))
	cyc.add("invoke_agent X", 3, 0, invoke("x", "X"))
	ex = c.Executions(cyc.td)
	c.Apply(a, c.Match(a), nil, ex)
	assert.Equal(t, "<none>", strOf(a, entry.KeyAgentName))
}

// TestRootChainNamesTheAgent: LangGraph's run, a root CHAIN span, names
// its agent after the graph (its name), in both of its entries, as its
// tool calls do; an agent.name wins.
func TestRootChainNamesTheAgent(t *testing.T) {
	c := New(all)
	for _, tc := range []struct {
		span       ptrace.Span
		name, from string
	}{
		{span("crm-email-fix", map[string]any{"openinference.span.kind": "CHAIN"}), "crm-email-fix", "openinference: the root CHAIN span's name"},
		{span("Researcher", map[string]any{"openinference.span.kind": "AGENT"}), "Researcher", "openinference: the AGENT span's name"},
		{span("graph", map[string]any{"openinference.span.kind": "CHAIN", "agent.name": "Planner"}), "Planner", "openinference: from agent.name"},
	} {
		starts := ptrace.NewSpanSlice()
		c.Apply(tc.span, c.Match(tc.span), starts.AppendEmpty, Executions{})
		for _, s := range []ptrace.Span{starts.At(0), tc.span} {
			e := auditspan.FromSpan(pcommon.NewResource(), s, auditspan.Options{})
			require.NotNil(t, e.AgentName)
			assert.Equal(t, tc.name, *e.AgentName)
			assert.Equal(t, tc.name, e.TargetSystem)
			assert.Equal(t, tc.from, derivedOf(t, s)[entry.KeyAgentName])
		}
	}
}

// langChainToolOutput is output.value of a TOOL span of LangGraph.js
// 1.7.3 with @arizeai/openinference-instrumentation-langchain 4.1.1, as
// e2e/testdata/frameworks/langgraph.json has it: the ToolMessage
// LangChain made of the tool's return value (a string), serialized.
const langChainToolOutput = `{"output":{"lc":1,"type":"constructor","id":["langchain_core","messages","ToolMessage"],"kwargs":{"status":"success","content":"{\"contactId\":\"48291\",\"name\":\"Jane Doe\",\"email\":\"jane@olddomain.com\"}","tool_call_id":"call_lookup_1","name":"crm_lookup_contact","metadata":{"versions":{"@langchain/core":"1.4.0"}},"additional_kwargs":{},"response_metadata":{}}}}`

// TestToolMessageResult: an OpenInference TOOL span whose output.value is
// a serialized LangChain ToolMessage (output.mime_type application/json)
// records the message's content as the result and its tool_call_id as
// tool_call.id, both marked derived; any other output.value is the result
// as it is.
func TestToolMessageResult(t *testing.T) {
	const lookup = `{"contactId":"48291","name":"Jane Doe","email":"jane@olddomain.com"}`
	for _, tc := range []struct {
		name, mime, output string
		more               map[string]any
		result, callID     string // callID "<none>": no tool_call.id
		derivedFrom        string
	}{
		{"LangChain.js, as sent", "application/json", langChainToolOutput, nil, lookup, "call_lookup_1",
			"openinference: from output.value: the content of the ToolMessage it holds"},
		{"mime type with parameters", "application/json; charset=utf-8", langChainToolOutput, nil, lookup, "call_lookup_1",
			"openinference: from output.value: the content of the ToolMessage it holds"},
		{"unwrapped", "application/json", `{"lc":1,"type":"constructor","id":["langchain_core","messages","ToolMessage"],"kwargs":{"content":"done","tool_call_id":"c9"}}`, nil, "done", "c9",
			"openinference: from output.value: the content of the ToolMessage it holds"},
		{"plain form", "application/json", `{"type":"tool","content":"done","tool_call_id":"c9","name":"x"}`, nil, "done", "c9",
			"openinference: from output.value: the content of the ToolMessage it holds"},
		{"content blocks", "application/json", `{"type":"tool","content":[ {"type":"text", "text":"done"} ]}`, nil, `[{"type":"text","text":"done"}]`, "<none>",
			"openinference: from output.value: the content of the ToolMessage it holds"},
		{"the sender's tool_call.id wins", "application/json", langChainToolOutput, map[string]any{"tool_call.id": "mine"}, lookup, "mine",
			"openinference: from output.value: the content of the ToolMessage it holds"},
		{"text/plain: as it is", "text/plain", langChainToolOutput, nil, langChainToolOutput, "<none>", "openinference: from output.value"},
		{"no mime type: as it is", "", langChainToolOutput, nil, langChainToolOutput, "<none>", "openinference: from output.value"},
		{"another message: as it is", "application/json", `{"output":{"lc":1,"type":"constructor","id":["langchain_core","messages","AIMessage"],"kwargs":{"content":"hi"}}}`, nil,
			`{"output":{"lc":1,"type":"constructor","id":["langchain_core","messages","AIMessage"],"kwargs":{"content":"hi"}}}`, "<none>", "openinference: from output.value"},
		{"JSON of the tool's own: as it is", "application/json", `{"output":{"content":"x"}}`, nil, `{"output":{"content":"x"}}`, "<none>", "openinference: from output.value"},
		{"not JSON: as it is", "application/json", `{"output":`, nil, `{"output":`, "<none>", "openinference: from output.value"},
		{"no content: as it is", "application/json", `{"type":"tool","tool_call_id":"c9"}`, nil, `{"type":"tool","tool_call_id":"c9"}`, "<none>", "openinference: from output.value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := map[string]any{"openinference.span.kind": "TOOL", "tool.name": "crm_lookup_contact", "input.value": "jane@olddomain.com", "output.value": tc.output}
			if tc.mime != "" {
				attrs["output.mime_type"] = tc.mime
			}
			for k, v := range tc.more {
				attrs[k] = v
			}
			s := span("crm_lookup_contact", attrs)
			s.Status().SetCode(ptrace.StatusCodeOk)
			c := New(all)
			c.Apply(s, c.Match(s), nil, Executions{})
			assert.Equal(t, tc.result, strOf(s, entry.KeyResult))
			assert.Equal(t, tc.callID, strOf(s, "tool_call.id"))
			_, ok := s.Attributes().Get("output.value")
			assert.False(t, ok, "output.value moved")
			d := derivedOf(t, s)
			assert.Equal(t, tc.derivedFrom, d[entry.KeyResult])
			if tc.callID != "<none>" && tc.more == nil {
				assert.Equal(t, "openinference: from output.value: the ToolMessage's tool_call_id", d["tool_call.id"])
			} else {
				assert.NotContains(t, d, "tool_call.id")
			}
		})
	}
}

// TestErrorWithoutStack: a failed tool call or agent run whose error has
// no error.type gets, as its result, the error's message without the
// stack trace LangChain appends to the status message; a short status
// message, error.type or the sender's audit.result is left as it is.
func TestErrorWithoutStack(t *testing.T) {
	const msg = "HubSpot API 429: rate limited, retry after 1s"
	// As LangGraph.js 1.7.3 with OpenInference 4.1.1 sends it.
	const withStack = msg + "\n\nRateLimitError: " + msg + "\n    at Object.run (file:///agents/crm.mjs:57:13)\n    at async DynamicStructuredTool.call"
	oiTool := func() ptrace.Span {
		return span("crm_update_contact", map[string]any{"openinference.span.kind": "TOOL", "tool.name": "crm_update_contact",
			"input.value": `{"contactId":"48291"}`, "input.mime_type": "application/json"})
	}
	withException := func(s ptrace.Span, text string) ptrace.Span {
		ev := s.Events().AppendEmpty()
		ev.SetName("exception")
		ev.Attributes().PutStr("exception.message", text)
		return s
	}
	for _, tc := range []struct {
		name    string
		span    ptrace.Span
		status  string
		result  string
		derived string // "": the result is not derived by capture
	}{
		{"status message with a stack", withException(oiTool(), withStack), withStack, "error: " + msg,
			"openinference: the first line of the status message (the stack trace after it left out)"},
		{"no status message: exception.message", withException(oiTool(), withStack), "", "error: " + msg,
			"openinference: the first line of exception.message (the stack trace after it left out)"},
		{"no status message, a one-line exception.message", withException(oiTool(), msg), "", "error: " + msg, "openinference: from exception.message"},
		{"a one-line status message", oiTool(), msg, "error: " + msg, ""},
		{"error.type wins", span("execute_tool pay", map[string]any{"gen_ai.operation.name": "execute_tool", "error.type": "RateLimitError"}), withStack, "error: RateLimitError", ""},
		{"nothing at all", oiTool(), "", "error", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.span.Status().SetCode(ptrace.StatusCodeError)
			tc.span.Status().SetMessage(tc.status)
			c := New(all)
			c.Apply(tc.span, c.Match(tc.span), nil, Executions{})
			e := auditspan.FromSpan(pcommon.NewResource(), tc.span, auditspan.Options{})
			assert.Equal(t, tc.result, e.Result)
			assert.Equal(t, "Error", e.StatusCode)
			if tc.derived == "" {
				_, ok := tc.span.Attributes().Get(entry.KeyResult)
				assert.False(t, ok, "no audit.result: the entry derives it")
			} else {
				assert.Equal(t, tc.derived, derivedOf(t, tc.span)[entry.KeyResult])
			}
		})
	}

	// A hand-set audit.result wins.
	s := oiTool()
	s.Attributes().PutStr(entry.KeyResult, "429")
	s.Status().SetCode(ptrace.StatusCodeError)
	s.Status().SetMessage(withStack)
	c := New(all)
	c.Apply(s, c.Match(s), nil, Executions{})
	assert.Equal(t, "429", strOf(s, entry.KeyResult))

	// A run that failed: its end, not its start.
	run := span("crm-email-fix", map[string]any{"openinference.span.kind": "CHAIN"})
	run.Status().SetCode(ptrace.StatusCodeError)
	run.Status().SetMessage(withStack)
	starts := ptrace.NewSpanSlice()
	c.Apply(run, c.Match(run), starts.AppendEmpty, Executions{})
	assert.Equal(t, "error: "+msg, auditspan.FromSpan(pcommon.NewResource(), run, auditspan.Options{}).Result)
	assert.Equal(t, "started", auditspan.FromSpan(pcommon.NewResource(), starts.At(0), auditspan.Options{}).Result)
	assert.Equal(t, "openinference: the first line of the status message (the stack trace after it left out)", derivedOf(t, run)[entry.KeyResult])
}
