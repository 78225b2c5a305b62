package auditsplitconnector // import "github.com/agentaudit/agentaudit/connector/auditsplitconnector"

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agentaudit/agentaudit/connector/auditsplitconnector/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/capture"
)

// Outcomes of the spans counter, one per audit-tagged span, plus one when
// monitoring pipelines get it stripped or not at all. Untagged spans are
// counted by the collector's own connector item metrics.
type outcome int

const (
	outcomeKeptAudit    outcome = iota // passed to the audit pipelines, no problems
	outcomeWithProblems                // passed on, problems in audit.validation
	outcomeStripped                    // monitoring pipelines get it without payload
	outcomeDroppedAudit                // monitoring pipelines do not get it
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"kept_audit", "normalized_with_problems", "stripped", "dropped_audit"}

type splitConnector struct {
	component.StartFunc
	component.ShutdownFunc

	audit      consumer.Traces
	monitoring consumer.Traces // nil without monitoring pipelines
	drop       bool
	opts       auditspan.Options
	capture    *capture.Capturer
	strip      *capture.Stripper

	spans    metric.Int64Counter
	outcomes [numOutcomes]metric.AddOption
	misses   *capture.Misses
}

func newSplitConnector(cfg *Config, set component.TelemetrySettings, next consumer.Traces) (*splitConnector, error) {
	router, ok := next.(connector.TracesRouterAndConsumer)
	if !ok {
		return nil, errors.New("the agentaudit_split connector needs the collector's pipeline router")
	}
	if err := checkPipelines(cfg, router.PipelineIDs()); err != nil {
		return nil, err
	}
	c := &splitConnector{
		drop:    cfg.Action == actionDrop,
		opts:    auditspan.Options{MaxValueBytes: cfg.MaxValueBytes, MaxEntryBytes: cfg.MaxEntryBytes},
		capture: capture.New(cfg.Capture),
		strip:   capture.NewStripper(cfg.Strip),
	}
	var err error
	if c.audit, err = router.Consumer(cfg.AuditPipelines...); err != nil {
		return nil, fmt.Errorf("\"audit_pipelines\": %w", err)
	}
	if len(cfg.MonitoringPipelines) > 0 {
		if c.monitoring, err = router.Consumer(cfg.MonitoringPipelines...); err != nil {
			return nil, fmt.Errorf("\"monitoring_pipelines\": %w", err)
		}
	}
	c.spans, err = set.MeterProvider.Meter(metadata.ScopeName).Int64Counter(
		"otelcol_connector_agentaudit_split_spans",
		metric.WithDescription("Audit-tagged spans the agentaudit_split connector passed to the audit pipelines, and stripped or dropped for the monitoring pipelines, by outcome."),
		metric.WithUnit("{span}"))
	if err != nil {
		return nil, err
	}
	for o, name := range outcomeNames {
		c.outcomes[o] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", name)))
	}
	if c.misses, err = capture.NewMisses(set, metadata.ScopeName); err != nil {
		return nil, err
	}
	return c, nil
}

// checkPipelines checks the configured pipelines against those the
// collector connects the connector to (fed): each listed pipeline must
// take the connector as a receiver, and each fed pipeline must be listed,
// or it would silently get nothing.
func checkPipelines(cfg *Config, fed []pipeline.ID) error {
	var errs []error
	for _, l := range cfg.pipelineLists() {
		for _, id := range l.ids {
			if !slices.Contains(fed, id) {
				errs = append(errs, fmt.Errorf("%q lists %q, which does not have this connector among its receivers", l.key, id))
			}
		}
	}
	var unlisted []string
	for _, id := range fed {
		if !slices.Contains(cfg.AuditPipelines, id) && !slices.Contains(cfg.MonitoringPipelines, id) {
			unlisted = append(unlisted, id.String())
		}
	}
	if len(unlisted) > 0 {
		slices.Sort(unlisted)
		errs = append(errs, fmt.Errorf("pipelines %s receive from this connector but are in neither \"audit_pipelines\" nor \"monitoring_pipelines\"", strings.Join(unlisted, ", ")))
	}
	return errors.Join(errs...)
}

// Capabilities: the connector changes the data it is given (it strips,
// removes or moves audit-tagged spans).
func (c *splitConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

// ConsumeTraces sends the audit-tagged spans of td to the audit pipelines,
// then td, stripped, to the monitoring pipelines. Both are always tried, as
// the collector's fan-out to two pipelines does: a refusal of the audit
// pipelines (a full spool, say) is returned so that the client retries,
// and the monitoring backend keeps receiving meanwhile.
func (c *splitConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	var n [numOutcomes]int
	var missed capture.MissCount
	audit, found, stillAudit := c.split(td, &n, &missed)
	for o, k := range n {
		if k > 0 {
			c.spans.Add(ctx, int64(k), c.outcomes[o])
		}
	}
	c.misses.Record(ctx, &missed)
	var auditErr, monitoringErr error
	if found {
		// The agentaudit processor behind takes what was done here
		// instead of checking every span again (auditspan.WithNormalized).
		actx := auditspan.WithNormalized(ctx, audit, c.opts, n[outcomeKeptAudit], n[outcomeWithProblems])
		auditErr = c.audit.ConsumeTraces(actx, audit)
	}
	if c.monitoring != nil && td.ResourceSpans().Len() > 0 {
		mctx := ctx
		if !c.drop {
			// And the processor behind does not strip them again
			// (capture.WithStripped).
			mctx = capture.WithStripped(ctx, td, c.strip, c.capture, stillAudit)
		}
		monitoringErr = c.monitoring.ConsumeTraces(mctx, td)
	}
	switch {
	case monitoringErr == nil:
		return auditErr // as it is, so that its gRPC or HTTP status reaches the client
	case auditErr == nil:
		return monitoringErr
	}
	return errors.Join(auditErr, monitoringErr)
}

// normalize normalizes an audit span and counts it.
func (c *splitConnector) normalize(res pcommon.Resource, span ptrace.Span, n *[numOutcomes]int) {
	if auditspan.Normalize(res, span, c.opts) {
		n[outcomeWithProblems]++
	} else {
		n[outcomeKeptAudit]++
	}
}

// split returns the audit-tagged spans of td, normalized, under copies of
// their resource and scope; found is false when there are none. It leaves
// td as the monitoring pipelines get it: audit-tagged spans stripped, or
// removed. A span no monitoring pipeline gets is moved, not copied.
// stillAudit counts the stripped spans that are audit spans as stripped
// (audit-tagged or captured): what the processor behind counts.
func (c *splitConnector) split(td ptrace.Traces, n *[numOutcomes]int, missed *capture.MissCount) (out ptrace.Traces, found bool, stillAudit int) {
	move := c.drop || c.monitoring == nil
	ex := c.capture.Executions(td)
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := rs.Resource()
		var outRS ptrace.ResourceSpans
		hasRS := false
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			var dst ptrace.SpanSlice
			hasSS := false
			// Agent runs' start entries, added after the scope's other
			// spans (as the processor adds them).
			var starts ptrace.SpanSlice
			// take handles one span and reports whether it leaves td.
			take := func(span ptrace.Span) bool {
				var m capture.Match
				if !auditspan.IsAudit(span) {
					if m = c.capture.Match(span); m.Outcome != capture.Captured {
						missed.Add(m)
						return false
					}
				}
				if !found {
					out, found = ptrace.NewTraces(), true
				}
				if !hasRS {
					outRS, hasRS = out.ResourceSpans().AppendEmpty(), true
					res.CopyTo(outRS.Resource())
					outRS.SetSchemaUrl(rs.SchemaUrl())
				}
				if !hasSS {
					outSS := outRS.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(outSS.Scope())
					outSS.SetSchemaUrl(ss.SchemaUrl())
					dst, hasSS = outSS.Spans(), true
				}
				a := dst.AppendEmpty()
				if move {
					span.MoveTo(a)
				} else {
					// The audit pipelines get the span as sent, the
					// monitoring pipelines a copy without what strip
					// removes (the stripped values are not copied).
					span.MoveTo(a)
					c.strip.CopyStripped(a, span)
					n[outcomeStripped]++
					if auditspan.IsAudit(span) || c.capture.Enabled() && c.capture.Match(span).Outcome == capture.Captured {
						stillAudit++
					}
				}
				if m.Outcome == capture.Captured {
					c.capture.Apply(a, m, func() ptrace.Span {
						if starts == (ptrace.SpanSlice{}) {
							starts = ptrace.NewSpanSlice()
						}
						return starts.AppendEmpty()
					}, ex)
				}
				c.normalize(res, a, n)
				return move
			}
			spans := ss.Spans()
			if move {
				// Removed from td, even when td goes nowhere: a moved
				// span is left empty.
				before := spans.Len()
				spans.RemoveIf(take)
				if c.monitoring != nil {
					n[outcomeDroppedAudit] += before - spans.Len()
				}
			} else {
				for k := 0; k < spans.Len(); k++ {
					take(spans.At(k))
				}
			}
			if starts != (ptrace.SpanSlice{}) {
				for k := 0; k < starts.Len(); k++ {
					c.normalize(res, starts.At(k), n)
				}
				starts.MoveAndAppendTo(dst)
			}
		}
	}
	if c.drop && c.monitoring != nil {
		// As the processor's action drop: no empty scope or resource
		// goes on, whether or not a span was removed from it.
		rss.RemoveIf(func(rs ptrace.ResourceSpans) bool {
			rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool { return ss.Spans().Len() == 0 })
			return rs.ScopeSpans().Len() == 0
		})
	}
	return out, found, stillAudit
}
