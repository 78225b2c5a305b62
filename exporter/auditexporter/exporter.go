package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/spoollock"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// errShutdown is returned for data that arrives after shutdown began.
var errShutdown = errors.New("agentaudit exporter is shut down")

const (
	// Retry delays for writing a sealed batch to the spool or the store.
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 30 * time.Second

	// retryAfter is what refused clients are told to wait.
	retryAfter = 5 * time.Second

	// shutdownGrace bounds how long shutdown waits for the store.
	shutdownGrace = 10 * time.Second

	// maxSealQueue bounds the sealed batches held in memory before the
	// writer encodes them; past it, new data is refused (retryable).
	maxSealQueue = 16
)

// stores are where entries and batches go: the write-ahead log directory,
// the trail's store and, for a remote store, the local spool where sealed
// batches wait until the store has them.
type stores struct {
	walDir string
	trail  store.Store
	spool  *store.FS // nil when trail is itself local
	// offline is why the remote store could not be reached at start (an
	// outage, store.ErrUnavailable), or nil.
	offline error
}

// storeOpener opens the stores the configuration names. Tests inject their
// own.
type storeOpener func(ctx context.Context, cfg *Config) (stores, error)

func openStore(ctx context.Context, cfg *Config) (stores, error) {
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	if cfg.File != nil {
		st, err := store.NewFS(cfg.File.Directory)
		if err != nil {
			return stores{}, fmt.Errorf("file: \"directory\" %q: %w", cfg.File.Directory, err)
		}
		return stores{walDir: walDir, trail: st}, nil
	}
	s3, err := store.NewS3(ctx, cfg.S3.options())
	if err != nil {
		return stores{}, fmt.Errorf("s3: %w", err)
	}
	// Fail fast: refused credentials, a missing bucket or one without Object
	// Lock must stop the collector before it accepts anything. An outage
	// need not: start can resume from local state (see start).
	offline := s3.Check(ctx)
	if offline != nil && !errors.Is(offline, store.ErrUnavailable) {
		return stores{}, fmt.Errorf("s3: %w", offline)
	}
	spool, err := store.NewFS(filepath.Join(cfg.Spool.Directory, "batches"))
	if err != nil {
		return stores{}, fmt.Errorf("spool: \"directory\" %q: %w", cfg.Spool.Directory, err)
	}
	return stores{walDir: walDir, trail: s3, spool: spool, offline: offline}, nil
}

// pending is a sealed batch not yet written to the spool or the store, with
// the write-ahead log segment that holds its entries until then.
type pending struct {
	b       *batch.Batch
	segment string // "" when no segment is left to remove
}

// spooled is an object in the spool, waiting for the remote store: a batch,
// or the checkpoint or verifier key that goes with the batches.
type spooled struct {
	key   string
	size  int64
	since time.Time // when its batch was opened, or found at start
	batch bool
}

// auditExporter sequences, hashes, logs, batches, encodes and stores
// entries.
//
// An OTLP request is acknowledged once its entries are chained and fsynced
// in the write-ahead log (group commit). The chain, the log's appends and
// the batcher are guarded by mu, which fixes the order of the chain. Each
// sealed batch goes, in chain order, to the writer goroutine, which encodes
// it and writes it to the store, or with a remote store to the local spool,
// and then removes its log segment; the uploader goroutine copies spooled
// batches to the remote store, oldest first, and removes them from the
// spool. A batch that fails is retried with the same key and bytes, and
// later ones wait behind it, so a store never holds a later part of a chain
// without the earlier.
type auditExporter struct {
	cfg    *Config
	logger *zap.Logger
	opts   auditspan.Options
	sender *senders // who sent a request, and the senders policy
	open   storeOpener
	now    func() time.Time
	tel    *telemetry

	store store.Store
	spool *store.FS
	wal   *wal.Log

	host       component.Host
	reportOnce sync.Once
	signer     note.Signer     // signs a checkpoint after each batch
	vkey       string          // its verifier key, published beside the trail
	mirror     *store.FS       // a second place for checkpoints, or nil
	lock       *spoollock.Lock // held from start to shutdown

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

func newAuditExporter(cfg *Config, set exporter.Settings, open storeOpener) (*auditExporter, error) {
	e := &auditExporter{
		cfg:    cfg,
		logger: set.Logger,
		opts:   auditspan.Options{MaxValueBytes: cfg.MaxValueBytes, MaxEntryBytes: cfg.MaxEntryBytes},
		sender: newSenders(cfg.Senders),
		open:   open,
		now:    time.Now,
		batcher: batch.New(batch.Limits{
			MaxEntries: cfg.Batch.MaxEntries,
			MaxBytes:   cfg.Batch.MaxBytes,
			MaxAge:     cfg.Batch.MaxAge,
		}),
		wakeWriter: make(chan struct{}, 1),
		wakeUpload: make(chan struct{}, 1),
		abort:      make(chan struct{}),
		stopTick:   make(chan struct{}),
	}
	tel, err := newTelemetry(set.TelemetrySettings, e.observe)
	if err != nil {
		return nil, err
	}
	e.tel = tel
	return e, nil
}

// start opens the stores, resumes the chain and recovers the write-ahead
// log: the chain continues from the newest of the store's head, the spool's
// head and the log's last entry. Logged entries not yet in a durable batch
// are sealed into batches again, and spooled batches are uploaded first. It
// refuses to start rather than fork the chain when something does not line
// up.
func (e *auditExporter) start(ctx context.Context, host component.Host) (err error) {
	e.host = host
	// One writer per spool, before anything in it is read.
	lock, err := spoollock.Acquire(e.cfg.Spool.Directory)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: spool: \"directory\" %w", err)
	}
	defer func() {
		if err != nil {
			lock.Release()
		}
	}()
	st, err := e.open(ctx, e.cfg)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	if err := e.setUpCheckpoints(); err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	e.removeTemporary(st)
	head := chain.Genesis()
	if st.offline == nil {
		if head, err = resumeHead(ctx, st.trail, e.cfg.ChainID); err != nil {
			return fmt.Errorf("agentaudit exporter: %w", err)
		}
	}
	marker, known, err := readHeadMarker(e.cfg.Spool.Directory, e.cfg.ChainID, storeID(e.cfg))
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	if known && marker.Size > head.Size {
		head = marker
	}
	if st.offline != nil {
		if !known {
			// Without the store or a local record, a chain that already
			// has batches would be forked from genesis.
			return fmt.Errorf("agentaudit exporter: the store is unavailable and %s holds no record of chain %q: refusing to start rather than fork the chain: %w",
				e.cfg.Spool.Directory, e.cfg.ChainID, st.offline)
		}
		e.logger.Warn("The store is unavailable at start; resuming the chain from local state, batches wait in the spool",
			zap.Int64("next_seq", head.Size), zap.Error(st.offline))
	}
	if st.spool != nil {
		spoolHead, err := e.recoverSpool(ctx, st.spool)
		if err != nil {
			return fmt.Errorf("agentaudit exporter: spool %s: %w", st.spool.Dir(), err)
		}
		if spoolHead.Size > head.Size {
			head = spoolHead
		}
	}
	head, err = e.recoverLog(ctx, st, head)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	log, err := wal.Open(st.walDir, e.cfg.ChainID, head.Size)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	log.SetCommitDelay(e.cfg.Spool.CommitDelay)
	e.qmu.Lock()
	e.store, e.spool, e.wal, e.lock = st.trail, st.spool, log, lock
	e.qmu.Unlock()
	e.chain = chain.New(e.cfg.ChainID, head)
	e.tel.setHead(head)
	if head.Size > 0 {
		e.logger.Info("Resuming audit chain", zap.String("chain_id", e.cfg.ChainID), zap.Int64("next_seq", head.Size))
	}
	e.wg.Add(2)
	go e.writeLoop()
	go e.tickLoop()
	if e.spool != nil {
		e.wg.Add(1)
		go e.uploadLoop()
	}
	return nil
}

// entriesPool holds the slices requests map their spans into; a slice
// larger than maxPooledEntries (a huge request) is left to the collector.
var entriesPool = sync.Pool{New: func() any { return new([]entry.Entry) }}

const maxPooledEntries = 1 << 12

// consumeTraces turns every audit-tagged span of td into a chained entry
// and returns once the entries are durable in the write-ahead log. Spans
// without audit tags are counted and ignored. Each entry's sender is who
// sent the request, as ctx says (sender.go); without one, under
// require_authenticated_source, the request's audit spans are refused.
func (e *auditExporter) consumeTraces(ctx context.Context, td ptrace.Traces) error {
	// Mapping is the costly part and needs no order: do it outside the lock.
	// The entries are copied into the open batch below, so their slice goes
	// back to a pool for the next request.
	ep := entriesPool.Get().(*[]entry.Entry)
	defer func() {
		if cap(*ep) <= maxPooledEntries {
			clear(*ep) // drop references to this request's strings (the rest is still zero)
			entriesPool.Put(ep)
		}
	}()
	entries := (*ep)[:0]
	ignored := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				if !auditspan.IsAudit(span) {
					ignored++
					continue
				}
				if cap(entries) == 0 {
					entries = make([]entry.Entry, 0, td.SpanCount())
				}
				entries = append(entries, auditspan.FromSpan(rs.Resource(), span, e.opts))
			}
		}
	}
	*ep = entries
	e.tel.spansIgnored(ctx, ignored)
	if len(entries) == 0 {
		return nil
	}
	mismatched := 0
	switch sender, ok := e.sender.identify(ctx); {
	case ok:
		mismatched = e.sender.setSenders(entries, sender, e.opts)
	case e.cfg.RequireAuthenticatedSource:
		e.tel.unauthenticated(ctx, len(entries))
		return errUnauthenticated
	}

	e.mu.Lock()
	if e.closed || e.chain == nil {
		e.mu.Unlock()
		return errShutdown
	}
	if err := e.admit(); err != nil {
		e.mu.Unlock()
		e.tel.refused(ctx, len(entries))
		return err
	}
	now := e.now()
	for i := range entries {
		if e.batcher.Due(now) {
			e.sealLocked(e.batcher.Flush())
		}
		e.chain.Append(&entries[i])
		e.wal.AppendCanonical(entries[i].Seq, e.chain.Canonical())
		sum := e.chain.Sum()
		if full := e.batcher.Add(&entries[i], &sum, parquetfile.EstimatedSize(&entries[i]), now); full != nil {
			e.sealLocked(full)
		}
	}
	end := e.wal.End()
	e.tel.setHead(e.chain.Head())
	e.mu.Unlock()

	// Group commit: one fsync covers every request that waits meanwhile.
	if err := e.wal.Sync(end); err != nil {
		e.walFailed(err)
		return unavailable(fmt.Sprintf("agentaudit exporter: %v; restart the collector to recover", err))
	}
	e.tel.entriesAccepted(ctx, entries, mismatched)
	return nil
}

// walFailed reports, once, that the write-ahead log broke: the exporter
// refuses audit data from now on (the rest of the collector keeps working)
// until a restart recovers the log.
func (e *auditExporter) walFailed(err error) {
	e.reportOnce.Do(func() {
		e.logger.Error("The write-ahead log failed; audit data is refused until the collector restarts", zap.Error(err))
		if e.host != nil {
			componentstatus.ReportStatus(e.host, componentstatus.NewPermanentErrorEvent(err))
		}
	})
}

// admit refuses new data while the spool is over its limit (the remote
// store is not taking batches) or the write-ahead log has failed. Callers
// hold mu.
func (e *auditExporter) admit() error {
	if err := e.wal.Err(); err != nil {
		e.walFailed(err)
		return unavailable(fmt.Sprintf("agentaudit exporter: %v; restart the collector to recover", err))
	}
	e.qmu.Lock()
	used, sealing := e.spoolBytes, len(e.sealQ)
	e.qmu.Unlock()
	if sealing >= maxSealQueue {
		// The writer is behind (the disk is slow or failing): bound memory.
		return unavailable(fmt.Sprintf("agentaudit exporter: %d sealed batches wait to be written to disk; retry later", sealing))
	}
	if e.spool == nil || used < e.cfg.Spool.MaxBytes {
		return nil
	}
	return unavailable(fmt.Sprintf("agentaudit exporter: the spool %s is full (%d of %d bytes): the S3 store is not taking batches; retry later",
		e.spool.Dir(), used, e.cfg.Spool.MaxBytes))
}

// unavailable is a retryable refusal: gRPC UNAVAILABLE with a retry delay,
// which the OTLP receiver answers over HTTP with 503 and Retry-After.
func unavailable(msg string) error {
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// sealLocked closes b's log segment and queues b for the writer. Callers
// hold mu, so batches are queued in chain order. When the log has failed,
// b is still queued (its entries may yet reach the trail) and the failure
// surfaces in the requests' Sync.
func (e *auditExporter) sealLocked(b *batch.Batch) {
	if b == nil {
		return
	}
	segment, err := e.wal.Rotate(e.chain.Head().Size)
	if err != nil {
		e.walFailed(err)
		segment = ""
	}
	e.qmu.Lock()
	e.sealQ = append(e.sealQ, pending{b: b, segment: segment})
	e.qmu.Unlock()
	e.tel.queued.Add(1)
	signal(e.wakeWriter)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// tickLoop seals the open batch when it reaches its maximum age or a new
// UTC day begins.
func (e *auditExporter) tickLoop() {
	defer e.wg.Done()
	period := min(max(e.cfg.Batch.MaxAge/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-e.stopTick:
			return
		case <-t.C:
			e.mu.Lock()
			if e.batcher.Due(e.now()) {
				e.sealLocked(e.batcher.Flush())
			}
			e.mu.Unlock()
		}
	}
}

// writeLoop encodes sealed batches one at a time, in chain order, writes
// each to the spool, or to the store when there is no spool, and then
// removes its write-ahead log segment.
func (e *auditExporter) writeLoop() {
	defer e.wg.Done()
	defer func() {
		e.qmu.Lock()
		e.writerDone = true
		e.qmu.Unlock()
		signal(e.wakeUpload)
	}()
	target, where := e.store, "store"
	if e.spool != nil {
		target, where = e.spool, "spool"
	}
	key, ok := e.publishKey(target, where)
	if !ok {
		return
	}
	if e.spool != nil {
		e.qmu.Lock()
		if !slices.ContainsFunc(e.uploadQ, func(s spooled) bool { return s.key == key }) {
			e.uploadQ = append(e.uploadQ, spooled{key: key, since: e.now()})
		}
		e.qmu.Unlock()
		signal(e.wakeUpload)
	}
	for {
		e.qmu.Lock()
		var next pending
		if len(e.sealQ) > 0 {
			next = e.sealQ[0]
		}
		done := e.sealDone && next.b == nil
		e.qmu.Unlock()
		if done {
			return
		}
		if next.b == nil {
			if !e.wait(e.wakeWriter) {
				return
			}
			continue
		}
		if e.wal.Err() != nil && !e.keepDurable(&next) {
			continue
		}
		s, err := e.seal(next.b)
		if err != nil {
			// Our own entries always encode unless the batch is
			// malformed, which is a bug: keep the batch and say so.
			e.logger.Error("Cannot encode audit batch; it stays queued", zap.Error(err))
			if !e.sleep(maxRetryDelay) {
				return
			}
			continue
		}
		if !e.retry(where, s.key, func() error { return target.Put(context.Background(), s.key, s.data) }) {
			return
		}
		cpKey, cpMsg, ok := e.writeCheckpoint(target, where, s.footer)
		if !ok {
			return
		}
		e.recordHead(chain.Head{Size: s.footer.LastSeq + 1, Hash: s.footer.LastHash})
		n := int(s.footer.EntryCount)
		e.tel.batchSealed(n)
		e.qmu.Lock()
		e.sealQ = e.sealQ[1:]
		next.b.Release() // its buffers go to a later batch
		if e.spool != nil {
			e.uploadQ = append(e.uploadQ, spooled{key: s.key, size: int64(len(s.data)), since: next.b.Opened, batch: true})
			e.spoolBytes += int64(len(s.data))
			if cpKey != "" {
				e.uploadQ = append(e.uploadQ, spooled{key: cpKey, size: int64(len(cpMsg)), since: next.b.Opened})
				e.spoolBytes += int64(len(cpMsg))
			}
		}
		e.qmu.Unlock()
		if e.spool != nil {
			signal(e.wakeUpload)
		} else {
			e.tel.queued.Add(-1)
			e.tel.batchStored(n)
		}
		if next.segment != "" {
			// A segment left behind is harmless: recovery drops entries
			// that a durable batch holds.
			if err := e.wal.Remove(next.segment); err != nil {
				e.logger.Warn("Cannot remove a write-ahead log segment", zap.Error(err))
			}
		}
	}
}

// recordHead updates the head marker. It is best effort: when it cannot be
// written, it is removed instead, so that a stale marker never makes an
// offline start resume from an old head (and fork the chain).
func (e *auditExporter) recordHead(h chain.Head) {
	err := writeHeadMarker(e.cfg.Spool.Directory, e.cfg.ChainID, storeID(e.cfg), h)
	if err == nil {
		return
	}
	_ = os.Remove(headMarkerPath(e.cfg.Spool.Directory, e.cfg.ChainID))
	e.logger.Warn("Cannot record the chain head locally; a restart while the store is unavailable will refuse to start", zap.Error(err))
}

// keepDurable trims a batch, once the write-ahead log has failed, to the
// entries that were durable (and so acknowledged) before the failure; the
// others were refused to their clients and must not reach the trail, or a
// client's retry would record them twice. It reports false, and drops the
// batch, when nothing is left. The restart recovers the same prefix from the
// log and continues the chain after it.
func (e *auditExporter) keepDurable(p *pending) bool {
	last := e.wal.DurableSeq()
	n := int(min(max(last-p.b.FirstSeq()+1, 0), int64(p.b.Len())))
	if n == p.b.Len() {
		return true
	}
	e.logger.Error("Dropping audit entries that were refused to their clients after the write-ahead log failed",
		zap.Int64("first_seq", p.b.FirstSeq()+int64(n)), zap.Int("entries", p.b.Len()-n))
	p.b.Truncate(n)
	if n > 0 {
		return true
	}
	e.qmu.Lock()
	e.sealQ = e.sealQ[1:]
	e.qmu.Unlock()
	p.b.Release()
	e.tel.queued.Add(-1)
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
func (e *auditExporter) seal(b *batch.Batch) (*sealed, error) {
	var buf bytes.Buffer
	f, err := b.Encode(&buf)
	if err != nil {
		return nil, err
	}
	return &sealed{key: store.BatchKey(f.ChainID, f.FirstSeq, b.Opened), data: buf.Bytes(), footer: f}, nil
}

// uploadLoop copies spooled batches to the remote store, oldest first, and
// removes each from the spool once the store has it.
func (e *auditExporter) uploadLoop() {
	defer e.wg.Done()
	ctx := context.Background()
	for {
		e.qmu.Lock()
		var next spooled
		if len(e.uploadQ) > 0 {
			next = e.uploadQ[0]
		}
		done := e.writerDone && next.key == ""
		e.qmu.Unlock()
		if done {
			return
		}
		if next.key == "" {
			if !e.wait(e.wakeUpload) {
				return
			}
			continue
		}
		var data []byte
		missing := false
		ok := e.retry("spool", next.key, func() (err error) {
			data, err = e.spool.Get(ctx, next.key)
			if errors.Is(err, store.ErrNotFound) {
				missing = true
				return nil
			}
			return err
		})
		if ok && missing {
			// Someone removed it from the spool: nothing to upload.
			e.logger.Error("A spooled object is gone before it was uploaded", zap.String("spool", next.key))
			e.dequeueUpload(next)
			continue
		}
		ok = ok && e.retry("store", next.key, func() error {
			return e.store.Put(ctx, next.key, data)
		}) && e.retry("spool", next.key, func() error {
			return e.spool.Delete(ctx, next.key)
		})
		if !ok {
			return
		}
		e.dequeueUpload(next)
		if !next.batch {
			continue
		}
		if f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data))); err == nil {
			e.tel.batchStored(int(f.EntryCount))
		}
	}
}

// dequeueUpload removes the head of the upload queue, which is next.
func (e *auditExporter) dequeueUpload(next spooled) {
	e.qmu.Lock()
	e.uploadQ = e.uploadQ[1:]
	e.spoolBytes -= next.size
	e.qmu.Unlock()
	if next.batch {
		e.tel.queued.Add(-1)
	}
}

// retry calls fn until it succeeds, backing off between attempts, and
// reports false when shutdown gave up meanwhile. It logs the first failure
// and the recovery, not every attempt, and counts every failure.
func (e *auditExporter) retry(where, key string, fn func() error) bool {
	delay := minRetryDelay
	failing := false
	for {
		err := fn()
		if err == nil {
			if failing {
				e.logger.Info("Audit batch written after retries", zap.String(where, key))
			}
			return true
		}
		conflict := errors.Is(err, store.ErrConflict)
		e.tel.storeError(conflict)
		if !failing {
			level := zap.WarnLevel
			if conflict {
				level = zap.ErrorLevel
			}
			e.logger.Log(level, "Cannot write audit batch; retrying until it is written",
				zap.String(where, key), zap.Error(err))
			failing = true
		}
		if !e.sleep(delay) {
			return false
		}
		delay = min(delay*2, maxRetryDelay)
	}
}

// wait blocks until c is signalled and reports false when shutdown gave up.
func (e *auditExporter) wait(c chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-e.abort:
		return false
	}
}

// sleep waits for d and reports false when shutdown gave up meanwhile.
func (e *auditExporter) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-e.abort:
		return false
	}
}

// observe reports the queue gauges: spool bytes, the age of the oldest
// batch not yet in the store, and the write-ahead log's fsyncs.
func (e *auditExporter) observe() (spoolBytes int64, oldest time.Duration, walSyncs int64) {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	if e.wal != nil {
		walSyncs = e.wal.Syncs()
	}
	var since time.Time
	switch {
	case len(e.uploadQ) > 0:
		since = e.uploadQ[0].since
	case len(e.sealQ) > 0:
		since = e.sealQ[0].b.Opened
	}
	if !since.IsZero() {
		oldest = e.now().Sub(since)
	}
	return e.spoolBytes, oldest, walSyncs
}

// shutdown seals the open batch and waits until every sealed batch is
// written, and with a spool uploaded, or ctx ends. Nothing acknowledged is
// lost either way: entries not yet in a batch are in the write-ahead log and
// spooled batches in the spool, and the next start picks both up.
func (e *auditExporter) shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	_ = e.tel.registration.Unregister()
	started := e.chain != nil
	if started {
		e.sealLocked(e.batcher.Flush())
	}
	e.mu.Unlock()
	if !started {
		return nil
	}
	close(e.stopTick)
	e.qmu.Lock()
	e.sealDone = true
	e.qmu.Unlock()
	signal(e.wakeWriter)

	finished := make(chan struct{})
	go func() {
		e.wg.Wait()
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
		close(e.abort)
		<-finished
	}
	walErr := e.wal.Close()
	e.qmu.Lock()
	defer e.qmu.Unlock()
	defer e.lock.Release()
	if n := len(e.uploadQ); n > 0 {
		e.logger.Warn("Audit batches wait in the spool; they are uploaded at the next start",
			zap.Int("batches", n), zap.String("spool", e.spool.Dir()))
	}
	if n := len(e.sealQ); n > 0 {
		e.logger.Warn("Audit entries wait in the write-ahead log; they are sealed at the next start",
			zap.Int("batches", n), zap.Int64("first_seq", e.sealQ[0].b.FirstSeq()), zap.String("wal", e.wal.Dir()))
	}
	if walErr != nil {
		return fmt.Errorf("agentaudit exporter: %w", walErr)
	}
	return nil
}
