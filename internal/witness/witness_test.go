package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fnote "github.com/transparency-dev/formats/note"
	"go.uber.org/goleak"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/witness/witnesstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testWitness is a Server on a real HTTP listener on 127.0.0.1, with its
// key pair, restartable on the same state directory.
type testWitness struct {
	t    *testing.T
	dir  string
	skey string
	vkey string
	logs []Log
	srv  *Server
	http *httptest.Server
	url  string
	vrfr note.Verifier
	cl   Client
}

func newTestWitness(t *testing.T, name string, logs ...*witnesstest.Log) *testWitness {
	skey, vkey, err := GenerateKey(name, false)
	require.NoError(t, err)
	w := &testWitness{t: t, dir: t.TempDir(), skey: skey, vkey: vkey}
	for _, l := range logs {
		w.logs = append(w.logs, Log{Origin: l.Origin, Verifiers: []note.Verifier{l.Verifier()}})
	}
	// The verifier from transparency-dev/formats, not ours: the answers
	// must verify for anyone's code.
	w.vrfr, err = fnote.NewVerifierForCosignatureV1(vkey)
	require.NoError(t, err)
	w.start()
	t.Cleanup(w.stop)
	return w
}

func (w *testWitness) start() {
	signer, err := NewSigner(w.skey)
	require.NoError(w.t, err)
	w.srv, err = NewServer(Config{StateDir: w.dir, Signers: []note.Signer{signer}, Logs: w.logs})
	require.NoError(w.t, err)
	w.http = httptest.NewServer(w.srv) // listens on 127.0.0.1
	w.url = w.http.URL
	w.cl = Client{HTTPClient: w.http.Client()}
}

func (w *testWitness) stop() {
	if w.http != nil {
		w.http.Close()
		w.http = nil
	}
}

func (w *testWitness) restart() {
	w.stop()
	w.start()
}

// add submits l's checkpoint at size with a proof from old.
func (w *testWitness) add(l *witnesstest.Log, old, size uint64) ([]byte, error) {
	var p [][]byte
	if old > 0 {
		p = l.Proof(old, size)
	}
	return w.cl.Add(context.Background(), w.url, old, p, l.Checkpoint(size))
}

// requireCosigned checks that cosigs is one valid cosignature of w on
// l's checkpoint at size, made just now.
func (w *testWitness) requireCosigned(l *witnesstest.Log, size uint64, cosigs []byte) {
	w.t.Helper()
	require.Equal(w.t, 1, bytes.Count(cosigs, []byte("\n")), "one line per witness key: %q", cosigs)
	n, err := note.Open(append(l.Checkpoint(size), cosigs...), note.VerifierList(w.vrfr))
	require.NoError(w.t, err)
	require.Len(w.t, n.Sigs, 1)
	ts, err := fnote.CoSigV1Timestamp(n.Sigs[0])
	require.NoError(w.t, err)
	assert.WithinDuration(w.t, time.Now(), ts, time.Minute)
}

func TestAddCheckpoint(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a")
	w := newTestWitness(t, "witness.test/w1", l)
	ctx := context.Background()

	// First checkpoint: old 0, no proof, trusted on first use.
	l.Grow(10)
	cosigs, err := w.add(l, 0, 10)
	require.NoError(t, err)
	w.requireCosigned(l, 10, cosigs)

	// A consistent extension.
	l.Grow(15)
	cosigs, err = w.add(l, 10, 25)
	require.NoError(t, err)
	w.requireCosigned(l, 25, cosigs)

	// The same size again: cosigned anew (a fresher timestamp).
	cosigs, err = w.add(l, 25, 25)
	require.NoError(t, err)
	w.requireCosigned(l, 25, cosigs)

	// A stale old size: 409 with the witness's size.
	l.Grow(7)
	_, err = w.add(l, 10, 32)
	var conflict *ConflictError
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, uint64(25), conflict.Size)

	// Submit resends from the witness's size.
	var asked []uint64
	cosigs, had, err := w.cl.Submit(ctx, w.url, 10, l.Checkpoint(32), func(_ context.Context, old uint64) ([][]byte, error) {
		asked = append(asked, old)
		return l.Proof(old, 32), nil
	})
	require.NoError(t, err)
	assert.Equal(t, []uint64{10, 25}, asked)
	assert.Equal(t, uint64(25), had)
	w.requireCosigned(l, 32, cosigs)

	// The operator rewrites the whole log (a new tree, longer, signed with
	// its own key) and proves consistency within the rewritten tree: the
	// witness holds the root it cosigned and refuses.
	forged := witnesstest.NewWithKey(t, l.Origin, l.Signer, l.VKey).Grow(40)
	_, err = w.cl.Add(ctx, w.url, 32, forged.Proof(32, 40), forged.Checkpoint(40))
	require.ErrorIs(t, err, ErrBadProof)
	// Nor does it accept the rewritten tree at the size it cosigned.
	_, err = w.cl.Add(ctx, w.url, 32, nil, forged.Checkpoint(32))
	require.ErrorIs(t, err, ErrBadProof)
	// A truncated log: an old size past the checkpoint's is malformed,
	// and a smaller checkpoint from the witness's size is a conflict no
	// proof can settle.
	_, err = w.cl.Add(ctx, w.url, 32, nil, l.Checkpoint(25))
	require.ErrorIs(t, err, ErrMalformed)
	_, _, err = w.cl.Submit(ctx, w.url, 0, l.Checkpoint(25), func(context.Context, uint64) ([][]byte, error) {
		t.Fatal("no proof can go backwards")
		return nil, nil
	})
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, uint64(32), conflict.Size)
	// A proof with a hash altered.
	l.Grow(8)
	bad := l.Proof(32, 40)
	bad[len(bad)-1] = bytes.Clone(bad[len(bad)-1])
	bad[len(bad)-1][0] ^= 1
	_, err = w.cl.Add(ctx, w.url, 32, bad, l.Checkpoint(40))
	require.ErrorIs(t, err, ErrBadProof)
	_, err = w.cl.Add(ctx, w.url, 32, bad, l.Checkpoint(40)) // a retry
	require.ErrorIs(t, err, ErrBadProof)

	// The log-signed refusals are kept as evidence, once each: the fork,
	// the rewrite at the same size, the altered proof.
	evidence, err := os.ReadDir(filepath.Join(w.dir, EvidenceDir))
	require.NoError(t, err)
	require.Len(t, evidence, 3)
	first, err := os.ReadFile(filepath.Join(w.dir, EvidenceDir, evidence[0].Name()))
	require.NoError(t, err)
	old, _, cp, err := ParseRequest(first)
	require.NoError(t, err)
	assert.Equal(t, uint64(32), old)
	_, err = note.Open(cp, note.VerifierList(l.Verifier()))
	require.NoError(t, err, "the evidence carries the log's signature")

	// None of the refusals moved the witness.
	size, ok := w.srv.Size(l.Origin)
	require.True(t, ok)
	assert.Equal(t, uint64(32), size)

	// The state survives a restart: the witness still knows size 32 and
	// its root.
	w.restart()
	_, err = w.add(l, 0, 40)
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, uint64(32), conflict.Size)
	_, err = w.cl.Add(ctx, w.url, 32, forged.Proof(32, 40), forged.Checkpoint(40))
	require.ErrorIs(t, err, ErrBadProof)
	cosigs, err = w.add(l, 32, 40)
	require.NoError(t, err)
	w.requireCosigned(l, 40, cosigs)
}

func TestAddCheckpointRefusals(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(5)
	w := newTestWitness(t, "witness.test/w1", l)
	ctx := context.Background()

	// Signed by another key under the log's name: 403.
	impostor := witnesstest.New(t, l.Origin).Grow(5)
	_, err := w.cl.Add(ctx, w.url, 0, nil, impostor.Checkpoint(5))
	require.ErrorIs(t, err, ErrBadSignature)
	// The log's key name and hash with a broken signature: 403.
	cp := l.Checkpoint(5)
	i := bytes.LastIndex(cp, []byte(" "))
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(cp[i+1:]), "\n"))
	require.NoError(t, err)
	sig[10] ^= 1 // past the key hash: the signature proper
	broken := fmt.Appendf(bytes.Clone(cp[:i+1]), "%s\n", base64.StdEncoding.EncodeToString(sig))
	_, err = w.cl.Add(ctx, w.url, 0, nil, broken)
	require.ErrorIs(t, err, ErrBadSignature)
	// An unknown log: 404.
	other := witnesstest.New(t, "agentaudit/chain-b").Grow(3)
	_, err = w.cl.Add(ctx, w.url, 0, nil, other.Checkpoint(3))
	require.ErrorIs(t, err, ErrUnknownLog)
	// A proof from size 0: 422.
	_, err = w.cl.Add(ctx, w.url, 0, [][]byte{make([]byte, 32)}, l.Checkpoint(5))
	require.ErrorIs(t, err, ErrBadProof)
	// Size 0 with another root than the empty tree's: 422.
	_, err = w.cl.Add(ctx, w.url, 0, nil, l.SignText(l.Origin+"\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	require.ErrorIs(t, err, ErrBadProof)
	// Nothing was cosigned.
	size, _ := w.srv.Size(l.Origin)
	assert.Zero(t, size)
	_, err = os.Stat(stateFile(w.dir, l.Origin))
	require.ErrorIs(t, err, os.ErrNotExist)

	// Another signature besides the log's (another witness's) is ignored.
	extra := witnesstest.New(t, "witness.test/other")
	n, err := note.Open(l.Checkpoint(5), note.VerifierList(l.Verifier()))
	require.NoError(t, err)
	both, err := note.Sign(n, extra.Signer)
	require.NoError(t, err)
	cosigs, err := w.cl.Add(ctx, w.url, 0, nil, both)
	require.NoError(t, err)
	w.requireCosigned(l, 5, cosigs)
}

// TestHTTPAnswers checks the answers on the wire, byte for byte where
// the spec fixes them, for requests our client would never send.
func TestHTTPAnswers(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(4)
	w := newTestWitness(t, "witness.test/w1", l)
	cp := l.Checkpoint(4)
	post := func(body string) (int, string, string) {
		resp, err := w.http.Client().Post(w.url+AddCheckpointPath, "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, tc := range []struct{ name, body string }{
		{"empty", ""},
		{"no old line", "\n" + string(cp)},
		{"old without size", "old \n\n" + string(cp)},
		{"leading zero", "old 00\n\n" + string(cp)},
		{"negative", "old -1\n\n" + string(cp)},
		{"no blank line", "old 0\n" + string(cp)},
		{"proof not base64", "old 0\n!!!!\n\n" + string(cp)},
		{"proof not a hash", "old 0\nAAAA\n\n" + string(cp)},
		{"too many proof lines", "old 0\n" + strings.Repeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 64) + "\n" + string(cp)},
		{"not a note", "old 0\n\nagentaudit/chain-a\n4\n"},
		{"old past size", "old 5\n\n" + string(cp)},
		{"size not decimal", "old 0\n\n" + string(l.SignText(l.Origin+"\n04\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))},
		{"root not a hash", "old 0\n\n" + string(l.SignText(l.Origin+"\n4\nAAAA\n"))},
	} {
		code, _, msg := post(tc.body)
		assert.Equal(t, http.StatusBadRequest, code, "%s: %s", tc.name, msg)
	}

	code, _, body := post("old 0\n\n" + string(cp))
	require.Equal(t, http.StatusOK, code, body)
	w.requireCosigned(l, 4, []byte(body))

	code, ctype, body := post("old 0\n\n" + string(cp))
	assert.Equal(t, http.StatusConflict, code)
	assert.Equal(t, SizeContentType, ctype)
	assert.Equal(t, "4\n", body)

	// The monitoring endpoint serves what was cosigned; the state file
	// holds it byte for byte.
	resp, err := w.http.Client().Get(w.url + "/" + originHash(l.Origin) + "/checkpoint")
	require.NoError(t, err)
	served, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	stored, err := os.ReadFile(stateFile(w.dir, l.Origin))
	require.NoError(t, err)
	assert.Equal(t, stored, served)
	_, err = note.Open(served, note.VerifierList(l.Verifier(), w.vrfr))
	require.NoError(t, err)
	cs, err := RequireCosignatures(served, nil, 1, w.vrfr)
	require.NoError(t, err)
	assert.Len(t, cs, 1)

	resp, err = w.http.Client().Get(w.url + AddCheckpointPath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// TestConcurrentSubmissions: many clients extend the same size at once;
// exactly one wins, the others learn its size, and the witness never
// goes back (the spec's rollback race).
func TestConcurrentSubmissions(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(16)
	w := newTestWitness(t, "witness.test/w1", l)
	_, err := w.add(l, 0, 16)
	require.NoError(t, err)
	l.Grow(48)
	const n = 24
	type result struct {
		size uint64
		err  error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		size := uint64(17 + 2*i)
		p, cp := l.Proof(16, size), l.Checkpoint(size)
		wg.Go(func() {
			_, err := w.cl.Add(context.Background(), w.url, 16, p, cp)
			results[i] = result{size, err}
		})
	}
	wg.Wait()
	var won []uint64
	for _, r := range results {
		var conflict *ConflictError
		switch {
		case r.err == nil:
			won = append(won, r.size)
		case errors.As(r.err, &conflict):
		default:
			t.Errorf("size %d: %v", r.size, r.err)
		}
	}
	require.Len(t, won, 1)
	size, _ := w.srv.Size(l.Origin)
	assert.Equal(t, won[0], size)
	for _, r := range results {
		var conflict *ConflictError
		if errors.As(r.err, &conflict) {
			assert.Equal(t, won[0], conflict.Size)
		}
	}
}

func TestClientUnavailable(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(2)
	ctx := context.Background()
	var cl Client

	// Nobody listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = cl.Add(ctx, "http://"+addr, 0, nil, l.Checkpoint(2))
	require.ErrorIs(t, err, ErrUnavailable)

	// 503, 429: retry later. 200 with something that is not signature
	// lines: an error, not a cosignature.
	for _, tc := range []struct {
		code    int
		body    string
		wantErr error
	}{
		{http.StatusServiceUnavailable, "down for maintenance", ErrUnavailable},
		{http.StatusTooManyRequests, "", ErrUnavailable},
		{http.StatusOK, "not a signature\n", nil},
		{http.StatusOK, "", nil},
		{http.StatusConflict, "12\n", nil}, // without text/x.tlog.size
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.code)
			fmt.Fprint(w, tc.body)
		}))
		_, err := cl.Add(ctx, srv.URL, 0, nil, l.Checkpoint(2))
		srv.Close()
		require.Error(t, err, "%d %q", tc.code, tc.body)
		if tc.wantErr != nil {
			require.ErrorIs(t, err, tc.wantErr)
		} else {
			require.NotErrorIs(t, err, ErrUnavailable)
		}
	}

	// A slow witness: the context's deadline bounds it.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = cl.Add(tctx, slow.URL, 0, nil, l.Checkpoint(2))
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestRequireCosignatures(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(9)
	w1 := newTestWitness(t, "witness.test/w1", l)
	w2 := newTestWitness(t, "witness.test/w2", l)
	w3 := newTestWitness(t, "witness.test/w3", l) // not asked
	c1, err := w1.add(l, 0, 9)
	require.NoError(t, err)
	c2, err := w2.add(l, 0, 9)
	require.NoError(t, err)
	cp := l.Checkpoint(9)
	sigs := append(bytes.Clone(c1), c2...)

	v1, err := NewVerifier(w1.vkey)
	require.NoError(t, err)
	v2, err := NewVerifier(w2.vkey)
	require.NoError(t, err)
	v3, err := NewVerifier(w3.vkey)
	require.NoError(t, err)

	cs, err := RequireCosignatures(cp, sigs, 2, v1, v2, v3)
	require.NoError(t, err)
	require.Len(t, cs, 2)
	assert.Equal(t, "witness.test/w1", cs[0].Name)
	assert.Equal(t, v1.KeyHash(), cs[0].KeyHash)
	assert.WithinDuration(t, time.Now(), cs[0].Time, time.Minute)
	// The checkpoint's text alone, and the cosignatures inside the note.
	text, _, err := splitNote(cp)
	require.NoError(t, err)
	_, err = RequireCosignatures(text, sigs, 2, v1, v2)
	require.NoError(t, err)
	_, err = RequireCosignatures(append(bytes.Clone(cp), sigs...), nil, 2, v1, v2)
	require.NoError(t, err)

	// Asking for three: too few.
	_, err = RequireCosignatures(cp, sigs, 3, v1, v2, v3)
	require.ErrorIs(t, err, ErrTooFewCosignatures)
	// The same cosignature twice counts once.
	_, err = RequireCosignatures(cp, append(bytes.Clone(c1), c1...), 2, v1, v2)
	require.ErrorIs(t, err, ErrTooFewCosignatures)
	// Cosignatures of another checkpoint (the rewritten log's) do not
	// verify.
	_, err = RequireCosignatures(witnesstest.NewWithKey(t, l.Origin, l.Signer, l.VKey).Grow(9).Checkpoint(9), sigs, 1, v1)
	require.ErrorIs(t, err, ErrBadCosignature)
	// An unknown witness's cosignature is ignored.
	cs, err = VerifyCosignatures(cp, c1, v2)
	require.NoError(t, err)
	assert.Empty(t, cs)
	// ML-DSA-44 witness keys verify as well.
	sk, vk, err := GenerateKey("witness.test/pq", true)
	require.NoError(t, err)
	pq, err := NewSigner(sk)
	require.NoError(t, err)
	srv, err := NewServer(Config{StateDir: t.TempDir(), Signers: []note.Signer{pq}, Logs: []Log{{Origin: l.Origin, Verifiers: []note.Verifier{l.Verifier()}}}})
	require.NoError(t, err)
	c3, err := srv.AddCheckpoint(0, nil, cp)
	require.NoError(t, err)
	vpq, err := NewVerifier(vk)
	require.NoError(t, err)
	_, err = RequireCosignatures(cp, c3, 1, vpq)
	require.NoError(t, err)
}

func TestVerifierKey(t *testing.T) {
	for _, mldsa := range []bool{false, true} {
		skey, vkey, err := GenerateKey("witness.test/w1", mldsa)
		require.NoError(t, err)
		got, err := VerifierKey(skey)
		require.NoError(t, err)
		assert.Equal(t, vkey, got, "ml-dsa %v", mldsa)
		signer, err := NewSigner(skey)
		require.NoError(t, err)
		v, err := NewVerifier(got)
		require.NoError(t, err)
		assert.Equal(t, signer.KeyHash(), v.KeyHash())
	}
	_, err := VerifierKey("PRIVATE+KEY+x+00000000+AAAA")
	require.Error(t, err)
	_, err = VerifierKey("x+00000000+AAAA")
	require.Error(t, err)
}

func TestNewServerRefuses(t *testing.T) {
	l := witnesstest.New(t, "agentaudit/chain-a").Grow(3)
	skey, _, err := GenerateKey("witness.test/w1", false)
	require.NoError(t, err)
	signer, err := NewSigner(skey)
	require.NoError(t, err)
	logs := []Log{{Origin: l.Origin, Verifiers: []note.Verifier{l.Verifier()}}}
	dir := t.TempDir()
	for _, cfg := range []Config{
		{Signers: []note.Signer{signer}, Logs: logs},
		{StateDir: dir, Logs: logs},
		{StateDir: dir, Signers: []note.Signer{signer}},
		{StateDir: dir, Signers: []note.Signer{signer}, Logs: append(logs, logs...)},
		{StateDir: dir, Signers: []note.Signer{signer}, Logs: []Log{{Origin: l.Origin}}},
		{StateDir: dir, Signers: []note.Signer{signer}, Logs: []Log{{Origin: "a\nb", Verifiers: logs[0].Verifiers}}},
	} {
		_, err := NewServer(cfg)
		require.Error(t, err, "%+v", cfg)
	}
	// A state file that is not the log's: refuse to start rather than
	// forget.
	require.NoError(t, os.WriteFile(stateFile(dir, l.Origin), []byte("garbage"), 0o600))
	_, err = NewServer(Config{StateDir: dir, Signers: []note.Signer{signer}, Logs: logs})
	require.ErrorIs(t, err, ErrMalformed)
	other := witnesstest.New(t, "agentaudit/other").Grow(1)
	require.NoError(t, os.WriteFile(stateFile(dir, l.Origin), other.Checkpoint(1), 0o600))
	_, err = NewServer(Config{StateDir: dir, Signers: []note.Signer{signer}, Logs: logs})
	require.ErrorContains(t, err, "holds a checkpoint of")
}
