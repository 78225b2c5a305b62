package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// telemetry is the exporter's own metrics. The hot path only counts.
type telemetry struct {
	accepted      metric.Int64Counter
	withProblems  metric.Int64Counter
	ignored       metric.Int64Counter
	batchesStored metric.Int64Counter
	entriesStored metric.Int64Counter
	storeErrors   metric.Int64Counter
	headSeq       atomic.Int64 // seq of the last entry, -1 when none
	queued        atomic.Int64 // sealed batches not yet stored
	conflictAttr  metric.MeasurementOption
	transientAttr metric.MeasurementOption
	registration  metric.Registration
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	t := &telemetry{
		conflictAttr:  metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "conflict"))),
		transientAttr: metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "transient"))),
	}
	t.headSeq.Store(-1)
	var err error
	if t.accepted, err = m.Int64Counter("otelcol_agentaudit_entries_accepted",
		metric.WithDescription("Audit entries appended to the chain."), metric.WithUnit("{entry}")); err != nil {
		return nil, err
	}
	if t.withProblems, err = m.Int64Counter("otelcol_agentaudit_entries_with_problems",
		metric.WithDescription("Audit entries whose span had missing or malformed fields (see the validation column)."), metric.WithUnit("{entry}")); err != nil {
		return nil, err
	}
	if t.ignored, err = m.Int64Counter("otelcol_agentaudit_spans_ignored",
		metric.WithDescription("Spans without audit tags that reached the exporter and were not recorded."), metric.WithUnit("{span}")); err != nil {
		return nil, err
	}
	if t.batchesStored, err = m.Int64Counter("otelcol_agentaudit_batches_stored",
		metric.WithDescription("Sealed batches written to the store."), metric.WithUnit("{batch}")); err != nil {
		return nil, err
	}
	if t.entriesStored, err = m.Int64Counter("otelcol_agentaudit_entries_stored",
		metric.WithDescription("Audit entries written to the store."), metric.WithUnit("{entry}")); err != nil {
		return nil, err
	}
	if t.storeErrors, err = m.Int64Counter("otelcol_agentaudit_store_errors",
		metric.WithDescription("Failed attempts to store a sealed batch; kind=conflict means another writer uses this chain id."), metric.WithUnit("{error}")); err != nil {
		return nil, err
	}
	head, err := m.Int64ObservableGauge("otelcol_agentaudit_chain_head_seq",
		metric.WithDescription("Seq of the last entry appended to the chain (-1 when empty)."), metric.WithUnit("{entry}"))
	if err != nil {
		return nil, err
	}
	queued, err := m.Int64ObservableGauge("otelcol_agentaudit_batches_queued",
		metric.WithDescription("Sealed batches not yet in the store (in memory or in the spool)."), metric.WithUnit("{batch}"))
	if err != nil {
		return nil, err
	}
	t.registration, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(head, t.headSeq.Load())
		o.ObserveInt64(queued, t.queued.Load())
		return nil
	}, head, queued)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) setHead(h chain.Head) { t.headSeq.Store(h.Size - 1) }

func (t *telemetry) spansIgnored(ctx context.Context, n int) {
	if n > 0 {
		t.ignored.Add(ctx, int64(n))
	}
}

func (t *telemetry) entriesAccepted(ctx context.Context, es []entry.Entry) {
	t.accepted.Add(ctx, int64(len(es)))
	problems := 0
	for i := range es {
		if es[i].Validation != nil {
			problems++
		}
	}
	if problems > 0 {
		t.withProblems.Add(ctx, int64(problems))
	}
}

func (t *telemetry) batchStored(entries int) {
	ctx := context.Background()
	t.batchesStored.Add(ctx, 1)
	t.entriesStored.Add(ctx, int64(entries))
}

func (t *telemetry) storeError(conflict bool) {
	if conflict {
		t.storeErrors.Add(context.Background(), 1, t.conflictAttr)
		return
	}
	t.storeErrors.Add(context.Background(), 1, t.transientAttr)
}
