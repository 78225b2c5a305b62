package review

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/verify"
)

// TestNest checks the timeline's order and depths: children under their
// parent in true order, unaudited parents at depth 0, cycles and repeated
// span ids without losing or repeating a step.
func TestNest(t *testing.T) {
	p := func(s string) *string { return &s }
	mk := func(seq int64, trace, span string, parent *string) Step {
		return Step{ChainID: "c", Seq: seq, TraceID: trace, SpanID: span, ParentSpanID: parent}
	}
	cases := []struct {
		name  string
		steps []Step // in true order
		want  string // seq:depth, in timeline order
	}{
		{"flat", []Step{mk(0, "t", "a", nil), mk(1, "t", "b", nil), mk(2, "t", "c", nil)}, "0:0 1:0 2:0"},
		{"children follow their parent", []Step{
			mk(0, "t", "root", nil), mk(1, "t", "x", p("root")), mk(2, "t", "y", nil), mk(3, "t", "x1", p("x")), mk(4, "t", "r2", p("root")),
		}, "0:0 1:1 3:2 4:1 2:0"},
		{"parent not audited", []Step{mk(0, "t", "a", p("llm")), mk(1, "t", "b", p("llm"))}, "0:0 1:0"},
		{"parent in another trace is not a parent", []Step{mk(0, "t1", "a", nil), mk(1, "t2", "b", p("a"))}, "0:0 1:0"},
		{"child earlier than its parent (clock skew)", []Step{mk(0, "t", "kid", p("mom")), mk(1, "t", "mom", nil)}, "1:0 0:1"},
		{"cycle", []Step{mk(0, "t", "a", p("b")), mk(1, "t", "b", p("a")), mk(2, "t", "c", nil)}, "2:0 0:0 1:1"},
		{"own parent", []Step{mk(0, "t", "a", p("a"))}, "0:0"},
		{"repeated span id: the first is the parent", []Step{mk(0, "t", "a", nil), mk(1, "t", "a", nil), mk(2, "t", "k", p("a"))}, "0:0 2:1 1:0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := nest(tc.steps)
			var got []string
			for _, s := range out {
				got = append(got, fmt.Sprintf("%d:%d", s.Seq, s.Depth))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got %s, want %s", g, tc.want)
			}
		})
	}
}

func TestMarkSteps(t *testing.T) {
	steps := []Step{{ChainID: "a", Seq: 1}, {ChainID: "a", Seq: 2}, {ChainID: "b", Seq: 2}, {ChainID: "a", Seq: 5}}
	markSteps(steps, []verify.Violation{
		{ChainID: "a", Seq: 2, Kind: verify.HashMismatch},
		{ChainID: "a", Seq: 4, Through: 6, Kind: verify.MissingFile},
		{ChainID: "b", Seq: verify.NoSeq, Kind: verify.NotAuditFile},
	})
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s%d:%d", s.ChainID, s.Seq, len(s.Violations)))
	}
	if g, want := strings.Join(got, " "), "a1:0 a2:1 b2:0 a5:1"; g != want {
		t.Errorf("got %s, want %s", g, want)
	}
}
