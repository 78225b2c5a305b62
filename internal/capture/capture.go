// Package capture turns the tool-call and agent spans that agent frameworks
// already emit into audit-tagged spans, so that they enter the trail without
// hand-set audit.* attributes. It knows three conventions, each opt-in:
//
//   - "genai": OpenTelemetry's GenAI semantic conventions (v1.37 and the
//     semantic-conventions-genai releases): a span whose
//     gen_ai.operation.name is execute_tool is a tool call (gen_ai.tool.name,
//     gen_ai.tool.call.id, gen_ai.tool.call.arguments,
//     gen_ai.tool.call.result); invoke_agent is an agent run; the execution
//     is gen_ai.conversation.id, which the conventions put on invoke_agent
//     and chat spans but not on execute_tool: a tool span takes that of
//     another span of its trace in the same request, and its agent
//     (gen_ai.agent.id, gen_ai.agent.name) from the nearest invoke_agent
//     span that encloses it in the request (Executions).
//   - "openinference": Arize's OpenInference conventions, which the
//     LangChain/LangGraph, CrewAI, OpenAI Agents SDK and other
//     instrumentations emit: openinference.span.kind TOOL (tool.name,
//     input.value, output.value) and AGENT (agent.name), or, as LangGraph
//     has no AGENT span, a trace's root CHAIN span, named after the graph;
//     the execution is session.id. A TOOL span takes its agent from the
//     nearest AGENT or root CHAIN span that encloses it in the request.
//     LangChain's output.value is the ToolMessage it made of the tool's
//     return value, serialized: the result is its content.
//   - "vercel_ai": the Vercel AI SDK's telemetry: ai.toolCall spans
//     (ai.toolCall.name, ai.toolCall.id, ai.toolCall.args,
//     ai.toolCall.result) and the generateText / streamText /
//     generateObject / streamObject spans around them; the agent is
//     ai.telemetry.functionId, the execution
//     ai.telemetry.metadata.conversationId or .sessionId, the principal
//     ai.telemetry.metadata.userId.
//
// A span that already has audit.action.type is hand-tagged and never
// derived. Otherwise a captured span gets the audit.* keys it lacks, and
// gen_ai.agent.id, gen_ai.agent.name, enduser.id and tool_call.id where
// the spans tell them (keys the sender set win); the framework keys it
// took a column from are moved there, and each derived key is recorded in
// audit.validation as problem "derived", whose detail names the
// convention and the source: an auditor tells derived entries from
// hand-tagged ones. A tool call's action
// type comes from the tool rules (by tool name, first matching glob):
// read, write, another known type, or ignore (not audited); without a
// matching rule it is tool_call, an action whose effect is unknown. An agent
// run becomes two entries: start at the span's start, end at its end, the
// end's result from the span's status. A failure's result is its
// error.type, else the first line of its status message: LangChain
// appends the stack trace there.
//
// The README ("Capturing framework spans") documents the mapping key by
// key; the tests in e2e/frameworks_* run the real frameworks.
package capture // import "github.com/agentaudit/agentaudit/internal/capture"

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Conventions.
const (
	GenAI         = "genai"
	OpenInference = "openinference"
	VercelAI      = "vercel_ai"
)

// Conventions lists the conventions, in the order rules are tried.
var Conventions = []string{GenAI, OpenInference, VercelAI}

// ActionIgnore in a tool rule: the tool's calls are not audited.
const ActionIgnore = "ignore"

// ProblemDerived marks a key derived from a framework's attributes.
const ProblemDerived = "derived"

// Config is the capture section of the connector's and the processor's
// configuration. The zero value captures nothing.
type Config struct {
	// Conventions to capture: genai, openinference, vercel_ai.
	Conventions []string `mapstructure:"conventions"`
	// Tools map tool names to action types, first match first.
	Tools []ToolRule `mapstructure:"tools"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// ToolRule says what the calls of the tools whose name matches do.
type ToolRule struct {
	// Match is a glob (path.Match syntax: *, ?, [a-z]) on the tool name.
	Match string `mapstructure:"match"`
	// Action is read, write, another known action type, tool_call, or
	// ignore.
	Action string `mapstructure:"action"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// Validate reports every problem at once, quoting the YAML keys.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, cv := range c.Conventions {
		switch {
		case !slices.Contains(Conventions, cv):
			errs = append(errs, fmt.Errorf("\"conventions\": %q is not a convention: use %s", cv, strings.Join(Conventions, ", ")))
		case seen[cv]:
			errs = append(errs, fmt.Errorf("\"conventions\" lists %q twice", cv))
		}
		seen[cv] = true
	}
	for i, r := range c.Tools {
		if r.Match == "" {
			errs = append(errs, fmt.Errorf("\"tools\" rule %d: \"match\" is empty", i+1))
		} else if _, err := path.Match(r.Match, ""); err != nil {
			errs = append(errs, fmt.Errorf("\"tools\" rule %d: \"match\" %q is not a glob: %w", i+1, r.Match, err))
		}
		if r.Action != ActionIgnore && !entry.IsKnownActionType(r.Action) {
			errs = append(errs, fmt.Errorf("\"tools\" rule %d: \"action\" %q: use ignore or one of %s", i+1, r.Action, strings.Join(entry.KnownActionTypes, ", ")))
		}
	}
	if len(c.Tools) > 0 && len(c.Conventions) == 0 {
		errs = append(errs, errors.New("\"tools\" is set but \"conventions\" is empty: nothing is captured"))
	}
	return errors.Join(errs...)
}

// Outcome is what Capturer.Match found of a span.
type Outcome int

const (
	// NotFramework: the span is not a framework's tool or agent span (or
	// is hand-tagged).
	NotFramework Outcome = iota
	// Captured: a rule takes it.
	Captured
	// Ignored: a tool rule says its calls are not audited.
	Ignored
	// Missed: it looks like a tool call or agent run of a convention that
	// is not captured.
	Missed
)

// Match is a framework span found, with what capturing it means.
type Match struct {
	Outcome    Outcome
	Convention string
	agent      bool   // an agent run (two entries), else a tool call
	rootChain  bool   // an OpenInference root CHAIN span (LangGraph's run)
	tool       string // the tool's name
	action     string // the tool call's action type
}

// Agent reports whether the span is an agent run, which becomes two
// entries (start and end).
func (m Match) Agent() bool { return m.agent }

// Capturer applies a Config. It is safe for concurrent use.
type Capturer struct {
	on    map[string]bool
	tools []ToolRule
}

// New returns the capturer of cfg, which must be valid.
func New(cfg Config) *Capturer {
	c := &Capturer{on: map[string]bool{}, tools: slices.Clone(cfg.Tools)}
	for _, cv := range cfg.Conventions {
		c.on[cv] = true
	}
	return c
}

// Enabled reports whether anything is captured.
func (c *Capturer) Enabled() bool { return c != nil && len(c.on) > 0 }

// Operation ids of the Vercel AI SDK's spans that wrap a model call and its
// tool calls: an agent run.
var vercelRuns = []string{"ai.generateText", "ai.streamText", "ai.generateObject", "ai.streamObject"}

// Match says whether span is a framework span and what a rule makes of it.
// A hand-tagged span (audit.action.type) is NotFramework. It finds the
// attributes it decides on in one pass over a span's attributes (the first
// of each key, as pcommon.Map.Get), and reads the tool's name from a
// tool span.
func (c *Capturer) Match(span ptrace.Span) Match {
	attrs := span.Attributes()
	var fa frameworkAttrs
	attrs.Range(func(k string, v pcommon.Value) bool {
		switch k {
		case entry.KeyActionType:
			fa.tagged = true
			return false
		case "gen_ai.operation.name":
			fa.first(&fa.operation, fa.seenOperation, v)
			fa.seenOperation = true
		case "openinference.span.kind":
			fa.first(&fa.kind, fa.seenKind, v)
			fa.seenKind = true
		case "ai.operationId":
			fa.first(&fa.aiOperation, fa.seenAIOperation, v)
			fa.seenAIOperation = true
		}
		return true
	})
	if fa.tagged {
		return Match{}
	}
	var m Match
	switch {
	case fa.operation == "execute_tool":
		m = Match{Convention: GenAI, tool: strAttr(attrs, "gen_ai.tool.name")}
		if m.tool == "" {
			m.tool = strings.TrimSpace(strings.TrimPrefix(span.Name(), "execute_tool"))
		}
	case fa.operation == "invoke_agent":
		m = Match{Convention: GenAI, agent: true}
	case fa.kind == "TOOL":
		m = Match{Convention: OpenInference, tool: strAttr(attrs, "tool.name")}
		if m.tool == "" {
			m.tool = span.Name()
		}
	case fa.kind == "AGENT":
		m = Match{Convention: OpenInference, agent: true}
	case fa.kind == "CHAIN" && span.ParentSpanID().IsEmpty():
		// LangGraph and LangChain agents have no AGENT span: the graph or
		// chain invoked is the trace's root CHAIN span.
		m = Match{Convention: OpenInference, agent: true, rootChain: true}
	default:
		op := fa.aiOperation
		if n := span.Name(); op == "" && strings.HasPrefix(n, "ai.") {
			op = n // as vercelOperation
		}
		switch {
		case op == "ai.toolCall":
			m = Match{Convention: VercelAI, tool: strAttr(attrs, "ai.toolCall.name")}
		case slices.Contains(vercelRuns, op):
			m = Match{Convention: VercelAI, agent: true}
		default:
			return Match{}
		}
	}
	if !c.Enabled() || !c.on[m.Convention] {
		m.Outcome = Missed
		return m
	}
	m.Outcome = Captured
	if !m.agent {
		m.action = "tool_call"
		for _, r := range c.tools {
			if ok, _ := path.Match(r.Match, m.tool); ok {
				m.action = r.Action
				break
			}
		}
		if m.action == ActionIgnore {
			m.Outcome = Ignored
		}
	}
	return m
}

// frameworkAttrs are the string values (strAttr) of the keys Match
// decides on.
type frameworkAttrs struct {
	tagged                                   bool // audit.action.type
	operation, kind, aiOperation             string
	seenOperation, seenKind, seenAIOperation bool
}

// first sets *dst to v's string, "" when v is not one, unless an earlier
// occurrence of the key was seen: the first one counts, as with
// pcommon.Map.Get.
func (frameworkAttrs) first(dst *string, seen bool, v pcommon.Value) {
	if !seen && v.Type() == pcommon.ValueTypeStr {
		*dst = v.Str()
	}
}

func strAttr(attrs pcommon.Map, key string) string {
	v, ok := attrs.Get(key)
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return ""
	}
	return v.Str()
}

// source is one audit key derived from a framework key.
type source struct{ audit, from string }

// toolSources are, per convention, the framework keys a tool call's
// columns come from; each is moved to its audit key.
var toolSources = map[string][]source{
	GenAI:         {{entry.KeyValueProposed, "gen_ai.tool.call.arguments"}, {entry.KeyResult, "gen_ai.tool.call.result"}},
	OpenInference: {{entry.KeyValueProposed, "input.value"}, {entry.KeyResult, "output.value"}},
	VercelAI:      {{entry.KeyValueProposed, "ai.toolCall.args"}, {entry.KeyResult, "ai.toolCall.result"}},
}

// executionKeys are, per convention, the keys an execution id is taken
// from, first present first.
var executionKeys = map[string][]string{
	GenAI:         {"gen_ai.conversation.id"},
	OpenInference: {"session.id"},
	VercelAI:      {"ai.telemetry.metadata.conversationId", "ai.telemetry.metadata.sessionId"},
}

// principalKeys are, per convention, keys naming the person the agent
// acts for when enduser.id is absent.
var principalKeys = map[string][]string{
	VercelAI: {"ai.telemetry.metadata.userId"},
}

// agentNameKeys are, per convention, keys naming the agent when
// gen_ai.agent.name is absent.
var agentNameKeys = map[string][]string{
	OpenInference: {"agent.name"},
	VercelAI:      {"ai.telemetry.functionId"},
}

// PayloadKeys are the framework keys holding what a tool was given and
// returned: the monitoring side strips them from a captured span (and the
// audit side moves them into columns).
var PayloadKeys = []string{
	"gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
	"input.value", "output.value",
	"ai.toolCall.args", "ai.toolCall.result",
}

// Apply tags span, which Match found Captured, with the audit.* keys it
// derives, in place; ex (from Executions of the span's request) names the
// execution of a span without its own id key. For an agent run span
// becomes the run's end entry and start is called for a new span, which
// becomes its start entry.
func (c *Capturer) Apply(span ptrace.Span, m Match, start func() ptrace.Span, ex Executions) {
	attrs := span.Attributes()
	var derived []entry.Problem
	set := func(key, val, detail string) {
		if _, ok := attrs.Get(key); ok {
			return // the sender's own key wins
		}
		attrs.PutStr(key, val)
		derived = append(derived, entry.Problem{Field: key, Kind: ProblemDerived, Detail: m.Convention + ": " + detail})
	}
	move := func(key, from string) {
		v, ok := attrs.Get(from)
		if !ok {
			return
		}
		if _, taken := attrs.Get(key); !taken {
			v.CopyTo(attrs.PutEmpty(key))
			derived = append(derived, entry.Problem{Field: key, Kind: ProblemDerived, Detail: m.Convention + ": from " + from})
		}
		attrs.Remove(from)
	}
	found := false
	for _, k := range executionKeys[m.Convention] {
		if id := strAttr(attrs, k); id != "" {
			set(entry.KeyExecutionID, id, "from "+k)
			found = true
			break
		}
	}
	if id, ok := ex.ids[span.TraceID()]; ok && !found && m.Convention == GenAI {
		set(entry.KeyExecutionID, id, "from gen_ai.conversation.id of another span of the trace, in the same request")
	}
	if _, ok := attrs.Get(entry.KeyEndUserID); !ok {
		for _, k := range principalKeys[m.Convention] {
			if p := strAttr(attrs, k); p != "" {
				set(entry.KeyEndUserID, p, "from "+k)
				break
			}
		}
	}
	if _, ok := attrs.Get(entry.KeyAgentName); !ok {
		for _, k := range agentNameKeys[m.Convention] {
			if name := strAttr(attrs, k); name != "" {
				set(entry.KeyAgentName, name, "from "+k)
				break
			}
		}
	}
	_, hasID := attrs.Get(entry.KeyAgentID)
	_, hasName := attrs.Get(entry.KeyAgentName)
	switch {
	case hasID || hasName:
		// The span names its agent: nothing of another is mixed in.
	case m.agent && m.Convention == OpenInference && span.Name() != "":
		// LangGraph's root CHAIN is named after the graph (its runName).
		set(entry.KeyAgentName, span.Name(), "the "+kindOf(m)+" span's name")
	case !m.agent:
		if a, ok := ex.agent(span, m.Convention); ok {
			of := " of the enclosing " + a.kind + " span, in the same request"
			if a.id != "" {
				set(entry.KeyAgentID, a.id, "from "+entry.KeyAgentID+of)
			}
			if a.nameFrom == "its name" {
				set(entry.KeyAgentName, a.name, "from the name"+of)
			} else if a.name != "" {
				set(entry.KeyAgentName, a.name, "from "+a.nameFrom+of)
			}
		}
	}
	errResult, errFrom := errorResult(span)
	if !m.agent {
		set(entry.KeyActionType, m.action, kindOf(m)+" span, tool "+m.tool+", "+ruleOf(m))
		set(entry.KeyTargetSystem, m.tool, "the tool's name")
		for _, s := range toolSources[m.Convention] {
			if s.audit == entry.KeyResult && span.Status().Code() == ptrace.StatusCodeError {
				// The error gives the result (error.type or the status
				// message); the tool's output, if any, stays an attribute.
				continue
			}
			if s.audit == entry.KeyResult && m.Convention == OpenInference {
				if content, callID, ok := toolMessage(attrs); ok {
					set(entry.KeyResult, content, "from "+s.from+": the content of the ToolMessage it holds")
					if callID != "" {
						set(keyToolCallID, callID, "from "+s.from+": the ToolMessage's tool_call_id")
					}
					attrs.Remove(s.from)
					continue
				}
			}
			move(s.audit, s.from)
		}
		if errResult != "" {
			set(entry.KeyResult, errResult, errFrom)
		}
		addDerived(span, derived)
		return
	}

	// An agent run: the span becomes its end, a copy its start.
	target := strAttr(attrs, entry.KeyAgentName)
	if target == "" {
		target = strAttr(attrs, entry.KeyAgentID)
	}
	if target == "" && m.Convention == OpenInference && span.Name() != "" {
		// A root CHAIN (LangGraph) is named after the graph invoked.
		target = span.Name()
	}
	if target == "" {
		target = "agent"
	}
	set(entry.KeyTargetSystem, target, "the agent run's agent")
	endDerived := append(slices.Clone(derived), entry.Problem{Field: entry.KeyActionType, Kind: ProblemDerived, Detail: m.Convention + ": " + kindOf(m) + " span, its end"})
	startDerived := append(derived, entry.Problem{Field: entry.KeyActionType, Kind: ProblemDerived, Detail: m.Convention + ": " + kindOf(m) + " span, its start"},
		entry.Problem{Field: entry.KeyResult, Kind: ProblemDerived, Detail: m.Convention + ": started"})
	if start != nil {
		s := start()
		span.CopyTo(s)
		s.SetEndTimestamp(s.StartTimestamp())
		s.Status().SetCode(ptrace.StatusCodeUnset)
		s.Status().SetMessage("")
		sa := s.Attributes()
		if _, ok := sa.Get(entry.KeyActionType); !ok {
			sa.PutStr(entry.KeyActionType, "start")
		}
		if _, ok := sa.Get(entry.KeyResult); !ok {
			sa.PutStr(entry.KeyResult, "started")
		}
		addDerived(s, startDerived)
	}
	span.SetStartTimestamp(span.EndTimestamp())
	attrs.PutStr(entry.KeyActionType, "end")
	if _, ok := attrs.Get(entry.KeyResult); !ok && errResult != "" {
		attrs.PutStr(entry.KeyResult, errResult)
		endDerived = append(endDerived, entry.Problem{Field: entry.KeyResult, Kind: ProblemDerived, Detail: m.Convention + ": " + errFrom})
	}
	addDerived(span, endDerived)
}

// keyToolCallID is OpenInference's key of a tool call's id, which
// LangChain's TOOL spans carry only inside output.value.
const keyToolCallID = "tool_call.id"

// toolMessage returns the content of the LangChain ToolMessage that an
// OpenInference TOOL span's output.value holds when its output.mime_type
// is application/json, and its tool_call_id: LangChain.js records the
// message LangChain made of the tool's return value, serialized
// ({"output":{"lc":1,"type":"constructor","id":[…,"ToolMessage"],
// "kwargs":{"content":…,"tool_call_id":…}}}), others its plain form
// ({"type":"tool","content":…}). A string content is returned as is,
// another (content blocks) as its JSON. ok is false for any other value,
// which is then the result as it is.
func toolMessage(attrs pcommon.Map) (content, callID string, ok bool) {
	mime, _, _ := strings.Cut(strAttr(attrs, "output.mime_type"), ";")
	if !strings.EqualFold(strings.TrimSpace(mime), "application/json") {
		return "", "", false
	}
	raw := []byte(strAttr(attrs, "output.value"))
	var wrapped map[string]json.RawMessage
	if json.Unmarshal(raw, &wrapped) != nil {
		return "", "", false
	}
	if out, ok := wrapped["output"]; ok && len(wrapped) == 1 {
		raw = out
	}
	type fields struct {
		Content    json.RawMessage `json:"content"`
		ToolCallID string          `json:"tool_call_id"`
	}
	var msg struct {
		fields
		LC     json.RawMessage `json:"lc"`
		Type   string          `json:"type"`
		ID     []string        `json:"id"`
		Kwargs *fields         `json:"kwargs"`
	}
	if json.Unmarshal(raw, &msg) != nil {
		return "", "", false
	}
	var f fields
	switch {
	case msg.LC != nil && msg.Type == "constructor" && len(msg.ID) > 0 && msg.ID[len(msg.ID)-1] == "ToolMessage" && msg.Kwargs != nil:
		f = *msg.Kwargs
	case msg.LC == nil && msg.Type == "tool":
		f = msg.fields
	default:
		return "", "", false
	}
	if len(f.Content) == 0 || string(f.Content) == "null" {
		return "", "", false
	}
	if json.Unmarshal(f.Content, &content) == nil {
		return content, f.ToolCallID, true
	}
	var compact bytes.Buffer
	if json.Compact(&compact, f.Content) != nil {
		return "", "", false
	}
	return compact.String(), f.ToolCallID, true
}

// errorResult returns the result of a span with status Error whose error
// gives no short one: with neither audit.result nor error.type, the
// result comes from the status message (auditspan.FromSpan), which LangChain
// (OpenInference) fills with the message, a blank line and the stack
// trace. It returns "error: " and the message's first line, and where it
// came from; "" when the status message is already that line.
func errorResult(span ptrace.Span) (result, from string) {
	st := span.Status()
	if st.Code() != ptrace.StatusCodeError {
		return "", ""
	}
	attrs := span.Attributes()
	if _, ok := attrs.Get(entry.KeyResult); ok {
		return "", ""
	}
	if v, ok := attrs.Get(entry.KeyErrorType); ok && v.AsString() != "" {
		return "", ""
	}
	msg, from := st.Message(), "the status message"
	if msg == "" {
		// No status message: the last exception event's message.
		evs := span.Events()
		for i := evs.Len() - 1; i >= 0 && msg == ""; i-- {
			if evs.At(i).Name() == "exception" {
				msg, from = strAttr(evs.At(i).Attributes(), "exception.message"), "exception.message"
			}
		}
	}
	line, rest, _ := strings.Cut(msg, "\n")
	line = strings.TrimSpace(line)
	if line == "" || line == st.Message() {
		return "", ""
	}
	if strings.TrimSpace(rest) != "" {
		from = "the first line of " + from + " (the stack trace after it left out)"
	} else {
		from = "from " + from
	}
	return "error: " + line, from
}

func kindOf(m Match) string {
	switch {
	case m.Convention == GenAI && m.agent:
		return "invoke_agent"
	case m.Convention == GenAI:
		return "execute_tool"
	case m.Convention == OpenInference && m.rootChain:
		return "root CHAIN"
	case m.Convention == OpenInference && m.agent:
		return "AGENT"
	case m.Convention == OpenInference:
		return "TOOL"
	case m.agent:
		return "generate"
	}
	return "ai.toolCall"
}

func ruleOf(m Match) string {
	if m.action == "tool_call" {
		return "no tool rule: effect unknown"
	}
	return "tool rule: " + m.action
}

// addDerived records the derived keys in audit.validation, sealed, after
// any problems the pipeline already recorded there.
func addDerived(span ptrace.Span, ps []entry.Problem) {
	if len(ps) == 0 {
		return
	}
	auditspan.AddProblems(span, ps)
}
