// Package e2e holds the end-to-end tests of agentaudit: they build the
// collector, run it as a separate process, send spans with the OpenTelemetry
// SDK and read the trail it writes with DuckDB, the way an auditor would.
// What more than one test file uses (the collector process, the senders,
// the trail read back, auditctl) is in e2e/internal/harness; a helper of
// one test file stays in that file.
//
// The package has no code of its own; its heavy test-only dependencies
// (DuckDB, the OTel SDK) stay out of the components' packages so that
// operators' collector-builder runs stay light.
package e2e
