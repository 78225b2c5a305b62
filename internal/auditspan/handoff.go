package auditspan

import (
	"context"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Handoff: the agentaudit_split connector normalizes the audit spans it
// passes to the audit pipelines, and the agentaudit processor in mode
// audit behind it would only find its work done (Normalize is idempotent)
// and count the same outcomes. So that each span is checked once in the
// pipeline, the connector notes in the context what it did (WithNormalized)
// and the processor takes the note instead of normalizing again
// (NormalizedIn) when it holds for the data it is given: the very traces
// the connector emitted, as many spans as it counted, normalized with the
// processor's own limits. Data that reaches the processor some other way
// (another receiver, a processor in between that rebuilds or filters the
// data, a fan-out's copy) has no note that holds, and is normalized as
// before. The exporter never relies on a note: its mapping (FromSpan)
// checks every value again, as it must for spans from any source.

// normalizedNote is what the connector did to one request's audit spans.
type normalizedNote struct {
	td                 ptrace.Traces
	spans              int
	maxValue, maxEntry int
	clean, problems    int
}

type normalizedKey struct{}

// WithNormalized returns ctx noting that every span of td is audit-tagged
// and normalized with opts: clean of them without a problem, problems with
// audit.validation. It is for the agentaudit_split connector.
func WithNormalized(ctx context.Context, td ptrace.Traces, opts Options, clean, problems int) context.Context {
	return context.WithValue(ctx, normalizedKey{}, &normalizedNote{
		td: td, spans: clean + problems, maxValue: opts.maxValueBytes(), maxEntry: opts.maxEntryBytes(),
		clean: clean, problems: problems,
	})
}

// NormalizedIn returns the counts WithNormalized noted in ctx for td, when
// the note holds: the same traces, as many spans, normalized with limits
// equal to opts'. The spans are then as Normalize with opts would leave
// them, and clean and problems are what it would count.
func NormalizedIn(ctx context.Context, td ptrace.Traces, opts Options) (clean, problems int, ok bool) {
	n, _ := ctx.Value(normalizedKey{}).(*normalizedNote)
	if n == nil || n.td != td || n.maxValue != opts.maxValueBytes() || n.maxEntry != opts.maxEntryBytes() || td.SpanCount() != n.spans {
		return 0, 0, false
	}
	return n.clean, n.problems, true
}
