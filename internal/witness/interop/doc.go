// Package interop tests agentaudit's tlog-witness client and server
// against an implementation written elsewhere: transparency-dev's witness
// (github.com/transparency-dev/witness, the library behind omniwitness),
// served over HTTP on 127.0.0.1 with its in-memory persistence: our
// Client and the exporter's path (Submitter) against it, and its client
// against our Server.
//
// It is a separate module (go.mod beside this file, the main module
// replaced by the checkout) so that the witness's dependencies never
// enter the collector's build; the main module's go test ./... does not
// descend into it, so internal/witness's TestInterop runs go test here.
// It builds with the main module's requirements merged into its own:
// when a change of the main go.mod makes go test here ask for updates to
// go.mod, run go mod tidy in this folder.
//
// Known deviation (pinned version): for a checkpoint without a valid
// signature of the log's key transparency-dev's witness answers 500, not
// the spec's 403.
package interop
