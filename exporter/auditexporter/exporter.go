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

// Retry delays for writing a sealed batch to the store.
const (
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 30 * time.Second
)

// storeOpener creates the store named by the configuration. Tests inject
// their own.
type storeOpener func(ctx context.Context, cfg *Config) (store.Store, error)

func openStore(_ context.Context, cfg *Config) (store.Store, error) {
	st, err := store.NewFS(cfg.File.Directory)
	if err != nil {
		return nil, fmt.Errorf("file: \"directory\" %q: %w", cfg.File.Directory, err)
	}
	return st, nil
}

// sealed is a batch waiting to be stored, encoded once so that every retry
// sends the same bytes under the same key.
type sealed struct {
	key      string
	data     []byte
	firstSeq int64
	entries  int
}

// auditExporter sequences, hashes, batches, encodes and stores entries. The
// chain and the batcher are guarded by mu, which fixes the order of the
// chain; sealed batches are handed to one writer goroutine, in chain order.
type auditExporter struct {
	cfg    *Config
	logger *zap.Logger
	opts   entry.Options
	open   storeOpener
	now    func() time.Time
	tel    *telemetry

	store store.Store

	mu      sync.Mutex
	chain   *chain.Chain
	batcher *batch.Batcher
	closed  bool

	qmu   sync.Mutex
	queue []*batch.Batch
	wake  chan struct{} // signals the writer that the queue grew or closed
	qdone bool          // no more batches will be queued

	abort    chan struct{} // closed when shutdown gives up waiting for the writer
	stopTick chan struct{}
	wg       sync.WaitGroup
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
		wake:     make(chan struct{}, 1),
		abort:    make(chan struct{}),
		stopTick: make(chan struct{}),
	}, nil
}

// start opens the store and resumes the chain from the last batch stored
// under this chain id. It refuses to start rather than fork the chain when
// that batch cannot be read.
func (e *auditExporter) start(ctx context.Context, _ component.Host) error {
	st, err := e.open(ctx, e.cfg)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: opening the store: %w", err)
	}
	head, err := resumeHead(ctx, st, e.cfg.ChainID)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	e.store = st
	e.chain = chain.New(e.cfg.ChainID, head)
	e.tel.setHead(head)
	if head.Size > 0 {
		e.logger.Info("Resuming audit chain", zap.String("chain_id", e.cfg.ChainID), zap.Int64("next_seq", head.Size))
	}
	e.wg.Add(2)
	go e.writeLoop()
	go e.tickLoop()
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
	e.queue = append(e.queue, bs...)
	e.tel.queued.Add(int64(len(bs)))
	e.qmu.Unlock()
	e.signal()
}

func (e *auditExporter) signal() {
	select {
	case e.wake <- struct{}{}:
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

// writeLoop stores queued batches one at a time, in chain order. A batch
// that fails is retried with backoff, with the same key and bytes, until it
// is stored or shutdown gives up; later batches wait behind it so the store
// never holds a later part of the chain without the earlier one.
func (e *auditExporter) writeLoop() {
	defer e.wg.Done()
	var current *sealed
	delay := minRetryDelay
	failing := false
	for {
		e.qmu.Lock()
		var next *batch.Batch
		if len(e.queue) > 0 {
			next = e.queue[0]
		}
		done := e.qdone && next == nil
		e.qmu.Unlock()
		if done {
			return
		}
		if next == nil {
			select {
			case <-e.wake:
			case <-e.abort:
				return
			}
			continue
		}
		if current == nil {
			s, err := e.seal(next)
			if err != nil {
				// Encoding our own entries cannot fail unless the batch
				// is malformed: keep it and say so loudly.
				e.logger.Error("Cannot encode audit batch; it stays queued", zap.Error(err))
				if !e.sleep(maxRetryDelay) {
					return
				}
				continue
			}
			current = s
		}
		err := e.store.Put(context.Background(), current.key, current.data)
		if err != nil {
			e.tel.storeError(errors.Is(err, store.ErrConflict))
			if !failing {
				level := zap.WarnLevel
				if errors.Is(err, store.ErrConflict) {
					level = zap.ErrorLevel
				}
				e.logger.Log(level, "Cannot store audit batch; retrying until it is stored",
					zap.String("key", current.key), zap.Error(err))
				failing = true
			}
			if !e.sleep(delay) {
				return
			}
			delay = min(delay*2, maxRetryDelay)
			continue
		}
		if failing {
			e.logger.Info("Audit batch stored after retries", zap.String("key", current.key))
			failing = false
		}
		delay = minRetryDelay
		e.tel.batchStored(current)
		e.qmu.Lock()
		e.queue = e.queue[1:]
		e.tel.queued.Add(-1)
		e.qmu.Unlock()
		current = nil
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
		key:      store.BatchKey(f.ChainID, f.FirstSeq, b.Opened),
		data:     buf.Bytes(),
		firstSeq: f.FirstSeq,
		entries:  len(b.Entries),
	}, nil
}

// shutdown seals the open batch and waits until every sealed batch is
// stored or ctx ends. It reports what could not be stored.
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
	e.qdone = true
	e.qmu.Unlock()
	e.signal()

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
	lost := 0
	for _, b := range e.queue {
		lost += len(b.Entries)
	}
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("agentaudit exporter: %d audit entries in %d batches were not stored before shutdown ended (first seq %d): %w",
		lost, len(e.queue), e.queue[0].Entries[0].Seq, ctx.Err())
}
