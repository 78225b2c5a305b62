// Package harness is what the end-to-end tests of package e2e share: the
// collector binary, built once (BuildCollector, CollectorBin); a collector
// process on free ports with the test configuration (StartCollector,
// Collector, with its metrics, its monitoring Backend, Stop and Kill) or
// any binary as a Process; OTLP senders (SendCRMRun, the article's agent
// run; LoadGen, concurrent gRPC clients; PostTraces); the trail read back
// the way an auditor would, with DuckDB and docs/verify.sql (TrailDB,
// ReadRows, VerifySQL), checked against what was sent (CheckCRMRows,
// CheckLoadTrail); auditctl and the verifier library (BuildAuditctl,
// RunAuditctl, Verify, ReportKeys, SQLKeys); and a trail in S3 through
// internal/s3test (S3Store, Download).
//
// Failures are reported through the testing.TB handed in; nothing here
// skips. Paths such as docs/verify.sql are relative to the e2e directory,
// the tests' working directory.
package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// collectorBin is the agentaudit binary BuildCollector built.
var collectorBin string

// BuildCollector builds the agentaudit collector once for all tests of the
// process, into a temporary directory that cleanup removes.
func BuildCollector() (cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "agentaudit-e2e-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "agentaudit")
	build := exec.Command("go", "build", "-o", bin, "github.com/agentaudit/agentaudit")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("building the collector: %w", err)
	}
	collectorBin = bin
	return func() { os.RemoveAll(dir) }, nil
}

// CollectorBin is the path of the binary BuildCollector built; it panics
// when there is none, a mistake in TestMain.
func CollectorBin() string {
	if collectorBin == "" {
		panic("harness: CollectorBin before BuildCollector")
	}
	return collectorBin
}
