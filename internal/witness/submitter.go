package witness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// SubmitterConfig configures a Submitter: one witness, one log.
type SubmitterConfig struct {
	// URL is the witness's submission prefix (Client.Add).
	URL string
	// Verifier is the witness's cosignature verifier (NewVerifier): an
	// answer without a valid cosignature of it is not stored.
	Verifier note.Verifier
	// Client makes the requests; nil is the zero Client.
	Client *Client
	// Timeout bounds one attempt (the request, a resend after a conflict,
	// and storing the cosignature); 0 is DefaultTimeout.
	Timeout time.Duration
	// Proof returns the consistency proof from the tree of oldSize to the
	// checkpoint's tree (newSize, newRoot), as the log's stored tiles give
	// it.
	Proof func(ctx context.Context, oldSize, newSize uint64, newRoot []byte) ([][]byte, error)
	// Store keeps the cosignature lines of the checkpoint of size (they
	// verified); an error makes the Submitter retry storing them.
	Store func(ctx context.Context, size uint64, cosigs []byte) error
	// Failed, when set, is told each failed attempt, from Run's goroutine:
	// errors wrap ErrUnavailable (the witness could not be reached),
	// ErrBadCosignature or ErrTooFewCosignatures (its answer did not
	// verify), Store's error, or the witness's refusal (ErrBadProof,
	// ErrBadSignature, ErrUnknownLog, ErrMalformed, *ConflictError when
	// the witness holds a larger tree).
	Failed func(err error)
	// MinBackoff and MaxBackoff bound the wait after a failed attempt,
	// which doubles from one to the other; 0 are DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock of Status; nil is time.Now.
	Now func() time.Time
}

// Defaults of SubmitterConfig.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
)

// Submitter gets a log's checkpoints cosigned by one witness without ever
// making the log wait: Offer hands it a checkpoint and returns at once;
// Run submits the newest checkpoint offered, with a consistency proof from
// the size the witness has, verifies the cosignature and stores it. A
// checkpoint offered while another waits replaces it: one cosignature of
// the newest checkpoint vouches for every older one, since the witness
// checked the proof from the size it had. A failed attempt is retried,
// after a backoff, with the newest checkpoint; so cosignatures catch up
// when a witness comes back.
type Submitter struct {
	cfg    SubmitterConfig
	client *Client
	wake   chan struct{}
	// known is the witness's size as last learnt (0 at first: the
	// witness's 409 then tells it). Run's goroutine only.
	known uint64

	mu       sync.Mutex
	pending  *job // the newest checkpoint offered, not yet taken by Run
	current  *job // the checkpoint Run is submitting
	cosigned *job // the newest checkpoint cosigned and stored
}

// job is one checkpoint to get cosigned.
type job struct {
	note    []byte
	size    uint64
	root    []byte
	offered time.Time // when Offer was given it
	waiting time.Time // when the oldest checkpoint not cosigned since was offered
	cosigs  []byte    // the verified answer, once the witness gave it
}

// Status is what a Submitter has achieved, for metrics.
type Status struct {
	// CosignedSize is the size of the newest checkpoint cosigned and
	// stored since the Submitter was made, and Cosigned when it was
	// offered; zero when none.
	CosignedSize uint64
	Cosigned     time.Time
	// Waiting is when the oldest checkpoint offered and not yet cosigned
	// was offered: zero when every checkpoint offered is cosigned.
	Waiting time.Time
}

// NewSubmitter checks cfg and returns a Submitter; call Run.
func NewSubmitter(cfg SubmitterConfig) (*Submitter, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("witness submitter: no witness URL")
	case cfg.Verifier == nil:
		return nil, errors.New("witness submitter: no witness verifier key")
	case cfg.Proof == nil || cfg.Store == nil:
		return nil, errors.New("witness submitter: Proof and Store are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, DefaultMaxBackoff)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Failed == nil {
		cfg.Failed = func(error) {}
	}
	c := cfg.Client
	if c == nil {
		c = &Client{}
	}
	return &Submitter{cfg: cfg, client: c, wake: make(chan struct{}, 1)}, nil
}

// Offer hands the Submitter a signed checkpoint (a C2SP tlog-checkpoint
// note) to get cosigned. It never blocks. A checkpoint no larger than one
// offered before is ignored. Errors: the checkpoint is malformed
// (ErrMalformed).
func (s *Submitter) Offer(checkpoint []byte) error {
	text, _, err := splitNote(checkpoint)
	if err != nil {
		return err
	}
	c, err := parseCheckpointText(string(text))
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	j := &job{note: checkpoint, size: c.size, root: c.root, offered: now, waiting: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range []*job{s.pending, s.current, s.cosigned} {
		if o != nil && o.size >= j.size {
			return nil
		}
	}
	if s.pending != nil {
		j.waiting = s.pending.waiting
	}
	s.pending = j
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Status returns what the Submitter has achieved so far.
func (s *Submitter) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Status
	if s.cosigned != nil {
		st.CosignedSize, st.Cosigned = s.cosigned.size, s.cosigned.offered
	}
	switch {
	case s.current != nil:
		st.Waiting = s.current.waiting
	case s.pending != nil:
		st.Waiting = s.pending.waiting
	}
	return st
}

// Run submits the checkpoints offered until ctx is done.
func (s *Submitter) Run(ctx context.Context) {
	var backoff time.Duration
	for {
		j := s.take(ctx)
		if j == nil {
			return
		}
		err := s.attempt(ctx, j)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.finish(j)
			backoff = 0
			continue
		}
		s.cfg.Failed(err)
		s.requeue(j)
		backoff = min(max(2*backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// Wait returns when every checkpoint offered is cosigned and stored, or
// ctx is done (then false): for a graceful stop.
func (s *Submitter) Wait(ctx context.Context) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.Status().Waiting.IsZero() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// take waits for a checkpoint to submit; nil when ctx is done.
func (s *Submitter) take(ctx context.Context) *job {
	for {
		s.mu.Lock()
		j := s.pending
		s.pending, s.current = nil, j
		s.mu.Unlock()
		if j != nil {
			return j
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// attempt gets j cosigned, if it is not yet, and stores the cosignature.
func (s *Submitter) attempt(ctx context.Context, j *job) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if j.cosigs == nil {
		proof := func(ctx context.Context, old uint64) ([][]byte, error) {
			return s.cfg.Proof(ctx, old, j.size, j.root)
		}
		cosigs, had, err := s.client.Submit(ctx, s.cfg.URL, s.known, j.note, proof)
		var conflict *ConflictError
		switch {
		case errors.As(err, &conflict):
			s.known = conflict.Size
		case had > 0:
			s.known = had
		}
		if err != nil {
			return fmt.Errorf("checkpoint of size %d: %w", j.size, err)
		}
		if _, err := RequireCosignatures(j.note, cosigs, 1, s.cfg.Verifier); err != nil {
			return fmt.Errorf("witness %s answered for the checkpoint of size %d: %w", s.cfg.URL, j.size, err)
		}
		s.known, j.cosigs = j.size, cosigs
	}
	if err := s.cfg.Store(ctx, j.size, j.cosigs); err != nil {
		return fmt.Errorf("storing the cosignature of %s for size %d: %w", s.cfg.URL, j.size, err)
	}
	return nil
}

// finish records j cosigned and stored.
func (s *Submitter) finish(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current, s.cosigned = nil, j
}

// requeue puts back j after a failed attempt, unless a newer checkpoint
// was offered meanwhile: that one is submitted next, and waits since j
// did.
func (s *Submitter) requeue(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = nil
	if s.pending == nil {
		s.pending = j
		return
	}
	s.pending.waiting = j.waiting
}
