package witness

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/witness/witnesstest"
)

// gate stands in front of a witness at a fixed URL and can make it down
// (503), slow (it answers only when the request gives up) or up.
type gate struct {
	next     http.Handler
	requests atomic.Int64

	mu      sync.Mutex
	mode    string
	release chan struct{} // closed when the mode changes
}

func newGate(t *testing.T, next http.Handler) (*gate, string) {
	g := &gate{next: next, mode: "up", release: make(chan struct{})}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { g.set("up") }) // before Close: no request hangs
	return g, srv.URL
}

func (g *gate) set(mode string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mode = mode
	close(g.release)
	g.release = make(chan struct{})
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.requests.Add(1)
	g.mu.Lock()
	mode, release := g.mode, g.release
	g.mu.Unlock()
	switch mode {
	case "down":
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	case "slow":
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "too slow", http.StatusGatewayTimeout)
	default:
		g.next.ServeHTTP(w, r)
	}
}

// submitterFixture is a Submitter of log l to witness w behind a gate,
// storing cosignatures in memory.
type submitterFixture struct {
	t    *testing.T
	l    *witnesstest.Log
	lmu  sync.Mutex // l is not safe for concurrent use
	w    *testWitness
	gate *gate
	sub  *Submitter

	mu       sync.Mutex
	stored   map[uint64][]byte
	failures []error
	storeErr error
	proofs   [][2]uint64 // (old, new) sizes Proof was asked for
}

func newSubmitterFixture(t *testing.T, verifier note.Verifier) *submitterFixture {
	f := &submitterFixture{t: t, l: witnesstest.New(t, "agentaudit/chain-a"), stored: map[uint64][]byte{}}
	f.w = newTestWitness(t, "witness.test/w1", f.l)
	var url string
	f.gate, url = newGate(t, f.w.srv)
	if verifier == nil {
		verifier = f.w.vrfr
	}
	var err error
	f.sub, err = NewSubmitter(SubmitterConfig{
		URL: url, Verifier: verifier, Timeout: 200 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Proof: func(_ context.Context, old, size uint64, root []byte) ([][]byte, error) {
			f.lmu.Lock()
			defer f.lmu.Unlock()
			require.Equal(t, f.l.Root(size), root)
			f.mu.Lock()
			f.proofs = append(f.proofs, [2]uint64{old, size})
			f.mu.Unlock()
			return f.l.Proof(old, size), nil
		},
		Store: func(_ context.Context, size uint64, cosigs []byte) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.storeErr != nil {
				return f.storeErr
			}
			f.stored[size] = cosigs
			return nil
		},
		Failed: func(err error) {
			f.mu.Lock()
			f.failures = append(f.failures, err)
			f.mu.Unlock()
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.sub.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// grow appends n leaves and offers the new checkpoint, which must not
// wait for the witness.
func (f *submitterFixture) grow(n int) uint64 {
	f.lmu.Lock()
	size := f.l.Grow(n).Size()
	cp := f.l.Checkpoint(size)
	f.lmu.Unlock()
	start := time.Now()
	require.NoError(f.t, f.sub.Offer(cp))
	require.Less(f.t, time.Since(start), 50*time.Millisecond, "Offer waited")
	return size
}

func (f *submitterFixture) cosigned(size uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.stored[size]
	return ok
}

func (f *submitterFixture) requireStored(size uint64) {
	f.t.Helper()
	require.Eventually(f.t, func() bool { return f.cosigned(size) }, 5*time.Second, 5*time.Millisecond, "size %d not cosigned", size)
	f.mu.Lock()
	cosigs := f.stored[size]
	f.mu.Unlock()
	f.lmu.Lock()
	cp := f.l.Checkpoint(size)
	f.lmu.Unlock()
	_, err := RequireCosignatures(cp, cosigs, 1, f.w.vrfr)
	require.NoError(f.t, err)
}

func (f *submitterFixture) failed() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.failures...)
}

func TestSubmitterCosignsTheNewest(t *testing.T) {
	f := newSubmitterFixture(t, nil)
	f.grow(5)
	f.requireStored(5)
	assert.Empty(t, f.proofs, "from size 0 no proof is asked for")
	st := f.sub.Status()
	assert.Equal(t, uint64(5), st.CosignedSize)
	assert.True(t, st.Waiting.IsZero())
	assert.False(t, st.Cosigned.IsZero())

	// Offers while the witness is slow to answer: only the newest is
	// submitted next, with a proof from the size the witness has.
	f.gate.set("slow")
	requests := f.gate.requests.Load()
	f.grow(1)
	require.Eventually(t, func() bool { return f.gate.requests.Load() > requests }, 5*time.Second, time.Millisecond)
	skipped := f.grow(2)
	last := f.grow(3)
	f.gate.set("up")
	f.requireStored(last)
	assert.Contains(t, f.proofs, [2]uint64{5, last})
	assert.NotContains(t, f.proofs, [2]uint64{5, skipped})
	assert.False(t, f.cosigned(skipped))
	size, _ := f.w.srv.Size("agentaudit/chain-a")
	assert.Equal(t, last, size)
	require.True(t, f.sub.Wait(context.Background()))

	// An older or equal checkpoint than one offered is ignored.
	f.lmu.Lock()
	old := f.l.Checkpoint(5)
	f.lmu.Unlock()
	require.NoError(t, f.sub.Offer(old))
	assert.True(t, f.sub.Status().Waiting.IsZero())
	require.ErrorIs(t, f.sub.Offer([]byte("not a note")), ErrMalformed)
}

// TestSubmitterCatchesUp: a witness down or slow delays cosignatures,
// never the log; the lag shows in Status; when the witness is back, the
// newest checkpoint is cosigned with a proof from the witness's size.
func TestSubmitterCatchesUp(t *testing.T) {
	for _, mode := range []string{"down", "slow"} {
		t.Run(mode, func(t *testing.T) {
			f := newSubmitterFixture(t, nil)
			f.grow(3)
			f.requireStored(3)

			f.gate.set(mode)
			before := time.Now()
			first := f.grow(4)
			require.Eventually(t, func() bool { return len(f.failed()) >= 2 }, 5*time.Second, 5*time.Millisecond)
			second := f.grow(4)
			for _, err := range f.failed() {
				require.ErrorIs(t, err, ErrUnavailable)
			}
			st := f.sub.Status()
			assert.Equal(t, uint64(3), st.CosignedSize, "nothing new cosigned while the witness is %s", mode)
			assert.False(t, st.Waiting.IsZero())
			assert.False(t, st.Waiting.Before(before), "waiting since the first checkpoint it missed")
			assert.True(t, st.Waiting.Before(time.Now()))
			assert.False(t, f.cosigned(first))

			f.gate.set("up")
			f.requireStored(second)
			assert.Contains(t, f.proofs, [2]uint64{3, second})
			assert.False(t, f.cosigned(first), "the newest stands for the ones before it")
			require.Eventually(t, func() bool { return f.sub.Status().Waiting.IsZero() }, time.Second, 5*time.Millisecond)
			assert.Equal(t, second, f.sub.Status().CosignedSize)
		})
	}
}

// TestSubmitterRefused: a witness that refuses (here: the log was
// rewritten under the same key) gets nothing stored; the refusal is
// reported each attempt; the witness keeps its state.
func TestSubmitterRefused(t *testing.T) {
	f := newSubmitterFixture(t, nil)
	f.grow(6)
	f.requireStored(6)

	f.lmu.Lock()
	f.l = witnesstest.NewWithKey(t, f.l.Origin, f.l.Signer, f.l.VKey).Grow(9)
	cp := f.l.Checkpoint(9)
	f.lmu.Unlock()
	require.NoError(t, f.sub.Offer(cp))
	require.Eventually(t, func() bool { return len(f.failed()) >= 2 }, 5*time.Second, 5*time.Millisecond)
	for _, err := range f.failed() {
		require.ErrorIs(t, err, ErrBadProof)
	}
	assert.False(t, f.cosigned(9))
	size, _ := f.w.srv.Size("agentaudit/chain-a")
	assert.Equal(t, uint64(6), size)
	assert.False(t, f.sub.Status().Waiting.IsZero())
}

// TestSubmitterChecksTheCosignature: an answer that is not a valid
// cosignature of the configured key is not stored.
func TestSubmitterChecksTheCosignature(t *testing.T) {
	_, otherKey, err := GenerateKey("witness.test/other", false)
	require.NoError(t, err)
	other, err := NewVerifier(otherKey)
	require.NoError(t, err)
	f := newSubmitterFixture(t, other)
	f.grow(2)
	require.Eventually(t, func() bool { return len(f.failed()) >= 1 }, 5*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, f.failed()[0], ErrTooFewCosignatures)
	assert.False(t, f.cosigned(2))
}

// TestSubmitterRetriesTheStore: a cosignature that could not be stored is
// stored later without asking the witness again.
func TestSubmitterRetriesTheStore(t *testing.T) {
	f := newSubmitterFixture(t, nil)
	f.mu.Lock()
	f.storeErr = assert.AnError
	f.mu.Unlock()
	f.grow(4)
	require.Eventually(t, func() bool { return len(f.failed()) >= 3 }, 5*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, f.failed()[0], assert.AnError)
	requests := f.gate.requests.Load()
	f.mu.Lock()
	f.storeErr = nil
	f.mu.Unlock()
	f.requireStored(4)
	assert.Equal(t, requests, f.gate.requests.Load(), "the witness was asked once")
}

func TestNewSubmitterRefuses(t *testing.T) {
	_, vkey, err := GenerateKey("w", false)
	require.NoError(t, err)
	v, err := NewVerifier(vkey)
	require.NoError(t, err)
	proof := func(context.Context, uint64, uint64, []byte) ([][]byte, error) { return nil, nil }
	store := func(context.Context, uint64, []byte) error { return nil }
	for _, cfg := range []SubmitterConfig{
		{Verifier: v, Proof: proof, Store: store},
		{URL: "http://127.0.0.1:1", Proof: proof, Store: store},
		{URL: "http://127.0.0.1:1", Verifier: v, Store: store},
		{URL: "http://127.0.0.1:1", Verifier: v, Proof: proof},
	} {
		_, err := NewSubmitter(cfg)
		require.Error(t, err)
	}
}
