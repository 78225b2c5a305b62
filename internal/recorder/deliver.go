package recorder

// Delivery: spooled objects go to the remote store, oldest first, retried
// until they are written.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// spooled is an object in the spool, waiting for the remote store: a batch,
// or the checkpoint or verifier key that goes with the batches.
type spooled struct {
	key   string
	size  int64
	since time.Time // when its batch was opened, or found at start
	batch bool
}

// delivery copies the objects in the spool to the remote store, in the
// order they were queued, and removes each from the spool once the store
// has it. Its queue, and the bytes the queue holds, are its own: the sealer
// adds to it (add), the intake asks whether it is full (refusal).
type delivery struct {
	spool    *store.FS
	remote   store.Store
	maxBytes int64 // past it, refusal refuses new entries
	retry    *retrier
	metrics  Metrics
	logger   *zap.Logger

	mu    sync.Mutex
	q     []spooled // in the spool, not yet in the remote store
	bytes int64     // bytes of q
	// keys counts q's objects by key: add looks a key up in it instead of
	// scanning q, which under an outage of the store holds many thousand
	// tiles.
	keys   map[string]int
	closed bool // nothing more will be queued
	// finished: run returned with the queue empty, everything uploaded;
	// what comes later (PutBeside at shutdown) goes to the store directly.
	finished bool
	wake     chan struct{}
}

func newDelivery(spool *store.FS, remote store.Store, maxBytes int64, retry *retrier, m Metrics, logger *zap.Logger) *delivery {
	return &delivery{spool: spool, remote: remote, maxBytes: maxBytes, retry: retry, metrics: m, logger: logger, keys: make(map[string]int), wake: make(chan struct{}, 1)}
}

// enqueueLocked appends o to the queue. Callers hold mu.
func (d *delivery) enqueueLocked(o spooled) {
	d.q = append(d.q, o)
	d.bytes += o.size
	d.keys[o.key]++
}

// resume queues what an earlier run left in the spool, in order, before
// anything new; its batches count as queued.
func (d *delivery) resume(objs []spooled) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range objs {
		d.enqueueLocked(o)
		if o.batch {
			d.metrics.Queued(1)
		}
	}
}

// add queues objects just written to the spool, in order. A batch was
// counted as queued when it was sealed. An object other than a batch that
// is queued already (the verifier key, left in the spool) is not queued
// twice.
func (d *delivery) add(objs ...spooled) {
	d.mu.Lock()
	for _, o := range objs {
		if !o.batch && d.keys[o.key] > 0 {
			continue
		}
		d.enqueueLocked(o)
	}
	d.mu.Unlock()
	signal(d.wake)
}

// isFinished reports whether the delivery uploaded everything and stopped.
func (d *delivery) isFinished() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.finished
}

// addBeside queues an object written to the spool beside a checkpoint
// (PutBeside) after everything queued, and reports false, queuing nothing,
// once the delivery has uploaded everything and stopped.
func (d *delivery) addBeside(o spooled) bool {
	d.mu.Lock()
	if d.finished {
		d.mu.Unlock()
		return false
	}
	d.enqueueLocked(o)
	d.mu.Unlock()
	signal(d.wake)
	return true
}

// close says that nothing more will be queued: run returns once the queue
// is empty.
func (d *delivery) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	signal(d.wake)
}

// refusal refuses new entries while the spool is over its limit: the
// remote store is not taking batches.
func (d *delivery) refusal() error {
	d.mu.Lock()
	used := d.bytes
	d.mu.Unlock()
	if used < d.maxBytes {
		return nil
	}
	return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: the spool %s is full (%d of %d bytes): the S3 store is not taking batches; retry later",
		d.spool.Dir(), used, d.maxBytes)}
}

// backlog returns the bytes waiting in the spool, the number of objects,
// and since when the oldest waits (zero when none does).
func (d *delivery) backlog() (bytes int64, objects int, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.q) > 0 {
		since = d.q[0].since
	}
	return d.bytes, len(d.q), since
}

// run uploads queued objects until the queue is empty after close, or
// shutdown gives up.
func (d *delivery) run() {
	ctx := context.Background()
	for {
		d.mu.Lock()
		var next spooled
		if len(d.q) > 0 {
			next = d.q[0]
		}
		done := d.closed && next.key == ""
		if done {
			d.finished = true
		}
		d.mu.Unlock()
		if done {
			return
		}
		if next.key == "" {
			if !d.retry.wait(d.wake) {
				return
			}
			continue
		}
		if store.IsTileKey(next.key) {
			// The tiles a batch completes are many small objects that
			// depend on nothing but their batch, before them: uploaded
			// side by side, and all before the checkpoint after them.
			run := d.tileRun(maxParallelTiles)
			if !eachParallel(len(run), func(i int) bool { return d.upload(ctx, run[i]) }) {
				return
			}
			for _, o := range run {
				d.dequeue(o)
			}
			continue
		}
		if !d.upload(ctx, next) {
			return
		}
		d.dequeue(next)
	}
}

// maxParallelTiles bounds the tiles uploaded (or spooled) at once.
const maxParallelTiles = 8

// tileRun returns the tiles at the head of the queue, at most n.
func (d *delivery) tileRun(n int) []spooled {
	d.mu.Lock()
	defer d.mu.Unlock()
	run := make([]spooled, 0, n)
	for _, o := range d.q {
		if len(run) == n || !store.IsTileKey(o.key) {
			break
		}
		run = append(run, o)
	}
	return run
}

// upload copies one spooled object to the remote store and removes it from
// the spool, retrying until it is done; it reports false when shutdown
// gave up. An object someone removed from the spool is not uploaded.
func (d *delivery) upload(ctx context.Context, next spooled) bool {
	var data []byte
	missing := false
	ok := d.retry.retry("spool", next.key, func() (err error) {
		data, err = d.spool.Get(ctx, next.key)
		if errors.Is(err, store.ErrNotFound) {
			missing = true
			return nil
		}
		return err
	})
	if ok && missing {
		d.logger.Error("A spooled object is gone before it was uploaded", zap.String("spool", next.key))
		return true
	}
	ok = ok && d.retry.retry("store", next.key, func() error {
		err := d.remote.Put(ctx, next.key, data)
		if errors.Is(err, store.ErrConflict) && (store.IsCosignatureKey(next.key) || store.IsTimestampKey(next.key)) {
			// Another cosignature or token of the same checkpoint is
			// there (a second one got across a restart): as good, and
			// retrying cannot help; the batches behind it must not wait.
			d.logger.Warn("The store holds another cosignature or timestamp of the checkpoint; this one is dropped", zap.String("store", next.key))
			return nil
		}
		return err
	}) && d.retry.retry("spool", next.key, func() error {
		return d.spool.Delete(ctx, next.key)
	})
	if !ok {
		return false
	}
	if next.batch {
		if f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data))); err == nil {
			d.metrics.Stored(int(f.EntryCount))
		}
	}
	return true
}

// eachParallel calls fn(i) for i in [0, n), at most maxParallelTiles at
// once, and reports whether every call did.
func eachParallel(n int, fn func(i int) bool) bool {
	var (
		wg   sync.WaitGroup
		ok   atomic.Bool
		next atomic.Int64
	)
	ok.Store(true)
	for range min(n, maxParallelTiles) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || !ok.Load() {
					return
				}
				if !fn(i) {
					ok.Store(false)
				}
			}
		})
	}
	wg.Wait()
	return ok.Load()
}

// dequeue removes the head of the queue, which is next.
func (d *delivery) dequeue(next spooled) {
	d.mu.Lock()
	d.q = d.q[1:]
	d.bytes -= next.size
	if d.keys[next.key]--; d.keys[next.key] == 0 {
		delete(d.keys, next.key)
	}
	d.mu.Unlock()
	if next.batch {
		d.metrics.Queued(-1)
	}
}
