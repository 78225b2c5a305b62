package recorder

// Intake: entries are chained, logged and acknowledged.

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

// Append chains entries, in order, at the end of the chain (setting their
// chain id, seq and hashes), appends them to the write-ahead log and adds
// them to the open batch, and returns once they are durable in the log:
// then, and only then, may they be acknowledged. It returns ErrShutdown
// after shutdown began, and a *RefusedError, with nothing chained, while the
// spool is full, sealed batches wait for the disk or the log has failed; an
// fsync that fails is a *RefusedError too, the entries then unacknowledged.
func (r *Recorder) Append(entries []entry.Entry) error {
	r.mu.Lock()
	if r.closed || r.chain == nil {
		r.mu.Unlock()
		return ErrShutdown
	}
	if err := r.admit(); err != nil {
		r.mu.Unlock()
		return err
	}
	now := r.now()
	for i := range entries {
		if r.batcher.Due(now) {
			r.sealLocked(r.batcher.Flush())
		}
		e := &entries[i]
		r.chain.Append(e)
		r.wal.AppendCanonical(e.Seq, r.chain.Canonical())
		sum := r.chain.Sum()
		if full := r.batcher.Add(e, &sum, parquetfile.EstimatedSize(e), now); full != nil {
			r.sealLocked(full)
		}
	}
	end := r.wal.End()
	r.metrics.Head(r.chain.Head())
	r.mu.Unlock()

	// Group commit: one fsync covers every request that waits meanwhile.
	if err := r.wal.Sync(end); err != nil {
		r.walFailed(err)
		return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: %v; restart the collector to recover", err), Chained: true}
	}
	return nil
}

// walFailed reports, once, that the write-ahead log broke: the recorder
// refuses audit data from now on (the rest of the collector keeps working)
// until a restart recovers the log.
func (r *Recorder) walFailed(err error) {
	r.failOnce.Do(func() {
		r.logger.Error("The write-ahead log failed; audit data is refused until the collector restarts", zap.Error(err))
		if r.cfg.Failed != nil {
			r.cfg.Failed(err)
		}
	})
}

// admit refuses new data while the spool is over its limit (the remote
// store is not taking batches) or the write-ahead log has failed. Callers
// hold mu.
func (r *Recorder) admit() error {
	if err := r.wal.Err(); err != nil {
		r.walFailed(err)
		return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: %v; restart the collector to recover", err)}
	}
	r.qmu.Lock()
	used, sealing := r.spoolBytes, len(r.sealQ)
	r.qmu.Unlock()
	if sealing >= maxSealQueue {
		// The writer is behind (the disk is slow or failing): bound memory.
		return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: %d sealed batches wait to be written to disk; retry later", sealing)}
	}
	if r.spool == nil || used < r.cfg.SpoolMaxBytes {
		return nil
	}
	return &RefusedError{Msg: fmt.Sprintf("agentaudit exporter: the spool %s is full (%d of %d bytes): the S3 store is not taking batches; retry later",
		r.spool.Dir(), used, r.cfg.SpoolMaxBytes)}
}

// sealLocked closes b's log segment and queues b for the writer. Callers
// hold mu, so batches are queued in chain order. When the log has failed,
// b is still queued (its entries may yet reach the trail) and the failure
// surfaces in the requests' Sync.
func (r *Recorder) sealLocked(b *batch.Batch) {
	if b == nil {
		return
	}
	segment, err := r.wal.Rotate(r.chain.Head().Size)
	if err != nil {
		r.walFailed(err)
		segment = ""
	}
	r.qmu.Lock()
	r.sealQ = append(r.sealQ, pending{b: b, segment: segment})
	r.qmu.Unlock()
	r.metrics.Queued(1)
	signal(r.wakeWriter)
}

// tickLoop seals the open batch when it reaches its maximum age or a new
// UTC day begins.
func (r *Recorder) tickLoop() {
	defer r.wg.Done()
	period := min(max(r.cfg.Batch.MaxAge/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-r.stopTick:
			return
		case <-t.C:
			r.mu.Lock()
			if r.batcher.Due(r.now()) {
				r.sealLocked(r.batcher.Flush())
			}
			r.mu.Unlock()
		}
	}
}
