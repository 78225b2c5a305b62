package review

import (
	"slices"

	"github.com/agentaudit/agentaudit/internal/verify"
)

// nest orders steps (given in true order: time, chain, seq) as a timeline:
// each step followed by the steps nested in it, depth first, siblings in
// true order. A step's parent is the step of the same trace whose span id
// is its parent_span_id; a step without one among the steps (its parent span
// was not audited, or it has none) is at depth 0. Every step appears once,
// even in a cycle of parent links (which only forged span ids make): the
// steps no root reaches are placed at depth 0 where they fall in true order.
func nest(steps []Step) []Step {
	type spanKey struct{ trace, span string }
	index := make(map[spanKey]int, len(steps))
	for i := range steps {
		k := spanKey{steps[i].TraceID, steps[i].SpanID}
		if _, dup := index[k]; !dup {
			index[k] = i
		}
	}
	parent := make([]int, len(steps))
	children := make([][]int, len(steps))
	for i := range steps {
		parent[i] = -1
		if p := steps[i].ParentSpanID; p != nil {
			if j, ok := index[spanKey{steps[i].TraceID, *p}]; ok && j != i {
				parent[i] = j
				children[j] = append(children[j], i)
			}
		}
	}
	out := make([]Step, 0, len(steps))
	seen := make([]bool, len(steps))
	var walk func(i, depth int)
	walk = func(i, depth int) {
		// An explicit stack would avoid deep recursion; spans nested
		// thousands deep do not occur, and Go stacks grow.
		seen[i] = true
		s := steps[i]
		s.Depth = depth
		out = append(out, s)
		for _, c := range children[i] {
			if !seen[c] {
				walk(c, depth+1)
			}
		}
	}
	for i := range steps {
		if parent[i] < 0 && !seen[i] {
			walk(i, 0)
		}
	}
	for i := range steps {
		if !seen[i] {
			walk(i, 0)
		}
	}
	return out
}

// markSteps attaches to each step the violations that concern its entry.
func markSteps(steps []Step, vs []verify.Violation) {
	for _, v := range vs {
		if v.Seq == verify.NoSeq {
			continue
		}
		through := max(v.Through, v.Seq)
		for i := range steps {
			s := &steps[i]
			if s.ChainID == v.ChainID && s.Seq >= v.Seq && s.Seq <= through && !slices.Contains(s.Violations, v) {
				s.Violations = append(s.Violations, v)
			}
		}
	}
}
