package capture

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		if gs[0].kind != globPattern {
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
		if got, want := compileGlobs([]string{p}).match(k), matchGlob(p, k); got != want {
			t.Fatalf("glob %q, key %q: compiled %v, path.Match %v", p, k, got, want)
		}
	})
}
