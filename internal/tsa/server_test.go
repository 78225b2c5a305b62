package tsa_test

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/tsa"
)

// The TSA the tests run is sigstore's timestamp-authority v2.1.3 with its
// in-memory signer, built from the module in ./tsatest (its own go.mod, so
// the server's dependencies stay out of the collector's).

var build struct {
	once sync.Once
	bin  string
	err  error
}

// serverBinary builds ./tsatest once per test process. The first build on
// a machine compiles the server and its dependencies (about 280 CPU
// seconds); later ones hit Go's build cache, and the binary is kept in the
// user cache directory (one per checkout) because go build leaves an
// up-to-date target alone instead of linking it again.
func serverBinary() (string, error) {
	build.once.Do(func() {
		goBin, err := exec.LookPath("go") // go test puts its GOROOT/bin first
		if err != nil {
			build.err = err
			return
		}
		src, err := filepath.Abs("tsatest")
		if err != nil {
			build.err = err
			return
		}
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

// tsaServer is one running TSA: a key and certificate chain of its own.
type tsaServer struct {
	URL   string              // the RFC 3161 endpoint
	Chain []*x509.Certificate // TSA certificate, intermediate, root
}

func (s *tsaServer) leaf() *x509.Certificate { return s.Chain[0] }
func (s *tsaServer) root() *x509.Certificate { return s.Chain[len(s.Chain)-1] }

// startTSA runs a new TSA on loopback and stops it when the test ends.
func startTSA(t testing.TB, args ...string) *tsaServer {
	t.Helper()
	bin, err := serverBinary()
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

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/timestamp/certchain", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("TSA certificate chain: %v", err)
	}
	defer resp.Body.Close()
	pemChain, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("TSA certificate chain: %s %v", resp.Status, err)
	}
	chain, err := tsa.ParseCertificates(pemChain)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 {
		t.Fatalf("TSA certificate chain has %d certificates, want 3", len(chain))
	}
	return &tsaServer{URL: base + "/api/v1/timestamp", Chain: chain}
}
