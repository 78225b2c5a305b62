package capture

import (
	"context"
	"slices"
	"sync/atomic"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// MissCount counts, per convention, the spans of one request that look
// like a framework's tool call or agent run but that no rule captures.
type MissCount [3]int

// Add counts m when it was Missed.
func (c *MissCount) Add(m Match) {
	if m.Outcome == Missed {
		c[slices.Index(Conventions, m.Convention)]++
	}
}

// Misses reports missed framework spans: a counter, and one log line per
// convention for the life of the component, so that silent misses show.
type Misses struct {
	counter metric.Int64Counter
	attrs   [3]metric.AddOption
	logger  *zap.Logger
	warned  [3]atomic.Bool
}

// NewMisses creates the counter otelcol_agentaudit_uncaptured_spans on the
// component's meter.
func NewMisses(set component.TelemetrySettings, scope string) (*Misses, error) {
	c, err := set.MeterProvider.Meter(scope).Int64Counter("otelcol_agentaudit_uncaptured_spans",
		metric.WithDescription("Spans that look like an agent framework's tool call or agent run, of a convention not captured (see capture::conventions), by convention."),
		metric.WithUnit("{span}"))
	if err != nil {
		return nil, err
	}
	ms := &Misses{counter: c, logger: set.Logger}
	for i, cv := range Conventions {
		ms.attrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("convention", cv)))
	}
	return ms, nil
}

// Record adds counts to the counter and logs a convention's first miss.
func (ms *Misses) Record(ctx context.Context, counts *MissCount) {
	for i, n := range counts {
		if n == 0 {
			continue
		}
		ms.counter.Add(ctx, int64(n), ms.attrs[i])
		if !ms.warned[i].Swap(true) {
			ms.logger.Warn("Spans look like an agent framework's tool calls or agent runs but are not captured into the audit trail; "+
				"add the convention to capture::conventions to capture them (counted in otelcol_agentaudit_uncaptured_spans; logged once)",
				zap.String("convention", Conventions[i]))
		}
	}
}
