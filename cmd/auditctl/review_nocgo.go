//go:build !cgo

package main

import (
	"context"
	"fmt"
	"io"
)

// The review verbs query the trail with DuckDB, which needs cgo; this
// auditctl was built without it. verify, checkpoint, prove and wal do not
// need it.
func noEngine(verb string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "auditctl %s: this auditctl was built without cgo, which the review verbs' query engine (DuckDB) needs; "+
		"build it with CGO_ENABLED=1 and a C compiler (verify, checkpoint, prove and wal work without)\n", verb)
	return exitError
}

func runRuns(_ context.Context, _ []string, _, stderr io.Writer, _ bool) int {
	return noEngine("runs", stderr)
}
func runShow(_ context.Context, _ []string, _, stderr io.Writer, _ bool) int {
	return noEngine("show", stderr)
}
func runExport(_ context.Context, _ []string, _, stderr io.Writer, _ bool) int {
	return noEngine("export", stderr)
}
func runServe(_ context.Context, _ []string, _, stderr io.Writer, _ bool) int {
	return noEngine("serve", stderr)
}
