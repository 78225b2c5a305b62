// Command tsatest runs sigstore's timestamp-authority (v2.1.3) on loopback
// with its in-memory signer, for internal/tsa's tests: a real RFC 3161 TSA,
// not a fake of ours.
//
// It lives in a module of its own so that the server's dependencies (the
// KMS clients its signer package registers, go-openapi, viper, zap) never
// enter the collector's module graph; internal/tsa's TestMain builds it with
// `go build` in this directory.
//
// It serves the TSA's REST API (POST /api/v1/timestamp,
// GET /api/v1/timestamp/certchain) on 127.0.0.1 at a port the kernel picks,
// prints "listening http://127.0.0.1:PORT" on stdout once it accepts
// connections, and runs until killed. Each process makes a new key and
// certificate chain, so two processes are two different TSAs.
//
// The server's own command (cmd/timestamp-server) is not used because it
// also starts a metrics server on :2112 on every interface, which two
// instances cannot share, and NTP monitoring, which needs the network.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sigstore/timestamp-authority/v2/pkg/log"
	"github.com/sigstore/timestamp-authority/v2/pkg/server"
	"github.com/spf13/viper"
)

func main() {
	chain := flag.Bool("include-chain", true, "send the issuing chain, not just the TSA certificate, when a request sets certReq")
	flag.Parse()

	// The settings cmd/timestamp-server's flags give the API through viper.
	viper.Set("timestamp-signer", "memory")
	viper.Set("timestamp-signer-hash", "sha256")
	viper.Set("default-policy-oid", "1.3.6.1.4.1.57264.2")
	viper.Set("accepted-policy-oids", []string{"1.3.6.1.4.1.57264.2"})
	viper.Set("include-chain-in-response", *chain)
	viper.Set("enforce-intermediate-eku", true)
	viper.Set("max-request-body-size", uint64(1<<20))
	log.ConfigureLogger("prod")

	srv := server.NewRestAPIServer("127.0.0.1", 0, []string{"http"}, false, 10*time.Second, 10*time.Second)
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(os.Stderr, "tsatest: listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening http://127.0.0.1:%d\n", srv.Port)
	if err := srv.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "tsatest: serve:", err)
		os.Exit(1)
	}
}
