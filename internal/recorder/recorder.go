// Package recorder keeps the audit trail of one chain: it chains entries,
// logs them durably, seals them into Parquet batches and delivers the
// batches, with their signed checkpoints, to the trail's store.
//
// Its parts, each a type of its own in its own file, which the Recorder
// composes; each hands work on to the next through a small interface and
// keeps its own state under its own lock:
//
//   - intake (intake.go): Append chains a request's entries, appends them
//     to the write-ahead log (internal/wal) and returns once they are
//     fsynced (group commit), or refuses them while a part after it is
//     behind (downstream); each sealed batch goes to the sealer (sealQueue);
//   - recovery (recovery.go, salvage.go, head.go): at Start, the chain
//     resumes from the newest of the store's head, the spool's and the
//     log's; what the log holds that no durable batch does is handed to
//     the sealer again, and what the spool holds to the delivery;
//   - sealing (seal.go, checkpoints.go): the sealer writes each sealed
//     batch as a Parquet file from the columns it holds (internal/batch),
//     with its signed checkpoint, to the store or, for a remote store, to
//     the local spool, whose objects go to the delivery (spoolQueue);
//   - delivery (deliver.go): spooled objects are copied to the remote
//     store, oldest first, retried until they are written (retry.go).
//
// What the recorder is given and tells (Config, Stores, Metrics, its
// errors) is in config.go, which every part reads.
//
// The recorder knows entries, not spans: mapping spans and the collector's
// interfaces are the exporter's (exporter/auditexporter), which tells the
// recorder what to count through Metrics.
package recorder // import "github.com/agentaudit/agentaudit/internal/recorder"

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/spoollock"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// shutdownGrace bounds how long shutdown waits for the store.
const shutdownGrace = 10 * time.Second

// Recorder records one chain. Start it, Append to it, Shutdown it.
//
// An Append returns once its entries are chained and fsynced in the
// write-ahead log (group commit). The intake hands each sealed batch, in
// chain order, to the sealer's goroutine, which encodes it and writes it to
// the store, or with a remote store to the local spool, and then removes
// its log segment; the delivery's goroutine copies spooled objects to the
// remote store, oldest first, and removes them from the spool. A batch
// that fails is retried with the same key and bytes, and later ones wait
// behind it, so a store never holds a later part of a chain without the
// earlier.
type Recorder struct {
	cfg     Config
	logger  *zap.Logger
	metrics Metrics
	now     func() time.Time

	in       *intake
	retry    *retrier
	abort    chan struct{} // closed when shutdown gives up waiting
	stopTick chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex // guards what Start opens
	log     *wal.Log
	lock    *spoollock.Lock // held from Start to Shutdown
	sealer  *sealer
	deliver *delivery // nil without a spool
	// previous is how the run before this one ended (stopped.go), set by
	// Start.
	previous Previous
}

// New returns a recorder of cfg's chain that reports to m and logs to
// logger. Nothing is opened before Start.
func New(cfg Config, logger *zap.Logger, m Metrics) *Recorder {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	abort := make(chan struct{})
	return &Recorder{
		cfg:     cfg,
		logger:  logger,
		metrics: m,
		now:     now,
		in: &intake{
			batcher: batch.New(cfg.Batch), now: now, metrics: m, logger: logger, failed: cfg.Failed,
		},
		retry:    &retrier{logger: logger, metrics: m, abort: abort},
		abort:    abort,
		stopTick: make(chan struct{}),
	}
}

// Start opens the stores (open), resumes the chain and recovers what an
// earlier run left (recovery.go), then starts the sealer, the intake's
// ticker and, with a spool, the delivery. It refuses to start rather than
// fork the chain when something does not line up.
func (r *Recorder) Start(ctx context.Context, open func(context.Context) (Stores, error)) (err error) {
	// One writer per spool, before anything in it is read.
	lock, err := spoollock.Acquire(r.cfg.SpoolDir)
	if err != nil {
		return fmt.Errorf("spool: \"directory\" %w", err)
	}
	defer func() {
		if err != nil {
			lock.Release()
		}
	}()
	st, err := open(ctx)
	if err != nil {
		return err
	}
	cp, err := newCheckpointer(r.cfg, r.logger)
	if err != nil {
		return err
	}
	work, err := recoverStores(ctx, r.cfg, st, cp.mirror, r.logger, r.now)
	if err != nil {
		return err
	}
	tree, rebuilt, err := resumeTree(ctx, r.cfg, st, work.durable, r.logger, r.now())
	if err != nil {
		return err
	}
	previous, err := readStopped(r.cfg.SpoolDir, r.cfg.ChainID, work.head)
	if err != nil {
		return err
	}
	log, err := wal.Open(st.WALDir, r.cfg.ChainID, work.head.Size)
	if err != nil {
		return err
	}
	log.SetCommitDelay(r.cfg.CommitDelay)

	s := &sealer{
		target: st.Trail, where: "store", log: log, cp: cp,
		head: headMarker{r.cfg.SpoolDir, r.cfg.ChainID, r.cfg.StoreID},
		tree: tree, treeRec: treeRecord{r.cfg.SpoolDir, r.cfg.ChainID, r.cfg.StoreID},
		retry: r.retry, metrics: r.metrics, logger: r.logger, now: r.now,
		checkpointed: r.cfg.Checkpointed,
		maxBytes:     max(maxSealBytes, 2*r.cfg.Batch.MaxBytes),
		wake:         make(chan struct{}, 1),
	}
	behind := []downstream{s}
	var d *delivery
	if st.Spool != nil {
		d = newDelivery(st.Spool, st.Trail, r.cfg.SpoolMaxBytes, r.retry, r.metrics, r.logger)
		d.resume(append(work.uploads, notQueued(rebuilt, work.uploads)...))
		s.target, s.where, s.spool = st.Spool, "spool", d
		behind = append(behind, d)
	}
	for _, p := range work.seal {
		s.push(p)
	}
	r.mu.Lock()
	r.log, r.lock, r.sealer, r.deliver, r.previous = log, lock, s, d, previous
	r.mu.Unlock()
	head := work.head
	r.in.start(chain.New(r.cfg.ChainID, head), log, s, behind...)
	r.metrics.Head(head)
	if head.Size > 0 {
		r.logger.Info("Resuming audit chain", zap.String("chain_id", r.cfg.ChainID), zap.Int64("next_seq", head.Size))
	}
	r.wg.Go(func() {
		s.run()
		if d != nil {
			d.close() // the sealer is done: nothing more is spooled
		}
	})
	period := min(max(r.cfg.Batch.MaxAge/4, 10*time.Millisecond), time.Second)
	r.wg.Go(func() { r.in.tick(period, r.stopTick) })
	if d != nil {
		r.wg.Go(d.run)
	}
	return nil
}

// Previous says how the run before this one ended; valid after Start.
func (r *Recorder) Previous() Previous {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.previous
}

// Append chains entries and returns once they are durable; see
// intake.Append.
func (r *Recorder) Append(entries []entry.Entry) error { return r.in.Append(entries) }

// AppendOwn is Append for the collector's own entries (its start and stop
// markers), which no backlog refuses; see intake.AppendOwn.
func (r *Recorder) AppendOwn(entries []entry.Entry) error { return r.in.AppendOwn(entries) }

// Shutdown seals the open batch and waits until every sealed batch is
// written, and with a spool uploaded, or ctx ends. Nothing acknowledged is
// lost either way: entries not yet in a batch are in the write-ahead log
// and spooled batches in the spool, and the next start picks both up.
func (r *Recorder) Shutdown(ctx context.Context) error {
	if !r.in.close() {
		return nil
	}
	close(r.stopTick)
	r.mu.Lock()
	s, d, log, lock := r.sealer, r.deliver, r.log, r.lock
	r.mu.Unlock()
	s.finish()

	finished := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(finished)
	}()
	// Everything acknowledged is durable already; the grace only lets
	// batches reach the store before the process goes.
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	select {
	case <-finished:
	case <-ctx.Done():
	case <-grace.C:
	}
	select {
	case <-finished:
	default:
		close(r.abort)
		<-finished
	}
	walErr := log.Close()
	defer lock.Release()
	if walErr == nil {
		// Everything acknowledged is durable: a clean stop, whatever is
		// still in the spool or the log.
		r.in.mu.Lock()
		head := r.in.chain.Head()
		r.in.mu.Unlock()
		if err := writeStopped(r.cfg.SpoolDir, r.cfg.ChainID, head); err != nil {
			r.logger.Warn("Cannot record the clean stop; the next start will record an unclean one", zap.Error(err))
		}
	}
	if d != nil {
		if _, n, _ := d.backlog(); n > 0 {
			r.logger.Warn("Audit batches wait in the spool; they are uploaded at the next start",
				zap.Int("batches", n), zap.String("spool", d.spool.Dir()))
		}
	}
	if n, first, _ := s.backlog(); n > 0 {
		r.logger.Warn("Audit entries wait in the write-ahead log; they are sealed at the next start",
			zap.Int("batches", n), zap.Int64("first_seq", first), zap.String("wal", log.Dir()))
	}
	return walErr
}

// Abandon stops the recorder the way a killed process stops: nothing is
// sealed or flushed, the open batch is simply gone from memory, and the
// spool's lock is released as the kernel releases a dead process's. For
// tests of recovery.
func (r *Recorder) Abandon() {
	r.in.abandon()
	close(r.stopTick)
	close(r.abort)
	r.wg.Wait()
	r.mu.Lock()
	lock := r.lock
	r.mu.Unlock()
	lock.Release()
}

// Stats reports the queue gauges: spool bytes, the age of the oldest
// batch not yet in the store, and the write-ahead log's fsyncs.
func (r *Recorder) Stats() (spoolBytes int64, oldest time.Duration, walSyncs int64) {
	r.mu.Lock()
	log, s, d := r.log, r.sealer, r.deliver
	r.mu.Unlock()
	if log != nil {
		walSyncs = log.Syncs()
	}
	var since time.Time
	if d != nil {
		spoolBytes, _, since = d.backlog()
	}
	if since.IsZero() && s != nil {
		_, _, since = s.backlog()
	}
	if !since.IsZero() {
		oldest = r.now().Sub(since)
	}
	return spoolBytes, oldest, walSyncs
}

// notQueued returns the objects of objs whose keys queued does not hold:
// the tiles a rebuild wrote again that were still in the spool are queued
// once.
func notQueued(objs, queued []spooled) []spooled {
	have := make(map[string]bool, len(queued))
	for _, o := range queued {
		have[o.key] = true
	}
	var out []spooled
	for _, o := range objs {
		if !have[o.key] {
			out = append(out, o)
		}
	}
	return out
}
