package recorder

// Waiting and retrying, for the parts that write to the stores (the sealer
// and the delivery), all given up together when shutdown stops waiting.

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Retry delays for writing to the spool or the store.
const (
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 30 * time.Second
)

// retrier retries writes until they succeed or abort is closed.
type retrier struct {
	logger  *zap.Logger
	metrics Metrics         // told of every failed write
	abort   <-chan struct{} // closed when shutdown gives up waiting
}

// retry calls fn until it succeeds, backing off between attempts, and
// reports false when shutdown gave up meanwhile. It logs the first failure
// and the recovery, not every attempt, and counts every failure.
func (r *retrier) retry(where, key string, fn func() error) bool {
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
func (r *retrier) wait(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-r.abort:
		return false
	}
}

// sleep waits for d and reports false when shutdown gave up meanwhile.
func (r *retrier) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.abort:
		return false
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
