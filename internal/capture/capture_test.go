package capture

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

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
			c.Apply(tc.span, m, nil, nil)
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
	c.Apply(s, c.Match(s), nil, nil)
	_, ok := s.Attributes().Get(entry.KeyResult)
	assert.False(t, ok)
	e := entry.FromSpan(pcommon.NewResource(), s, entry.Options{})
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
			c.Apply(tc.span, m, slice.AppendEmpty, nil)
			require.Equal(t, 1, slice.Len())
			start := slice.At(0)
			res := pcommon.NewResource()
			se := entry.FromSpan(res, start, entry.Options{})
			ee := entry.FromSpan(res, tc.span, entry.Options{})
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
	require.Equal(t, Executions{tool.TraceID(): "conv-1"}, ex)
	c.Apply(tool, c.Match(tool), nil, ex)
	c.Apply(other, c.Match(other), nil, ex)
	id, _ := tool.Attributes().Get(entry.KeyExecutionID)
	assert.Equal(t, "conv-1", id.Str())
	assert.Contains(t, derivedOf(t, tool)[entry.KeyExecutionID], "another span of the trace")
	_, ok := other.Attributes().Get(entry.KeyExecutionID)
	assert.False(t, ok, "another trace: the trace id, defaulted later")
	assert.Nil(t, New(Config{Conventions: []string{OpenInference}}).Executions(td), "GenAI off: no scan")

	root := span("graph", map[string]any{"openinference.span.kind": "CHAIN"})
	nested := span("agent", map[string]any{"openinference.span.kind": "CHAIN"})
	nested.SetParentSpanID(pcommon.SpanID{1})
	assert.True(t, c.Match(root).Agent())
	assert.Equal(t, NotFramework, c.Match(nested).Outcome)

	v := span("ai.toolCall", map[string]any{"ai.operationId": "ai.toolCall", "ai.toolCall.name": "t", "ai.telemetry.metadata.userId": "maria@example.com"})
	c.Apply(v, c.Match(v), nil, nil)
	p, _ := v.Attributes().Get(entry.KeyEndUserID)
	assert.Equal(t, "maria@example.com", p.Str())
}
