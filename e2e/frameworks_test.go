package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The agents of e2e/agents run real agent frameworks (the Vercel AI SDK,
// LangGraph.js with OpenInference, the GenAI conventions by hand) against
// the collector, through an otlpRecorder that keeps what arrived. For each:
//
//  1. what the framework emitted is compared with its fixture,
//     e2e/testdata/frameworks/<agent>.json (see normalizeFixture), and
//     checked for the keys the capture mapping reads (checkEmitted): a
//     framework upgrade that changes them fails here, loudly;
//  2. with the collector's default configuration (capture off), no
//     framework span becomes an entry and each is counted as uncaptured,
//     the spans reach monitoring unchanged, and only the hand-tagged span
//     is recorded (and stripped for monitoring);
//  3. with capture on (frameworkCaptureConfig), each tool call and agent
//     run becomes the entries the README's "Capturing framework spans"
//     says, and monitoring holds none of their payloads
//     (checkFrameworkEntries).

// toolCall is one tool call as a framework's spans tell it.
type toolCall struct {
	Tool string
	ID   string // the model's tool call id; "" when the framework does not say
	Args string // as sent: JSON, or a bare value (OpenInference, one-argument tools)
	// Result is what the tool returned (JSON), Err the failure's message;
	// one of them is set.
	Result, Err string
}

const (
	lookupArgs   = `{"email":"jane@olddomain.com"}`
	lookupResult = `{"contactId":"48291","name":"Jane Doe","email":"jane@olddomain.com"}`
	updateArgs   = `{"contactId":"48291","field":"email","value":"jane@newdomain.com"}`
	updateResult = `{"contactId":"48291","field":"email","previous":"jane@olddomain.com","value":"jane@newdomain.com","status":"200 OK (field updated)"}`
	updateErr    = "HubSpot API 429: rate limited, retry after 1s"
)

// The scenario of ai-sdk, langgraph and genai: look the contact up, update
// it (fails once: a rate limit), update it again.
var crmToolCalls = []toolCall{
	{Tool: "crm_lookup_contact", ID: "call_lookup_1", Args: lookupArgs, Result: lookupResult},
	{Tool: "crm_update_contact", ID: "call_update_1", Args: updateArgs, Err: updateErr},
	{Tool: "crm_update_contact", ID: "call_update_2", Args: updateArgs, Result: updateResult},
}

// frameworkAgent is one script of e2e/agents and what it must emit.
type frameworkAgent struct {
	name       string // e2e/agents/<name>.mjs, e2e/testdata/frameworks/<name>.json
	service    string // its resource's service.name
	convention string // the capture convention of its spans
	root       string // the run's root span
	// isTool says whether a span is a tool call; readTool reads it.
	isTool   func(ptrace.Span) bool
	readTool func(t *testing.T, s ptrace.Span) toolCall
	calls    []toolCall
	// checkRoot checks the run's root span and the tool spans' place.
	checkRoot func(t *testing.T, spans []ptrace.Span, root ptrace.Span, tools []ptrace.Span)
	// executionID is the run's id in the framework's attributes.
	executionID string
	// runTarget is the target system of the run's start and end entries
	// (the agent), agentName and agentID the agent_name and agent_id of
	// every derived entry ("": none), principal the person they name
	// ("": none).
	runTarget, agentName, agentID, principal string
	// agentFrom is the source of a tool call entry's agent_name, as its
	// derived marker says: "" when the tool span names it itself.
	agentFrom string
	// callIDKey is the attribute that keeps a tool call's id.
	callIDKey string
}

var frameworkAgents = []frameworkAgent{
	{
		// The Vercel AI SDK's generateText with experimental_telemetry.
		name: "ai-sdk", service: "crm-agent-ai-sdk", convention: "vercel_ai",
		root:      "ai.generateText",
		isTool:    func(s ptrace.Span) bool { return s.Name() == "ai.toolCall" },
		readTool:  readVercelToolCall,
		calls:     crmToolCalls,
		checkRoot: checkVercelRoot("ai.generateText", "conv_ai_sdk_0001"),
		// ai.telemetry.metadata.sessionId; the agent, ai.telemetry.functionId;
		// the principal, ai.telemetry.metadata.userId.
		executionID: "conv_ai_sdk_0001", runTarget: "crm-email-fix", agentName: "crm-email-fix", principal: "ops@company.com",
		agentFrom: "vercel_ai: from ai.telemetry.functionId", callIDKey: "ai.toolCall.id",
	},
	{
		// LangGraph.js, a StateGraph with a ToolNode, traced by
		// @arizeai/openinference-instrumentation-langchain.
		name: "langgraph", service: "crm-agent-langgraph", convention: "openinference",
		root:     "crm-email-fix",
		isTool:   func(s ptrace.Span) bool { return attrStr(s, "openinference.span.kind") == "TOOL" },
		readTool: readOpenInferenceToolCall,
		calls: []toolCall{
			// LangChain hands a one-argument tool's input to its callbacks
			// as the bare value: input.value is text/plain.
			{Tool: "crm_lookup_contact", ID: "call_lookup_1", Args: "jane@olddomain.com", Result: lookupResult},
			// A failed tool's span has no output.value, so no tool call id.
			{Tool: "crm_update_contact", Args: updateArgs, Err: updateErr},
			{Tool: "crm_update_contact", ID: "call_update_2", Args: updateArgs, Result: updateResult},
		},
		checkRoot: checkLangGraphRoot,
		// session.id, from LangGraph's configurable.thread_id. No AGENT span:
		// the run is the root CHAIN span, named after the graph (its
		// runName), which names the agent of the run and of the TOOL spans
		// it encloses. The tool call id is output.value's (the
		// ToolMessage's), kept as tool_call.id.
		executionID: "conv_langgraph_0001", runTarget: "crm-email-fix", agentName: "crm-email-fix",
		agentFrom: "openinference: from the name of the enclosing root CHAIN span, in the same request", callIDKey: "tool_call.id",
	},
	{
		// The GenAI semantic conventions (v1.41.0's invoke_agent and
		// execute_tool spans) with the plain OpenTelemetry JS SDK.
		name: "genai", service: "crm-agent-genai", convention: "genai",
		root:      "invoke_agent CRM Assistant",
		isTool:    func(s ptrace.Span) bool { return attrStr(s, "gen_ai.operation.name") == "execute_tool" },
		readTool:  readGenAIToolCall,
		calls:     crmToolCalls,
		checkRoot: checkGenAIRoot,
		// execute_tool names neither the conversation nor the agent: both
		// come from the invoke_agent span that encloses it.
		executionID: "conv_genai_0001", runTarget: "CRM Assistant", agentName: "CRM Assistant", agentID: "agent_crm_7f3b",
		agentFrom: "genai: from gen_ai.agent.name of the enclosing invoke_agent span, in the same request", callIDKey: "gen_ai.tool.call.id",
	},
	{
		// The Vercel AI SDK's streamText; crm_update_contact sets audit.*
		// by hand on its ai.toolCall span.
		name: "explicit", service: "crm-agent-explicit", convention: "vercel_ai",
		root:     "ai.streamText",
		isTool:   func(s ptrace.Span) bool { return s.Name() == "ai.toolCall" },
		readTool: readVercelToolCall,
		calls: []toolCall{
			{Tool: "crm_lookup_contact", ID: "call_lookup_1", Args: lookupArgs, Result: lookupResult},
			{Tool: "crm_update_contact", ID: "call_update_1", Args: updateArgs, Result: updateResult},
		},
		checkRoot:   checkExplicitRoot,
		executionID: "conv_explicit_0001", runTarget: "crm-email-fix", agentName: "crm-email-fix", principal: "ops@company.com",
		agentFrom: "vercel_ai: from ai.telemetry.functionId", callIDKey: "ai.toolCall.id",
	},
}

// explicitAudit are the audit.* keys explicit.mjs sets on its update.
var explicitAudit = map[string]string{
	"audit.action.type":     "write",
	"audit.execution.id":    "exec_explicit_0001",
	"audit.target.system":   "HubSpot CRM",
	"audit.target.resource": "Contact #48291 (email field)",
	"audit.value.proposed":  "jane@newdomain.com",
	"audit.value.previous":  "jane@olddomain.com",
	"audit.reasoning":       "Email bounced; the user gave the new address",
	"audit.approver":        "auto-approve:crm-email-fix",
	"audit.result":          "200 OK (field updated)",
}

// frameworkCaptureConfig turns capture on for the three conventions, on
// the connector and both processors (as testdata/agentaudit-frameworks.yaml
// does), with tool rules for the agents' tools.
const frameworkCaptureConfig = `connectors:
  agentaudit_split:
    audit_pipelines: [traces/audit]
    monitoring_pipelines: [traces/monitoring]
    capture: &capture
      conventions: [genai, openinference, vercel_ai]
      tools:
        - match: "*_update_*"
          action: write
        - match: "*_lookup*"
          action: read
processors:
  agentaudit/audit:
    mode: audit
    capture: *capture
  agentaudit/monitoring:
    mode: monitoring
    capture: *capture`

func TestFrameworks(t *testing.T) {
	dir := agentScripts(t)
	scripts, err := agentScriptNames()
	require.NoError(t, err)
	var names []string
	for _, a := range frameworkAgents {
		names = append(names, a.name)
	}
	require.ElementsMatch(t, scripts, names, "every agent of e2e/agents has its checks here")

	for _, a := range frameworkAgents {
		t.Run(a.name, func(t *testing.T) {
			// Capture off: the collector's default.
			c := harness.StartCollector(t, harness.CollectorOptions{ChainID: "e2e-" + a.name})
			rec := newOTLPRecorder(t, "http://"+c.HTTPAddr)
			runAgent(t, dir, a.name+".mjs", rec.url)
			reqs, answers := rec.received()
			require.NotEmpty(t, reqs, "the agent sent nothing")
			for _, code := range answers {
				require.Equal(t, 200, code, "the collector refused a request")
			}
			got := normalizeFixture(reqs)
			checkFixture(t, a.name, got)
			checkEmitted(t, a, got)
			checkCaptureOff(t, a, c, reqs)

			// Capture on.
			c = startFrameworkCollector(t, "e2e-capture-"+a.name)
			rec = newOTLPRecorder(t, "http://"+c.HTTPAddr)
			runAgent(t, dir, a.name+".mjs", rec.url)
			reqs, answers = rec.received()
			for _, code := range answers {
				require.Equal(t, 200, code, "the collector refused a request")
			}
			checkFrameworkEntries(t, a, c, reqs)
		})
	}
}

// startFrameworkCollector runs the collector as harness.StartCollector
// does, with frameworkCaptureConfig in place of the default's connectors and
// processors.
func startFrameworkCollector(t *testing.T, chainID string) *harness.Collector {
	t.Helper()
	return harness.StartCollector(t, harness.CollectorOptions{ChainID: chainID, SplitConfig: frameworkCaptureConfig})
}

// emittedSpans lists the spans of tds in order (for a fixture, its tree
// order), checking their resource's service.name.
func emittedSpans(t *testing.T, a frameworkAgent, tds ...ptrace.Traces) []ptrace.Span {
	t.Helper()
	var out []ptrace.Span
	for _, td := range tds {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			assert.Equal(t, a.service, mapStr(rs.Resource().Attributes(), "service.name"), "service.name of the resource")
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				for k := 0; k < rs.ScopeSpans().At(j).Spans().Len(); k++ {
					out = append(out, rs.ScopeSpans().At(j).Spans().At(k))
				}
			}
		}
	}
	return out
}

// checkEmitted checks that the framework emitted the keys and shapes the
// mapping reads: the run's root, one span per tool call, in order, with
// its name, id, arguments, and result or error.
func checkEmitted(t *testing.T, a frameworkAgent, td ptrace.Traces) {
	spans := emittedSpans(t, a, td)
	require.NotEmpty(t, spans)
	var roots, tools []ptrace.Span
	for _, s := range spans {
		assert.Equal(t, spans[0].TraceID(), s.TraceID(), "one run, one trace: span %q", s.Name())
		if s.ParentSpanID().IsEmpty() {
			roots = append(roots, s)
		}
		if a.isTool(s) {
			tools = append(tools, s)
		}
	}
	require.Len(t, roots, 1, "one root span")
	assert.Equal(t, a.root, roots[0].Name(), "the run's root span")
	a.checkRoot(t, spans, roots[0], tools)

	require.Len(t, tools, len(a.calls), "one span per tool call")
	for i, s := range tools {
		want := a.calls[i]
		got := a.readTool(t, s)
		assert.Equal(t, want.Tool, got.Tool, "tool call %d: tool", i)
		assert.Equal(t, want.ID, got.ID, "tool call %d: id", i)
		assertSameValue(t, want.Args, got.Args, "tool call %d: arguments", i)
		assertSameValue(t, want.Result, got.Result, "tool call %d: result", i)
		assert.Equal(t, want.Err, got.Err, "tool call %d: error", i)
		if want.Err == "" {
			assert.NotEqual(t, ptrace.StatusCodeError, s.Status().Code(), "tool call %d: status", i)
			continue
		}
		// A failure is the span's status, and an exception event.
		assert.Equal(t, ptrace.StatusCodeError, s.Status().Code(), "tool call %d: status", i)
		require.Equal(t, 1, s.Events().Len(), "tool call %d: events", i)
		ev := s.Events().At(0)
		assert.Equal(t, "exception", ev.Name(), "tool call %d", i)
		msg := mapStr(ev.Attributes(), "exception.message")
		assert.True(t, strings.HasPrefix(msg, want.Err), "tool call %d: exception.message %q", i, msg)
		// The error's class; OpenInference records the message only.
		wantType := "RateLimitError"
		if a.convention == "openinference" {
			wantType = ""
		}
		assert.Equal(t, wantType, mapStr(ev.Attributes(), "exception.type"), "tool call %d: exception.type", i)
	}
	if t.Failed() {
		t.Logf("what arrived:\n%s", fixtureJSON(t, td))
	}
}

// assertSameValue compares two JSON texts as JSON, anything else as text.
func assertSameValue(t *testing.T, want, got string, msgAndArgs ...any) {
	t.Helper()
	var w, g any
	if json.Unmarshal([]byte(want), &w) == nil && json.Unmarshal([]byte(got), &g) == nil {
		assert.Equal(t, w, g, msgAndArgs...)
		return
	}
	assert.Equal(t, want, got, msgAndArgs...)
}

// attrStr is span s's string attribute key, "" when it has none.
func attrStr(s ptrace.Span, key string) string { return mapStr(s.Attributes(), key) }

func mapStr(m pcommon.Map, key string) string {
	v, ok := m.Get(key)
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return ""
	}
	return v.Str()
}

// firstLine is a status message's first line: LangChain's carries the
// stack after it.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// The Vercel AI SDK: ai.toolCall spans with ai.toolCall.name, .id, .args
// (the input as a JSON string) and, on success, .result (the output as a
// JSON string). A tool that throws: status Error with the error's
// message, an exception event (exception.type the error's name), no
// .result, no error.type.
func readVercelToolCall(t *testing.T, s ptrace.Span) toolCall {
	t.Helper()
	assert.Equal(t, "ai.toolCall", attrStr(s, "ai.operationId"))
	c := toolCall{Tool: attrStr(s, "ai.toolCall.name"), ID: attrStr(s, "ai.toolCall.id"), Args: attrStr(s, "ai.toolCall.args"), Result: attrStr(s, "ai.toolCall.result")}
	if s.Status().Code() == ptrace.StatusCodeError {
		c.Err = s.Status().Message()
	}
	return c
}

// checkVercelRoot: the root is ai.generateText or ai.streamText
// (ai.operationId), parent of every ai.toolCall and of one
// ai.*.doGenerate / doStream span per model step; every span carries
// ai.telemetry.functionId and the metadata (ai.telemetry.metadata.*).
func checkVercelRoot(op, session string) func(t *testing.T, spans []ptrace.Span, root ptrace.Span, tools []ptrace.Span) {
	return func(t *testing.T, spans []ptrace.Span, root ptrace.Span, tools []ptrace.Span) {
		assert.Equal(t, op, attrStr(root, "ai.operationId"))
		for _, s := range spans {
			assert.Equal(t, "crm-email-fix", attrStr(s, "ai.telemetry.functionId"), "span %q", s.Name())
			assert.Equal(t, session, attrStr(s, "ai.telemetry.metadata.sessionId"), "span %q", s.Name())
			assert.Equal(t, "ops@company.com", attrStr(s, "ai.telemetry.metadata.userId"), "span %q", s.Name())
			if s.SpanID() != root.SpanID() {
				assert.Equal(t, root.SpanID(), s.ParentSpanID(), "span %q is the root's child", s.Name())
			}
		}
		for _, s := range tools {
			for k := range s.Attributes().All() {
				assert.False(t, strings.HasPrefix(k, "gen_ai."), "ai.toolCall has no GenAI key (%s)", k)
			}
		}
	}
}

// OpenInference (LangChain): TOOL spans with tool.name, input.value (JSON,
// input.mime_type application/json, or for a one-argument tool the bare
// value, text/plain) and output.value: not the tool's result but the
// ToolMessage LangChain made of it, serialized ({"output":{"lc":1,
// "type":"constructor","id":[…,"ToolMessage"],"kwargs":{"content":…,
// "tool_call_id":…,"status":"success",…}}}); the tool call id is only
// there. A tool that throws: status Error whose message is the error's
// message, a blank line and its stack ("RateLimitError: …\n    at …"); an
// exception event with exception.message only (the same text); no
// output.value.
func readOpenInferenceToolCall(t *testing.T, s ptrace.Span) toolCall {
	t.Helper()
	c := toolCall{Tool: attrStr(s, "tool.name"), Args: attrStr(s, "input.value")}
	mime := "text/plain"
	if json.Valid([]byte(c.Args)) {
		mime = "application/json"
	}
	assert.Equal(t, mime, attrStr(s, "input.mime_type"), "input.mime_type of %q", c.Args)
	if s.Status().Code() == ptrace.StatusCodeError {
		c.Err = firstLine(s.Status().Message())
		_, ok := s.Attributes().Get("output.value")
		assert.False(t, ok, "a failed tool has no output.value")
		return c
	}
	assert.Equal(t, ptrace.StatusCodeOk, s.Status().Code(), "LangChain sets status Ok")
	assert.Equal(t, "application/json", attrStr(s, "output.mime_type"))
	var out struct {
		Output struct {
			ID     []string `json:"id"`
			Kwargs struct {
				Content    string `json:"content"`
				ToolCallID string `json:"tool_call_id"`
				Status     string `json:"status"`
			} `json:"kwargs"`
		} `json:"output"`
	}
	require.NoError(t, json.Unmarshal([]byte(attrStr(s, "output.value")), &out), "output.value")
	assert.Equal(t, "ToolMessage", out.Output.ID[len(out.Output.ID)-1], "output.value holds a ToolMessage")
	assert.Equal(t, "success", out.Output.Kwargs.Status)
	c.ID, c.Result = out.Output.Kwargs.ToolCallID, out.Output.Kwargs.Content
	return c
}

// checkLangGraphRoot: the root is a CHAIN span named after the run
// (runName), with session.id (LangGraph's thread_id) and metadata (JSON of
// the run's metadata) on every span. A TOOL span's parent is the "tools"
// node's CHAIN span, whose parent is the root. LangGraph emits no AGENT
// span: the run is the root CHAIN.
func checkLangGraphRoot(t *testing.T, spans []ptrace.Span, root ptrace.Span, tools []ptrace.Span) {
	assert.Equal(t, "CHAIN", attrStr(root, "openinference.span.kind"))
	byID := map[pcommon.SpanID]ptrace.Span{}
	kinds := map[string]int{}
	for _, s := range spans {
		byID[s.SpanID()] = s
		kinds[attrStr(s, "openinference.span.kind")]++
		assert.Equal(t, "conv_langgraph_0001", attrStr(s, "session.id"), "span %q", s.Name())
		var md map[string]any
		require.NoError(t, json.Unmarshal([]byte(attrStr(s, "metadata")), &md), "metadata of %q", s.Name())
		assert.Equal(t, "ops@company.com", md["user_id"], "metadata.user_id of %q", s.Name())
	}
	assert.Equal(t, map[string]int{"CHAIN": 13, "LLM": 4, "TOOL": 3}, kinds, "spans by openinference.span.kind: no AGENT")
	for _, s := range tools {
		p := byID[s.ParentSpanID()]
		assert.Equal(t, "tools", p.Name(), "a TOOL span's parent")
		assert.Equal(t, root.SpanID(), p.ParentSpanID(), "the tools node's parent")
	}
}

// The GenAI conventions: execute_tool spans (name "execute_tool <tool>",
// kind INTERNAL) with gen_ai.tool.name, gen_ai.tool.call.id,
// gen_ai.tool.call.arguments and, on success, gen_ai.tool.call.result
// (both JSON strings: OTel JS has no map-valued attributes), plus
// gen_ai.tool.type and gen_ai.tool.description. A failure: status Error
// with the message, error.type (the exception's class), an exception event.
func readGenAIToolCall(t *testing.T, s ptrace.Span) toolCall {
	t.Helper()
	c := toolCall{Tool: attrStr(s, "gen_ai.tool.name"), ID: attrStr(s, "gen_ai.tool.call.id"),
		Args: attrStr(s, "gen_ai.tool.call.arguments"), Result: attrStr(s, "gen_ai.tool.call.result")}
	assert.Equal(t, "execute_tool "+c.Tool, s.Name())
	assert.Equal(t, ptrace.SpanKindInternal, s.Kind())
	assert.Equal(t, "function", attrStr(s, "gen_ai.tool.type"))
	if s.Status().Code() == ptrace.StatusCodeError {
		c.Err = s.Status().Message()
		assert.Equal(t, "RateLimitError", attrStr(s, "error.type"))
	}
	return c
}

// checkGenAIRoot: the root is the invoke_agent span, with the agent
// (gen_ai.agent.id, .name) and the conversation (gen_ai.conversation.id);
// the execute_tool spans and the chat spans are its children. The
// conventions put neither the agent nor the conversation on execute_tool.
func checkGenAIRoot(t *testing.T, spans []ptrace.Span, root ptrace.Span, tools []ptrace.Span) {
	assert.Equal(t, "invoke_agent", attrStr(root, "gen_ai.operation.name"))
	assert.Equal(t, ptrace.SpanKindInternal, root.Kind())
	assert.Equal(t, "agent_crm_7f3b", attrStr(root, "gen_ai.agent.id"))
	assert.Equal(t, "CRM Assistant", attrStr(root, "gen_ai.agent.name"))
	assert.Equal(t, "conv_genai_0001", attrStr(root, "gen_ai.conversation.id"))
	chats := 0
	for _, s := range spans {
		if s.SpanID() == root.SpanID() {
			continue
		}
		assert.Equal(t, root.SpanID(), s.ParentSpanID(), "span %q is the root's child", s.Name())
		if attrStr(s, "gen_ai.operation.name") == "chat" {
			chats++
			assert.Equal(t, "conv_genai_0001", attrStr(s, "gen_ai.conversation.id"))
		}
	}
	assert.Equal(t, 4, chats, "one chat span per model call")
	for _, s := range tools {
		for _, k := range []string{"gen_ai.conversation.id", "gen_ai.agent.id", "gen_ai.agent.name"} {
			_, ok := s.Attributes().Get(k)
			assert.False(t, ok, "execute_tool carries %s", k)
		}
	}
}

// checkExplicitRoot: as the AI SDK's, and the update's ai.toolCall span
// carries the hand-set audit.* keys beside the SDK's own.
func checkExplicitRoot(t *testing.T, spans []ptrace.Span, root ptrace.Span, tools []ptrace.Span) {
	checkVercelRoot("ai.streamText", "conv_explicit_0001")(t, spans, root, tools)
	require.Len(t, tools, 2)
	for k, want := range explicitAudit {
		assert.Equal(t, want, attrStr(tools[1], k), "the update's %s", k)
		_, ok := tools[0].Attributes().Get(k)
		assert.False(t, ok, "the lookup is not tagged (%s)", k)
	}
}

// checkCaptureOff: with the default configuration no framework span
// becomes an entry (only explicit's hand-tagged one does), monitoring gets
// every span, the framework ones unchanged, and the collector counts what
// it did not capture. sent is what arrived, as sent.
func checkCaptureOff(t *testing.T, a frameworkAgent, c *harness.Collector, sent []ptrace.Traces) {
	spans := emittedSpans(t, a, sent...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mon := waitMonitoring(t, ctx, c, len(spans))

	misses := 0.0
	for _, smp := range harness.ScrapeSamples(t, c.MetricsAddr) {
		if strings.Contains(smp.Name, "uncaptured_spans") && strings.Contains(smp.Labels, `convention="`+a.convention+`"`) {
			misses += smp.Value
		}
	}
	assert.Positive(t, misses, "otelcol_agentaudit_uncaptured_spans{convention=%q}", a.convention)
	c.Stop()

	monByID := map[pcommon.SpanID]ptrace.Span{}
	for _, m := range mon {
		monByID[m.SpanID()] = m
	}
	for _, s := range spans {
		m, ok := monByID[s.SpanID()]
		require.True(t, ok, "monitoring got span %q", s.Name())
		if attrStr(s, "audit.action.type") == "" {
			assert.Equal(t, s.Attributes().AsRaw(), m.Attributes().AsRaw(), "span %q reaches monitoring unchanged", s.Name())
			continue
		}
		// The hand-tagged span is an audit span: monitoring gets it
		// stripped by the default list.
		for _, k := range []string{"audit.action.type", "audit.execution.id", "audit.target.system", "audit.result", "ai.toolCall.name", "ai.toolCall.id"} {
			assert.Equal(t, attrStr(s, k), attrStr(m, k), "monitoring keeps %s", k)
		}
		for _, k := range []string{"audit.value.proposed", "audit.value.previous", "audit.reasoning", "audit.approver", "audit.target.resource", "ai.toolCall.args", "ai.toolCall.result"} {
			_, ok := m.Attributes().Get(k)
			assert.False(t, ok, "monitoring must not get %s", k)
		}
	}

	rows := trailRows(t, c)
	if a.name != "explicit" {
		assert.Empty(t, rows, "capture is off: no framework span is recorded")
		return
	}
	require.Len(t, rows, 1, "only the hand-tagged span is recorded")
	r := rows[0]
	assert.Equal(t, "write", r.ActionType)
	assert.Equal(t, "exec_explicit_0001", r.ExecutionID)
	assert.Equal(t, "HubSpot CRM", r.TargetSystem)
	assert.Equal(t, "Contact #48291 (email field)", r.TargetResource)
	assert.Equal(t, "jane@newdomain.com", r.ProposedValue.String)
	assert.Equal(t, "jane@olddomain.com", r.PreviousValue.String)
	assert.Equal(t, "Email bounced; the user gave the new address", r.Reasoning.String)
	assert.Equal(t, "auto-approve:crm-email-fix", r.Approver.String)
	assert.Equal(t, "200 OK (field updated)", r.Result)
	assert.Equal(t, "crm-agent-explicit", r.ServiceName.String)
	assert.False(t, r.Validation.Valid, "no problem: %s", r.Validation.String)
	var attrs map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.Attributes), &attrs))
	assert.Equal(t, "crm_update_contact", attrs["ai.toolCall.name"], "the span's other attributes are kept")
	assert.Equal(t, updateArgs, attrs["ai.toolCall.args"])
}

// waitMonitoring waits until the monitoring backend has n spans.
func waitMonitoring(t *testing.T, ctx context.Context, c *harness.Collector, n int) []ptrace.Span {
	t.Helper()
	for {
		mon := c.Monitoring.Received()
		if len(mon) >= n {
			require.Len(t, mon, n, "monitoring gets every span once")
			return mon
		}
		select {
		case <-ctx.Done():
			t.Fatalf("monitoring got %d spans, want %d", len(mon), n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// trailRows returns the entries the spans sent to c, which ran once and
// has stopped, became, in true order (time_unix_nano, then seq: one
// chain), after checking the chain with docs/verify.sql and that the
// collector's start and stop markers are there, and nothing else of its
// own.
func trailRows(t *testing.T, c *harness.Collector) []harness.Row {
	t.Helper()
	db := harness.TrailDB(t, c.DataDir)
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql")
	rows, markers := harness.SplitMarkers(harness.ReadRows(t, db, ""))
	require.Equal(t, harness.OneCleanRun, markers, "the collector's start and stop")
	slices.SortStableFunc(rows, func(a, b harness.Row) int {
		return cmp.Or(cmp.Compare(a.TimeUnixNano, b.TimeUnixNano), cmp.Compare(a.Seq, b.Seq))
	})
	return rows
}

// checkFrameworkEntries checks the entries capture made of a's run, as the
// README's "Capturing framework spans" says: one per tool call, in order
// (action type by tool rule, the tool as target system, the arguments as
// proposed value, the tool's result, or the error's message without a
// stack, as result; the tool call id kept), the run's start first and its
// end last, one execution id and one agent for the run (but where the
// sender tagged a span by hand), the principal; and that monitoring holds
// no tool payload.
//
// What capture makes of OpenInference's spans is checked as it is: a
// one-argument tool's input.value is the bare value (text/plain), and
// becomes the proposed value as it is.
func checkFrameworkEntries(t *testing.T, a frameworkAgent, c *harness.Collector, sent []ptrace.Traces) {
	t.Helper()
	spans := emittedSpans(t, a, sent...)
	var root ptrace.Span
	for _, s := range spans {
		if s.ParentSpanID().IsEmpty() {
			root = s
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Monitoring gets every span (and may get the copy capture makes of an
	// agent span for its start).
	mon := c.Monitoring.Received()
	for len(mon) < len(spans) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		mon = c.Monitoring.Received()
	}
	require.GreaterOrEqual(t, len(mon), len(spans), "monitoring gets every span")
	c.Stop()

	// Monitoring holds none of what the tools were given and returned.
	for _, s := range mon {
		for _, k := range []string{"gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "ai.toolCall.args", "ai.toolCall.result",
			"audit.value.proposed", "audit.value.previous", "audit.reasoning", "audit.approver", "audit.target.resource"} {
			_, ok := s.Attributes().Get(k)
			assert.False(t, ok, "monitoring got %s on %q", k, s.Name())
		}
		if attrStr(s, "openinference.span.kind") == "TOOL" {
			for _, k := range []string{"input.value", "output.value"} {
				_, ok := s.Attributes().Get(k)
				assert.False(t, ok, "monitoring got %s on TOOL span %q", k, s.Name())
			}
		}
	}

	rows := trailRows(t, c)
	var tools, runs []harness.Row
	for _, r := range rows {
		if r.ActionType == "start" || r.ActionType == "end" {
			runs = append(runs, r)
		} else {
			tools = append(tools, r)
		}
	}
	defer func() {
		if t.Failed() || testing.Verbose() {
			for _, r := range rows {
				t.Logf("entry seq %d: %s at %s: target %q, execution %s, agent %q/%q, principal %q, proposed %q, result %q, status %s, validation %s, attributes %s",
					r.Seq, r.ActionType, time.Unix(0, r.TimeUnixNano).UTC().Format(time.RFC3339Nano), r.TargetSystem, r.ExecutionID,
					r.AgentID.String, r.AgentName.String, r.Principal.String, r.ProposedValue.String, r.Result, r.StatusCode, r.Validation.String, r.Attributes)
			}
		}
	}()

	// One entry per tool call, in order. OTel JS takes a span's start from
	// Date.now(): sequential tool calls may start in the same millisecond,
	// where seq (arrival: a span is sent when it ends) breaks the tie.
	require.Len(t, tools, len(a.calls), "one entry per tool call")
	for i, want := range a.calls {
		r := tools[i]
		assert.Equal(t, a.service, r.ServiceName.String, "entry %d: service", i)
		if i > 0 {
			assert.LessOrEqual(t, tools[i-1].TimeUnixNano, r.TimeUnixNano, "tool calls in order")
		}
		if a.name == "explicit" && want.Tool == "crm_update_contact" {
			// Hand-tagged: never derived, every column the sender's.
			assert.Equal(t, explicitAudit["audit.action.type"], r.ActionType)
			assert.Equal(t, explicitAudit["audit.execution.id"], r.ExecutionID)
			assert.Equal(t, explicitAudit["audit.target.system"], r.TargetSystem)
			assert.Equal(t, explicitAudit["audit.target.resource"], r.TargetResource)
			assert.Equal(t, explicitAudit["audit.value.proposed"], r.ProposedValue.String)
			assert.Equal(t, explicitAudit["audit.value.previous"], r.PreviousValue.String)
			assert.Equal(t, explicitAudit["audit.reasoning"], r.Reasoning.String)
			assert.Equal(t, explicitAudit["audit.approver"], r.Approver.String)
			assert.Equal(t, explicitAudit["audit.result"], r.Result)
			assert.False(t, r.Validation.Valid, "a hand-tagged span is never derived: %s", r.Validation.String)
			assert.False(t, r.AgentName.Valid, "no agent derived: %s", r.AgentName.String)
			assert.False(t, r.Principal.Valid, "no principal derived: %s", r.Principal.String)
			continue
		}
		action := "read"
		if strings.Contains(want.Tool, "_update_") {
			action = "write"
		}
		assert.Equal(t, action, r.ActionType, "entry %d: action type by tool rule", i)
		assert.Equal(t, want.Tool, r.TargetSystem, "entry %d: the tool is the target system", i)
		assertSameValue(t, want.Args, r.ProposedValue.String, "entry %d: the arguments are the proposed value", i)
		assert.Contains(t, r.Validation.String, `"problem":"derived"`, "entry %d: derived entries say so", i)
		assert.Equal(t, a.executionID, r.ExecutionID, "entry %d: execution id", i)
		assert.Equal(t, a.principal, r.Principal.String, "entry %d: principal", i)
		// The agent: the run's, on every tool call, derived and saying so.
		assert.Equal(t, a.agentName, r.AgentName.String, "entry %d: agent name", i)
		assert.Equal(t, a.agentID, r.AgentID.String, "entry %d: agent id", i)
		ps := problemsOf(t, r)
		assert.Equal(t, a.agentFrom, ps["gen_ai.agent.name/derived"], "entry %d: the agent name's derived marker", i)
		if a.agentID != "" {
			assert.Equal(t, "genai: from gen_ai.agent.id of the enclosing invoke_agent span, in the same request", ps["gen_ai.agent.id/derived"], "entry %d", i)
		}
		var attrs map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.Attributes), &attrs), "entry %d: attributes", i)
		if want.ID != "" {
			assert.Equal(t, want.ID, attrs[a.callIDKey], "entry %d: the tool call id, %s", i, a.callIDKey)
		} else {
			assert.NotContains(t, attrs, a.callIDKey, "entry %d", i)
		}
		if want.Err != "" {
			assert.Equal(t, "Error", r.StatusCode, "entry %d: status", i)
			switch a.convention {
			case "genai":
				assert.Equal(t, "error: RateLimitError", r.Result, "entry %d: error.type gives the result", i)
			case "openinference":
				// LangChain's status message is the message, a blank line
				// and the stack: the result is its first line.
				assert.Equal(t, "error: "+want.Err, r.Result, "entry %d: the status message's first line gives the result", i)
				assert.Contains(t, ps["audit.result/derived"], "the first line of the status message", "entry %d", i)
			default:
				assert.Equal(t, "error: "+want.Err, r.Result, "entry %d: the status message gives the result", i)
			}
			assert.NotContains(t, r.Result, "\n", "entry %d: no stack in the result", i)
			continue
		}
		// The tool's result: for OpenInference, the content of the
		// ToolMessage output.value holds, and its tool call id.
		assertSameValue(t, want.Result, r.Result, "entry %d: the result is the tool's", i)
		if a.convention == "openinference" {
			assert.Equal(t, "openinference: from output.value: the content of the ToolMessage it holds", ps["audit.result/derived"], "entry %d", i)
			assert.Equal(t, "openinference: from output.value: the ToolMessage's tool_call_id", ps["tool_call.id/derived"], "entry %d", i)
		}
	}

	// The run: its start first, its end last, instants at the root span's
	// start and end; the end's result from the root's status.
	require.Len(t, runs, 2, "an agent run is a start and an end")
	start, end := runs[0], runs[1]
	assert.Equal(t, "start", start.ActionType)
	assert.Equal(t, "end", end.ActionType)
	assert.Equal(t, rows[0], start, "the start comes first")
	assert.Equal(t, rows[len(rows)-1], end, "the end comes last")
	assert.EqualValues(t, root.StartTimestamp(), start.TimeUnixNano, "the start is the root span's start")
	assert.Equal(t, start.TimeUnixNano, start.EndTimeUnixNano.Int64, "the start is an instant")
	assert.EqualValues(t, root.EndTimestamp(), end.TimeUnixNano, "the end is the root span's end")
	assert.Equal(t, end.TimeUnixNano, end.EndTimeUnixNano.Int64, "the end is an instant")
	assert.Equal(t, "started", start.Result)
	wantEnd := map[ptrace.StatusCode]string{ptrace.StatusCodeUnset: "unset", ptrace.StatusCodeOk: "ok"}[root.Status().Code()]
	assert.Equal(t, wantEnd, end.Result, "the end's result is the root's status")
	for _, r := range runs {
		assert.Equal(t, a.runTarget, r.TargetSystem, "%s: the agent is the run's target system", r.ActionType)
		assert.Equal(t, a.agentName, r.AgentName.String, "%s: agent name", r.ActionType)
		assert.Equal(t, a.agentID, r.AgentID.String, "%s: agent id", r.ActionType)
		assert.Equal(t, a.executionID, r.ExecutionID, "%s: execution id", r.ActionType)
		assert.Equal(t, a.principal, r.Principal.String, "%s: principal", r.ActionType)
		assert.Equal(t, a.service, r.ServiceName.String, "%s: service", r.ActionType)
		assert.Contains(t, r.Validation.String, `"problem":"derived"`, "%s: derived entries say so", r.ActionType)
	}
	if t.Failed() {
		t.Logf("what arrived:\n%s", fixtureJSON(t, normalizeFixture(sent)))
	}
}

// problemsOf returns the problems of r's validation by "field/problem",
// each with its detail.
func problemsOf(t *testing.T, r harness.Row) map[string]string {
	t.Helper()
	out := map[string]string{}
	if !r.Validation.Valid {
		return out
	}
	var ps []struct{ Field, Problem, Detail string }
	require.NoError(t, json.Unmarshal([]byte(r.Validation.String), &ps), "validation")
	for _, p := range ps {
		out[p.Field+"/"+p.Problem] = p.Detail
	}
	return out
}
