package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 9, 14, 23, 7, 0, time.UTC)

// counts is a Metrics that counts.
type counts struct {
	head                  atomic.Int64
	queued, sealed, saved atomic.Int64
	errs                  atomic.Int64
}

func (c *counts) Head(h chain.Head)                                    { c.head.Store(h.Size - 1) }
func (c *counts) Queued(n int64)                                       { c.queued.Add(n) }
func (c *counts) Sealed(n int)                                         { c.sealed.Add(int64(n)) }
func (c *counts) Stored(n int)                                         { c.saved.Add(int64(n)) }
func (c *counts) StoreError(bool)                                      { c.errs.Add(1) }
func newCounts() *counts                                               { c := new(counts); c.head.Store(-1); return c }
func lossNotExpected(wal.Segment, *wal.Acceptance, string) entry.Entry { panic("no loss expected") }

// entries are n entries of run id, not yet chained.
func entries(n int, id string) []entry.Entry {
	es := make([]entry.Entry, n)
	for i := range es {
		end := t0.UnixNano() + int64(i)
		es[i] = entry.Entry{
			TimeUnixNano: t0.UnixNano() + int64(i), EndTimeUnixNano: &end, ExecutionID: id,
			TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
			ActionType: "write", TargetSystem: "CRM", TargetResource: fmt.Sprintf("Contact/%d", i),
			Result: "ok", StatusCode: "Ok", Attributes: "{}",
		}
	}
	return es
}

type fixture struct {
	dir   string
	trail *store.FS
	m     *counts

	cpMu  sync.Mutex
	cps   []int64  // the sizes Config.Checkpointed was told, in order
	notes [][]byte // and the notes
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	trail, err := store.NewFS(filepath.Join(dir, "trail"))
	require.NoError(t, err)
	return &fixture{dir: dir, trail: trail, m: newCounts()}
}

func (f *fixture) start(t *testing.T) *Recorder {
	t.Helper()
	r := New(Config{
		ChainID: "c1", SpoolDir: filepath.Join(f.dir, "spool"), StoreID: "file:test",
		Batch:     batch.Limits{MaxEntries: 4, MaxBytes: 1 << 20, MaxAge: time.Hour},
		LossEntry: lossNotExpected,
		Now:       func() time.Time { return t0 },
		Checkpointed: func(size int64, note []byte) {
			f.cpMu.Lock()
			f.cps, f.notes = append(f.cps, size), append(f.notes, note)
			f.cpMu.Unlock()
		},
	}, zap.NewNop(), f.m)
	require.NoError(t, r.Start(context.Background(), func(context.Context) (Stores, error) {
		return Stores{WALDir: filepath.Join(f.dir, "spool", "wal"), Trail: f.trail}, nil
	}))
	return r
}

// trail reads every entry of the trail's batches, in key order.
func (f *fixture) trailEntries(t *testing.T) []entry.Entry {
	t.Helper()
	ctx := context.Background()
	keys, err := f.trail.List(ctx, "")
	require.NoError(t, err)
	var out []entry.Entry
	for _, k := range keys {
		if !store.IsBatchKey(k) {
			continue
		}
		data, err := f.trail.Get(ctx, k)
		require.NoError(t, err)
		es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		out = append(out, es...)
	}
	return out
}

// TestAppendSealsAndStores: appended entries are chained, sealed by count
// and at shutdown, and stored with their checkpoints; the metrics count
// them; nothing is taken after shutdown.
func TestAppendSealsAndStores(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	assert.Equal(t, FirstStart, r.Previous())
	es := entries(6, "run-1")
	require.NoError(t, r.Append(es))
	assert.Equal(t, int64(5), es[5].Seq, "chained in order")
	assert.Equal(t, es[4].EntryHash, es[5].PrevHash)
	assert.Equal(t, int64(5), f.m.head.Load())
	require.NoError(t, r.Shutdown(context.Background()))
	assert.ErrorIs(t, r.Append(entries(1, "late")), ErrShutdown)

	got := f.trailEntries(t)
	require.Len(t, got, 6)
	for i := range got {
		assert.Equal(t, es[i].EntryHash, got[i].EntryHash, "seq %d", i)
	}
	assert.Equal(t, int64(6), f.m.sealed.Load())
	assert.Equal(t, int64(6), f.m.saved.Load())
	assert.Zero(t, f.m.queued.Load(), "every batch stored")
	cps, err := f.trail.List(context.Background(), store.CheckpointsPrefix)
	require.NoError(t, err)
	assert.Len(t, cps, 2, "one checkpoint per batch")
	f.cpMu.Lock()
	assert.Equal(t, []int64{4, 6}, f.cps, "each checkpoint is told, with the size it covers")
	for i, k := range cps {
		stored, err := f.trail.Get(context.Background(), k)
		require.NoError(t, err)
		assert.Equal(t, stored, f.notes[i], "the note told is the one stored")
	}
	f.cpMu.Unlock()

	r = f.start(t)
	assert.Equal(t, CleanStop, r.Previous(), "the run before shut down cleanly")
	r.Abandon()
	r = f.start(t)
	assert.Equal(t, UncleanStop, r.Previous(), "the run before was killed")
	require.NoError(t, r.Shutdown(context.Background()))
}

// TestAbandonedRecorderRecovers: what a killed recorder acknowledged is
// sealed from the write-ahead log at the next start, and the chain goes on.
func TestAbandonedRecorderRecovers(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	first := entries(6, "before") // a batch of 4 sealed, 2 open
	require.NoError(t, r.Append(first))
	r.Abandon()

	r = f.start(t)
	assert.Equal(t, UncleanStop, r.Previous())
	more := entries(1, "after")
	require.NoError(t, r.Append(more))
	assert.Equal(t, int64(6), more[0].Seq)
	assert.Equal(t, first[5].EntryHash, more[0].PrevHash)
	require.NoError(t, r.Shutdown(context.Background()))
	got := f.trailEntries(t)
	require.Len(t, got, 7)
	assert.Equal(t, "after", got[6].ExecutionID)
}

// TestStartRefusesAnOfflineStoreWithoutLocalState: without the store or a
// record of the chain, starting would fork it.
func TestStartRefusesAnOfflineStoreWithoutLocalState(t *testing.T) {
	f := newFixture(t)
	r := New(Config{ChainID: "c1", SpoolDir: filepath.Join(f.dir, "spool"), StoreID: "s3:x", Now: func() time.Time { return t0 }},
		zap.NewNop(), f.m)
	spool, err := store.NewFS(filepath.Join(f.dir, "spool", "batches"))
	require.NoError(t, err)
	outage := fmt.Errorf("bucket: %w", store.ErrUnavailable)
	err = r.Start(context.Background(), func(context.Context) (Stores, error) {
		return Stores{WALDir: filepath.Join(f.dir, "spool", "wal"), Trail: f.trail, Spool: spool, Offline: outage}, nil
	})
	require.ErrorIs(t, err, store.ErrUnavailable)
	assert.ErrorContains(t, err, "refusing to start rather than fork the chain")
	require.NoError(t, r.Shutdown(context.Background()), "a recorder that did not start shuts down")
	var refused *RefusedError
	assert.False(t, errors.As(r.Append(entries(1, "x")), &refused), "not started: shut down, not refused")
}
