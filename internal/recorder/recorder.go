// Package recorder keeps the audit trail of one chain: it chains entries,
// logs them durably, seals them into Parquet batches and delivers the
// batches, with their signed checkpoints, to the trail's store.
//
// Its rooms, each in its own file:
//
//   - intake (intake.go): Append chains a request's entries, appends them
//     to the write-ahead log (internal/wal) and returns once they are
//     fsynced (group commit), or refuses them;
//   - recovery (recovery.go, salvage.go, head.go): at Start, the chain
//     resumes from the newest of the store's head, the spool's and the
//     log's, and what the log holds that no durable batch does is sealed
//     again;
//   - sealing (seal.go, checkpoints.go): each sealed batch is written as a
//     Parquet file from the columns it holds (internal/batch), with its
//     signed checkpoint, to the store or, for a remote store, to the local
//     spool;
//   - delivery (deliver.go): spooled objects are copied to the remote
//     store, oldest first, retried until they are written.
//
// The recorder knows entries, not spans: mapping spans and the collector's
// interfaces are the exporter's (exporter/auditexporter), which tells the
// recorder what to count through Metrics.
package recorder // import "github.com/agentaudit/agentaudit/internal/recorder"

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/spoollock"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// ErrShutdown is returned for entries that arrive after shutdown began.
var ErrShutdown = errors.New("agentaudit exporter is shut down")

// RefusedError is a refusal the client may retry later: the spool is full,
// sealed batches wait for the disk, or the write-ahead log failed. Msg says
// why, for the client.
type RefusedError struct {
	Msg string
	// Chained: the entries were chained, but the log failed before they
	// were durable; otherwise nothing of them was.
	Chained bool
}

func (e *RefusedError) Error() string { return e.Msg }

const (
	// Retry delays for writing a sealed batch to the spool or the store.
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 30 * time.Second

	// shutdownGrace bounds how long shutdown waits for the store.
	shutdownGrace = 10 * time.Second

	// maxSealQueue bounds the sealed batches held in memory before the
	// writer encodes them; past it, new data is refused (retryable).
	maxSealQueue = 16
)

// Config is what the recorder needs of the exporter's configuration.
type Config struct {
	ChainID string
	// SpoolDir holds the recorder's local state: the lock, the head
	// marker, a generated signing key.
	SpoolDir string
	// StoreID names the store the chain is written to, for the head marker
	// (a marker of another store is ignored).
	StoreID string
	Batch   batch.Limits
	// SpoolMaxBytes bounds the batches waiting in the spool for a remote
	// store; past it, Append refuses.
	SpoolMaxBytes int64
	CommitDelay   time.Duration
	Checkpoint    CheckpointConfig
	// LossEntry maps what an operator's acceptance of a loss says into the
	// entry that records the loss in the trail (salvage.go).
	LossEntry func(seg wal.Segment, acc *wal.Acceptance, result string) entry.Entry
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Failed is told, once, that the write-ahead log broke: audit data is
	// refused until a restart. Optional.
	Failed func(error)
}

// CheckpointConfig names the checkpoints' signing key and mirror.
type CheckpointConfig struct {
	// KeyFile or KeyEnv holds the signer key; with neither, one is
	// generated under SpoolDir/keys on first start.
	KeyFile, KeyEnv string
	// MirrorDir is a second place for checkpoints, or "".
	MirrorDir string
}

// Stores are where entries and batches go: the write-ahead log directory,
// the trail's store and, for a remote store, the local spool where sealed
// batches wait until the store has them.
type Stores struct {
	WALDir string
	Trail  store.Store
	Spool  *store.FS // nil when Trail is itself local
	// Offline is why the remote store could not be reached at start (an
	// outage, store.ErrUnavailable), or nil.
	Offline error
}

// Metrics is told what the recorder does, for the exporter's telemetry.
// Its methods must be cheap and safe for concurrent use.
type Metrics interface {
	// Head is the chain's head after entries were appended.
	Head(chain.Head)
	// Queued adds n (may be negative) to the sealed batches not yet in
	// the store.
	Queued(n int64)
	// Sealed counts a batch of n entries sealed to local disk.
	Sealed(n int)
	// Stored counts a batch of n entries written to the store.
	Stored(n int)
	// StoreError counts a failed write; conflict when another writer
	// holds the key.
	StoreError(conflict bool)
}

// Recorder records one chain. Start it, Append to it, Shutdown it.
//
// An Append returns once its entries are chained and fsynced in the
// write-ahead log (group commit). The chain, the log's appends and the
// batcher are guarded by mu, which fixes the order of the chain. Each
// sealed batch goes, in chain order, to the writer goroutine (seal.go),
// which encodes it and writes it to the store, or with a remote store to
// the local spool, and then removes its log segment; the uploader goroutine
// (deliver.go) copies spooled objects to the remote store, oldest first,
// and removes them from the spool. A batch that fails is retried with the
// same key and bytes, and later ones wait behind it, so a store never holds
// a later part of a chain without the earlier.
type Recorder struct {
	cfg     Config
	logger  *zap.Logger
	metrics Metrics
	now     func() time.Time

	failOnce sync.Once
	signer   note.Signer     // signs a checkpoint after each batch
	vkey     string          // its verifier key, published beside the trail
	mirror   *store.FS       // a second place for checkpoints, or nil
	lock     *spoollock.Lock // held from Start to Shutdown

	store store.Store
	spool *store.FS
	wal   *wal.Log

	mu      sync.Mutex
	chain   *chain.Chain
	batcher *batch.Batcher
	closed  bool

	qmu        sync.Mutex
	sealQ      []pending // sealed, not yet written to the spool or store
	uploadQ    []spooled // in the spool, not yet in the remote store
	spoolBytes int64     // bytes of uploadQ
	sealDone   bool      // no more batches will be sealed
	writerDone bool      // the writer has written everything sealed
	wakeWriter chan struct{}
	wakeUpload chan struct{}
	abort      chan struct{} // closed when shutdown gives up waiting
	stopTick   chan struct{}
	wg         sync.WaitGroup
}

// New returns a recorder of cfg's chain that reports to m and logs to
// logger. Nothing is opened before Start.
func New(cfg Config, logger *zap.Logger, m Metrics) *Recorder {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Recorder{
		cfg:        cfg,
		logger:     logger,
		metrics:    m,
		now:        now,
		batcher:    batch.New(cfg.Batch),
		wakeWriter: make(chan struct{}, 1),
		wakeUpload: make(chan struct{}, 1),
		abort:      make(chan struct{}),
		stopTick:   make(chan struct{}),
	}
}

// Start opens the stores (open), resumes the chain and recovers the
// write-ahead log (recovery.go), then starts the writer, the ticker and,
// with a spool, the uploader. It refuses to start rather than fork the
// chain when something does not line up.
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
	if err := r.setUpCheckpoints(); err != nil {
		return err
	}
	head, err := r.recover(ctx, st)
	if err != nil {
		return err
	}
	log, err := wal.Open(st.WALDir, r.cfg.ChainID, head.Size)
	if err != nil {
		return err
	}
	log.SetCommitDelay(r.cfg.CommitDelay)
	r.qmu.Lock()
	r.store, r.spool, r.wal, r.lock = st.Trail, st.Spool, log, lock
	r.qmu.Unlock()
	r.mu.Lock()
	r.chain = chain.New(r.cfg.ChainID, head)
	r.mu.Unlock()
	r.metrics.Head(head)
	if head.Size > 0 {
		r.logger.Info("Resuming audit chain", zap.String("chain_id", r.cfg.ChainID), zap.Int64("next_seq", head.Size))
	}
	r.wg.Add(2)
	go r.writeLoop()
	go r.tickLoop()
	if r.spool != nil {
		r.wg.Add(1)
		go r.uploadLoop()
	}
	return nil
}

// Shutdown seals the open batch and waits until every sealed batch is
// written, and with a spool uploaded, or ctx ends. Nothing acknowledged is
// lost either way: entries not yet in a batch are in the write-ahead log
// and spooled batches in the spool, and the next start picks both up.
func (r *Recorder) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	started := r.chain != nil
	if started {
		r.sealLocked(r.batcher.Flush())
	}
	r.mu.Unlock()
	if !started {
		return nil
	}
	close(r.stopTick)
	r.qmu.Lock()
	r.sealDone = true
	r.qmu.Unlock()
	signal(r.wakeWriter)

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
	walErr := r.wal.Close()
	r.qmu.Lock()
	defer r.qmu.Unlock()
	defer r.lock.Release()
	if n := len(r.uploadQ); n > 0 {
		r.logger.Warn("Audit batches wait in the spool; they are uploaded at the next start",
			zap.Int("batches", n), zap.String("spool", r.spool.Dir()))
	}
	if n := len(r.sealQ); n > 0 {
		r.logger.Warn("Audit entries wait in the write-ahead log; they are sealed at the next start",
			zap.Int("batches", n), zap.Int64("first_seq", r.sealQ[0].b.FirstSeq()), zap.String("wal", r.wal.Dir()))
	}
	return walErr
}

// Abandon stops the recorder the way a killed process stops: nothing is
// sealed or flushed, the open batch is simply gone from memory, and the
// spool's lock is released as the kernel releases a dead process's. For
// tests of recovery.
func (r *Recorder) Abandon() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	close(r.stopTick)
	close(r.abort)
	r.wg.Wait()
	r.lock.Release()
}

// Stats reports the queue gauges: spool bytes, the age of the oldest
// batch not yet in the store, and the write-ahead log's fsyncs.
func (r *Recorder) Stats() (spoolBytes int64, oldest time.Duration, walSyncs int64) {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	if r.wal != nil {
		walSyncs = r.wal.Syncs()
	}
	var since time.Time
	switch {
	case len(r.uploadQ) > 0:
		since = r.uploadQ[0].since
	case len(r.sealQ) > 0:
		since = r.sealQ[0].b.Opened
	}
	if !since.IsZero() {
		oldest = r.now().Sub(since)
	}
	return r.spoolBytes, oldest, walSyncs
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
