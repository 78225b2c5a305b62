package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// errShutdown is returned for data that arrives after shutdown began.
var errShutdown = errors.New("agentaudit exporter is shut down")

// Retry delays for writing a sealed batch to the spool or the store.
const (
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 30 * time.Second
)

// stores are where sealed batches go: the trail's store and, for a remote
// store, the local spool where batches wait until the store has them.
type stores struct {
	trail store.Store
	spool *store.FS // nil when trail is itself local
}

// storeOpener opens the stores the configuration names. Tests inject their
// own.
type storeOpener func(ctx context.Context, cfg *Config) (stores, error)

func openStore(ctx context.Context, cfg *Config) (stores, error) {
	if cfg.File != nil {
		st, err := store.NewFS(cfg.File.Directory)
		if err != nil {
			return stores{}, fmt.Errorf("file: \"directory\" %q: %w", cfg.File.Directory, err)
		}
		return stores{trail: st}, nil
	}
	s3, err := store.NewS3(ctx, cfg.S3.options())
	if err != nil {
		return stores{}, fmt.Errorf("s3: %w", err)
	}
	// Fail fast: an unreachable bucket or one without Object Lock must stop
	// the collector before it accepts anything.
	if err := s3.Check(ctx); err != nil {
		return stores{}, fmt.Errorf("s3: %w", err)
	}
	spool, err := store.NewFS(cfg.Spool.Directory)
	if err != nil {
		return stores{}, fmt.Errorf("spool: \"directory\" %q: %w", cfg.Spool.Directory, err)
	}
	return stores{trail: s3, spool: spool}, nil
}

// sealed is a batch encoded once, so that every retry writes the same bytes
// under the same key.
type sealed struct {
	key     string
	data    []byte
	entries int
}

// auditExporter sequences, hashes, batches, encodes and stores entries.
//
// The chain and the batcher are guarded by mu, which fixes the order of the
// chain. Sealed batches go, in chain order, to the writer goroutine, which
// encodes each and writes it to the store, or with a remote store to the
// local spool; the uploader goroutine then copies spooled batches to the
// remote store, oldest first, and removes them from the spool. A batch that
// fails is retried with the same key and bytes, and later ones wait behind
// it, so a store never holds a later part of a chain without the earlier.
type auditExporter struct {
	cfg    *Config
	logger *zap.Logger
	opts   entry.Options
	open   storeOpener
	now    func() time.Time
	tel    *telemetry

	store store.Store
	spool *store.FS

	mu      sync.Mutex
	chain   *chain.Chain
	batcher *batch.Batcher
	closed  bool

	qmu        sync.Mutex
	sealQ      []*batch.Batch // sealed, not yet written to the spool or store
	uploadQ    []string       // spooled keys not yet in the remote store
	sealDone   bool           // no more batches will be sealed
	writerDone bool           // the writer has written everything sealed
	wakeWriter chan struct{}
	wakeUpload chan struct{}
	abort      chan struct{} // closed when shutdown gives up waiting
	stopTick   chan struct{}
	wg         sync.WaitGroup
}

func newAuditExporter(cfg *Config, set exporter.Settings, open storeOpener) (*auditExporter, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &auditExporter{
		cfg:    cfg,
		logger: set.Logger,
		opts:   entry.Options{MaxValueBytes: cfg.MaxValueBytes},
		open:   open,
		now:    time.Now,
		tel:    tel,
		batcher: batch.New(batch.Limits{
			MaxEntries: cfg.Batch.MaxEntries,
			MaxBytes:   cfg.Batch.MaxBytes,
			MaxAge:     cfg.Batch.MaxAge,
		}),
		wakeWriter: make(chan struct{}, 1),
		wakeUpload: make(chan struct{}, 1),
		abort:      make(chan struct{}),
		stopTick:   make(chan struct{}),
	}, nil
}

// start opens the stores and resumes the chain from the newest batch of
// this chain id, in the spool or the store. It refuses to start rather than
// fork the chain when that batch cannot be read. Batches left in the spool
// by an earlier run are uploaded first.
func (e *auditExporter) start(ctx context.Context, _ component.Host) error {
	st, err := e.open(ctx, e.cfg)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	head, err := resumeHead(ctx, st.trail, e.cfg.ChainID)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	if st.spool != nil {
		spooled, err := st.spool.List(ctx, "")
		if err != nil {
			return fmt.Errorf("agentaudit exporter: spool: %w", err)
		}
		spoolHead, err := resumeHead(ctx, st.spool, e.cfg.ChainID)
		if err != nil {
			return fmt.Errorf("agentaudit exporter: spool %s: %w", st.spool.Dir(), err)
		}
		if spoolHead.Size > head.Size {
			head = spoolHead
		}
		e.uploadQ = spooled
		e.tel.queued.Add(int64(len(spooled)))
		if len(spooled) > 0 {
			e.logger.Info("Uploading batches left in the spool", zap.Int("batches", len(spooled)), zap.String("spool", st.spool.Dir()))
		}
	}
	e.store, e.spool = st.trail, st.spool
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

// resumeHead finds the newest batch of chain id in st and returns the head
// recorded in its footer, or the genesis head when the chain has no batch.
func resumeHead(ctx context.Context, st store.Store, id string) (chain.Head, error) {
	keys, err := st.List(ctx, "")
	if err != nil {
		return chain.Head{}, fmt.Errorf("listing the store: %w", err)
	}
	last, lastSeq := "", int64(-1)
	for _, k := range keys {
		cid, seq, _, err := store.ParseBatchKey(k)
		if err != nil || cid != id {
			continue
		}
		if seq > lastSeq {
			last, lastSeq = k, seq
		}
	}
	if last == "" {
		return chain.Genesis(), nil
	}
	data, err := st.Get(ctx, last)
	if err != nil {
		return chain.Head{}, fmt.Errorf("reading the chain head from %q: %w", last, err)
	}
	f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return chain.Head{}, fmt.Errorf("reading the chain head from %q: %w", last, err)
	}
	if f.ChainID != id || f.FirstSeq != lastSeq || f.LastSeq < f.FirstSeq {
		return chain.Head{}, fmt.Errorf("reading the chain head from %q: footer names chain %q seq %d..%d, want chain %q from seq %d",
			last, f.ChainID, f.FirstSeq, f.LastSeq, id, lastSeq)
	}
	return chain.Head{Size: f.LastSeq + 1, Hash: f.LastHash}, nil
}

// consumeTraces turns every audit-tagged span of td into a chained entry.
// Spans without audit tags are counted and ignored.
func (e *auditExporter) consumeTraces(ctx context.Context, td ptrace.Traces) error {
	// Mapping is the costly part and needs no order: do it outside the lock.
	var entries []entry.Entry
	ignored := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				if !entry.IsAudit(span) {
					ignored++
					continue
				}
				if entries == nil {
					entries = make([]entry.Entry, 0, td.SpanCount())
				}
				entries = append(entries, entry.FromSpan(rs.Resource(), span, e.opts))
			}
		}
	}
	e.tel.spansIgnored(ctx, ignored)
	if len(entries) == 0 {
		return nil
	}

	e.mu.Lock()
	if e.closed || e.chain == nil {
		e.mu.Unlock()
		return errShutdown
	}
	now := e.now()
	var full []*batch.Batch
	for i := range entries {
		e.chain.Append(&entries[i])
		full = append(full, e.batcher.Add(entries[i], parquetfile.EstimatedSize(&entries[i]), now)...)
	}
	e.tel.setHead(e.chain.Head())
	e.enqueue(full...)
	e.mu.Unlock()

	e.tel.entriesAccepted(ctx, entries)
	return nil
}

// enqueue hands sealed batches to the writer. Callers hold mu, so batches
// are queued in chain order.
func (e *auditExporter) enqueue(bs ...*batch.Batch) {
	if len(bs) == 0 {
		return
	}
	e.qmu.Lock()
	e.sealQ = append(e.sealQ, bs...)
	e.tel.queued.Add(int64(len(bs)))
	e.qmu.Unlock()
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
			e.sealIfDue()
		}
	}
}

func (e *auditExporter) sealIfDue() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.batcher.Due(e.now()) {
		e.enqueue(e.batcher.Flush())
	}
}

// writeLoop encodes sealed batches one at a time, in chain order, and
// writes each to the spool, or to the store when there is no spool.
func (e *auditExporter) writeLoop() {
	defer e.wg.Done()
	defer func() {
		e.qmu.Lock()
		e.writerDone = true
		e.qmu.Unlock()
		signal(e.wakeUpload)
	}()
	for {
		e.qmu.Lock()
		var next *batch.Batch
		if len(e.sealQ) > 0 {
			next = e.sealQ[0]
		}
		done := e.sealDone && next == nil
		e.qmu.Unlock()
		if done {
			return
		}
		if next == nil {
			if !e.wait(e.wakeWriter) {
				return
			}
			continue
		}
		s, err := e.seal(next)
		if err != nil {
			// Our own entries always encode unless the batch is
			// malformed, which is a bug: keep the batch and say so.
			e.logger.Error("Cannot encode audit batch; it stays queued", zap.Error(err))
			if !e.sleep(maxRetryDelay) {
				return
			}
			continue
		}
		target, where := e.store, "store"
		if e.spool != nil {
			target, where = e.spool, "spool"
		}
		if !e.retry(where, s.key, func() error { return target.Put(context.Background(), s.key, s.data) }) {
			return
		}
		e.qmu.Lock()
		e.sealQ = e.sealQ[1:]
		if e.spool != nil {
			e.uploadQ = append(e.uploadQ, s.key)
		} else {
			e.tel.queued.Add(-1)
		}
		e.qmu.Unlock()
		if e.spool != nil {
			signal(e.wakeUpload)
		} else {
			e.tel.batchStored(s.entries)
		}
	}
}

// uploadLoop copies spooled batches to the remote store, oldest first, and
// removes each from the spool once the store has it.
func (e *auditExporter) uploadLoop() {
	defer e.wg.Done()
	ctx := context.Background()
	for {
		e.qmu.Lock()
		key := ""
		if len(e.uploadQ) > 0 {
			key = e.uploadQ[0]
		}
		done := e.writerDone && key == ""
		e.qmu.Unlock()
		if done {
			return
		}
		if key == "" {
			if !e.wait(e.wakeUpload) {
				return
			}
			continue
		}
		var data []byte
		ok := e.retry("spool", key, func() (err error) {
			data, err = e.spool.Get(ctx, key)
			return err
		}) && e.retry("store", key, func() error {
			return e.store.Put(ctx, key, data)
		}) && e.retry("spool", key, func() error {
			return e.spool.Delete(ctx, key)
		})
		if !ok {
			return
		}
		e.qmu.Lock()
		e.uploadQ = e.uploadQ[1:]
		e.tel.queued.Add(-1)
		e.qmu.Unlock()
		if f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data))); err == nil {
			e.tel.batchStored(int(f.EntryCount))
		}
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

// seal encodes b as a Parquet object.
func (e *auditExporter) seal(b *batch.Batch) (*sealed, error) {
	var buf bytes.Buffer
	f, err := parquetfile.Encode(&buf, b.Entries)
	if err != nil {
		return nil, err
	}
	return &sealed{
		key:     store.BatchKey(f.ChainID, f.FirstSeq, b.Opened),
		data:    buf.Bytes(),
		entries: len(b.Entries),
	}, nil
}

// shutdown seals the open batch and waits until every sealed batch is
// written, and with a spool uploaded, or ctx ends. Entries not yet written
// anywhere are lost and reported as an error; batches still in the spool are
// kept and uploaded at the next start.
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
		if b := e.batcher.Flush(); b != nil {
			e.enqueue(b)
		}
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
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	close(e.abort)
	<-finished
	e.qmu.Lock()
	defer e.qmu.Unlock()
	if n := len(e.uploadQ); n > 0 {
		e.logger.Warn("Audit batches wait in the spool; they are uploaded at the next start",
			zap.Int("batches", n), zap.String("spool", e.spool.Dir()))
	}
	lost := 0
	for _, b := range e.sealQ {
		lost += len(b.Entries)
	}
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("agentaudit exporter: %d audit entries in %d batches were not written before shutdown ended (first seq %d): %w",
		lost, len(e.sealQ), e.sealQ[0].Entries[0].Seq, ctx.Err())
}
