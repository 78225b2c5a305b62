package tsa_test

import (
	"crypto/x509"
	"testing"

	"github.com/agentaudit/agentaudit/internal/tsa/localtsa"
)

// The TSA the tests run is sigstore's timestamp-authority v2.1.3 with its
// in-memory signer (internal/tsa/localtsa).

// tsaServer is one running TSA: a key and certificate chain of its own.
type tsaServer struct{ *localtsa.Server }

func (s *tsaServer) leaf() *x509.Certificate { return s.Leaf() }
func (s *tsaServer) root() *x509.Certificate { return s.Root() }

// startTSA runs a new TSA on loopback and stops it when the test ends.
func startTSA(t testing.TB, args ...string) *tsaServer {
	t.Helper()
	return &tsaServer{localtsa.Start(t, args...)}
}
