package recorder

// Sealing: each sealed batch is written, in chain order, as a Parquet file
// from the columns it holds, with its signed checkpoint.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// The sealed batches held in memory before the sealer writes them are
// bounded by their bytes (what they cost) and, loosely, by their number
// (each is a log segment on disk and a file to write at the next start);
// past either bound, new data is refused (retryable). Bounding them by
// number alone would refuse clients after a restart that recovered many
// small batches from the log, while their memory is a fraction of one
// full batch's. 128 MiB is about 20 batches of 10,000 realistic entries,
// 8 of the largest (batch.max_bytes, 16 MiB).
const (
	maxSealBytes   = 128 << 20
	maxSealBatches = 256
)

// pending is a sealed batch not yet written to the spool or the store, with
// the write-ahead log segment that holds its entries until then.
type pending struct {
	b       *batch.Batch
	segment string // "" when no segment is left to remove
	// end is the log position after the segment's last record (wal.Log's
	// Rotate): b is written once the log is durable up to it. Zero for a
	// batch recovered from the log, durable already.
	end   int64
	bytes int // b.Bytes when pushed, counted in the sealer's queue
}

// segmentLog is what the sealer needs of the write-ahead log: its entries
// durable up to a position (or the failure that stopped it), how far it
// was durable, and the removal of a segment whose batch is written.
type segmentLog interface {
	Sync(pos int64) error
	DurableSeq() int64
	Remove(segment string) error
}

// spoolQueue takes the objects the sealer wrote to the spool, in order,
// for the remote store (the delivery).
type spoolQueue interface {
	add(objs ...spooled)
}

// sealer writes sealed batches, one at a time and in chain order, as
// Parquet files with their checkpoints, to the store or, for a remote
// store, to the spool, and then removes their log segments. Its queue is
// its own: the intake pushes to it, in chain order.
type sealer struct {
	target store.Store
	where  string     // "store" or "spool", for the logs
	spool  spoolQueue // takes what is written to the spool; nil without one
	log    segmentLog
	cp     *checkpointer
	head   headMarker // recorded after each batch
	// tree is the chain's tree, extended by each batch (tree.go); treeRec
	// its local record, written after each batch. A tree that failed
	// (a bug) is nil from then on, and checkpoints are of format 1.
	tree    *tlogtree.Writer
	treeRec treeRecord
	retry   *retrier
	metrics Metrics
	logger  *zap.Logger
	now     func() time.Time
	// checkpointed is told each checkpoint written (Config.Checkpointed);
	// may be nil.
	checkpointed func(size int64, note []byte)

	mu     sync.Mutex
	q      []pending // sealed, not yet written to the spool or store
	qBytes int       // the sum of q's bytes
	// maxBytes bounds qBytes (refusal): maxSealBytes, or two full
	// batches where batches are larger.
	maxBytes int
	done     bool // nothing more will be pushed
	wake     chan struct{}
}

// push queues a sealed batch after the others.
func (s *sealer) push(p pending) {
	p.bytes = p.b.Bytes
	s.mu.Lock()
	s.q = append(s.q, p)
	s.qBytes += p.bytes
	s.mu.Unlock()
	s.metrics.Queued(1)
	signal(s.wake)
}

// finish says that nothing more will be pushed: run returns once the queue
// is written.
func (s *sealer) finish() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	signal(s.wake)
}

// refusal refuses new entries while too many sealed batches wait (the disk
// is slow or failing), to bound memory.
func (s *sealer) refusal() error {
	s.mu.Lock()
	n, bytes := len(s.q), s.qBytes
	s.mu.Unlock()
	if n < maxSealBatches && bytes < s.maxBytes {
		return nil
	}
	return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: %d sealed batches (%d MiB) wait to be written to disk; retry later", n, bytes>>20)}
}

// dequeue removes the first queued batch, which was written or dropped.
func (s *sealer) dequeue() {
	s.mu.Lock()
	s.qBytes -= s.q[0].bytes
	s.q = s.q[1:]
	s.mu.Unlock()
}

// backlog returns the batches waiting, the first seq of the oldest and
// when it was opened (zero when none waits).
func (s *sealer) backlog() (batches int, firstSeq int64, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) == 0 {
		return 0, 0, time.Time{}
	}
	return len(s.q), s.q[0].b.FirstSeq(), s.q[0].b.Opened
}

// run publishes the verifier key, then writes queued batches until the
// queue is empty after finish, or shutdown gives up.
func (s *sealer) run() {
	key, data := s.cp.verifierKey()
	if !s.write(key, data, true) {
		return
	}
	if s.spool != nil {
		s.spool.add(spooled{key: key, since: s.now()})
	}
	for {
		s.mu.Lock()
		var next pending
		if len(s.q) > 0 {
			next = s.q[0]
		}
		done := s.done && next.b == nil
		s.mu.Unlock()
		if done {
			return
		}
		if next.b == nil {
			if !s.retry.wait(s.wake) {
				return
			}
			continue
		}
		// A batch reaches the trail only with entries that were durable
		// in the log, and so acknowledged: after a failure, the others were
		// refused and their clients send them again.
		if err := s.log.Sync(next.end); err != nil && !s.keepDurable(&next) {
			continue
		}
		if !s.writeBatch(next) {
			return
		}
	}
}

// writeBatch encodes p's batch, writes it and its checkpoint, dequeues it
// and removes its log segment. It reports false when shutdown gave up.
func (s *sealer) writeBatch(p pending) bool {
	sb, err := seal(p.b)
	if err != nil {
		// Our own entries always encode unless the batch is malformed,
		// which is a bug: keep the batch and say so.
		s.logger.Error("Cannot encode audit batch; it stays queued", zap.Error(err))
		return s.retry.sleep(maxRetryDelay)
	}
	if !s.write(sb.key, sb.data, false) {
		return false
	}
	root, tiles := s.extendTree(p.b)
	if !s.writeTiles(tiles) {
		return false
	}
	cpKey, cpMsg, err := s.cp.sign(sb.footer, root)
	if err != nil {
		// Only a malformed footer makes signing fail; the batch is written.
		s.logger.Error("Cannot sign a checkpoint", zap.Error(err))
		cpKey, cpMsg = "", nil
	} else if !s.write(cpKey, cpMsg, true) {
		return false
	}
	s.recordHead(chain.Head{Size: sb.footer.LastSeq + 1, Hash: sb.footer.LastHash})
	if s.tree != nil {
		if err := s.treeRec.write(s.tree, sb.footer.LastHash); err != nil {
			// The next start rebuilds the tree from the batch files.
			s.logger.Warn("Cannot record the chain's tree locally; a restart will rebuild it from the batch files", zap.Error(err))
		}
	}
	n := int(sb.footer.EntryCount)
	s.metrics.Sealed(n)
	opened := p.b.Opened
	s.dequeue()
	p.b.Release() // its buffers go to a later batch
	if s.spool != nil {
		objs := []spooled{{key: sb.key, size: int64(len(sb.data)), since: opened, batch: true}}
		for _, t := range tiles {
			objs = append(objs, spooled{key: t.Key, size: int64(len(t.Data)), since: opened})
		}
		if cpKey != "" {
			objs = append(objs, spooled{key: cpKey, size: int64(len(cpMsg)), since: opened})
		}
		s.spool.add(objs...)
	} else {
		s.metrics.Queued(-1)
		s.metrics.Stored(n)
	}
	// Told once the checkpoint is queued for upload: what the hook puts
	// beside it (PutBeside) is queued after it.
	if cpKey != "" && s.checkpointed != nil {
		s.checkpointed(sb.footer.LastSeq+1, cpMsg)
	}
	if p.segment != "" {
		// A segment left behind is harmless: recovery drops entries that a
		// durable batch holds.
		if err := s.log.Remove(p.segment); err != nil {
			s.logger.Warn("Cannot remove a write-ahead log segment", zap.Error(err))
		}
	}
	return true
}

// extendTree appends the batch's entries to the chain's tree and returns
// the tree's hex root and the tiles to write before the checkpoint. When
// the tree fails, which only a bug can cause, it says so once and returns
// "" from then on: the checkpoints go on, of format 1.
func (s *sealer) extendTree(b *batch.Batch) (root string, tiles []tlogtree.Tile) {
	if s.tree == nil {
		return "", nil
	}
	var (
		r   tlog.Hash
		err error
	)
	if leaves := b.LeafHashes(); leaves != nil {
		// Hashed for the batch's Merkle root when it was sealed.
		tiles, r, err = s.tree.AppendLeaves(leaves)
	} else {
		tiles, r, err = s.tree.Append(b.EntryHashes())
	}
	if err != nil {
		s.logger.Error("The chain's tree failed; checkpoints go on without its root (format 1) until a restart rebuilds it", zap.Error(err))
		s.tree = nil
		return "", nil
	}
	return hex.EncodeToString(r[:]), tiles
}

// write writes an object where batches go, retrying until it is written,
// and with mirror, to the checkpoint mirror too. It reports false when
// shutdown gave up.
func (s *sealer) write(key string, data []byte, mirror bool) bool {
	ctx := context.Background()
	if !s.retry.retry(s.where, key, func() error { return s.target.Put(ctx, key, data) }) {
		return false
	}
	m := s.cp.mirror
	return !mirror || m == nil || s.retry.retry("mirror", key, func() error { return m.Put(ctx, key, data) })
}

// writeTiles writes a batch's tiles where batches go, retrying until they
// are written: in one call where the store can (store.PutAller, the local
// disk: a durable file each is most of what the tree costs), else up to
// maxParallelTiles at a time. It reports false when shutdown gave up.
func (s *sealer) writeTiles(tiles []tlogtree.Tile) bool {
	if len(tiles) == 0 {
		return true
	}
	pa, ok := s.target.(store.PutAller)
	if !ok {
		return eachParallel(len(tiles), func(i int) bool { return s.write(tiles[i].Key, tiles[i].Data, false) })
	}
	objs := tileObjects(tiles)
	what := fmt.Sprintf("%s and %d more tiles", tiles[0].Key, len(tiles)-1)
	return s.retry.retry(s.where, what, func() error { return pa.PutAll(context.Background(), objs) })
}

// tileObjects returns tiles as the objects to store.
func tileObjects(tiles []tlogtree.Tile) []store.Object {
	objs := make([]store.Object, len(tiles))
	for i, t := range tiles {
		objs[i] = store.Object{Key: t.Key, Data: t.Data}
	}
	return objs
}

// recordHead updates the head marker. It is best effort: when it cannot be
// written, it is removed instead, so that a stale marker never makes an
// offline start resume from an old head (and fork the chain).
func (s *sealer) recordHead(h chain.Head) {
	if err := s.head.write(h); err != nil {
		s.head.remove()
		s.logger.Warn("Cannot record the chain head locally; a restart while the store is unavailable will refuse to start", zap.Error(err))
	}
}

// keepDurable trims a batch, once the write-ahead log has failed, to the
// entries that were durable (and so acknowledged) before the failure; the
// others were refused to their clients and must not reach the trail, or a
// client's retry would record them twice. It reports false, and drops the
// batch, when nothing is left. The restart recovers the same prefix from the
// log and continues the chain after it.
func (s *sealer) keepDurable(p *pending) bool {
	last := s.log.DurableSeq()
	n := int(min(max(last-p.b.FirstSeq()+1, 0), int64(p.b.Len())))
	if n == p.b.Len() {
		return true
	}
	s.logger.Error("Dropping audit entries that were refused to their clients after the write-ahead log failed",
		zap.Int64("first_seq", p.b.FirstSeq()+int64(n)), zap.Int("entries", p.b.Len()-n))
	p.b.Truncate(n)
	if n > 0 {
		return true
	}
	s.dequeue()
	p.b.Release()
	s.metrics.Queued(-1)
	return false
}

// sealed is a batch encoded once, so that every retry writes the same bytes
// under the same key.
type sealed struct {
	key    string
	data   []byte
	footer parquetfile.Footer
}

// seal encodes b as a Parquet object, from the columns it holds.
func seal(b *batch.Batch) (*sealed, error) {
	var buf bytes.Buffer
	f, err := b.Encode(&buf)
	if err != nil {
		return nil, err
	}
	return &sealed{key: store.BatchKey(f.ChainID, f.FirstSeq, b.Opened), data: buf.Bytes(), footer: f}, nil
}
