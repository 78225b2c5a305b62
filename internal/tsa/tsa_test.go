package tsa_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/agentaudit/agentaudit/internal/tsa"
)

// checkpoint is a checkpoint note as the exporter signs it; its bytes are
// the timestamped message.
const checkpoint = `agentaudit/0f0e0d0c0b0a09080706050403020100
42
3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
agentaudit-head Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm8=
agentaudit-batch 32 41 YmF0Y2hyb290YmF0Y2hyb290YmF0Y2hyb290YmF0Y2g=

— agentaudit-test AbCdEfGh
`

// stamp requests a token for message from s and returns it with a window
// around the request (a second of slack each side: genTime may be
// truncated to the second).
func stamp(t *testing.T, s *tsaServer, message []byte) (token []byte, notBefore, notAfter time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	notBefore = time.Now().Add(-time.Second)
	token, err := tsa.Request(ctx, s.URL, message)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	return token, notBefore, time.Now().Add(time.Second)
}

func TestVerifyAcceptsValidToken(t *testing.T) {
	a := startTSA(t)
	msg := []byte(checkpoint)
	token, nb, na := stamp(t, a, msg)

	for name, trusted := range map[string][]*x509.Certificate{
		"root":          {a.root()},
		"whole chain":   a.Chain,
		"TSA cert only": {a.leaf()},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: trusted, NotBefore: nb, NotAfter: na})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if st.Time.Before(nb) || st.Time.After(na) {
				t.Errorf("Stamp.Time %v outside [%v, %v]", st.Time, nb, na)
			}
			if !st.Signer.Equal(a.leaf()) {
				t.Errorf("Stamp.Signer %q, want the TSA's certificate %q", st.Signer.Subject, a.leaf().Subject)
			}
			if st.Nonce == nil || st.SerialNumber == nil {
				t.Errorf("Stamp without nonce or serial: %+v", st)
			}
		})
	}

	t.Run("nonce", func(t *testing.T) {
		st, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: []*x509.Certificate{a.root()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: []*x509.Certificate{a.root()}, Nonce: st.Nonce}); err != nil {
			t.Errorf("Verify with the token's own nonce: %v", err)
		}
		other := new(big.Int).Add(st.Nonce, big.NewInt(1))
		_, err = tsa.Verify(token, msg, tsa.VerifyOptions{TSA: []*x509.Certificate{a.root()}, Nonce: other})
		var ne *tsa.NonceError
		if !errors.Is(err, tsa.ErrNonce) || !errors.As(err, &ne) || ne.Want.Cmp(other) != 0 || ne.Got.Cmp(st.Nonce) != 0 {
			t.Errorf("Verify with another nonce: %v, want a NonceError got %v want %v", err, st.Nonce, other)
		}
	})
}

func TestVerifyRefusesAnotherTSA(t *testing.T) {
	a, b := startTSA(t), startTSA(t)
	msg := []byte(checkpoint)
	token, nb, na := stamp(t, b, msg)

	// b's token is good under b's root: only the trust differs below.
	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: []*x509.Certificate{b.root()}, NotBefore: nb, NotAfter: na}); err != nil {
		t.Fatalf("control: b's token under b's root: %v", err)
	}
	for name, trusted := range map[string][]*x509.Certificate{
		"a's root":        {a.root()},
		"a's whole chain": a.Chain,
		"a's TSA cert":    {a.leaf()},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: trusted, NotBefore: nb, NotAfter: na})
			if !errors.Is(err, tsa.ErrUntrustedTSA) {
				t.Fatalf("Verify of another TSA's token: %v, want ErrUntrustedTSA", err)
			}
		})
	}
}

func TestVerifyReportsTimeOutsideWindow(t *testing.T) {
	a := startTSA(t)
	msg := []byte(checkpoint)
	token, _, _ := stamp(t, a, msg)
	trusted := []*x509.Certificate{a.root()}
	st, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: trusted})
	if err != nil {
		t.Fatal(err)
	}
	at := st.Time

	for _, tc := range []struct {
		name   string
		nb, na time.Time
		ok     bool
	}{
		{"window closed before the token", at.Add(-2 * time.Hour), at.Add(-time.Nanosecond), false},
		{"window opens after the token", at.Add(time.Nanosecond), at.Add(time.Hour), false},
		{"only a lower bound, after", at.Add(time.Minute), time.Time{}, false},
		{"only an upper bound, before", time.Time{}, at.Add(-time.Minute), false},
		{"bounds inclusive", at, at, true},
		{"open window", time.Time{}, time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: trusted, NotBefore: tc.nb, NotAfter: tc.na})
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var we *tsa.WindowError
			if !errors.Is(err, tsa.ErrOutsideWindow) || !errors.As(err, &we) {
				t.Fatalf("Verify: %v, want a WindowError", err)
			}
			if !we.Time.Equal(at) || !we.NotBefore.Equal(tc.nb) || !we.NotAfter.Equal(tc.na) {
				t.Errorf("WindowError %+v, want time %v in [%v, %v]", we, at, tc.nb, tc.na)
			}
		})
	}
}

func TestVerifyRefusesChangedCheckpoint(t *testing.T) {
	a := startTSA(t)
	msg := []byte(checkpoint)
	token, nb, na := stamp(t, a, msg)
	opts := tsa.VerifyOptions{TSA: []*x509.Certificate{a.root()}, NotBefore: nb, NotAfter: na}

	changed := []byte(strings.Replace(checkpoint, "\n42\n", "\n43\n", 1))
	_, err := tsa.Verify(token, changed, opts)
	var ie *tsa.ImprintError
	if !errors.Is(err, tsa.ErrImprint) || !errors.As(err, &ie) {
		t.Fatalf("Verify of a changed checkpoint: %v, want an ImprintError", err)
	}
	orig, want := sha256.Sum256(msg), sha256.Sum256(changed)
	if !bytes.Equal(ie.Got, orig[:]) || !bytes.Equal(ie.Want, want[:]) {
		t.Errorf("ImprintError got %x want %x, want got %x want %x", ie.Got, ie.Want, orig, want)
	}

	// Rewriting the imprint inside the token to match the changed
	// checkpoint breaks the TSA's signature instead.
	i := bytes.Index(token, orig[:])
	if i < 0 || bytes.Contains(token[i+1:], orig[:]) {
		t.Fatalf("the imprint occurs %d times in the token, want once", bytes.Count(token, orig[:]))
	}
	forged := bytes.Clone(token)
	copy(forged[i:], want[:])
	if _, err := tsa.Verify(forged, changed, opts); !errors.Is(err, tsa.ErrSignature) {
		t.Errorf("Verify of a token with a rewritten imprint: %v, want ErrSignature", err)
	}
}

func TestVerifyLeafOnlyToken(t *testing.T) {
	// sigstore's default: the token carries the TSA certificate but not
	// its issuers, so the intermediate must be configured with the root.
	a := startTSA(t, "-include-chain=false")
	msg := []byte(checkpoint)
	token, nb, na := stamp(t, a, msg)
	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: []*x509.Certificate{a.root()}, NotBefore: nb, NotAfter: na}); !errors.Is(err, tsa.ErrUntrustedTSA) {
		t.Errorf("Verify with only the root configured: %v, want ErrUntrustedTSA (no path to it)", err)
	}
	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: a.Chain[1:], NotBefore: nb, NotAfter: na}); err != nil {
		t.Errorf("Verify with intermediate and root configured: %v", err)
	}
}

func TestVerifyWithoutEmbeddedCertificates(t *testing.T) {
	// Asked without certReq, a TSA names its certificate only by issuer
	// and serial; the configured certificate then supplies it.
	a := startTSA(t)
	msg := []byte(checkpoint)
	digest := sha256.Sum256(msg)
	query, err := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest[:]}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(a.URL, "application/timestamp-query", bytes.NewReader(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("TSA: %s %v", resp.Status, err)
	}
	token := buf.Bytes()

	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: []*x509.Certificate{a.root()}}); !errors.Is(err, tsa.ErrUntrustedTSA) {
		t.Errorf("Verify with only the root configured: %v, want ErrUntrustedTSA (no signer certificate)", err)
	}
	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: a.Chain}); err != nil {
		t.Errorf("Verify with the chain configured: %v", err)
	}
	b := startTSA(t)
	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{TSA: b.Chain}); !errors.Is(err, tsa.ErrUntrustedTSA) {
		t.Errorf("Verify with another TSA's chain configured: %v, want ErrUntrustedTSA", err)
	}
}

func TestRequestRefusesReplayedResponse(t *testing.T) {
	a := startTSA(t)
	msg := []byte(checkpoint)
	token, _, _ := stamp(t, a, msg)

	// A TSA (or a man in the middle) that answers every request with the
	// same stored response.
	replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/timestamp-reply")
		_, _ = w.Write(token)
	}))
	defer replay.Close()
	ctx := context.Background()
	if _, err := tsa.Request(ctx, replay.URL, msg); !errors.Is(err, tsa.ErrNonce) {
		t.Errorf("Request answered by a replay for the same checkpoint: %v, want ErrNonce", err)
	}
	if _, err := tsa.Request(ctx, replay.URL, []byte("another checkpoint")); !errors.Is(err, tsa.ErrImprint) {
		t.Errorf("Request answered by a replay for another checkpoint: %v, want ErrImprint", err)
	}

	refusal, err := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadAlgorithm)
	if err != nil {
		t.Fatal(err)
	}
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(refusal)
	}))
	defer refuse.Close()
	if _, err := tsa.Request(ctx, refuse.URL, msg); !errors.Is(err, tsa.ErrRefused) {
		t.Errorf("Request answered by a rejection: %v, want ErrRefused", err)
	}

	if _, err := tsa.Request(ctx, strings.TrimSuffix(a.URL, "/timestamp")+"/nothing", msg); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Request to a wrong path: %v, want the HTTP status", err)
	}
}

func TestVerifyRefusesMalformed(t *testing.T) {
	a := startTSA(t)
	trusted := []*x509.Certificate{a.root()}
	msg := []byte(checkpoint)
	token, _, _ := stamp(t, a, msg)

	refusal, err := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadRequest)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		resp []byte
		want error
	}{
		"empty":            {nil, tsa.ErrMalformed},
		"text":             {[]byte(checkpoint), tsa.ErrMalformed},
		"truncated":        {token[:len(token)/2], tsa.ErrMalformed},
		"trailing bytes":   {append(bytes.Clone(token), 0), tsa.ErrMalformed},
		"a refusal stored": {refusal, tsa.ErrRefused},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tsa.Verify(tc.resp, msg, tsa.VerifyOptions{TSA: trusted}); !errors.Is(err, tc.want) {
				t.Errorf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := tsa.Verify(token, msg, tsa.VerifyOptions{}); err == nil {
		t.Error("Verify with no TSA certificate configured succeeded")
	}
}

// TestOpenSSLAgrees checks the stored form with a tool an auditor has:
// `openssl ts -verify` accepts the token for the checkpoint and refuses it
// for a changed one.
func TestOpenSSLAgrees(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl not found under CI=true: %v", err)
		}
		t.Skipf("openssl not found: %v", err)
	}
	a := startTSA(t)
	msg := []byte(checkpoint)
	token, _, _ := stamp(t, a, msg)

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(certs ...*x509.Certificate) []byte {
		var b bytes.Buffer
		for _, c := range certs {
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		return b.Bytes()
	}
	tsr := write("42.checkpoint.tsr", token)
	root := write("root.pem", pemOf(a.root()))
	untrusted := write("chain.pem", pemOf(a.Chain[:2]...))
	run := func(data string) (string, error) {
		out, err := exec.Command(openssl, "ts", "-verify", "-in", tsr, "-data", data,
			"-CAfile", root, "-untrusted", untrusted).CombinedOutput()
		return string(out), err
	}
	if out, err := run(write("42.checkpoint", msg)); err != nil || !strings.Contains(out, "Verification: OK") {
		t.Errorf("openssl ts -verify of the token: %v\n%s", err, out)
	}
	if out, err := run(write("changed", append(bytes.Clone(msg), '\n'))); err == nil {
		t.Errorf("openssl ts -verify accepted the token for a changed checkpoint:\n%s", out)
	}
}
