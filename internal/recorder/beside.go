package recorder

// Objects beside the trail: what the exporter's witness and timestamp
// clients read (tiles, checkpoints) and add (cosignatures, timestamps).

import (
	"context"
	"errors"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Get returns the object stored under key, whether sealed and still in the
// spool or already in the trail's store: the spool is read first, and
// delivery writes an object to the store before it removes it from the
// spool. The error wraps store.ErrNotFound when neither has it. Valid
// after Start.
func (r *Recorder) Get(ctx context.Context, key string) ([]byte, error) {
	r.mu.Lock()
	s, d := r.sealer, r.deliver
	r.mu.Unlock()
	if s == nil {
		return nil, errors.New("recorder: not started")
	}
	if d != nil {
		data, err := d.spool.Get(ctx, key)
		if !errors.Is(err, store.ErrNotFound) {
			return data, err
		}
		return d.remote.Get(ctx, key)
	}
	return s.target.Get(ctx, key)
}

// PutBeside writes an object that is not part of the chain (a witness's
// cosignature, a timestamp token) to the trail's store directly, once:
// the caller retries. Valid after Start.
func (r *Recorder) PutBeside(ctx context.Context, key string, data []byte) error {
	r.mu.Lock()
	s, d := r.sealer, r.deliver
	r.mu.Unlock()
	switch {
	case s == nil:
		return errors.New("recorder: not started")
	case d != nil:
		return d.remote.Put(ctx, key, data)
	}
	return s.target.Put(ctx, key, data)
}
