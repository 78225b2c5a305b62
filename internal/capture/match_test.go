package capture

import (
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// matchByLookups is Match as it was before it found its attributes in one
// pass: a lookup per key and case. The reference of TestMatchAsByLookups.
func (c *Capturer) matchByLookups(span ptrace.Span) Match {
	attrs := span.Attributes()
	if _, ok := attrs.Get(entry.KeyActionType); ok {
		return Match{}
	}
	var m Match
	switch {
	case strAttr(attrs, "gen_ai.operation.name") == "execute_tool":
		m = Match{Convention: GenAI, tool: strAttr(attrs, "gen_ai.tool.name")}
		if m.tool == "" {
			m.tool = strings.TrimSpace(strings.TrimPrefix(span.Name(), "execute_tool"))
		}
	case strAttr(attrs, "gen_ai.operation.name") == "invoke_agent":
		m = Match{Convention: GenAI, agent: true}
	case strAttr(attrs, "openinference.span.kind") == "TOOL":
		m = Match{Convention: OpenInference, tool: strAttr(attrs, "tool.name")}
		if m.tool == "" {
			m.tool = span.Name()
		}
	case strAttr(attrs, "openinference.span.kind") == "AGENT":
		m = Match{Convention: OpenInference, agent: true}
	case strAttr(attrs, "openinference.span.kind") == "CHAIN" && span.ParentSpanID().IsEmpty():
		m = Match{Convention: OpenInference, agent: true, rootChain: true}
	default:
		switch op := vercelOperation(span); {
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

func vercelOperation(span ptrace.Span) string {
	if op := strAttr(span.Attributes(), "ai.operationId"); op != "" {
		return op
	}
	if n := span.Name(); strings.HasPrefix(n, "ai.") {
		return n
	}
	return ""
}

// TestMatchAsByLookups: Match, which reads a span's attributes in one
// pass, says what a lookup per key says, on random spans of every
// convention, with keys repeated (the first one counts), values of other
// types, audit tags and parents, for captures on and off.
func TestMatchAsByLookups(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	keys := []string{entry.KeyActionType, "gen_ai.operation.name", "openinference.span.kind", "ai.operationId",
		"gen_ai.tool.name", "tool.name", "ai.toolCall.name", "http.request.method"}
	values := []string{"execute_tool", "invoke_agent", "chat", "TOOL", "AGENT", "CHAIN", "LLM", "ai.toolCall", "ai.generateText",
		"ai.streamObject", "crm_update_contact", "lookup", ""}
	names := []string{"execute_tool crm_update_contact", "ai.toolCall", "ai.streamText", "ai.other", "invoke", ""}
	capturers := []*Capturer{
		New(Config{}),
		New(Config{Conventions: []string{GenAI, OpenInference, VercelAI}, Tools: []ToolRule{{Match: "crm_update_*", Action: "write"}, {Match: "look*", Action: ActionIgnore}}}),
		New(Config{Conventions: []string{OpenInference}}),
	}
	outcomes := map[Outcome]int{}
	var um ptrace.JSONUnmarshaler
	for i := range 20000 {
		// Built as OTLP JSON so that a key may occur twice.
		var attrs []string
		for range r.IntN(6) {
			k := keys[r.IntN(len(keys))]
			if k == entry.KeyActionType && r.IntN(3) > 0 {
				continue
			}
			v := `{"intValue":"7"}`
			if r.IntN(8) > 0 {
				v = fmt.Sprintf(`{"stringValue":%q}`, values[r.IntN(len(values))])
			}
			attrs = append(attrs, fmt.Sprintf(`{"key":%q,"value":%s}`, k, v))
		}
		parent := ""
		if r.IntN(2) == 0 {
			parent = `,"parentSpanId":"0102030405060708"`
		}
		td, err := um.UnmarshalTraces([]byte(fmt.Sprintf(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718"%s,"name":%q,"attributes":[%s]}]}]}]}`,
			parent, names[r.IntN(len(names))], strings.Join(attrs, ","))))
		require.NoError(t, err)
		span := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
		require.Equal(t, len(attrs), span.Attributes().Len())
		for _, c := range capturers {
			want := c.matchByLookups(span)
			require.Equal(t, want, c.Match(span), "span %d: %s", i, strings.Join(attrs, ","))
			outcomes[want.Outcome]++
		}
	}
	for _, o := range []Outcome{NotFramework, Missed, Captured, Ignored} {
		require.Greater(t, outcomes[o], 20, "outcome %v", o)
	}
}

// BenchmarkMatchUntagged: Match on a span that is neither tagged nor a
// framework's (a GenAI chat span of 13 attributes), as the connector
// calls it on every untagged span; "lookups" is the former way.
//
//	go test -run '^$' -bench MatchUntagged -benchmem ./internal/capture/
func BenchmarkMatchUntagged(b *testing.B) {
	s := span("chat gpt-4o", map[string]any{
		"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai", "gen_ai.usage.input_tokens": 812,
		"gen_ai.usage.output_tokens": 64, "gen_ai.response.id": "chatcmpl-1", "gen_ai.response.model": "gpt-4o-2024", "server.address": "api.openai.com",
		"server.port": 443, "http.request.method": "POST", "http.response.status_code": 200, "gen_ai.request.temperature": 0.2, "gen_ai.agent.name": "crm-agent",
	})
	c := New(Config{})
	for _, tc := range []struct {
		name  string
		match func(ptrace.Span) Match
	}{{"pass", c.Match}, {"lookups", c.matchByLookups}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if tc.match(s).Outcome != NotFramework {
					b.Fatal("matched")
				}
			}
		})
	}
}
