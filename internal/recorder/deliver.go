package recorder

// Delivery: spooled objects go to the remote store, oldest first, retried
// until they are written.

import (
	"bytes"
	"context"
	"errors"
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

// uploadLoop copies spooled batches to the remote store, oldest first, and
// removes each from the spool once the store has it.
func (r *Recorder) uploadLoop() {
	defer r.wg.Done()
	ctx := context.Background()
	for {
		r.qmu.Lock()
		var next spooled
		if len(r.uploadQ) > 0 {
			next = r.uploadQ[0]
		}
		done := r.writerDone && next.key == ""
		r.qmu.Unlock()
		if done {
			return
		}
		if next.key == "" {
			if !r.wait(r.wakeUpload) {
				return
			}
			continue
		}
		var data []byte
		missing := false
		ok := r.retry("spool", next.key, func() (err error) {
			data, err = r.spool.Get(ctx, next.key)
			if errors.Is(err, store.ErrNotFound) {
				missing = true
				return nil
			}
			return err
		})
		if ok && missing {
			// Someone removed it from the spool: nothing to upload.
			r.logger.Error("A spooled object is gone before it was uploaded", zap.String("spool", next.key))
			r.dequeueUpload(next)
			continue
		}
		ok = ok && r.retry("store", next.key, func() error {
			return r.store.Put(ctx, next.key, data)
		}) && r.retry("spool", next.key, func() error {
			return r.spool.Delete(ctx, next.key)
		})
		if !ok {
			return
		}
		r.dequeueUpload(next)
		if !next.batch {
			continue
		}
		if f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data))); err == nil {
			r.metrics.Stored(int(f.EntryCount))
		}
	}
}

// dequeueUpload removes the head of the upload queue, which is next.
func (r *Recorder) dequeueUpload(next spooled) {
	r.qmu.Lock()
	r.uploadQ = r.uploadQ[1:]
	r.spoolBytes -= next.size
	r.qmu.Unlock()
	if next.batch {
		r.metrics.Queued(-1)
	}
}

// retry calls fn until it succeeds, backing off between attempts, and
// reports false when shutdown gave up meanwhile. It logs the first failure
// and the recovery, not every attempt, and counts every failure.
func (r *Recorder) retry(where, key string, fn func() error) bool {
	delay := minRetryDelay
	failing := false
	for {
		err := fn()
		if err == nil {
			if failing {
				r.logger.Info("Audit batch written after retries", zap.String(where, key))
			}
			return true
		}
		conflict := errors.Is(err, store.ErrConflict)
		r.metrics.StoreError(conflict)
		if !failing {
			level := zap.WarnLevel
			if conflict {
				level = zap.ErrorLevel
			}
			r.logger.Log(level, "Cannot write audit batch; retrying until it is written",
				zap.String(where, key), zap.Error(err))
			failing = true
		}
		if !r.sleep(delay) {
			return false
		}
		delay = min(delay*2, maxRetryDelay)
	}
}

// wait blocks until c is signalled and reports false when shutdown gave up.
func (r *Recorder) wait(c chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-r.abort:
		return false
	}
}

// sleep waits for d and reports false when shutdown gave up meanwhile.
func (r *Recorder) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.abort:
		return false
	}
}
