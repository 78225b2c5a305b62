package recorder

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// checkTree checks every checkpoint stored for chain c1 against the
// trail: format 2, its root that of the RFC 6962 tree of the first size
// entry hashes (internal/merkle, computed apart from the recorder's
// tree), the stored tiles giving the same root at that size, and a
// consistency proof from each checkpoint to the next that checks.
func (f *fixture) checkTree(t *testing.T, wantSizes []int64) {
	t.Helper()
	ctx := context.Background()
	var raw [][]byte
	for _, e := range f.trailEntries(t) {
		h, err := hex.DecodeString(e.EntryHash)
		require.NoError(t, err)
		raw = append(raw, h)
	}
	keys, err := f.trail.List(ctx, store.CheckpointsPrefix)
	require.NoError(t, err)
	r, err := tlogtree.NewReader("c1", func(key string) ([]byte, error) { return f.trail.Get(ctx, key) })
	require.NoError(t, err)
	var sizes []int64
	var prev checkpoint.Checkpoint
	for _, k := range keys {
		if !store.IsCheckpointKey(k) {
			continue
		}
		msg, err := f.trail.Get(ctx, k)
		require.NoError(t, err)
		text, _, _ := bytes.Cut(msg, []byte("\n\n"))
		c, err := checkpoint.Parse(string(text) + "\n")
		require.NoError(t, err, k)
		require.Equal(t, 2, c.Format(), k)
		sizes = append(sizes, c.Size)
		assert.Equal(t, hex.EncodeToString(merkle.Root(raw[:c.Size])), c.Root, "%s: the root of the chain's first %d entries", k, c.Size)
		root := hashOf(t, c.Root)
		got, err := r.Root(c.Size)
		require.NoError(t, err, "%s: the tiles give a root", k)
		assert.Equal(t, root, got, "%s: the tiles give the checkpoint's root", k)
		if prev.Size > 0 {
			p, err := r.ConsistencyProof(prev.Size, c.Size, root)
			require.NoError(t, err)
			assert.NoError(t, tlogtree.CheckConsistency(prev.Size, hashOf(t, prev.Root), c.Size, root, p),
				"%s extends the checkpoint at %d", k, prev.Size)
		}
		prev = c
	}
	assert.Equal(t, wantSizes, sizes)
}

func hashOf(t *testing.T, h string) tlog.Hash {
	b, err := hex.DecodeString(h)
	require.NoError(t, err)
	require.Len(t, b, tlog.HashSize)
	return tlog.Hash(b)
}

// TestTreeCheckpoints: every checkpoint is of format 2, over one tree of
// the whole chain, whose tiles are beside the trail; a restart continues
// the tree from its local record.
func TestTreeCheckpoints(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	require.NoError(t, r.Append(entries(10, "run-1"))) // batches of 4: 4, 8, then 10 at shutdown
	require.NoError(t, r.Shutdown(context.Background()))
	f.checkTree(t, []int64{4, 8, 10})
	_, err := os.Stat(filepath.Join(f.dir, "spool", "tree-c1"))
	require.NoError(t, err, "the tree is recorded locally")

	r = f.start(t)
	require.NoError(t, r.Append(entries(3, "run-2")))
	require.NoError(t, r.Shutdown(context.Background()))
	f.checkTree(t, []int64{4, 8, 10, 13})
}

// TestTreeRebuilt: without the local record (lost, or a chain begun before
// the tree existed: no tiles either), the tree is rebuilt from the batch
// files at start, its tiles written, and the chain's checkpoints go on
// over the whole chain. A record that disagrees with the chain is not
// used.
func TestTreeRebuilt(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	require.NoError(t, r.Append(entries(9, "run-1")))
	require.NoError(t, r.Shutdown(context.Background()))

	// As a trail of before: no tiles, no record.
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "trail", "tiles")))
	require.NoError(t, os.Remove(filepath.Join(f.dir, "spool", "tree-c1")))
	r = f.start(t)
	require.NoError(t, r.Append(entries(4, "run-2")))
	require.NoError(t, r.Shutdown(context.Background()))
	f.checkTree(t, []int64{4, 8, 9, 13})

	// A record of another history at the same size.
	rec := treeRecord{filepath.Join(f.dir, "spool"), "c1", "file:test"}
	other, err := tlogtree.NewWriter("c1")
	require.NoError(t, err)
	fake := make([][32]byte, 13)
	for i := range fake {
		fake[i][0] = byte(i + 1)
	}
	_, _, err = other.Append(fake)
	require.NoError(t, err)
	require.NoError(t, rec.write(other, hex.EncodeToString(fake[12][:])))
	r = f.start(t)
	require.NoError(t, r.Append(entries(2, "run-3")))
	require.NoError(t, r.Shutdown(context.Background()))
	f.checkTree(t, []int64{4, 8, 9, 13, 15})
}

// TestSortUploadsTiles: a spooled tile goes after the batch that holds its
// last leaf and before that batch's checkpoint, a cosignature and a
// timestamp after it (tiles that end at the same
// leaf keep their order).
func TestSortUploadsTiles(t *testing.T) {
	tile := func(L int, N int64, W int) string {
		return store.TileKey("c1", tlog.Tile{H: store.TileHeight, L: L, N: N, W: W})
	}
	b0 := store.BatchKey("c1", 0, t0)
	b300 := store.BatchKey("c1", 300, t0)
	keys := []string{
		store.TimestampKey("c1", 300), store.CosignatureKey("c1", 300, "w1"),
		store.CheckpointKey("c1", 300), store.CheckpointKey("c1", 310), b300, b0,
		tile(0, 1, 54), tile(0, 0, 256), tile(1, 0, 1), tile(0, 1, 44),
	}
	sortUploads(keys)
	assert.Equal(t, []string{
		b0, tile(0, 0, 256), tile(1, 0, 1), tile(0, 1, 44), store.CheckpointKey("c1", 300),
		store.TimestampKey("c1", 300), store.CosignatureKey("c1", 300, "w1"), b300, tile(0, 1, 54), store.CheckpointKey("c1", 310),
	}, keys)
}

// spoolSetup is how startSpooled starts a recorder: the trail behind the
// spool (f.trail when nil), whether it was unreachable at start, the
// spool's limit (1 GiB when 0) and the Checkpointed hook.
type spoolSetup struct {
	trail        store.Store
	offline      error
	maxBytes     int64
	checkpointed func(size int64, note []byte)
}

// startSpooled starts a recorder of chain c1 whose trail is remote (a
// spool in front of it).
func (f *fixture) startSpooled(t *testing.T, o spoolSetup) (*Recorder, error) {
	t.Helper()
	spool, err := store.NewFS(filepath.Join(f.dir, "spool", "batches"))
	require.NoError(t, err)
	trail := o.trail
	if trail == nil {
		trail = f.trail
	}
	r := New(Config{
		ChainID: "c1", SpoolDir: filepath.Join(f.dir, "spool"), StoreID: "s3:test", SpoolMaxBytes: cmp.Or(o.maxBytes, 1<<30),
		Batch:        batch.Limits{MaxEntries: 4, MaxBytes: 1 << 20, MaxAge: time.Hour},
		LossEntry:    lossNotExpected,
		Now:          func() time.Time { return t0 },
		Checkpointed: o.checkpointed,
	}, zap.NewNop(), f.m)
	return r, r.Start(context.Background(), func(context.Context) (Stores, error) {
		return Stores{WALDir: filepath.Join(f.dir, "spool", "wal"), Trail: trail, Spool: spool, Offline: o.offline}, nil
	})
}

// TestTreeOfflineStart: a collector restarted while the remote store is
// unreachable continues the chain's tree from its local record; without
// the record it cannot rebuild the tree and refuses to start, saying why.
func TestTreeOfflineStart(t *testing.T) {
	f := newFixture(t)
	r, err := f.startSpooled(t, spoolSetup{})
	require.NoError(t, err)
	require.NoError(t, r.Append(entries(6, "run-1")))
	require.NoError(t, r.Shutdown(context.Background()))

	outage := fmt.Errorf("bucket: %w", store.ErrUnavailable)
	r, err = f.startSpooled(t, spoolSetup{offline: outage})
	require.NoError(t, err, "resumes from the head marker and the tree record")
	require.NoError(t, r.Append(entries(3, "run-2")))
	require.NoError(t, r.Shutdown(context.Background()))
	f.checkTree(t, []int64{4, 6, 9})

	require.NoError(t, os.Remove(filepath.Join(f.dir, "spool", "tree-c1")))
	r, err = f.startSpooled(t, spoolSetup{offline: outage})
	require.ErrorContains(t, err, "rebuilding the tree of chain \"c1\" up to seq 8")
	assert.ErrorContains(t, err, "the store is unavailable")
	require.NoError(t, r.Shutdown(context.Background()))
}

// gatedStore fails every Put until opened, and records the keys it took,
// in order.
type gatedStore struct {
	store.Store
	mu   sync.Mutex
	open bool
	puts []string
}

// openUp lets every Put through from now on.
func (g *gatedStore) openUp() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

func (g *gatedStore) Put(ctx context.Context, key string, data []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return fmt.Errorf("gated: %w", store.ErrUnavailable)
	}
	g.puts = append(g.puts, key)
	return g.Store.Put(ctx, key, data)
}

// TestPutBesideFollowsItsCheckpoint: with a remote store, an object put
// beside a checkpoint still waiting in the spool reaches the store after
// that checkpoint, never before.
func TestPutBesideFollowsItsCheckpoint(t *testing.T) {
	f := newFixture(t)
	gate := &gatedStore{Store: f.trail}
	told := make(chan int64, 4)
	r, err := f.startSpooled(t, spoolSetup{trail: gate, checkpointed: func(size int64, _ []byte) { told <- size }})
	require.NoError(t, err)
	require.NoError(t, r.Append(entries(4, "run-1")))
	cp := store.CheckpointKey("c1", 4)
	select {
	case size := <-told: // as a witness or timestamp client learns of it
		require.Equal(t, int64(4), size)
	case <-time.After(10 * time.Second):
		t.Fatal("the checkpoint was not told")
	}
	cosig := store.CosignatureKey("c1", 4, "w1")
	require.NoError(t, r.PutBeside(context.Background(), cosig, []byte("— w1 AAAA\n")))
	got, err := r.Get(context.Background(), cosig)
	require.NoError(t, err)
	assert.Equal(t, "— w1 AAAA\n", string(got), "readable at once, from the spool")
	_, err = f.trail.Get(context.Background(), cosig)
	assert.ErrorIs(t, err, store.ErrNotFound, "not in the store while the checkpoint is not")

	gate.openUp()
	require.NoError(t, r.Shutdown(context.Background()))
	gate.mu.Lock()
	defer gate.mu.Unlock()
	at := func(key string) int { return slices.Index(gate.puts, key) }
	require.GreaterOrEqual(t, at(cp), 0, "the checkpoint was uploaded")
	assert.Greater(t, at(cosig), at(cp), "the cosignature after its checkpoint: %v", gate.puts)
}

// TestAppendOwnDespiteABacklog: while a full spool refuses senders'
// entries, the collector's own (its markers) are taken, chained after them.
func TestAppendOwnDespiteABacklog(t *testing.T) {
	f := newFixture(t)
	gate := &gatedStore{Store: f.trail}
	r, err := f.startSpooled(t, spoolSetup{trail: gate, maxBytes: 1})
	require.NoError(t, err)
	require.NoError(t, r.Append(entries(4, "run-1")))
	require.Eventually(t, func() bool { used, _, _ := r.Stats(); return used > 1 }, 10*time.Second, 5*time.Millisecond,
		"the batch waits in the spool, which is full")
	var refused *RefusedError
	require.ErrorAs(t, r.Append(entries(1, "refused")), &refused)
	own := entries(1, "marker")
	require.NoError(t, r.AppendOwn(own))
	assert.Equal(t, int64(4), own[0].Seq, "chained after the batch")

	gate.openUp()
	require.NoError(t, r.Shutdown(context.Background()))
	got := f.trailEntries(t)
	require.Len(t, got, 5)
	assert.Equal(t, "marker", got[4].ExecutionID)
}

// TestPutBesideAfterShutdown: once a clean shutdown has uploaded
// everything, an object put beside the last checkpoint (a timestamp got at
// shutdown) goes to the store at once, not to a spool no one uploads.
func TestPutBesideAfterShutdown(t *testing.T) {
	f := newFixture(t)
	r, err := f.startSpooled(t, spoolSetup{})
	require.NoError(t, err)
	require.NoError(t, r.Append(entries(3, "run-1")))
	require.NoError(t, r.Shutdown(context.Background()))
	key := store.TimestampKey("c1", 3)
	require.NoError(t, r.PutBeside(context.Background(), key, []byte("token")))
	got, err := f.trail.Get(context.Background(), key)
	require.NoError(t, err, "in the store")
	assert.Equal(t, "token", string(got))
	spooled, err := os.ReadDir(filepath.Join(f.dir, "spool", "batches", "checkpoints", "c1"))
	if err == nil {
		assert.Empty(t, spooled, "nothing left in the spool")
	}
}

// TestUploadConflictBeside: a cosignature the store already holds with
// other bytes (another of the same checkpoint) does not hold up the
// batches queued behind it.
func TestUploadConflictBeside(t *testing.T) {
	f := newFixture(t)
	cosig := store.CosignatureKey("c1", 4, "w1")
	require.NoError(t, f.trail.Put(context.Background(), cosig, []byte("— w1 BBBB\n")))
	gate := &gatedStore{Store: f.trail}
	told := make(chan int64, 4)
	r, err := f.startSpooled(t, spoolSetup{trail: gate, checkpointed: func(size int64, _ []byte) { told <- size }})
	require.NoError(t, err)
	require.NoError(t, r.Append(entries(4, "run-1")))
	<-told
	require.NoError(t, r.PutBeside(context.Background(), cosig, []byte("— w1 AAAA\n")))
	require.NoError(t, r.Append(entries(4, "run-2")))
	gate.openUp()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.Shutdown(ctx))
	assert.Len(t, f.trailEntries(t), 8, "the batch behind the conflict is uploaded")
	got, err := f.trail.Get(context.Background(), cosig)
	require.NoError(t, err)
	assert.Equal(t, "— w1 BBBB\n", string(got), "the stored one stays")
}
