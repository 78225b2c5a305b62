package recorder

// Sealing: each sealed batch is written, in chain order, as a Parquet file
// from the columns it holds, with its signed checkpoint.

import (
	"bytes"
	"context"
	"os"
	"slices"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// pending is a sealed batch not yet written to the spool or the store, with
// the write-ahead log segment that holds its entries until then.
type pending struct {
	b       *batch.Batch
	segment string // "" when no segment is left to remove
}

// writeLoop encodes sealed batches one at a time, in chain order, writes
// each to the spool, or to the store when there is no spool, and then
// removes its write-ahead log segment.
func (r *Recorder) writeLoop() {
	defer r.wg.Done()
	defer func() {
		r.qmu.Lock()
		r.writerDone = true
		r.qmu.Unlock()
		signal(r.wakeUpload)
	}()
	target, where := r.store, "store"
	if r.spool != nil {
		target, where = r.spool, "spool"
	}
	key, ok := r.publishKey(target, where)
	if !ok {
		return
	}
	if r.spool != nil {
		r.qmu.Lock()
		if !slices.ContainsFunc(r.uploadQ, func(s spooled) bool { return s.key == key }) {
			r.uploadQ = append(r.uploadQ, spooled{key: key, since: r.now()})
		}
		r.qmu.Unlock()
		signal(r.wakeUpload)
	}
	for {
		r.qmu.Lock()
		var next pending
		if len(r.sealQ) > 0 {
			next = r.sealQ[0]
		}
		done := r.sealDone && next.b == nil
		r.qmu.Unlock()
		if done {
			return
		}
		if next.b == nil {
			if !r.wait(r.wakeWriter) {
				return
			}
			continue
		}
		if r.wal.Err() != nil && !r.keepDurable(&next) {
			continue
		}
		s, err := r.seal(next.b)
		if err != nil {
			// Our own entries always encode unless the batch is
			// malformed, which is a bug: keep the batch and say so.
			r.logger.Error("Cannot encode audit batch; it stays queued", zap.Error(err))
			if !r.sleep(maxRetryDelay) {
				return
			}
			continue
		}
		if !r.retry(where, s.key, func() error { return target.Put(context.Background(), s.key, s.data) }) {
			return
		}
		cpKey, cpMsg, ok := r.writeCheckpoint(target, where, s.footer)
		if !ok {
			return
		}
		r.recordHead(chain.Head{Size: s.footer.LastSeq + 1, Hash: s.footer.LastHash})
		n := int(s.footer.EntryCount)
		r.metrics.Sealed(n)
		r.qmu.Lock()
		r.sealQ = r.sealQ[1:]
		next.b.Release() // its buffers go to a later batch
		if r.spool != nil {
			r.uploadQ = append(r.uploadQ, spooled{key: s.key, size: int64(len(s.data)), since: next.b.Opened, batch: true})
			r.spoolBytes += int64(len(s.data))
			if cpKey != "" {
				r.uploadQ = append(r.uploadQ, spooled{key: cpKey, size: int64(len(cpMsg)), since: next.b.Opened})
				r.spoolBytes += int64(len(cpMsg))
			}
		}
		r.qmu.Unlock()
		if r.spool != nil {
			signal(r.wakeUpload)
		} else {
			r.metrics.Queued(-1)
			r.metrics.Stored(n)
		}
		if next.segment != "" {
			// A segment left behind is harmless: recovery drops entries
			// that a durable batch holds.
			if err := r.wal.Remove(next.segment); err != nil {
				r.logger.Warn("Cannot remove a write-ahead log segment", zap.Error(err))
			}
		}
	}
}

// recordHead updates the head marker. It is best effort: when it cannot be
// written, it is removed instead, so that a stale marker never makes an
// offline start resume from an old head (and fork the chain).
func (r *Recorder) recordHead(h chain.Head) {
	err := writeHeadMarker(r.cfg.SpoolDir, r.cfg.ChainID, r.cfg.StoreID, h)
	if err == nil {
		return
	}
	_ = os.Remove(headMarkerPath(r.cfg.SpoolDir, r.cfg.ChainID))
	r.logger.Warn("Cannot record the chain head locally; a restart while the store is unavailable will refuse to start", zap.Error(err))
}

// keepDurable trims a batch, once the write-ahead log has failed, to the
// entries that were durable (and so acknowledged) before the failure; the
// others were refused to their clients and must not reach the trail, or a
// client's retry would record them twice. It reports false, and drops the
// batch, when nothing is left. The restart recovers the same prefix from the
// log and continues the chain after it.
func (r *Recorder) keepDurable(p *pending) bool {
	last := r.wal.DurableSeq()
	n := int(min(max(last-p.b.FirstSeq()+1, 0), int64(p.b.Len())))
	if n == p.b.Len() {
		return true
	}
	r.logger.Error("Dropping audit entries that were refused to their clients after the write-ahead log failed",
		zap.Int64("first_seq", p.b.FirstSeq()+int64(n)), zap.Int("entries", p.b.Len()-n))
	p.b.Truncate(n)
	if n > 0 {
		return true
	}
	r.qmu.Lock()
	r.sealQ = r.sealQ[1:]
	r.qmu.Unlock()
	p.b.Release()
	r.metrics.Queued(-1)
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
func (r *Recorder) seal(b *batch.Batch) (*sealed, error) {
	var buf bytes.Buffer
	f, err := b.Encode(&buf)
	if err != nil {
		return nil, err
	}
	return &sealed{key: store.BatchKey(f.ChainID, f.FirstSeq, b.Opened), data: buf.Bytes(), footer: f}, nil
}
