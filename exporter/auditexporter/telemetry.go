package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// observer reports the gauges read from the recorder's queues
// (recorder.Recorder.Stats).
type observer func() (spoolBytes int64, oldest time.Duration, walSyncs int64)

// telemetry is the exporter's own metrics. The hot path only counts.
type telemetry struct {
	accepted      metric.Int64Counter
	withProblems  metric.Int64Counter
	ignored       metric.Int64Counter
	refusedCount  metric.Int64Counter
	unauthCount   metric.Int64Counter
	mismatchCount metric.Int64Counter
	entriesSealed metric.Int64Counter
	batchesStored metric.Int64Counter
	entriesStored metric.Int64Counter
	storeErrors   metric.Int64Counter
	headSeq       atomic.Int64 // seq of the last entry, -1 when none (recorder.Metrics.Head)
	queued        atomic.Int64 // sealed batches not yet in the store (recorder.Metrics.Queued)
	conflictAttr  metric.MeasurementOption
	transientAttr metric.MeasurementOption
	registration  metric.Registration

	// The approval service's (approvals.go), when it runs.
	approvals        metric.Int64Counter
	approvalAttrs    map[string]metric.MeasurementOption // by what the service counts
	approvalsPending metric.Registration

	// The witnesses' (witnesses.go), when configured.
	witnessErrors    metric.Int64Counter
	witnessCosigned  metric.Int64Counter
	witnessAttrs     sync.Map // witness name -> attribute.Set
	witnessesObserve metric.Registration
}

func newTelemetry(set component.TelemetrySettings, observe observer) (*telemetry, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	t := &telemetry{
		conflictAttr:  metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "conflict"))),
		transientAttr: metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "transient"))),
	}
	t.headSeq.Store(-1)
	counters := []struct {
		dst        *metric.Int64Counter
		name, desc string
		unit       string
	}{
		{&t.accepted, "otelcol_agentaudit_entries_accepted", "Audit entries chained and durable in the write-ahead log (acknowledged).", "{entry}"},
		{&t.withProblems, "otelcol_agentaudit_entries_with_problems", "Accepted entries whose span had missing or malformed fields (see the validation column).", "{entry}"},
		{&t.ignored, "otelcol_agentaudit_spans_ignored", "Spans without audit tags that reached the exporter and were not recorded.", "{span}"},
		{&t.refusedCount, "otelcol_agentaudit_entries_refused", "Audit entries refused with a retryable error (spool full, sealed batches waiting for the disk, or write-ahead log failed).", "{entry}"},
		{&t.unauthCount, "otelcol_agentaudit_entries_unauthenticated", "Audit entries refused, not retryable, because no sender was authenticated (require_authenticated_source).", "{entry}"},
		{&t.mismatchCount, "otelcol_agentaudit_entries_sender_mismatch", "Accepted entries naming an agent their sender may not write for (senders), flagged sender_mismatch.", "{entry}"},
		{&t.entriesSealed, "otelcol_agentaudit_entries_sealed", "Entries sealed into Parquet batches on local disk (the spool, or the file store).", "{entry}"},
		{&t.batchesStored, "otelcol_agentaudit_batches_stored", "Sealed batches written to the store.", "{batch}"},
		{&t.entriesStored, "otelcol_agentaudit_entries_stored", "Audit entries written to the store.", "{entry}"},
		{&t.storeErrors, "otelcol_agentaudit_store_errors", "Failed attempts to write a sealed batch; kind=conflict means another writer uses this chain id.", "{error}"},
		{&t.witnessErrors, "otelcol_agentaudit_witness_errors", "Failed attempts to get a checkpoint cosigned by a witness, by witness and kind: unavailable, refused, bad_cosignature, proof, store.", "{error}"},
		{&t.witnessCosigned, "otelcol_agentaudit_witness_cosignatures", "Witness cosignatures verified and stored beside a checkpoint, by witness.", "{cosignature}"},
		{&t.approvals, "otelcol_agentaudit_approvals", "What the approval service recorded or refused, by event: requested, approve, reject, expire, auto_approve, self_approval_refused.", "{event}"},
	}
	t.approvalAttrs = map[string]metric.MeasurementOption{}
	for _, ev := range []string{"requested", "approve", "reject", "expire", "auto_approve", "self_approval_refused"} {
		t.approvalAttrs[ev] = metric.WithAttributeSet(attribute.NewSet(attribute.String("event", ev)))
	}
	for _, c := range counters {
		var err error
		if *c.dst, err = m.Int64Counter(c.name, metric.WithDescription(c.desc), metric.WithUnit(c.unit)); err != nil {
			return nil, err
		}
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
	spool, err := m.Int64ObservableGauge("otelcol_agentaudit_spool_bytes",
		metric.WithDescription("Bytes of sealed batches waiting in the spool for the S3 store."), metric.WithUnit("By"))
	if err != nil {
		return nil, err
	}
	oldest, err := m.Float64ObservableGauge("otelcol_agentaudit_oldest_unstored_seconds",
		metric.WithDescription("Age of the oldest sealed batch not yet in the store (0 when none)."), metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	syncs, err := m.Int64ObservableCounter("otelcol_agentaudit_wal_syncs",
		metric.WithDescription("fsyncs of the write-ahead log; fewer than requests when group commit shares them."), metric.WithUnit("{fsync}"))
	if err != nil {
		return nil, err
	}
	t.registration, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		bytes, age, n := observe()
		o.ObserveInt64(head, t.headSeq.Load())
		o.ObserveInt64(queued, t.queued.Load())
		o.ObserveInt64(spool, bytes)
		o.ObserveFloat64(oldest, age.Seconds())
		o.ObserveInt64(syncs, n)
		return nil
	}, head, queued, spool, oldest, syncs)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// recorderMetrics is the exporter as the recorder's recorder.Metrics: what
// the recorder does, counted in the exporter's telemetry.
type recorderMetrics auditExporter

func (m *recorderMetrics) Head(h chain.Head)        { m.tel.headSeq.Store(h.Size - 1) }
func (m *recorderMetrics) Queued(n int64)           { m.tel.queued.Add(n) }
func (m *recorderMetrics) Sealed(entries int)       { m.tel.batchSealed(entries) }
func (m *recorderMetrics) Stored(entries int)       { m.tel.batchStored(entries) }
func (m *recorderMetrics) StoreError(conflict bool) { m.tel.storeError(conflict) }

func (t *telemetry) spansIgnored(ctx context.Context, n int) {
	if n > 0 {
		t.ignored.Add(ctx, int64(n))
	}
}

func (t *telemetry) refused(ctx context.Context, n int) { t.refusedCount.Add(ctx, int64(n)) }

func (t *telemetry) unauthenticated(ctx context.Context, n int) { t.unauthCount.Add(ctx, int64(n)) }

// entriesAccepted counts es accepted, mismatched of them flagged
// sender_mismatch.
func (t *telemetry) entriesAccepted(ctx context.Context, es []entry.Entry, mismatched int) {
	t.accepted.Add(ctx, int64(len(es)))
	if mismatched > 0 {
		t.mismatchCount.Add(ctx, int64(mismatched))
	}
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

func (t *telemetry) batchSealed(entries int) {
	t.entriesSealed.Add(context.Background(), int64(entries))
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

// approvalEvent counts what the approval service tells (approval.Config.Count).
func (t *telemetry) approvalEvent(what string) {
	if attrs, ok := t.approvalAttrs[what]; ok {
		t.approvals.Add(context.Background(), 1, attrs)
	}
}

// observeApprovals reports the approvals waiting for a decision.
func (t *telemetry) observeApprovals(set component.TelemetrySettings, pending func() int) error {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	g, err := m.Int64ObservableGauge("otelcol_agentaudit_approvals_pending",
		metric.WithDescription("Approval requests waiting for a decision."), metric.WithUnit("{approval}"))
	if err != nil {
		return err
	}
	t.approvalsPending, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, int64(pending()))
		return nil
	}, g)
	return err
}

// witnessAttr is the attribute set naming a witness.
func (t *telemetry) witnessAttr(name string) attribute.Set {
	if a, ok := t.witnessAttrs.Load(name); ok {
		return a.(attribute.Set)
	}
	a := attribute.NewSet(attribute.String("witness", name))
	t.witnessAttrs.Store(name, a)
	return a
}

// witnessError counts a failed attempt of a witness.
func (t *telemetry) witnessError(name, kind string) {
	t.witnessErrors.Add(context.Background(), 1, metric.WithAttributes(attribute.String("witness", name), attribute.String("kind", kind)))
}

// witnessCosignature counts a cosignature stored.
func (t *telemetry) witnessCosignature(name string) {
	t.witnessCosigned.Add(context.Background(), 1, metric.WithAttributeSet(t.witnessAttr(name)))
}

// observeWitnesses reports, per witness, the age of the newest checkpoint
// it cosigned (since this start; none before the first) and how long the
// oldest checkpoint it has not cosigned has waited (0 when none).
func (t *telemetry) observeWitnesses(set component.TelemetrySettings, now func() time.Time, status func() []witnessStatus) error {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	age, err := m.Float64ObservableGauge("otelcol_agentaudit_witness_cosigned_age_seconds",
		metric.WithDescription("Age of the newest checkpoint the witness cosigned, by witness; absent until the first since the collector started."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	lag, err := m.Float64ObservableGauge("otelcol_agentaudit_witness_lag_seconds",
		metric.WithDescription("How long the oldest checkpoint the witness has not cosigned has waited, by witness; 0 when it cosigned the newest."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	t.witnessesObserve, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := now()
		for _, s := range status() {
			attrs := metric.WithAttributeSet(t.witnessAttr(s.name))
			if !s.Cosigned.IsZero() {
				o.ObserveFloat64(age, now.Sub(s.Cosigned).Seconds(), attrs)
			}
			waited := 0.0
			if !s.Waiting.IsZero() {
				waited = now.Sub(s.Waiting).Seconds()
			}
			o.ObserveFloat64(lag, waited, attrs)
		}
		return nil
	}, age, lag)
	return err
}
