package capture

import (
	"context"
	"maps"
	"slices"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The agentaudit_split connector strips the audit spans it passes to the
// monitoring pipelines; the agentaudit processor in mode monitoring behind
// it, configured alike, would strip the same spans of the same keys again,
// find nothing to remove, and count the spans that are still audit spans.
// So the connector notes in the context what it did and that count
// (WithStripped), and the processor takes the count instead of looking at
// every span when the note holds for the data it is given (StrippedIn):
// the very traces the connector sent, as many spans, stripped by an equal
// strip list with an equal capture configuration (so that the same spans
// are audit spans). Data that reaches the processor some other way has no
// note that holds, and is stripped as before.

type strippedNote struct {
	td      ptrace.Traces
	spans   int
	strip   *Stripper
	capture *Capturer
	audit   int
}

type strippedKey struct{}

// WithStripped returns ctx noting that s stripped every span of td that was
// audit-tagged or that c captured, and that audit of td's spans are audit
// spans as stripped (audit-tagged, or captured by c). It is for the
// agentaudit_split connector.
func WithStripped(ctx context.Context, td ptrace.Traces, s *Stripper, c *Capturer, audit int) context.Context {
	return context.WithValue(ctx, strippedKey{}, &strippedNote{td: td, spans: td.SpanCount(), strip: s, capture: c, audit: audit})
}

// StrippedIn returns the number of audit spans WithStripped noted in ctx
// for td, when the note holds: the same traces, as many spans, an equal
// strip list and an equal capture configuration. td's audit spans are
// then stripped as s would strip them, c telling which spans are audit
// spans.
func StrippedIn(ctx context.Context, td ptrace.Traces, s *Stripper, c *Capturer) (audit int, ok bool) {
	n, _ := ctx.Value(strippedKey{}).(*strippedNote)
	if n == nil || n.td != td || !s.equal(n.strip) || !c.equal(n.capture) || td.SpanCount() != n.spans {
		return 0, false
	}
	return n.audit, true
}

func (s *Stripper) equal(o *Stripper) bool {
	return s == o || s != nil && o != nil && slices.Equal(s.keys.list, o.keys.list) && slices.Equal(s.except.list, o.except.list)
}

func (c *Capturer) equal(o *Capturer) bool {
	return c == o || c != nil && o != nil && maps.Equal(c.on, o.on) && slices.Equal(c.tools, o.tools)
}
