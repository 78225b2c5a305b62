package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
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

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
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
	opts   entry.Options
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
		opts:   entry.Options{MaxValueBytes: cfg.MaxValueBytes, MaxEntryBytes: cfg.MaxEntryBytes},
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

// removeTemporary removes the temporary files of this chain's objects that
// a crash left in the local stores (readers never see them). A store
// directory may be shared by several collectors: only this chain's keys
// are touched. It is best effort: what is left takes space, nothing else.
func (e *auditExporter) removeTemporary(st stores) {
	id := e.cfg.ChainID
	checkpoints := path.Dir(checkpoint.ObjectKey(id, 0)) + "/"
	keys := path.Dir(checkpoint.VerifierObjectKey(id, "")) + "/"
	mine := func(key string) bool {
		if cid, _, _, err := store.ParseBatchKey(key); err == nil {
			return cid == id
		}
		if strings.HasPrefix(key, checkpoints) {
			return true
		}
		// keys/<chain_id>-<key hash>.vkey; chain ids may hold '-'.
		if rest, ok := strings.CutPrefix(key, keys); ok {
			dash := strings.LastIndexByte(rest, '-')
			return dash > 0 && rest[:dash] == id
		}
		return false
	}
	trail, _ := st.trail.(*store.FS)
	for _, local := range []*store.FS{st.spool, e.mirror, trail} {
		if local == nil {
			continue
		}
		n, err := local.RemoveTemporary(mine)
		if err != nil {
			e.logger.Warn("Cannot remove temporary files a crash left", zap.Error(err))
		}
		if n > 0 {
			e.logger.Info("Removed temporary files a crash left", zap.Int("files", n), zap.String("directory", local.Dir()))
		}
	}
}

// recoverSpool queues the batches an earlier run left in the spool and
// returns the head they reach for this chain.
func (e *auditExporter) recoverSpool(ctx context.Context, spool *store.FS) (chain.Head, error) {
	keys, err := spool.List(ctx, "")
	if err != nil {
		return chain.Head{}, err
	}
	sortUploads(keys)
	for _, k := range keys {
		info, err := os.Stat(filepath.Join(spool.Dir(), filepath.FromSlash(k)))
		if err != nil {
			return chain.Head{}, err
		}
		isBatch := strings.HasSuffix(k, ".parquet")
		e.uploadQ = append(e.uploadQ, spooled{key: k, size: info.Size(), since: info.ModTime(), batch: isBatch})
		e.spoolBytes += info.Size()
		if isBatch {
			e.tel.queued.Add(1)
		}
	}
	if len(keys) > 0 {
		e.logger.Info("Uploading batches left in the spool", zap.Int("batches", len(keys)), zap.String("spool", spool.Dir()))
	}
	return resumeHead(ctx, spool, e.cfg.ChainID)
}

// sortUploads orders spooled keys the way they were written: per chain, the
// verifier keys, then each batch followed by its checkpoint. (Lexical order
// would put every checkpoint before the batches it names.)
func sortUploads(keys []string) {
	type rank struct {
		chain string
		pos   int64
		kind  int
	}
	of := func(k string) rank {
		if id, first, _, err := store.ParseBatchKey(k); err == nil {
			return rank{id, first, 1}
		}
		if rest, ok := strings.CutPrefix(k, "checkpoints/"); ok {
			if id, size, ok := strings.Cut(strings.TrimSuffix(rest, ".checkpoint"), "/"); ok {
				if n, err := strconv.ParseInt(size, 10, 64); err == nil {
					// After the batch that ends at size-1, before the next.
					return rank{id, n - 1, 2}
				}
			}
		}
		return rank{"", -1, 0}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := of(keys[i]), of(keys[j])
		if a.chain != b.chain {
			return a.chain < b.chain
		}
		if a.pos != b.pos {
			return a.pos < b.pos
		}
		return a.kind < b.kind
	})
}

// recoverLog reads the write-ahead log of this chain. Entries below head
// should be in a durable batch already: each segment's last such entry is
// compared with the one stored, and the segment is removed when they match.
// The rest must continue the chain exactly at head, and are sealed into
// batches again, one per segment. It returns the head after them. It
// changes nothing on disk before it has checked every segment, and refuses
// to start when something does not line up.
func (e *auditExporter) recoverLog(ctx context.Context, st stores, head chain.Head) (chain.Head, error) {
	dir := st.walDir
	if err := wal.FinishReplace(dir, e.cfg.ChainID); err != nil {
		return chain.Head{}, err
	}
	segs, err := wal.Recover(dir, e.cfg.ChainID)
	if err != nil {
		return chain.Head{}, err
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%s; nothing was changed on disk: stop, keep a copy of %s, and see the README's \"Recovery\"",
			fmt.Sprintf(format, args...), e.cfg.Spool.Directory)
	}
	// A corrupt segment followed by one that starts at or below the head
	// holds only entries already in a durable batch (a crash came between
	// storing its batch and removing it): nothing of it is lost. It is
	// checked against the store like any other and then kept under lost/.
	redundant := func(i int) bool { return i+1 < len(segs) && segs[i+1].FirstSeq <= head.Size }
	acc, err := wal.ReadAcceptance(dir, e.cfg.ChainID)
	if err != nil {
		return chain.Head{}, err
	}
	// With the operator's acceptance, the first corrupt segment and those
	// after it give way to one of what can still be read (salvage), but
	// only once every check below has passed.
	var replace *salvaged
	k := slices.IndexFunc(segs, func(s wal.Segment) bool { return s.Corrupt != nil })
	if k >= 0 && redundant(k) {
		k = -1
	}
	switch {
	case k >= 0 && acc == nil:
		return chain.Head{}, refuse("%v; to record the loss in the trail and go on, run auditctl wal accept-loss %s", segs[k].Corrupt, e.cfg.Spool.Directory)
	case k >= 0 && !acc.Covers(segs[k:]):
		return chain.Head{}, refuse("%v; %s accepts a loss in %s at byte offset %d (and %d more), not the damage found now: remove it and accept again",
			segs[k].Corrupt, filepath.Join(dir, wal.AcceptanceName(e.cfg.ChainID)), acc.Segment, acc.Offset, len(acc.Also))
	case k >= 0 && segs[k].FirstSeq < head.Size:
		return chain.Head{}, refuse("%v; the segment holds entries the store has (the chain's head is seq %d) and others it may not: restore the segment from a backup, or compare it with the store by hand",
			segs[k].Corrupt, head.Size-1)
	case k >= 0:
		// The chain's head just before the corrupt segment, when known
		// without the store.
		before := chain.Head{Size: -1}
		if k > 0 && len(segs[k-1].Entries) > 0 {
			last := segs[k-1].Entries[len(segs[k-1].Entries)-1]
			before = chain.Head{Size: last.Seq + 1, Hash: last.EntryHash}
		} else if k == 0 {
			before = head
		}
		s, err := e.salvage(ctx, st, segs, k, before, acc)
		if err != nil {
			return chain.Head{}, refuse("%v", err)
		}
		replace = &s
		segs = append(segs[:k:k], wal.Segment{Name: segs[k].Name, FirstSeq: segs[k].FirstSeq, Entries: s.entries})
	case acc != nil:
		e.logger.Warn("An acceptance of a loss matches no corrupt segment; it is kept under the log's lost directory",
			zap.String("acceptance", filepath.Join(dir, wal.AcceptanceName(e.cfg.ChainID))), zap.String("segment", acc.Segment), zap.Int64("offset", acc.Offset))
		if err := wal.Retire(dir, wal.AcceptanceName(e.cfg.ChainID)); err != nil {
			return chain.Head{}, err
		}
	}

	type plan struct {
		rest   []entry.Entry // entries at or after head
		keep   bool          // the store could not be asked: leave the file
		retire bool          // corrupt, but all in the store: keep it under lost/
	}
	plans := make([]plan, len(segs))
	for i, seg := range segs {
		if seg.Corrupt != nil && !redundant(i) {
			return chain.Head{}, refuse("%v", seg.Corrupt)
		}
		plans[i].retire = seg.Corrupt != nil
		path := filepath.Join(dir, seg.Name)
		p := &plans[i]
		below := 0
		for below < len(seg.Entries) && seg.Entries[below].Seq < head.Size {
			below++
		}
		p.rest = seg.Entries[below:]
		if below > 0 {
			last := seg.Entries[below-1]
			stored, where, err := e.storedHash(ctx, st, last.Seq)
			switch {
			case err != nil && st.offline != nil && len(p.rest) == 0:
				// Checked at the next start, with the store.
				p.keep = true
				e.logger.Warn("Cannot check write-ahead log entries against the store, which is unavailable; the segment is left in place",
					zap.String("segment", path), zap.Error(err))
			case errors.Is(err, store.ErrNotFound):
				return chain.Head{}, refuse("write-ahead log %s holds seq %d, which the chain's head (seq %d) says is stored, but the store does not hold it: %v",
					path, last.Seq, head.Size-1, err)
			case err != nil:
				return chain.Head{}, fmt.Errorf("checking write-ahead log %s against the store: %w; start again once the store can be read", path, err)
			case stored != last.EntryHash:
				return chain.Head{}, refuse("write-ahead log %s holds seq %d with entry_hash %s, but %s holds entry_hash %s at that seq: another writer stored entries of chain %q (two collectors on one spool directory, or sharing a chain_id?), and the log's entries from seq %d on are not in the trail",
					path, last.Seq, last.EntryHash, where, stored, e.cfg.ChainID, seg.Entries[0].Seq)
			}
		}
		for _, en := range p.rest {
			switch {
			case en.Seq > head.Size:
				return chain.Head{}, refuse("write-ahead log %s begins at seq %d, but the chain reaches only seq %d: entries %d to %d are missing (a segment was removed or cut short)",
					path, en.Seq, head.Size-1, head.Size, en.Seq-1)
			case en.PrevHash != head.Hash:
				return chain.Head{}, refuse("write-ahead log %s: seq %d does not link to the chain's entry_hash %s at seq %d; refusing to fork the chain",
					path, en.Seq, head.Hash, head.Size-1)
			}
			head = chain.Head{Size: en.Seq + 1, Hash: en.EntryHash}
		}
	}
	if replace != nil {
		if err := wal.Replace(dir, e.cfg.ChainID, segs[k].FirstSeq, acc, replace.entries, replace.retire); err != nil {
			return chain.Head{}, err
		}
		e.logger.Warn("Recorded the loss the operator accepted in the write-ahead log; the damaged segments are kept under its lost directory",
			zap.String("segment", filepath.Join(dir, segs[k].Name)), zap.Int64("offset", acc.Offset),
			zap.String("accepted_by", acc.By), zap.String("wal", dir))
	}
	recovered := 0
	for i, seg := range segs {
		path := filepath.Join(dir, seg.Name)
		p := plans[i]
		if p.keep {
			continue
		}
		if seg.Torn {
			// The tail of a write that a crash interrupted: it was never
			// acknowledged. Cut it so that nothing follows garbage.
			e.logger.Warn("Dropping the torn tail of a write-ahead log segment",
				zap.String("segment", path), zap.Int64("valid_bytes", seg.ValidBytes), zap.Int64("torn_bytes", seg.TornBytes))
			if err := wal.Truncate(dir, seg.Name, seg.ValidBytes); err != nil {
				return chain.Head{}, err
			}
		}
		if p.retire {
			e.logger.Warn("A corrupt write-ahead log segment holds only entries the store has; it is kept under the log's lost directory",
				zap.Error(seg.Corrupt))
			if err := wal.Retire(dir, seg.Name); err != nil {
				return chain.Head{}, err
			}
			continue
		}
		if len(p.rest) == 0 {
			if err := os.Remove(path); err != nil {
				return chain.Head{}, fmt.Errorf("removing %s: %w", path, err)
			}
			continue
		}
		b, err := batch.NewBatch(e.now(), p.rest)
		if err != nil {
			return chain.Head{}, fmt.Errorf("write-ahead log %s: %w", path, err)
		}
		for i := range p.rest {
			b.Bytes += parquetfile.EstimatedSize(&p.rest[i])
		}
		e.sealQ = append(e.sealQ, pending{b: b, segment: seg.Name})
		e.tel.queued.Add(1)
		recovered += len(p.rest)
	}
	if recovered > 0 {
		e.logger.Info("Recovered entries from the write-ahead log", zap.Int("entries", recovered), zap.String("wal", dir))
	}
	return head, nil
}

// storedHash returns the entry_hash stored at seq of this chain, and where:
// from the spool when it holds the batch, else from the trail's store.
func (e *auditExporter) storedHash(ctx context.Context, st stores, seq int64) (hash, where string, err error) {
	var places []store.Store
	if st.spool != nil {
		places = append(places, st.spool)
	}
	if st.offline == nil {
		places = append(places, st.trail)
	}
	err = store.ErrNotFound
	for _, s := range places {
		keys, lerr := s.List(ctx, "")
		if lerr != nil {
			return "", "", lerr
		}
		key, first := "", int64(-1)
		for _, k := range keys {
			if cid, f, _, perr := store.ParseBatchKey(k); perr == nil && cid == e.cfg.ChainID && f <= seq && f > first {
				key, first = k, f
			}
		}
		if key == "" {
			continue
		}
		data, gerr := s.Get(ctx, key)
		if gerr != nil {
			return "", "", gerr
		}
		entries, _, rerr := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		if rerr != nil {
			return "", "", fmt.Errorf("%s: %w", key, rerr)
		}
		if i := seq - first; i < int64(len(entries)) && entries[i].Seq == seq {
			return entries[i].EntryHash, key, nil
		}
		err = fmt.Errorf("%s does not hold seq %d: %w", key, seq, store.ErrNotFound)
	}
	return "", "", err
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

// entriesPool holds the slices requests map their spans into; a slice
// larger than maxPooledEntries (a huge request) is left to the collector.
var entriesPool = sync.Pool{New: func() any { return new([]entry.Entry) }}

const maxPooledEntries = 1 << 12

// consumeTraces turns every audit-tagged span of td into a chained entry
// and returns once the entries are durable in the write-ahead log. Spans
// without audit tags are counted and ignored.
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
				if !entry.IsAudit(span) {
					ignored++
					continue
				}
				if cap(entries) == 0 {
					entries = make([]entry.Entry, 0, td.SpanCount())
				}
				entries = append(entries, entry.FromSpan(rs.Resource(), span, e.opts))
			}
		}
	}
	*ep = entries
	e.tel.spansIgnored(ctx, ignored)
	if len(entries) == 0 {
		return nil
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
		enc := e.chain.Canonical()
		e.wal.AppendCanonical(entries[i].Seq, enc)
		if full := e.batcher.Add(&entries[i], enc, parquetfile.EstimatedSize(&entries[i]), now); full != nil {
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
	e.tel.entriesAccepted(ctx, entries)
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
		e.tel.batchSealed(next.b.Len())
		e.qmu.Lock()
		e.sealQ = e.sealQ[1:]
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
			e.tel.batchStored(next.b.Len())
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

// seal encodes b as a Parquet object.
func (e *auditExporter) seal(b *batch.Batch) (*sealed, error) {
	entries, err := b.Entries()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	f, err := parquetfile.Encode(&buf, entries)
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
