package auditexporter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// crash stops e's goroutines the way a killed process would: nothing is
// sealed or flushed, the open batch is simply gone from memory.
func crash(t *testing.T, e *auditExporter) {
	t.Helper()
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	close(e.stopTick)
	close(e.abort)
	e.wg.Wait()
	_ = e.tel.registration.Unregister()
}

func TestAcknowledgedEntriesSurviveACrash(t *testing.T) {
	mem := store.NewMemory()
	cfg := testConfig(t)
	ctx := context.Background()

	exp, te := newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(14, "before"))) // 7 entries: one batch of 4 sealed, 3 open
	crash(t, exp)

	// The restart seals what the log holds and continues the chain.
	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(4, "after"))) // 2 entries
	require.NoError(t, te.Shutdown(ctx))

	es := readTrail(t, mem, "collector-1")
	require.Len(t, es, 9, "every acknowledged entry exactly once")
	for i, e := range es[:7] {
		assert.Equal(t, "before", e.ExecutionID, "seq %d", i)
	}
	assert.Equal(t, "after", es[7].ExecutionID)
}

func TestRecoveryDropsATornTail(t *testing.T) {
	mem := store.NewMemory()
	cfg := testConfig(t)
	ctx := context.Background()
	exp, te := newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(4, "x"))) // 2 entries, open batch
	crash(t, exp)

	// A write the crash cut short: half a record after the acknowledged ones.
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	f, err := os.OpenFile(filepath.Join(walDir, wal.SegmentName("collector-1", 0)), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte{200, 1, 0, 0, 9, 9, 9, 9, '1', '9', ':'})
	require.NoError(t, err)
	require.NoError(t, f.Close())

	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	assert.Len(t, readTrail(t, mem, "collector-1"), 2)
}

func TestRecoveryRefusesToFork(t *testing.T) {
	mem := store.NewMemory()
	cfg := testConfig(t)
	ctx := context.Background()
	// The log holds entries of a chain that does not continue the store's.
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	c := chain.New("collector-1", chain.Head{Size: 5, Hash: chain.GenesisHash})
	l, err := wal.Open(walDir, "collector-1", 5)
	require.NoError(t, err)
	e := entry.Entry{TraceID: "00", SpanID: "00", Attributes: "{}"}
	c.Append(&e)
	l.Append(&e)
	require.NoError(t, l.Close())

	_, te := newTestExporter(t, cfg, mem)
	err = te.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to fork the chain")
	assert.Contains(t, err.Error(), filepath.Join(walDir, wal.SegmentName("collector-1", 5)))
	require.NoError(t, te.Shutdown(ctx))
}

func TestSpoolFullRefusesWithARetryableError(t *testing.T) {
	mem := store.NewMemory()
	down := &flakyStore{Store: mem, failures: 1 << 30, attempts: map[string][][]byte{}}
	dir := t.TempDir()
	set := exportertest.NewNopSettings(metadata.Type)
	cfg := testConfig(t)
	cfg.Spool.Directory = dir
	cfg.Spool.MaxBytes = 1 // one spooled batch fills it
	exp, err := newAuditExporter(cfg, set, func(context.Context, *Config) (stores, error) {
		spool, err := store.NewFS(filepath.Join(dir, "batches"))
		return stores{walDir: filepath.Join(dir, "wal"), trail: down, spool: spool}, err
	})
	require.NoError(t, err)
	exp.now = func() time.Time { return t0 }
	te, err := exp.asTraces(context.Background(), set)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))

	require.NoError(t, te.ConsumeTraces(ctx, traces(8, "fills"))) // one batch of 4, spooled
	require.Eventually(t, func() bool { used, _, _ := exp.observe(); return used > 0 }, 10*time.Second, 5*time.Millisecond)
	assert.Len(t, spoolKeys(t, dir), 1)

	err = te.ConsumeTraces(ctx, traces(2, "refused"))
	require.Error(t, err, "past the spool's limit new data is refused")
	st, ok := status.FromError(err)
	require.True(t, ok, "a gRPC status: %v", err)
	assert.Equal(t, codes.Unavailable, st.Code(), "retryable")
	assert.Contains(t, st.Message(), "spool")
	var delay bool
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration() > 0
		}
	}
	assert.True(t, delay, "the client is told when to retry (HTTP Retry-After)")

	// The store comes back: the spool drains and data is accepted again.
	down.mu.Lock()
	down.failures = 0
	down.mu.Unlock()
	require.Eventually(t, func() bool { return te.ConsumeTraces(ctx, traces(2, "accepted")) == nil },
		30*time.Second, 20*time.Millisecond)
	require.NoError(t, te.Shutdown(ctx))
	es := readTrail(t, mem, "collector-1")
	require.Len(t, es, 5, "the refused request left nothing behind")
	assert.Equal(t, "accepted", es[4].ExecutionID)
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	mem := store.NewMemory()
	cfg := testConfig(t)
	cfg.Batch.MaxEntries = 10_000
	te, tel := newObservedExporter(t, cfg, mem)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	const clients, requests = 16, 20
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range requests {
				assert.NoError(t, te.ConsumeTraces(ctx, traces(2, "c")))
			}
		})
	}
	wg.Wait()
	syncs := metricValue(t, tel, "otelcol_agentaudit_wal_syncs")
	assert.Positive(t, syncs)
	assert.Less(t, syncs, int64(clients*requests), "concurrent requests share fsyncs")
	require.NoError(t, te.Shutdown(ctx))
	assert.Len(t, readTrail(t, mem, "collector-1"), clients*requests)
}

// mountTmpfs mounts a tmpfs of size bytes at a new directory, to make a
// real "disk full". It needs root; without it the test is skipped, except
// under CI=true, where it fails.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs for the disk-full test: %v", err)
		}
		t.Skipf("mounting a tmpfs needs root: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	return dir
}

func TestDiskFullRefusesAndLosesNothingAcknowledged(t *testing.T) {
	dir := mountTmpfs(t, 64<<10)
	mem := store.NewMemory()
	cfg := testConfig(t)
	cfg.Spool.Directory = dir
	cfg.Batch.MaxEntries = 10_000
	ctx := context.Background()
	_, te := newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))

	// Requests of 2 entries with 4 KiB values, until the disk is full.
	big := traces(4, "acked")
	spans := big.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	for i := 0; i < spans.Len(); i++ {
		if entry.IsAudit(spans.At(i)) {
			spans.At(i).Attributes().PutStr(entry.KeyValueProposed, strings.Repeat("x", 4<<10))
		}
	}
	acked := 0
	var refusal error
	for range 100 {
		if refusal = te.ConsumeTraces(ctx, big); refusal != nil {
			break
		}
		acked += 2
	}
	require.Error(t, refusal, "the disk fills up")
	st, ok := status.FromError(refusal)
	require.True(t, ok)
	assert.Equal(t, codes.Unavailable, st.Code(), "retryable")
	assert.Contains(t, st.Message(), filepath.Join(dir, "wal"), "the error names the path")
	assert.Contains(t, st.Message(), "no space left on device")
	err := te.ConsumeTraces(ctx, traces(2, "later"))
	require.Error(t, err, "refused until the collector restarts and recovers")
	assert.ErrorIs(t, te.Shutdown(ctx), wal.ErrBroken, "shutdown reports the failure too")
	stored := readTrail(t, mem, "collector-1")
	assert.Len(t, stored, acked, "exactly the acknowledged entries reached the trail")

	// Space comes back; the restart recovers the log and continues the chain.
	require.NoError(t, syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=4m"))
	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "after")))
	require.NoError(t, te.Shutdown(ctx))
	es := readTrail(t, mem, "collector-1")
	require.Len(t, es, acked+1, "every acknowledged entry once, then the new one")
	for _, e := range es[:acked] {
		assert.Equal(t, "acked", e.ExecutionID)
	}
	assert.Equal(t, "after", es[acked].ExecutionID)
}

var errOutage = fmt.Errorf("%w: connection refused", store.ErrUnavailable)

func TestStartDuringAnOutageResumesFromLocalState(t *testing.T) {
	mem := store.NewMemory()
	down := &flakyStore{Store: mem, failures: 1 << 30, attempts: map[string][][]byte{}}
	dir := t.TempDir()
	ctx := context.Background()

	// A first run stores two batches while the bucket is up.
	te := newSpooledExporter(t, mem, dir)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(16, "up"))) // 8 entries
	require.NoError(t, te.Shutdown(ctx))
	assert.Empty(t, spoolKeys(t, dir))

	// The bucket is down when the collector restarts: it resumes from its
	// local record of the head and keeps accepting.
	te2 := newSpooledExporterOffline(t, down, dir, errOutage)
	require.NoError(t, te2.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te2.ConsumeTraces(ctx, traces(8, "down"))) // 4 entries
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	require.NoError(t, te2.Shutdown(sctx))

	// Back up: everything lands in one unforked chain.
	te = newSpooledExporter(t, mem, dir)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	es := readTrail(t, mem, "collector-1")
	require.Len(t, es, 12)
	assert.Equal(t, "up", es[7].ExecutionID)
	assert.Equal(t, "down", es[8].ExecutionID)
}

func TestStartDuringAnOutageWithoutLocalStateRefuses(t *testing.T) {
	te := newSpooledExporterOffline(t, store.NewMemory(), t.TempDir(), errOutage)
	ctx := context.Background()
	err := te.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to start rather than fork the chain")
	assert.ErrorIs(t, err, store.ErrUnavailable)
	require.NoError(t, te.Shutdown(ctx))
}

func TestHeadMarkerOfAnotherStoreIsIgnored(t *testing.T) {
	dir := t.TempDir()
	h := chain.Head{Size: 6, Hash: strings.Repeat("ab", 32)}
	require.NoError(t, writeHeadMarker(dir, "collector-1", "file:/trail-a", h))
	got, ok, err := readHeadMarker(dir, "collector-1", "file:/trail-a")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, h, got)
	_, ok, err = readHeadMarker(dir, "collector-1", "file:/trail-b")
	require.NoError(t, err)
	assert.False(t, ok, "a spool reused for another trail must not move that trail's chain")
	_, ok, err = readHeadMarker(dir, "collector-2", "file:/trail-a")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, os.WriteFile(headMarkerPath(dir, "collector-1"), []byte("garbage"), 0o640))
	_, _, err = readHeadMarker(dir, "collector-1", "file:/trail-a")
	assert.Error(t, err, "a corrupt marker is an error naming the path, not a silent restart from genesis")
}
