package auditprocessor // import "github.com/agentaudit/agentaudit/processor/auditprocessor"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/processor/auditprocessor/internal/metadata"
)

// Outcomes of the spans counter. Each span the processor acts on is counted
// once; untagged spans passed on in mode "monitoring" are not counted (the
// processor's standard incoming/outgoing item metrics cover them).
const (
	outcomeKeptAudit        = "kept_audit"               // audit mode: audit span, no problems
	outcomeWithProblems     = "normalized_with_problems" // audit mode: audit span, problems in audit.validation
	outcomeDroppedUnaudited = "dropped_unaudited"        // audit mode: span without audit tags
	outcomeStripped         = "stripped"                 // monitoring/strip: audit payload removed
	outcomeDroppedAudit     = "dropped_audit"            // monitoring/drop: audit span removed
)

type auditProcessor struct {
	mode     string
	action   string
	opts     auditspan.Options
	capture  *capture.Capturer
	stripper *capture.Stripper
	misses   *capture.Misses

	spans    metric.Int64Counter
	outcomes map[string]metric.AddOption
}

func newAuditProcessor(cfg *Config, set component.TelemetrySettings) (*auditProcessor, error) {
	action := cfg.Action
	if action == "" {
		action = actionStrip
	}
	p := &auditProcessor{
		mode:     cfg.Mode,
		action:   action,
		opts:     auditspan.Options{MaxValueBytes: cfg.MaxValueBytes, MaxEntryBytes: cfg.MaxEntryBytes},
		capture:  capture.New(cfg.Capture),
		stripper: capture.NewStripper(cfg.Strip),
		outcomes: map[string]metric.AddOption{},
	}
	var err error
	p.spans, err = set.MeterProvider.Meter(metadata.ScopeName).Int64Counter(
		"otelcol_processor_agentaudit_spans",
		metric.WithDescription("Spans the agentaudit processor kept, normalized, stripped or dropped, by outcome."),
		metric.WithUnit("{span}"))
	if err != nil {
		return nil, err
	}
	for _, o := range []string{outcomeKeptAudit, outcomeWithProblems, outcomeDroppedUnaudited, outcomeStripped, outcomeDroppedAudit} {
		p.outcomes[o] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", o)))
	}
	if p.misses, err = capture.NewMisses(set, metadata.ScopeName); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *auditProcessor) count(ctx context.Context, outcome string, n int) {
	if n > 0 {
		p.spans.Add(ctx, int64(n), p.outcomes[outcome])
	}
}

func (p *auditProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	switch {
	case p.mode == modeAudit:
		return p.audit(ctx, td)
	case p.action == actionDrop:
		return p.dropAudit(ctx, td)
	default:
		return p.strip(ctx, td), nil
	}
}

// audit keeps audit spans only, each normalized in place: hand-tagged
// ones, and the framework spans capture takes, an agent run's start entry
// added at the end of its scope (as the connector adds it).
//
// Behind the agentaudit_split connector, whose note says that every span
// of td is an audit span it normalized with the same limits, the
// processor would find its work done: it counts the connector's outcomes
// and passes td on as it is (auditspan.NormalizedIn).
func (p *auditProcessor) audit(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	if clean, withProblems, ok := auditspan.NormalizedIn(ctx, td, p.opts); ok && clean+withProblems > 0 {
		p.count(ctx, outcomeKeptAudit, clean)
		p.count(ctx, outcomeWithProblems, withProblems)
		return td, nil
	}
	var clean, withProblems, dropped int
	var missed capture.MissCount
	normalize := func(res pcommon.Resource, span ptrace.Span) {
		if auditspan.Normalize(res, span, p.opts) {
			withProblems++
		} else {
			clean++
		}
	}
	ex := p.capture.Executions(td)
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		res := rs.Resource()
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			var starts ptrace.SpanSlice
			ss.Spans().RemoveIf(func(span ptrace.Span) bool {
				if !auditspan.IsAudit(span) {
					m := p.capture.Match(span)
					if m.Outcome != capture.Captured {
						missed.Add(m)
						dropped++
						return true
					}
					p.capture.Apply(span, m, func() ptrace.Span {
						if starts == (ptrace.SpanSlice{}) {
							starts = ptrace.NewSpanSlice()
						}
						return starts.AppendEmpty()
					}, ex)
				}
				normalize(res, span)
				return false
			})
			if starts != (ptrace.SpanSlice{}) {
				for i := 0; i < starts.Len(); i++ {
					normalize(res, starts.At(i))
				}
				starts.MoveAndAppendTo(ss.Spans())
			}
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	p.count(ctx, outcomeKeptAudit, clean)
	p.count(ctx, outcomeWithProblems, withProblems)
	p.count(ctx, outcomeDroppedUnaudited, dropped)
	p.misses.Record(ctx, &missed)
	if td.ResourceSpans().Len() == 0 {
		return td, processorhelper.ErrSkipProcessingData
	}
	return td, nil
}

// isAudit reports whether span goes to the audit trail: hand-tagged, or a
// framework span capture takes.
func (p *auditProcessor) isAudit(span ptrace.Span) bool {
	return auditspan.IsAudit(span) || p.capture.Enabled() && p.capture.Match(span).Outcome == capture.Captured
}

// dropAudit removes audit spans.
func (p *auditProcessor) dropAudit(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	var dropped int
	removeSpans(td, func(_ pcommon.Resource, span ptrace.Span) bool {
		if p.isAudit(span) {
			dropped++
			return true
		}
		return false
	})
	p.count(ctx, outcomeDroppedAudit, dropped)
	if td.ResourceSpans().Len() == 0 {
		return td, processorhelper.ErrSkipProcessingData
	}
	return td, nil
}

// strip removes the keys of the strip list from audit spans and keeps
// every span. Plain index loops: an untagged span costs one lookup.
// Behind the agentaudit_split connector, whose note says it stripped td's
// audit spans as this processor would (capture.StrippedIn), it counts them
// as the note says and passes td on.
func (p *auditProcessor) strip(ctx context.Context, td ptrace.Traces) ptrace.Traces {
	if n, ok := capture.StrippedIn(ctx, td, p.stripper, p.capture); ok {
		p.count(ctx, outcomeStripped, n)
		return td
	}
	var stripped int
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				if p.isAudit(span) {
					p.stripper.Strip(span)
					stripped++
				}
			}
		}
	}
	p.count(ctx, outcomeStripped, stripped)
	return td
}

// removeSpans removes the spans for which remove returns true, then the
// scope and resource spans left empty.
func removeSpans(td ptrace.Traces, remove func(pcommon.Resource, ptrace.Span) bool) {
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		res := rs.Resource()
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(span ptrace.Span) bool { return remove(res, span) })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
}
