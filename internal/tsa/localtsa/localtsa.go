// Package localtsa runs a real RFC 3161 timestamp authority on loopback
// for tests: sigstore's timestamp-authority v2.1.3 with its in-memory
// signer, built from the module in internal/tsa/tsatest (its own go.mod,
// so that the server's dependencies stay out of the collector's). Each
// Start is a new process with a new key and certificate chain: two
// servers are two different TSAs.
//
// Without the server (the build fails, the binary does not start) a test
// is skipped, or fails under CI=true.
package localtsa // import "github.com/agentaudit/agentaudit/internal/tsa/localtsa"

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/tsa"
)

// Server is one running TSA.
type Server struct {
	// URL is the RFC 3161 endpoint (POST application/timestamp-query).
	URL string
	// Chain is the TSA's certificate chain: TSA certificate,
	// intermediate, root.
	Chain []*x509.Certificate
	// PEM is Chain as the TSA publishes it, the form of a certificate_file.
	PEM []byte
}

// Leaf is the certificate the TSA signs tokens with.
func (s *Server) Leaf() *x509.Certificate { return s.Chain[0] }

// Root is the root of the TSA's chain.
func (s *Server) Root() *x509.Certificate { return s.Chain[len(s.Chain)-1] }

var build struct {
	once sync.Once
	bin  string
	err  error
}

// binary builds the tsatest command once per test process. The first
// build on a machine compiles the server and its dependencies (about 280
// CPU seconds); later ones hit Go's build cache, and the binary is kept in
// the user cache directory (one per checkout) because go build leaves an
// up-to-date target alone instead of linking it again.
func binary() (string, error) {
	build.once.Do(func() {
		goBin, err := exec.LookPath("go") // go test puts its GOROOT/bin first
		if err != nil {
			build.err = err
			return
		}
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			build.err = fmt.Errorf("localtsa: cannot locate its source")
			return
		}
		src := filepath.Join(filepath.Dir(file), "..", "tsatest")
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		sum := sha256.Sum256([]byte(src))
		bin := filepath.Join(cache, "agentaudit-tsatest", hex.EncodeToString(sum[:6]), "tsatest")
		cmd := exec.Command(goBin, "build", "-o", bin, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build in %s: %v\n%s", src, err, out)
			return
		}
		build.bin = bin
	})
	return build.bin, build.err
}

// unavailable skips the test, or fails it under CI=true.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("TSA unavailable under CI=true: %v", err)
	}
	t.Skipf("TSA unavailable: %v", err)
}

// Start runs a new TSA on loopback, with the tsatest command's flags
// args, and stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		unavailable(t, err)
	}
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("TSA logs:\n%s", logs.String())
		}
	})

	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var base string
	select {
	case l := <-line:
		var ok bool
		base, ok = strings.CutPrefix(strings.TrimSpace(l), "listening ")
		if !ok {
			unavailable(t, fmt.Errorf("TSA did not start: %q; logs:\n%s", l, logs.String()))
		}
	case <-time.After(30 * time.Second):
		unavailable(t, fmt.Errorf("TSA did not start within 30s; logs:\n%s", logs.String()))
	}

	pemChain := certChain(t, base)
	chain, err := tsa.ParseCertificates(pemChain)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 {
		t.Fatalf("TSA certificate chain has %d certificates, want 3", len(chain))
	}
	return &Server{URL: base + "/api/v1/timestamp", Chain: chain, PEM: pemChain}
}

// certChain fetches the TSA's PEM certificate chain.
func certChain(t testing.TB, base string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/timestamp/certchain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("TSA certificate chain: %v", err)
	}
	defer resp.Body.Close()
	pemChain, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("TSA certificate chain: %s %v", resp.Status, err)
	}
	return pemChain
}
