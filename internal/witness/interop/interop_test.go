package interop

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/api"
	tdclient "github.com/transparency-dev/witness/client/http"
	"github.com/transparency-dev/witness/persistence/inmemory"
	tdwitness "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/witness"
	"github.com/agentaudit/agentaudit/internal/witness/witnesstest"
)

// startTransparencyDevWitness serves transparency-dev's witness for logs
// on 127.0.0.1 and returns its URL and verifier key.
func startTransparencyDevWitness(t *testing.T, logs ...*witnesstest.Log) (string, string) {
	skey, vkey, err := witness.GenerateKey("witness.test/transparency-dev", false)
	require.NoError(t, err)
	signer, err := fnote.NewSignerForCosignatureV1(skey)
	require.NoError(t, err)
	known := map[string]note.Verifier{}
	for _, l := range logs {
		known[l.Origin] = l.Verifier()
	}
	w, err := tdwitness.New(context.Background(), tdwitness.Opts{
		Persistence: inmemory.New(),
		Signers:     []note.Signer{signer},
		VerifierForLog: func(_ context.Context, origin string) (note.Verifier, bool, error) {
			v, ok := known[origin]
			return v, ok, nil
		},
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.HTTPAddCheckpoint, tdwitness.NewHTTPHandler(w).AddCheckpoint)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, vkey
}

// TestOurClientTheirWitness: what the exporter will do, against
// transparency-dev's witness.
func TestOurClientTheirWitness(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(10)
	other := witnesstest.New(t, "agentaudit/unknown").Grow(3)
	wurl, vkey := startTransparencyDevWitness(t, l)
	v, err := witness.NewVerifier(vkey)
	require.NoError(t, err)
	ctx := context.Background()
	var cl witness.Client

	cosigs, err := cl.Add(ctx, wurl, 0, nil, l.Checkpoint(10))
	require.NoError(t, err)
	_, err = witness.RequireCosignatures(l.Checkpoint(10), cosigs, 1, v)
	require.NoError(t, err)

	// Stale: their 409 parses into the size they hold; Submit resends.
	l.Grow(20)
	_, err = cl.Add(ctx, wurl, 3, l.Proof(3, 30), l.Checkpoint(30))
	var conflict *witness.ConflictError
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, uint64(10), conflict.Size)
	cosigs, had, err := cl.Submit(ctx, wurl, 3, l.Checkpoint(30), func(_ context.Context, old uint64) ([][]byte, error) {
		return l.Proof(old, 30), nil
	})
	require.NoError(t, err)
	assert.Equal(t, uint64(10), had)
	_, err = witness.RequireCosignatures(l.Checkpoint(30), cosigs, 1, v)
	require.NoError(t, err)

	// The rewritten log: 422.
	forged := witnesstest.NewWithKey(t, l.Origin, l.Signer, l.VKey).Grow(40)
	_, err = cl.Add(ctx, wurl, 30, forged.Proof(30, 40), forged.Checkpoint(40))
	require.ErrorIs(t, err, witness.ErrBadProof)
	// Another key: the spec says 403, this version of transparency-dev's
	// witness answers 500 (its Update returns log.ParseCheckpoint's error
	// unmapped), which our client takes for a witness failure to retry
	// later. Either way nothing is cosigned.
	impostor := witnesstest.New(t, l.Origin).Grow(40)
	_, err = cl.Add(ctx, wurl, 30, impostor.Proof(30, 40), impostor.Checkpoint(40))
	require.ErrorIs(t, err, witness.ErrUnavailable)
	require.ErrorContains(t, err, "500")
	// Another log: 404.
	_, err = cl.Add(ctx, wurl, 0, nil, other.Checkpoint(3))
	require.ErrorIs(t, err, witness.ErrUnknownLog)
	// Old size past the checkpoint: 400.
	_, err = cl.Add(ctx, wurl, 30, nil, l.Checkpoint(10))
	require.ErrorIs(t, err, witness.ErrMalformed)

	// Still at 30: a good extension goes through.
	l.Grow(5)
	cosigs, err = cl.Add(ctx, wurl, 30, l.Proof(30, 35), l.Checkpoint(35))
	require.NoError(t, err)
	_, err = witness.RequireCosignatures(l.Checkpoint(35), cosigs, 1, v)
	require.NoError(t, err)
}

// TestTheirClientOurWitness: transparency-dev's client against our
// server.
func TestTheirClientOurWitness(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(10)
	skey, vkey, err := witness.GenerateKey("witness.test/agentaudit", false)
	require.NoError(t, err)
	signer, err := witness.NewSigner(skey)
	require.NoError(t, err)
	srv, err := witness.NewServer(witness.Config{StateDir: t.TempDir(), Signers: []note.Signer{signer},
		Logs: []witness.Log{{Origin: l.Origin, Verifiers: []note.Verifier{l.Verifier()}}}})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	u, err := url.Parse(hs.URL)
	require.NoError(t, err)
	cl := tdclient.NewWitness(u, hs.Client())
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	require.NoError(t, err)
	ctx := context.Background()

	cosigs, _, err := cl.Update(ctx, 0, l.Checkpoint(10), nil)
	require.NoError(t, err)
	_, err = note.Open(append(l.Checkpoint(10), cosigs...), note.VerifierList(v))
	require.NoError(t, err)

	l.Grow(7)
	_, size, err := cl.Update(ctx, 0, l.Checkpoint(17), nil)
	require.ErrorIs(t, err, tdwitness.ErrCheckpointStale)
	assert.Equal(t, uint64(10), size)
	cosigs, _, err = cl.Update(ctx, 10, l.Checkpoint(17), l.Proof(10, 17))
	require.NoError(t, err)
	_, err = note.Open(append(l.Checkpoint(17), cosigs...), note.VerifierList(v))
	require.NoError(t, err)

	forged := witnesstest.NewWithKey(t, l.Origin, l.Signer, l.VKey).Grow(20)
	_, _, err = cl.Update(ctx, 17, forged.Checkpoint(20), forged.Proof(17, 20))
	require.ErrorIs(t, err, tdwitness.ErrInvalidProof)
}

// TestOurSubmitterTheirWitness: the exporter's path (witness.Submitter:
// the newest checkpoint, a proof from the witness's size learnt from its
// 409, the answer verified before it is stored) against
// transparency-dev's witness, also after a restart of the log's side
// (which knows no size) and against a rewritten log.
func TestOurSubmitterTheirWitness(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a")
	wurl, vkey := startTransparencyDevWitness(t, l)
	v, err := witness.NewVerifier(vkey)
	require.NoError(t, err)

	var mu sync.Mutex // l and what is stored
	stored := map[uint64][]byte{}
	var failures []error
	run := func() (*witness.Submitter, func()) {
		sub, err := witness.NewSubmitter(witness.SubmitterConfig{
			URL: wurl, Verifier: v, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			Proof: func(_ context.Context, old, size uint64, _ []byte) ([][]byte, error) {
				mu.Lock()
				defer mu.Unlock()
				return l.Proof(old, size), nil
			},
			Store: func(_ context.Context, size uint64, cosigs []byte) error {
				mu.Lock()
				defer mu.Unlock()
				stored[size] = cosigs
				return nil
			},
			Failed: func(err error) {
				mu.Lock()
				defer mu.Unlock()
				failures = append(failures, err)
			},
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); sub.Run(ctx) }()
		return sub, func() { cancel(); <-done }
	}
	offer := func(sub *witness.Submitter, n int) uint64 {
		mu.Lock()
		size := l.Grow(n).Size()
		cp := l.Checkpoint(size)
		mu.Unlock()
		require.NoError(t, sub.Offer(cp))
		return size
	}
	cosigned := func(size uint64) {
		t.Helper()
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return stored[size] != nil
		}, 10*time.Second, 5*time.Millisecond, "size %d not cosigned", size)
		mu.Lock()
		defer mu.Unlock()
		_, err := witness.RequireCosignatures(l.Checkpoint(size), stored[size], 1, v)
		require.NoError(t, err)
	}

	sub, stop := run()
	cosigned(offer(sub, 10))
	offer(sub, 3)
	cosigned(offer(sub, 4))
	stop()

	// A new Submitter (the collector restarted) sends old 0: their 409
	// tells the size, the resend carries the proof from it.
	sub, stop = run()
	defer func() { stop() }()
	cosigned(offer(sub, 6))
	mu.Lock()
	assert.Empty(t, failures)
	mu.Unlock()

	// The rewritten log under the same key: refused, nothing stored.
	mu.Lock()
	l = witnesstest.NewWithKey(t, l.Origin, l.Signer, l.VKey)
	mu.Unlock()
	size := offer(sub, 40)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failures) >= 2
	}, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, err := range failures {
		require.ErrorIs(t, err, witness.ErrBadProof)
	}
	assert.Nil(t, stored[size])
}
