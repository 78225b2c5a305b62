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
// cosignature, a timestamp token), once: the caller retries. With a remote
// store it goes through the spool, queued after what is queued now, so
// that it never reaches the store before the checkpoint it is beside
// (which may still wait in the spool); once a clean shutdown has uploaded
// everything, straight to the store. Valid after Start.
func (r *Recorder) PutBeside(ctx context.Context, key string, data []byte) error {
	r.mu.Lock()
	s, d := r.sealer, r.deliver
	r.mu.Unlock()
	switch {
	case s == nil:
		return errors.New("recorder: not started")
	case d != nil && d.isFinished():
		// Everything, the checkpoint too, is uploaded: straight to the
		// store (the spool may be another run's by now).
		return d.remote.Put(ctx, key, data)
	case d != nil:
		if err := d.spool.Put(ctx, key, data); err != nil {
			return err
		}
		if d.addBeside(spooled{key: key, size: int64(len(data)), since: r.now()}) {
			return nil
		}
		// The delivery uploaded everything, the checkpoint too, and
		// stopped (a clean shutdown): straight to the store.
		if err := d.remote.Put(ctx, key, data); err != nil {
			return err
		}
		_ = d.spool.Delete(ctx, key) // left behind, it is uploaded (again, identical) at the next start
		return nil
	}
	return s.target.Put(ctx, key, data)
}
