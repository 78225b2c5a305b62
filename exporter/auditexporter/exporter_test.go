package auditexporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/recorder"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/storetest"
	"github.com/agentaudit/agentaudit/internal/wal"
)

var t0 = time.Date(2026, 3, 9, 14, 23, 7, 0, time.UTC)

func testConfig(t *testing.T) *Config {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.Spool.Directory = t.TempDir()
	cfg.ChainID = "collector-1"
	cfg.File = &FileConfig{Directory: "unused"}
	cfg.Batch = BatchConfig{MaxEntries: 4, MaxBytes: 1 << 20, MaxAge: time.Hour}
	return cfg
}

// traces builds n spans; the ones with an even index are audit-tagged.
func traces(n int, execID string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "crm-agent")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		s := spans.AppendEmpty()
		s.SetName(fmt.Sprintf("span-%d", i))
		s.SetTraceID(pcommon.TraceID{1: 1, 15: byte(i)})
		s.SetSpanID(pcommon.SpanID{1: 1, 7: byte(i)})
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(i) * time.Second)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(i)*time.Second + 500*time.Millisecond)))
		if i%2 == 0 {
			s.Attributes().PutStr(entry.KeyActionType, "write")
			s.Attributes().PutStr(entry.KeyExecutionID, execID)
			s.Attributes().PutStr(entry.KeyTargetSystem, "HubSpot CRM")
			s.Attributes().PutInt("index", int64(i))
		}
	}
	return td
}

// newTestExporter creates the exporter over st with a fixed clock.
func newTestExporter(t *testing.T, cfg *Config, st store.Store) (*auditExporter, exporter.Traces) {
	t.Helper()
	return newTestExporterWithSettings(t, cfg, st, exportertest.NewNopSettings(metadata.Type))
}

// newObservedExporter is newTestExporter with telemetry the test can read.
func newObservedExporter(t *testing.T, cfg *Config, st store.Store) (exporter.Traces, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := exportertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	_, te := newTestExporterWithSettings(t, cfg, st, set)
	return te, tel
}

// metricValue returns the sum of the int64 data points of the named metric
// whose attributes include want; 0 when nothing was recorded yet.
func metricValue(t *testing.T, tel *componenttest.Telemetry, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	var total int64
	add := func(attrs attribute.Set, v int64) {
		for _, kv := range want {
			if got, ok := attrs.Value(kv.Key); !ok || got != kv.Value {
				return
			}
		}
		total += v
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			add(dp.Attributes, dp.Value)
		}
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			add(dp.Attributes, dp.Value)
		}
	default:
		assert.Failf(t, "unexpected metric data", "metric %s has data %T", name, m.Data)
	}
	return total
}

func newTestExporterWithSettings(t *testing.T, cfg *Config, st store.Store, set exporter.Settings) (*auditExporter, exporter.Traces) {
	t.Helper()
	exp, err := newAuditExporter(cfg, set, func(_ context.Context, cfg *Config) (recorder.Stores, error) {
		return recorder.Stores{WALDir: filepath.Join(cfg.Spool.Directory, "wal"), Trail: st}, nil
	})
	require.NoError(t, err)
	exp.now = func() time.Time { return t0 }
	te, err := exp.asTraces(context.Background(), set)
	require.NoError(t, err)
	return exp, te
}

// isMarker reports whether e is a coverage marker (markers.go), which
// readTrail leaves out and readTrailAll keeps.
func isMarker(e entry.Entry) bool {
	return e.ActionType == actionRecorderStart || e.ActionType == actionRecorderStop
}

// readTrail is readTrailAll without the coverage markers: the entries the
// senders' spans became.
func readTrail(t *testing.T, st store.Store, id string) []entry.Entry {
	t.Helper()
	var out []entry.Entry
	for _, e := range readTrailAll(t, st, id) {
		if !isMarker(e) {
			out = append(out, e)
		}
	}
	return out
}

// readTrailAll decodes every batch of chain id in st, in key order, and
// checks that the files and the entries form one intact chain; it keeps
// the coverage markers.
func readTrailAll(t *testing.T, st store.Store, id string) []entry.Entry {
	t.Helper()
	ctx := context.Background()
	keys, err := st.List(ctx, "")
	require.NoError(t, err)
	var all []entry.Entry
	head := chain.Genesis()
	for _, k := range keys {
		if !store.IsBatchKey(k) { // checkpoints, keys, tiles
			continue
		}
		cid, first, _, err := store.ParseBatchKey(k)
		require.NoError(t, err)
		if cid != id {
			continue
		}
		data, err := st.Get(ctx, k)
		require.NoError(t, err)
		es, f, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		assert.Equal(t, first, f.FirstSeq, "key %s names the first seq", k)
		assert.Equal(t, head.Hash, f.PrevHash, "batch %s links to the previous batch", k)
		for i := range es {
			assert.Equal(t, head.Size, es[i].Seq)
			assert.Equal(t, head.Hash, es[i].PrevHash)
			assert.Equal(t, chain.Hash(&es[i]), es[i].EntryHash, "entry %d hash", es[i].Seq)
			head = chain.Head{Size: es[i].Seq + 1, Hash: es[i].EntryHash}
		}
		assert.Equal(t, head.Hash, f.LastHash)
		all = append(all, es...)
	}
	return all
}

func TestExportWritesChainedBatches(t *testing.T) {
	st := storetest.NewMemory()
	te, tel := newObservedExporter(t, testConfig(t), st)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(10, "exec-1"))) // 5 audit spans
	require.NoError(t, te.ConsumeTraces(ctx, traces(6, "exec-2")))  // 3 more
	assert.Equal(t, int64(8), metricValue(t, tel, "otelcol_agentaudit_entries_accepted"))
	assert.Equal(t, int64(8), metricValue(t, tel, "otelcol_agentaudit_spans_ignored"), "unaudited spans are counted")
	assert.Equal(t, int64(8), metricValue(t, tel, "otelcol_agentaudit_chain_head_seq"), "after the start marker, seq 0")
	require.NoError(t, te.Shutdown(ctx))
	assert.Equal(t, int64(10), metricValue(t, tel, "otelcol_agentaudit_entries_stored"), "8 and the start and stop markers")
	assert.Equal(t, int64(3), metricValue(t, tel, "otelcol_agentaudit_batches_stored"))

	keys, err := st.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"dt=2026-03-09/collector-1-00000000000000000000.parquet",
		"dt=2026-03-09/collector-1-00000000000000000004.parquet",
		"dt=2026-03-09/collector-1-00000000000000000008.parquet",
	}, batchKeys(keys), "two full batches of 4; the last sealed at shutdown")
	es := readTrail(t, st, "collector-1")
	require.Len(t, es, 8)
	for i, e := range es[:5] {
		assert.Equal(t, "exec-1", e.ExecutionID)
		assert.Equal(t, fmt.Sprintf(`{"index":%d}`, 2*i), e.Attributes)
	}
	assert.Equal(t, "exec-2", es[7].ExecutionID)
	assert.Equal(t, t0.UnixNano(), es[0].TimeUnixNano)
}

func TestUnauditedSpansAreIgnored(t *testing.T) {
	st := storetest.NewMemory()
	_, te := newTestExporter(t, testConfig(t), st)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	td := traces(2, "x")
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().RemoveIf(func(s ptrace.Span) bool { return auditspan.IsAudit(s) })
	require.NoError(t, te.ConsumeTraces(ctx, td))
	require.NoError(t, te.Shutdown(ctx))
	assert.Empty(t, readTrail(t, st, "collector-1"), "nothing but the markers")
}

func TestMaxAgeSealsIdleBatch(t *testing.T) {
	st := storetest.NewMemory()
	cfg := testConfig(t)
	cfg.Batch.MaxAge = 20 * time.Millisecond
	exp, te := newTestExporter(t, cfg, st)
	var now atomic.Int64
	now.Store(t0.UnixNano())
	exp.now = func() time.Time { return time.Unix(0, now.Load()).UTC() }
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "exec-1")))
	now.Add(int64(time.Second))
	require.Eventually(t, func() bool {
		keys, err := st.List(ctx, "")
		return err == nil && len(keys) == 1
	}, 10*time.Second, 5*time.Millisecond, "the batch is sealed and stored when it reaches max_age")
	require.NoError(t, te.Shutdown(ctx))
	assert.Len(t, readTrail(t, st, "collector-1"), 1)
}

func TestRestartResumesChain(t *testing.T) {
	st := storetest.NewMemory()
	ctx := context.Background()
	for range 3 {
		_, te := newTestExporter(t, testConfig(t), st)
		require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
		require.NoError(t, te.ConsumeTraces(ctx, traces(6, "exec"))) // 3 entries
		require.NoError(t, te.Shutdown(ctx))
	}
	es := readTrail(t, st, "collector-1")
	require.Len(t, es, 9, "three runs of 3 entries continue one chain")
	assert.Equal(t, int64(13), es[8].Seq, "after 5 markers")
	var markers []string
	for _, e := range readTrailAll(t, st, "collector-1") {
		if isMarker(e) {
			markers = append(markers, e.ActionType+": "+e.Result)
		}
	}
	// Each run has a spool of its own, which holds no record of the stop
	// before: the stop markers in the trail show they were clean.
	assert.Equal(t, []string{
		"agentaudit.recorder_start: first start", "agentaudit.recorder_stop: clean stop",
		"agentaudit.recorder_start: no record of a clean stop", "agentaudit.recorder_stop: clean stop",
		"agentaudit.recorder_start: no record of a clean stop", "agentaudit.recorder_stop: clean stop",
	}, markers, "each run's start and stop are in the trail")
}

func TestOtherChainsAreLeftAlone(t *testing.T) {
	st := storetest.NewMemory()
	ctx := context.Background()
	for _, id := range []string{"collector-1", "collector-2", "collector-1"} {
		cfg := testConfig(t)
		cfg.ChainID = id
		_, te := newTestExporter(t, cfg, st)
		require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
		require.NoError(t, te.ConsumeTraces(ctx, traces(2, id)))
		require.NoError(t, te.Shutdown(ctx))
	}
	assert.Len(t, readTrail(t, st, "collector-1"), 2)
	assert.Len(t, readTrail(t, st, "collector-2"), 1)
}

func TestStartRefusesUnreadableHead(t *testing.T) {
	st := storetest.NewMemory()
	ctx := context.Background()
	require.NoError(t, st.Put(ctx, store.BatchKey("collector-1", 0, t0), []byte("not parquet")))
	_, te := newTestExporter(t, testConfig(t), st)
	err := te.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err, "a chain whose head cannot be read must not be forked")
	assert.ErrorIs(t, err, parquetfile.ErrCorrupt)
	assert.Contains(t, err.Error(), "dt=2026-03-09/collector-1-00000000000000000000.parquet")
	require.NoError(t, te.Shutdown(ctx))
}

// flakyStore fails the first failures Puts of batches, then behaves like
// its Store.
type flakyStore struct {
	store.Store
	mu       sync.Mutex
	failures int
	attempts map[string][][]byte
}

func (f *flakyStore) Put(ctx context.Context, key string, data []byte) error {
	if !strings.HasSuffix(key, ".parquet") {
		// Only batches fail: checkpoints and keys follow their fate.
		return f.Store.Put(ctx, key, data)
	}
	f.mu.Lock()
	f.attempts[key] = append(f.attempts[key], data)
	fail := f.failures > 0
	if fail {
		f.failures--
	}
	f.mu.Unlock()
	if fail {
		return errors.New("store unavailable")
	}
	return f.Store.Put(ctx, key, data)
}

func TestStoreFailuresAreRetriedWithTheSameBytes(t *testing.T) {
	st := &flakyStore{Store: storetest.NewMemory(), failures: 3, attempts: map[string][][]byte{}}
	_, te := newTestExporter(t, testConfig(t), st)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(16, "exec"))) // 8 entries, 2 batches
	require.NoError(t, te.Shutdown(ctx))

	assert.Len(t, readTrail(t, st, "collector-1"), 8)
	first := st.attempts["dt=2026-03-09/collector-1-00000000000000000000.parquet"]
	require.Len(t, first, 4, "three failures, then success")
	for _, a := range first[1:] {
		assert.Equal(t, first[0], a, "every retry sends the same bytes")
	}
	assert.Len(t, st.attempts["dt=2026-03-09/collector-1-00000000000000000004.parquet"], 1,
		"the second batch waits behind the first")
}

func TestShutdownKeepsUnwrittenEntriesInTheLog(t *testing.T) {
	mem := storetest.NewMemory()
	down := &flakyStore{Store: mem, failures: 1 << 30, attempts: map[string][][]byte{}}
	cfg := testConfig(t)
	_, te := newTestExporter(t, cfg, down)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(10, "exec"))) // 5 entries, acknowledged
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	require.NoError(t, te.Shutdown(sctx), "nothing acknowledged is lost: it waits in the write-ahead log")
	keys, err := mem.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, batchKeys(keys), "the store took nothing")

	// The next run seals the logged entries and continues the chain.
	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "next")))
	require.NoError(t, te.Shutdown(ctx))
	es := readTrail(t, mem, "collector-1")
	require.Len(t, es, 6)
	assert.Equal(t, "exec", es[4].ExecutionID)
	assert.Equal(t, "next", es[5].ExecutionID)
	segs, err := wal.Recover(filepath.Join(cfg.Spool.Directory, "wal"), "collector-1")
	require.NoError(t, err)
	assert.Empty(t, segs, "segments go once their batches are stored")
}

func TestConflictingBatchIsNeverOverwritten(t *testing.T) {
	mem := storetest.NewMemory()
	ctx := context.Background()
	cfg := testConfig(t)
	te, tel := newObservedExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	// Another writer with the same chain id stores its first batch after
	// this one started.
	key := "dt=2026-03-09/collector-1-00000000000000000000.parquet"
	require.NoError(t, mem.Put(ctx, key, []byte("someone else's batch")))
	require.NoError(t, te.ConsumeTraces(ctx, traces(6, "exec"))) // one full batch of 4 with the start marker
	require.Eventually(t, func() bool {
		return metricValue(t, tel, "otelcol_agentaudit_store_errors", attribute.String("kind", "conflict")) > 0
	}, 10*time.Second, 5*time.Millisecond, "the conflict is counted")
	assert.Equal(t, int64(1), metricValue(t, tel, "otelcol_agentaudit_batches_queued"), "the batch is kept, not dropped")
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	require.NoError(t, te.Shutdown(sctx))
	got, err := mem.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "someone else's batch", string(got), "the other writer's object is never replaced")
	segs, err := wal.Recover(filepath.Join(cfg.Spool.Directory, "wal"), "collector-1")
	require.NoError(t, err)
	require.NotEmpty(t, segs, "our entries stay in the write-ahead log")
	assert.Len(t, segs[0].Entries, 4)
	for _, s := range segs[1:] {
		for _, e := range s.Entries {
			assert.True(t, isMarker(e), "only the stop marker after them: %+v", e)
		}
	}
}

func TestConsumeAfterShutdownFails(t *testing.T) {
	_, te := newTestExporter(t, testConfig(t), storetest.NewMemory())
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	assert.Error(t, te.ConsumeTraces(ctx, traces(2, "late")))
}

func TestFactoryLifecycleWithFileStore(t *testing.T) {
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.ChainID = "collector-1"
	cfg.File = &FileConfig{Directory: t.TempDir()}
	cfg.Spool.Directory = t.TempDir()
	ctx := context.Background()
	te, err := f.CreateTraces(ctx, exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(4, "exec")))
	require.NoError(t, te.Shutdown(ctx))
	fs, err := store.NewFS(cfg.File.Directory)
	require.NoError(t, err)
	assert.Len(t, readTrail(t, fs, "collector-1"), 2)
}

// newSpooledExporter creates an exporter whose remote store is remote, with
// a local spool in spoolDir.
func newSpooledExporter(t *testing.T, remote store.Store, spoolDir string) exporter.Traces {
	t.Helper()
	return newSpooledExporterOffline(t, remote, spoolDir, nil)
}

// newSpooledExporterOffline is newSpooledExporter whose opener reports the
// remote store unavailable at start with offline (when not nil).
func newSpooledExporterOffline(t *testing.T, remote store.Store, spoolDir string, offline error) exporter.Traces {
	t.Helper()
	set := exportertest.NewNopSettings(metadata.Type)
	cfg := testConfig(t)
	cfg.Spool.Directory = spoolDir
	exp, err := newAuditExporter(cfg, set, func(context.Context, *Config) (recorder.Stores, error) {
		spool, err := store.NewFS(filepath.Join(spoolDir, "batches"))
		return recorder.Stores{WALDir: filepath.Join(spoolDir, "wal"), Trail: remote, Spool: spool, Offline: offline}, err
	})
	require.NoError(t, err)
	exp.now = func() time.Time { return t0 }
	te, err := exp.asTraces(context.Background(), set)
	require.NoError(t, err)
	return te
}

func spoolKeys(t *testing.T, dir string) []string {
	t.Helper()
	fs, err := store.NewFS(filepath.Join(dir, "batches"))
	require.NoError(t, err)
	keys, err := fs.List(context.Background(), "")
	require.NoError(t, err)
	return batchKeys(keys)
}

// batchKeys keeps the keys of batches, leaving out checkpoints and keys.
func batchKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if strings.HasSuffix(k, ".parquet") {
			out = append(out, k)
		}
	}
	return out
}

func TestSpoolUploadsInOrderAndEmpties(t *testing.T) {
	remote := &flakyStore{Store: storetest.NewMemory(), failures: 3, attempts: map[string][][]byte{}}
	dir := t.TempDir()
	te := newSpooledExporter(t, remote, dir)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(20, "exec"))) // 10 entries, 3 batches
	require.NoError(t, te.Shutdown(ctx))
	assert.Len(t, readTrail(t, remote, "collector-1"), 10)
	assert.Empty(t, spoolKeys(t, dir), "uploaded batches leave the spool")
}

func TestSpoolKeepsBatchesThroughAnOutageAndRestart(t *testing.T) {
	mem := storetest.NewMemory()
	down := &flakyStore{Store: mem, failures: 1 << 30, attempts: map[string][][]byte{}}
	dir := t.TempDir()
	ctx := context.Background()

	te := newSpooledExporter(t, down, dir)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(12, "before"))) // 6 entries
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	require.NoError(t, te.Shutdown(sctx), "batches that reached the spool are not lost")
	assert.Len(t, spoolKeys(t, dir), 2)
	keys, err := mem.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, batchKeys(keys), "the store was down")

	// The store is back; the next run uploads the spool first and continues
	// the chain from the spooled head, not from the store's.
	te = newSpooledExporter(t, mem, dir)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(4, "after"))) // 2 entries
	require.NoError(t, te.Shutdown(ctx))
	es := readTrail(t, mem, "collector-1")
	require.Len(t, es, 8)
	assert.Equal(t, "before", es[5].ExecutionID)
	assert.Equal(t, "after", es[6].ExecutionID)
	assert.Empty(t, spoolKeys(t, dir))
}
