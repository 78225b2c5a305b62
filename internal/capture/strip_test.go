package capture

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestDefaultStrip(t *testing.T) {
	s := span("x", map[string]any{
		"audit.action.type": "write", "audit.execution.id": "e", "audit.target.system": "crm", "audit.result": "200",
		"audit.target.resource": "Contact #1", "audit.value.proposed": "a@b", "audit.value.previous": "c@d", "audit.reasoning": "r",
		"audit.approver": "ops@x", "audit.validation": "[]", "audit.custom": "?",
		"gen_ai.tool.call.arguments": "{}", "gen_ai.tool.call.result": "{}", "input.value": "i", "output.value": "o",
		"ai.toolCall.args": "{}", "ai.toolCall.result": "{}",
		"gen_ai.tool.name": "crm", "http.response.status_code": 200, "a/b": 1,
	})
	cfg := DefaultStripConfig()
	require.NoError(t, cfg.Validate())
	NewStripper(cfg).Strip(s)
	var kept []string
	for k := range s.Attributes().AsRaw() {
		kept = append(kept, k)
	}
	slices.Sort(kept)
	assert.Equal(t, []string{"a/b", "audit.action.type", "audit.execution.id", "audit.result", "audit.target.system", "gen_ai.tool.name", "http.response.status_code"}, kept)
}

func TestStripConfigured(t *testing.T) {
	s := span("x", map[string]any{"audit.value.proposed": "a", "audit.approver": "p", "user.email": "e", "user.id": "1"})
	NewStripper(StripConfig{Keys: []string{"audit.value.*", "user.*"}, Except: []string{"user.id"}}).Strip(s)
	assert.Equal(t, map[string]any{"audit.approver": "p", "user.id": "1"}, s.Attributes().AsRaw())
	err := (&StripConfig{Keys: []string{"[", ""}}).Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"keys": "[" is not a glob`)
	assert.Contains(t, err.Error(), `"keys": "" is not a glob`)
}

// The compiled globs' fast paths (exact, prefix) answer as path.Match
// does, for globs of every kind and keys with separators, NUL bytes and
// invalid UTF-8.
func TestGlobsMatchAsPathMatch(t *testing.T) {
	patterns := []string{"audit.*", "audit.**", "*", "**", "audit.value.proposed", "", "a/b", "a/*", "a\x00*", "a\x00b",
		"audit.?alue.*", "audit.[v]alue.*", `audit.\*`, `audit\.x*`, "*.value", "a*b*", "[", "gen_ai.tool.call.*", "\xff*"}
	keys := []string{"", "audit.", "audit.value.proposed", "audit.valuex", "audit", "auditx", "a/b", "a/bc", "a\x00b", "a/", "a\x00",
		"audit.*", `audit\x`, "x.value", "ab", "axxb", "gen_ai.tool.call.arguments", "\xff", "\xffz", "audit./x", "*"}
	fast := 0
	for _, p := range patterns {
		gs := compileGlobs([]string{p})
		if gs.list[0].kind != globPattern {
			fast++
		}
		for _, k := range keys {
			assert.Equal(t, matchGlob(p, k), gs.match(k), "glob %q, key %q", p, k)
		}
	}
	assert.Equal(t, 8, fast, "globs on the fast paths")
}

func FuzzGlobsMatchAsPathMatch(f *testing.F) {
	f.Add("audit.*", "audit.value.proposed")
	f.Add("a/*", "a/b")
	f.Add("x**", "x\x00/")
	f.Fuzz(func(t *testing.T, p, k string) {
		gs := compileGlobs([]string{p, "audit.value"})
		if got, want := gs.match(k), matchGlob(p, k) || k == "audit.value"; got != want {
			t.Fatalf("glob %q, key %q: compiled %v, path.Match %v", p, k, got, want)
		}
	})
}

// BenchmarkStrip strips the default list from a copy of an audit span of
// the throughput benchmark's shape (13 attributes) ("first"), copies it
// stripped ("copy-stripped", as the connector does) and strips it again.
//
//	go test -run '^$' -bench Strip -benchmem ./internal/capture/
func BenchmarkStrip(b *testing.B) {
	orig := span("x", map[string]any{
		"audit.action.type": "write", "audit.execution.id": "run-42", "audit.target.system": "crm", "audit.target.resource": "Contact/1",
		"audit.value.proposed": "+1 555 0100", "audit.value.previous": "+1 555 0199", "audit.reasoning": "asked to", "audit.approver": "auto",
		"gen_ai.agent.name": "crm-agent", "enduser.id": "alice", "http.request.method": "PATCH", "http.response.status_code": 200, "gen_ai.request.model": "m",
	})
	s := NewStripper(StripConfig{})
	b.Run("first", func(b *testing.B) {
		sp := ptrace.NewSpan()
		for b.Loop() {
			orig.CopyTo(sp)
			s.Strip(sp)
		}
	})
	b.Run("copy-stripped", func(b *testing.B) {
		sp := ptrace.NewSpan()
		for b.Loop() {
			s.CopyStripped(orig, sp)
		}
	})
	b.Run("copy-only", func(b *testing.B) {
		sp := ptrace.NewSpan()
		for b.Loop() {
			orig.CopyTo(sp)
		}
	})
	b.Run("again", func(b *testing.B) {
		sp := ptrace.NewSpan()
		orig.CopyTo(sp)
		s.Strip(sp)
		for b.Loop() {
			s.Strip(sp)
		}
		if sp.Attributes().Len() != 8 {
			b.Fatalf("%d attributes left, want 8", sp.Attributes().Len())
		}
	})
}

// TestCopyStripped: CopyStripped gives what Strip leaves of a copy, with
// every kind of value, repeated keys and the span's other fields, and
// leaves the span as it was; for the default list, a configured one, and
// one that strips nothing.
func TestCopyStripped(t *testing.T) {
	var um ptrace.JSONUnmarshaler
	td, err := um.UnmarshalTraces([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{
		"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718","name":"s","kind":3,
		"startTimeUnixNano":"1000","endTimeUnixNano":"2000","status":{"code":2,"message":"m"},
		"events":[{"name":"e","attributes":[{"key":"audit.reasoning","value":{"stringValue":"kept in events"}}]}],
		"attributes":[
			{"key":"audit.action.type","value":{"stringValue":"write"}},
			{"key":"audit.value.proposed","value":{"stringValue":"a@b"}},
			{"key":"user.email","value":{"stringValue":"e"}},
			{"key":"audit.reasoning","value":{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}}]}}},
			{"key":"gen_ai.tool.call.arguments","value":{"arrayValue":{"values":[{"stringValue":"x"}]}}},
			{"key":"http.response.status_code","value":{"intValue":"200"}},
			{"key":"audit.value.proposed","value":{"boolValue":true}},
			{"key":"user.id","value":{"doubleValue":1.5}},
			{"key":"audit.approver","value":{"bytesValue":"AAE="}},
			{"key":"audit.result","value":{}}]}]}]}]}`))
	require.NoError(t, err)
	span := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	require.Equal(t, 10, span.Attributes().Len())
	var pm ptrace.ProtoMarshaler
	bytesOf := func(s ptrace.Span) []byte {
		td := ptrace.NewTraces()
		s.CopyTo(td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty())
		b, err := pm.MarshalTraces(td)
		require.NoError(t, err)
		return b
	}
	before := bytesOf(span)
	for _, cfg := range []StripConfig{{}, {Keys: []string{"audit.value.*", "user.*"}, Except: []string{"user.id"}}, {Keys: []string{"none"}}} {
		s := NewStripper(cfg)
		want := ptrace.NewSpan()
		span.CopyTo(want)
		s.Strip(want)
		got := ptrace.NewSpan()
		s.CopyStripped(span, got)
		assert.Equal(t, bytesOf(want), bytesOf(got), "%+v", cfg)
		assert.Equal(t, before, bytesOf(span), "the span as it was, %+v", cfg)
	}
	assert.Less(t, func() int {
		s := ptrace.NewSpan()
		NewStripper(StripConfig{}).CopyStripped(span, s)
		return s.Attributes().Len()
	}(), 10)
}
