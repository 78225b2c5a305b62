package recorder

// Intake: entries are chained, logged and acknowledged.

import (
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// sealQueue takes the batches the intake seals, in chain order (the
// sealer).
type sealQueue interface {
	push(p pending)
}

// downstream is a part after the intake that may fall behind:
// refusal says why new entries must wait (a *RefusedError), or nil.
type downstream interface {
	refusal() error
}

// intake chains entries, appends them to the write-ahead log, adds them to
// the open batch and hands each sealed batch on, in chain order. The
// chain, the log's appends and the batcher are guarded by mu, which fixes
// the order of the chain; the fsync that acknowledges them (group commit)
// is outside it.
type intake struct {
	batcher  *batch.Batcher
	now      func() time.Time
	metrics  Metrics
	logger   *zap.Logger
	failed   func(error) // told once that the log broke; may be nil
	failOnce sync.Once

	mu     sync.Mutex
	chain  *chain.Chain // nil until started
	log    *wal.Log
	out    sealQueue
	behind []downstream // asked, in order, before entries are taken
	closed bool
}

// start opens the intake: the chain continues from c, into log, and sealed
// batches go to out.
func (in *intake) start(c *chain.Chain, log *wal.Log, out sealQueue, behind ...downstream) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.chain, in.log, in.out, in.behind = c, log, out, behind
}

// Append chains entries, in order, at the end of the chain (setting their
// chain id, seq and hashes), appends them to the write-ahead log and adds
// them to the open batch, and returns once they are durable in the log:
// then, and only then, may they be acknowledged. It returns ErrShutdown
// before start and after close, and a *RefusedError, with nothing chained,
// while a part downstream is behind or the log has failed; an fsync that
// fails is a *RefusedError too, the entries then unacknowledged.
func (in *intake) Append(entries []entry.Entry) error { return in.append(entries, false) }

// AppendOwn is Append for the collector's own few entries (its start and
// stop markers): taken even while a part downstream is behind, which only
// refuses what senders send. A failed log still refuses them.
func (in *intake) AppendOwn(entries []entry.Entry) error { return in.append(entries, true) }

func (in *intake) append(entries []entry.Entry, own bool) error {
	in.mu.Lock()
	if in.closed || in.chain == nil {
		in.mu.Unlock()
		return ErrShutdown
	}
	if err := in.admit(own); err != nil {
		in.mu.Unlock()
		return err
	}
	now := in.now()
	for i := range entries {
		if in.batcher.Due(now) {
			in.sealLocked(in.batcher.Flush())
		}
		e := &entries[i]
		in.chain.Append(e)
		in.log.AppendCanonical(e.Seq, in.chain.Canonical())
		sum := in.chain.Sum()
		if full := in.batcher.Add(e, &sum, parquetfile.EstimatedSize(e), now); full != nil {
			in.sealLocked(full)
		}
	}
	end := in.log.End()
	in.metrics.Head(in.chain.Head())
	in.mu.Unlock()

	// Group commit: one fsync covers every request that waits meanwhile.
	if err := in.log.Sync(end); err != nil {
		in.walFailed(err)
		return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: %v; restart the collector to recover", err), Chained: true}
	}
	return nil
}

// close seals the open batch and takes no more entries. It reports whether
// the intake was started and open until now.
func (in *intake) close() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return false
	}
	in.closed = true
	if in.chain == nil {
		return false
	}
	in.sealLocked(in.batcher.Flush())
	return true
}

// abandon takes no more entries and leaves the open batch unsealed.
func (in *intake) abandon() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
}

// walFailed reports, once, that the write-ahead log broke: the recorder
// refuses audit data from now on (the rest of the collector keeps working)
// until a restart recovers the log.
func (in *intake) walFailed(err error) {
	in.failOnce.Do(func() {
		in.logger.Error("The write-ahead log failed; audit data is refused until the collector restarts", zap.Error(err))
		if in.failed != nil {
			in.failed(err)
		}
	})
}

// admit refuses new data while the write-ahead log has failed or a part
// downstream is behind (sealed batches wait for the disk, the spool is
// full). Callers hold mu.
func (in *intake) admit(own bool) error {
	if err := in.log.Err(); err != nil {
		in.walFailed(err)
		return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: %v; restart the collector to recover", err)}
	}
	if own {
		return nil
	}
	for _, b := range in.behind {
		if err := b.refusal(); err != nil {
			return err
		}
	}
	return nil
}

// sealLocked closes b's log segment and hands b on. Callers hold mu, so
// batches are handed on in chain order; the rotation waits for no disk
// (the sealer syncs the segment's end before it writes b). When the log
// has failed, b is still handed on (its entries may yet reach the trail)
// and the failure surfaces in the requests' Sync.
func (in *intake) sealLocked(b *batch.Batch) {
	if b == nil {
		return
	}
	segment, end, err := in.log.Rotate(in.chain.Head().Size)
	if err != nil {
		in.walFailed(err)
		segment = ""
	}
	in.out.push(pending{b: b, segment: segment, end: end})
}

// tick seals the open batch when it reaches its maximum age or a new UTC
// day begins, every period, until stop is closed.
func (in *intake) tick(period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			in.mu.Lock()
			if in.batcher.Due(in.now()) {
				in.sealLocked(in.batcher.Flush())
			}
			in.mu.Unlock()
		}
	}
}
