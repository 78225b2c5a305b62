package auditexporter

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
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
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/recorder"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/storetest"
	"github.com/agentaudit/agentaudit/internal/verify"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// crash stops e's goroutines the way a killed process would: nothing is
// sealed or flushed, the open batch is simply gone from memory.
func crash(t *testing.T, e *auditExporter) {
	t.Helper()
	e.rec.Abandon() // the spool's lock released as the kernel releases a dead process's
	_ = e.tel.registration.Unregister()
}

func TestAcknowledgedEntriesSurviveACrash(t *testing.T) {
	mem := storetest.NewMemory()
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
	mem := storetest.NewMemory()
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
	mem := storetest.NewMemory()
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
	assert.Contains(t, err.Error(), "begins at seq 5, but the chain reaches only seq -1: entries 0 to 4 are missing")
	assert.Contains(t, err.Error(), filepath.Join(walDir, wal.SegmentName("collector-1", 5)))
	require.NoError(t, te.Shutdown(ctx))

	// At the right seq, but linked to another entry_hash.
	require.NoError(t, os.RemoveAll(walDir))
	c = chain.New("collector-1", chain.Head{Size: 0, Hash: strings.Repeat("ab", 32)})
	l, err = wal.Open(walDir, "collector-1", 0)
	require.NoError(t, err)
	e = entry.Entry{TraceID: "00", SpanID: "00", Attributes: "{}"}
	c.Append(&e)
	l.Append(&e)
	require.NoError(t, l.Close())
	_, te = newTestExporter(t, cfg, mem)
	err = te.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "seq 0 does not link to the chain's entry_hash")
	assert.Contains(t, err.Error(), "refusing to fork the chain")
	require.NoError(t, te.Shutdown(ctx))
}

// TestRecoveryComparesEntriesBelowTheHead: a log whose entries the store
// says are stored, but which another writer's entries displaced, is refused
// rather than dropped.
func TestRecoveryComparesEntriesBelowTheHead(t *testing.T) {
	mem := storetest.NewMemory()
	ctx := context.Background()
	cfgA := testConfig(t)
	expA, te := newTestExporter(t, cfgA, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(4, "A"))) // 2 entries, acknowledged, open batch
	crash(t, expA)

	// Another collector of the same chain_id, with its own spool, stores 4.
	cfgB := testConfig(t)
	_, te = newTestExporter(t, cfgB, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(8, "B")))
	require.NoError(t, te.Shutdown(ctx))
	require.Len(t, readTrail(t, mem, "collector-1"), 4)

	seg := filepath.Join(cfgA.Spool.Directory, "wal", wal.SegmentName("collector-1", 0))
	before, err := os.ReadFile(seg)
	require.NoError(t, err)
	_, te = newTestExporter(t, cfgA, mem)
	err = te.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "holds seq 2 with entry_hash") // its last: the start marker, then 2 entries
	assert.Contains(t, err.Error(), "another writer stored entries of chain \"collector-1\"")
	require.NoError(t, te.Shutdown(ctx))
	after, err := os.ReadFile(seg)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the refused log is left as it was")

	// A segment of entries that are the stored ones (a crash came between
	// storing a batch and removing its segment) is dropped.
	stored := readTrailAll(t, mem, "collector-1")
	require.NoError(t, os.RemoveAll(filepath.Dir(seg)))
	l, err := wal.Open(filepath.Dir(seg), "collector-1", 0)
	require.NoError(t, err)
	for i := range stored {
		l.Append(&stored[i])
	}
	require.NoError(t, l.Close())
	_, te = newTestExporter(t, cfgA, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	_, err = os.Stat(seg)
	assert.ErrorIs(t, err, fs.ErrNotExist, "the segment of stored entries is removed")
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "A2")))
	require.NoError(t, te.Shutdown(ctx))
	assert.Len(t, readTrail(t, mem, "collector-1"), 5)
}

func TestSpoolFullRefusesWithARetryableError(t *testing.T) {
	mem := storetest.NewMemory()
	down := &flakyStore{Store: mem, failures: 1 << 30, attempts: map[string][][]byte{}}
	dir := t.TempDir()
	set := exportertest.NewNopSettings(metadata.Type)
	cfg := testConfig(t)
	cfg.Spool.Directory = dir
	cfg.Spool.MaxBytes = 1 // one spooled batch fills it
	exp, err := newAuditExporter(cfg, set, func(context.Context, *Config) (recorder.Stores, error) {
		spool, err := store.NewFS(filepath.Join(dir, "batches"))
		return recorder.Stores{WALDir: filepath.Join(dir, "wal"), Trail: down, Spool: spool}, err
	})
	require.NoError(t, err)
	exp.now = func() time.Time { return t0 }
	te, err := exp.asTraces(context.Background(), set)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))

	require.NoError(t, te.ConsumeTraces(ctx, traces(8, "fills"))) // one batch of 4, spooled
	require.Eventually(t, func() bool { used, _, _ := exp.rec.Stats(); return used > 0 }, 10*time.Second, 5*time.Millisecond)
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
	mem := storetest.NewMemory()
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
	mem := storetest.NewMemory()
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
		if auditspan.IsAudit(spans.At(i)) {
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
	mem := storetest.NewMemory()
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
	te := newSpooledExporterOffline(t, storetest.NewMemory(), t.TempDir(), errOutage)
	ctx := context.Background()
	err := te.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to start rather than fork the chain")
	assert.ErrorIs(t, err, store.ErrUnavailable)
	require.NoError(t, te.Shutdown(ctx))
}

// TestFlippedLogBytesAreRefusedOrRecovered flips bytes of the write-ahead
// log left by a crash, in an older segment and in the newest, one at a
// time: every start either recovers every acknowledged entry into the
// trail or refuses, naming the file and offset, and leaves the log
// byte-identical. A start costs a spare segment's fsync, so this flips
// every third byte (all lanes of the header, payload and mark alike);
// internal/wal's TestFaultInjection flips every byte.
func TestFlippedLogBytesAreRefusedOrRecovered(t *testing.T) {
	ctx := context.Background()
	pristine := t.TempDir()
	want := writeLog(t, pristine, 4)
	// Keep only what was written of each segment (the rest is the zeros of
	// preallocated space).
	segs, err := wal.Recover(pristine, "collector-1")
	require.NoError(t, err)
	require.Len(t, segs, 2)
	files := map[string][]byte{}
	for _, s := range segs {
		data, err := os.ReadFile(filepath.Join(pristine, s.Name))
		require.NoError(t, err)
		files[s.Name] = data[:s.ValidBytes]
	}

	cfg := testConfig(t)
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	const stride = 3
	refused, flipped := 0, 0
	for name, orig := range files {
		for i := 0; i < len(orig); i += stride {
			flipped++
			require.NoError(t, os.RemoveAll(cfg.Spool.Directory))
			require.NoError(t, os.MkdirAll(walDir, 0o750))
			for n, data := range files {
				if n == name {
					data = append([]byte{}, data...)
					data[i] ^= 0x01
				}
				require.NoError(t, os.WriteFile(filepath.Join(walDir, n), data, 0o640))
			}
			before := readDir(t, walDir)
			mem := storetest.NewMemory()
			_, te := newTestExporter(t, cfg, mem)
			err := te.Start(ctx, componenttest.NewNopHost())
			if err == nil {
				require.NoError(t, te.Shutdown(ctx))
				got := readTrail(t, mem, "collector-1")
				require.Len(t, got, len(want), "byte %d of %s: started, so every entry is recovered", i, name)
				continue
			}
			refused++
			require.ErrorContains(t, err, fmt.Sprintf("%s is corrupt at byte offset", filepath.Join(walDir, name)), "byte %d", i)
			require.ErrorContains(t, err, "nothing was changed on disk")
			require.NoError(t, te.Shutdown(ctx))
			require.Equal(t, before, readDir(t, walDir), "byte %d of %s: the refused log is left byte-identical", i, name)
		}
	}
	assert.Equal(t, flipped, refused, "a flip anywhere in the records is refused")
}

// writeLog writes n chained entries of chain collector-1 to a write-ahead
// log in dir, seq 0 and 1 in a segment of their own and the rest in the
// newest, and returns them.
func writeLog(t *testing.T, dir string, n int) []entry.Entry {
	t.Helper()
	c := chain.New("collector-1", chain.Genesis())
	l, err := wal.Open(dir, "collector-1", 0)
	require.NoError(t, err)
	es := make([]entry.Entry, n)
	for i := range es {
		es[i] = entry.Entry{
			TimeUnixNano: t0.UnixNano(), ExecutionID: fmt.Sprintf("exec-%d", i), TraceID: strings.Repeat("01", 16),
			SpanID: strings.Repeat("02", 8), ActionType: "write", TargetSystem: "CRM", Result: "ok", StatusCode: "Unset", Attributes: "{}",
		}
		c.Append(&es[i])
		l.Append(&es[i])
		if i == 1 {
			_, _, err = l.Rotate(2)
			require.NoError(t, err)
		}
	}
	require.NoError(t, l.Close())
	return es
}

// readDir returns every file of dir with its contents.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]string{}
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		require.NoError(t, err)
		out[de.Name()] = string(data)
	}
	return out
}

// TestOneWriterPerSpool: a second exporter on a spool directory in use
// refuses to start, naming the directory and the holder; once the first
// shuts down, the directory is free again.
func TestOneWriterPerSpool(t *testing.T) {
	mem := storetest.NewMemory()
	cfg := testConfig(t)
	ctx := context.Background()
	_, first := newTestExporter(t, cfg, mem)
	require.NoError(t, first.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, first.ConsumeTraces(ctx, traces(4, "first")))

	_, second := newTestExporter(t, cfg, mem)
	err := second.Start(ctx, componenttest.NewNopHost())
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("spool: \"directory\" %q is in use by another collector (held by pid %d on host ", cfg.Spool.Directory, os.Getpid()))
	require.NoError(t, second.Shutdown(ctx))

	// The first goes on, and loses nothing.
	require.NoError(t, first.ConsumeTraces(ctx, traces(4, "first")))
	require.NoError(t, first.Shutdown(ctx))
	assert.Len(t, readTrail(t, mem, "collector-1"), 4)

	_, third := newTestExporter(t, cfg, mem)
	require.NoError(t, third.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, third.Shutdown(ctx))
}

// TestAcceptedLossIsRecordedInTheTrail: past a corrupt record, the collector
// goes on only once the operator accepts the loss of exactly that record;
// the trail then holds an entry that records the loss, and every entry that
// could still be read, renumbered after it.
func TestAcceptedLossIsRecordedInTheTrail(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	want := writeLog(t, walDir, 6)

	// Seq 3, the second record of the newest segment, rots.
	segs, err := wal.Recover(walDir, "collector-1")
	require.NoError(t, err)
	name := wal.SegmentName("collector-1", 2)
	path := filepath.Join(walDir, name)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	rec := (int(segs[1].ValidBytes) - 8) / 4 // after the magic, 4 records of equal size
	data[8+rec+40] ^= 0x10
	require.NoError(t, os.WriteFile(path, data, 0o640))

	mem := storetest.NewMemory()
	_, te := newTestExporter(t, cfg, mem)
	err = te.Start(ctx, componenttest.NewNopHost())
	require.ErrorContains(t, err, fmt.Sprintf("%s is corrupt at byte offset %d: record payload checksum mismatch", path, 8+rec))
	require.ErrorContains(t, err, "auditctl wal accept-loss "+cfg.Spool.Directory)
	require.NoError(t, te.Shutdown(ctx))

	accepted := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	acc := wal.Acceptance{Segment: name, Offset: int64(8 + rec + 1), Corruption: "x", By: "ops@example.com", Reason: "disk replaced", At: accepted}
	require.NoError(t, wal.WriteAcceptance(walDir, "collector-1", acc))
	_, te = newTestExporter(t, cfg, mem)
	err = te.Start(ctx, componenttest.NewNopHost())
	require.ErrorContains(t, err, "accepts a loss in "+name+fmt.Sprintf(" at byte offset %d (and 0 more), not the damage found now", 8+rec+1))
	require.NoError(t, te.Shutdown(ctx))
	require.NoError(t, os.Remove(filepath.Join(walDir, wal.AcceptanceName("collector-1"))))

	acc.Offset = int64(8 + rec)
	require.NoError(t, wal.WriteAcceptance(walDir, "collector-1", acc))
	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "after"))) // 1 entry
	require.NoError(t, te.Shutdown(ctx))

	got := readTrail(t, mem, "collector-1") // one intact chain
	require.Len(t, got, 7)
	for i, seq := range []int{0, 1, 2} {
		assert.Equal(t, want[seq], got[i], "seq %d is kept as it was", seq)
	}
	loss := got[3]
	assert.Equal(t, entry.ActionLoss, loss.ActionType)
	assert.Equal(t, "lost seq 3; seq 4 to 5 renumbered 4 to 5", loss.Result)
	assert.Equal(t, "ops@example.com", *loss.Approver)
	assert.Equal(t, "ops@example.com", *loss.Principal)
	assert.Nil(t, loss.Sender, "the collector's own entry: no sender (the approver names the operator)")
	assert.Equal(t, "disk replaced", *loss.Reasoning)
	assert.Equal(t, fmt.Sprintf("%s@%d", name, 8+rec), loss.TargetResource)
	assert.Equal(t, accepted.UnixNano(), loss.TimeUnixNano)
	require.NotNil(t, loss.EndTimeUnixNano, "the loss entry is of version 2")
	assert.Equal(t, accepted.UnixNano(), *loss.EndTimeUnixNano, "it ends when it starts")
	assert.Contains(t, loss.Attributes, `"agentaudit.loss.corruption":"record payload checksum mismatch"`)
	assert.Nil(t, loss.Validation)
	for i, seq := range []int{4, 5} {
		r := got[4+i]
		assert.Equal(t, want[seq].ExecutionID, r.ExecutionID, "seq %d keeps what it recorded", seq)
		assert.Equal(t, int64(seq), r.Seq)
		assert.NotEqual(t, want[seq].EntryHash, r.EntryHash, "re-chained after the loss entry")
	}
	assert.Equal(t, "after", got[6].ExecutionID)

	// The damaged segment and the acceptance are kept, out of the log.
	kept, err := filepath.Glob(filepath.Join(walDir, wal.LostDir, "*", "*"))
	require.NoError(t, err)
	var names []string
	for _, k := range kept {
		names = append(names, filepath.Base(k))
	}
	assert.ElementsMatch(t, []string{name, wal.AcceptanceName("collector-1")}, names)
	damaged, err := os.ReadFile(filepath.Join(filepath.Dir(kept[0]), name))
	require.NoError(t, err)
	assert.Equal(t, data, damaged, "kept byte for byte")
}

// TestVersion1LogIsSealed: entries an older collector appended to the
// write-ahead log, without end times (canonical encoding version 1), are
// recovered and sealed as they were chained, end_time_unix_nano NULL, into
// batch files of format version 2, and the chain goes on with entries of
// version 2: one chain, each entry's hash that of its own version.
func TestVersion1LogIsSealed(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	want := writeLog(t, walDir, 3)
	for _, e := range want {
		require.Nil(t, e.EndTimeUnixNano)
		require.Contains(t, string(chain.AppendCanonical(nil, &e)), "19:agentaudit.entry.v1")
	}

	mem := storetest.NewMemory()
	_, te := newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(4, "after"))) // 2 entries
	require.NoError(t, te.Shutdown(ctx))

	got := readTrail(t, mem, "collector-1") // hashes and links checked
	require.Len(t, got, 5)
	assert.Equal(t, want, got[:3], "sealed exactly as chained")
	for _, e := range got[3:] {
		require.NotNil(t, e.EndTimeUnixNano, "seq %d", e.Seq)
		assert.Equal(t, e.TimeUnixNano+int64(500*time.Millisecond), *e.EndTimeUnixNano, "seq %d", e.Seq)
		assert.Nil(t, e.Validation, "seq %d", e.Seq)
	}
	keys, err := mem.List(ctx, "dt=")
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	for _, k := range keys {
		data, err := mem.Get(ctx, k)
		require.NoError(t, err)
		f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		assert.Equal(t, parquetfile.FormatVersion, f.FormatVersion, k)
		assert.Empty(t, verify.CheckFile(k, data), "%s verifies on its own", k)
	}
}

// TestStartRemovesTemporaryFiles: the temporary files of a Put that a
// crash interrupted are removed at start, for this chain's objects only (a
// trail directory may be shared).
func TestStartRemovesTemporaryFiles(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	trail, err := store.NewFS(t.TempDir())
	require.NoError(t, err)
	day := filepath.Join(trail.Dir(), "dt=2026-03-09")
	cps := filepath.Join(trail.Dir(), "checkpoints", "collector-1")
	keys := filepath.Join(trail.Dir(), "keys")
	for _, d := range []string{day, cps, keys} {
		require.NoError(t, os.MkdirAll(d, 0o750))
	}
	ours := []string{
		filepath.Join(day, ".collector-1-00000000000000000000.parquet.tmp-1"),
		filepath.Join(cps, ".00000000000000000004.checkpoint.tmp-2"),
		filepath.Join(keys, ".collector-1-33dc3218.vkey.tmp-3"),
	}
	theirs := []string{
		filepath.Join(day, ".collector-2-00000000000000000000.parquet.tmp-1"),
		filepath.Join(keys, ".collector-1-b-33dc3218.vkey.tmp-3"), // chain "collector-1-b"
	}
	for _, p := range append(append([]string{}, ours...), theirs...) {
		require.NoError(t, os.WriteFile(p, []byte("partial"), 0o440))
	}
	_, te := newTestExporter(t, cfg, trail)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	for _, p := range ours {
		assert.NoFileExists(t, p)
	}
	for _, p := range theirs {
		assert.FileExists(t, p)
	}
}

// TestCorruptSegmentOfStoredEntriesIsRetired: a segment that rotted after
// its batch was stored (a crash came between the two) holds nothing the
// trail lacks: the start checks what it can read against the store, keeps
// the file under lost/ and goes on.
func TestCorruptSegmentOfStoredEntriesIsRetired(t *testing.T) {
	mem := storetest.NewMemory()
	cfg := testConfig(t)
	ctx := context.Background()
	exp, te := newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(6, "stored"))) // the start marker and 3 entries, one batch
	require.Eventually(t, func() bool { return exp.tel.queued.Load() == 0 }, 10*time.Second, 5*time.Millisecond)
	crash(t, exp)

	// The stored batch's segment, left behind, then rotted.
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	stored := readTrailAll(t, mem, "collector-1")
	require.Len(t, stored, 4)
	seg := filepath.Join(walDir, wal.SegmentName("collector-1", 0))
	_ = os.Remove(seg) // if the writer had not removed it yet
	l, err := wal.Open(walDir, "collector-1", 0)
	require.NoError(t, err)
	for i := range stored {
		l.Append(&stored[i])
	}
	require.NoError(t, l.Close())
	data, err := os.ReadFile(seg)
	require.NoError(t, err)
	data[len(data)/2] ^= 0x08
	require.NoError(t, os.WriteFile(seg, data, 0o640))
	segs, err := wal.Recover(walDir, "collector-1")
	require.NoError(t, err)
	require.NotNil(t, segs[0].Corrupt)
	require.Equal(t, int64(4), segs[1].FirstSeq, "the open segment after it starts at the head")

	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "after")))
	require.NoError(t, te.Shutdown(ctx))
	assert.Len(t, readTrail(t, mem, "collector-1"), 4)
	assert.NoFileExists(t, seg)
	kept, err := os.ReadFile(filepath.Join(walDir, wal.LostDir, wal.SegmentName("collector-1", 0)))
	require.NoError(t, err)
	assert.Equal(t, data, kept)
}

// TestAcceptedLossCoversEveryDamage: an acceptance names every corrupt
// segment; the salvage then reads past each, and the loss entry lists every
// seq lost.
func TestAcceptedLossCoversEveryDamage(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	want := writeLog(t, walDir, 6) // seq 0 and 1, then 2 to 5
	segs, err := wal.Recover(walDir, "collector-1")
	require.NoError(t, err)
	// Seq 1 (the older segment's second record) and seq 4 (the newest's
	// third) rot.
	rot := func(name string, recs, i int) int64 {
		path := filepath.Join(walDir, name)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		var valid int64
		for _, s := range segs {
			if s.Name == name {
				valid = s.ValidBytes
			}
		}
		rec := (int(valid) - 8) / recs
		data[8+i*rec+40] ^= 0x10
		require.NoError(t, os.WriteFile(path, data, 0o640))
		return int64(8 + i*rec)
	}
	older, newest := wal.SegmentName("collector-1", 0), wal.SegmentName("collector-1", 2)
	acc := wal.Acceptance{Segment: older, Offset: rot(older, 2, 1), By: "ops", Reason: "two bad sectors", At: t0}
	also := wal.Damage{Segment: newest, Offset: rot(newest, 4, 2)}

	require.NoError(t, wal.WriteAcceptance(walDir, "collector-1", acc))
	mem := storetest.NewMemory()
	_, te := newTestExporter(t, cfg, mem)
	err = te.Start(ctx, componenttest.NewNopHost())
	require.ErrorContains(t, err, "(and 0 more), not the damage found now", "an acceptance of the first damage only covers nothing")
	require.NoError(t, te.Shutdown(ctx))
	require.NoError(t, os.Remove(filepath.Join(walDir, wal.AcceptanceName("collector-1"))))

	acc.Also = []wal.Damage{also}
	require.NoError(t, wal.WriteAcceptance(walDir, "collector-1", acc))
	_, te = newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	got := readTrail(t, mem, "collector-1")
	require.Len(t, got, 5)
	assert.Equal(t, want[0], got[0])
	assert.Equal(t, entry.ActionLoss, got[1].ActionType)
	assert.Equal(t, "lost seq 1, 4; seq 2 to 5 renumbered 2 to 4", got[1].Result)
	for i, seq := range []int{2, 3, 5} {
		assert.Equal(t, want[seq].ExecutionID, got[2+i].ExecutionID)
	}
}

// TestAcceptedLossChangesNothingWhenAStartIsRefused: the salvage replaces
// the damaged files only once every other check has passed; a start refused
// for another reason (here a gap before the log) leaves the log, the
// acceptance and all, as it was.
func TestAcceptedLossChangesNothingWhenAStartIsRefused(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	c := chain.New("collector-1", chain.Head{Size: 5, Hash: chain.GenesisHash})
	l, err := wal.Open(walDir, "collector-1", 5)
	require.NoError(t, err)
	for i := range 3 {
		e := entry.Entry{TraceID: "00", SpanID: "00", Attributes: "{}", ExecutionID: fmt.Sprint(i)}
		c.Append(&e)
		l.Append(&e)
	}
	require.NoError(t, l.Close())
	name := wal.SegmentName("collector-1", 5)
	data, err := os.ReadFile(filepath.Join(walDir, name))
	require.NoError(t, err)
	data[len(data)-10] ^= 0x01 // the last record's payload
	require.NoError(t, os.WriteFile(filepath.Join(walDir, name), data, 0o640))
	segs, err := wal.Recover(walDir, "collector-1")
	require.NoError(t, err)
	require.NotNil(t, segs[0].Corrupt)
	require.NoError(t, wal.WriteAcceptance(walDir, "collector-1", wal.Acceptance{Segment: name, Offset: segs[0].Corrupt.Offset, By: "ops", Reason: "r", At: t0}))
	before := readDir(t, walDir)

	_, te := newTestExporter(t, cfg, storetest.NewMemory())
	err = te.Start(ctx, componenttest.NewNopHost())
	require.ErrorContains(t, err, "entries 0 to 4 are missing")
	require.NoError(t, te.Shutdown(ctx))
	assert.Equal(t, before, readDir(t, walDir), "nothing moved, the acceptance is still there")
}

// TestAcceptedLossOfTheLastRecord: with nothing readable after the damage,
// the loss entry says what is lost without claiming more.
func TestAcceptedLossOfTheLastRecord(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	want := writeLog(t, walDir, 6)
	name := wal.SegmentName("collector-1", 2)
	segs, err := wal.Recover(walDir, "collector-1")
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(walDir, name))
	require.NoError(t, err)
	data[segs[1].ValidBytes-10] ^= 0x01 // seq 5's payload
	require.NoError(t, os.WriteFile(filepath.Join(walDir, name), data, 0o640))
	segs, err = wal.Recover(walDir, "collector-1")
	require.NoError(t, err)
	require.NotNil(t, segs[1].Corrupt, "a flipped bit in the newest record is corruption, not a torn tail")
	require.NoError(t, wal.WriteAcceptance(walDir, "collector-1", wal.Acceptance{Segment: name, Offset: segs[1].Corrupt.Offset, By: "ops", Reason: "r", At: t0}))

	mem := storetest.NewMemory()
	_, te := newTestExporter(t, cfg, mem)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	got := readTrail(t, mem, "collector-1")
	require.Len(t, got, 6)
	assert.Equal(t, want[:5], got[:5])
	assert.Equal(t, entry.ActionLoss, got[5].ActionType)
	assert.Equal(t, "lost whatever the log held from seq 5 on", got[5].Result)
}
