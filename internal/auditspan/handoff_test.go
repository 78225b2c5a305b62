package auditspan

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// TestNormalizedNote: the note holds for the traces it was written for,
// with the same limits (defaults resolved) and span count, and for nothing
// else.
func TestNormalizedNote(t *testing.T) {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	spans.AppendEmpty()
	spans.AppendEmpty()
	opts := Options{MaxValueBytes: 64}
	ctx := WithNormalized(context.Background(), td, opts, 1, 1)

	clean, problems, ok := NormalizedIn(ctx, td, Options{MaxValueBytes: 64, MaxEntryBytes: entry.DefaultMaxEntryBytes})
	assert.True(t, ok)
	assert.Equal(t, [2]int{1, 1}, [2]int{clean, problems})

	other := ptrace.NewTraces()
	td.CopyTo(other)
	for name, check := range map[string]func() bool{
		"no note":           func() bool { _, _, ok := NormalizedIn(context.Background(), td, opts); return ok },
		"other traces":      func() bool { _, _, ok := NormalizedIn(ctx, other, opts); return ok },
		"other value limit": func() bool { _, _, ok := NormalizedIn(ctx, td, Options{MaxValueBytes: 65}); return ok },
		"other entry limit": func() bool {
			_, _, ok := NormalizedIn(ctx, td, Options{MaxValueBytes: 64, MaxEntryBytes: 1 << 10})
			return ok
		},
		"default value limit": func() bool { _, _, ok := NormalizedIn(ctx, td, Options{}); return ok },
	} {
		assert.False(t, check(), name)
	}
	first := true
	spans.RemoveIf(func(ptrace.Span) bool { removed := first; first = false; return removed })
	assert.Equal(t, 1, td.SpanCount())
	_, _, ok = NormalizedIn(ctx, td, opts)
	assert.False(t, ok, "a span removed since")
}

// TestNormalizeReportsProblems: Normalize reports whether audit.validation
// is there afterwards, for spans that are not audit-tagged too.
func TestNormalizeReportsProblems(t *testing.T) {
	res, span := typicalSpan()
	assert.False(t, Normalize(res, span, Options{}))
	span.Attributes().Remove(entry.KeyTargetSystem)
	assert.True(t, Normalize(res, span, Options{}))
	assert.True(t, Normalize(res, span, Options{}), "normalized again")

	untagged := ptrace.NewSpan()
	assert.False(t, Normalize(res, untagged, Options{}))
	untagged.Attributes().PutStr(entry.KeyValidation, "[]")
	assert.True(t, Normalize(res, untagged, Options{}))
}
