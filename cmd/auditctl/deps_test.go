package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNoOpenTelemetryDependency: the verifier an auditor runs links no
// OpenTelemetry package (the collector's pdata, the SDK, contrib), with
// cgo and without, so that it can be read without the collector. The
// span mapping lives in internal/auditspan for this; the model
// (internal/entry) is all auditctl needs. "go" is the toolchain running
// the test: go test puts its GOROOT/bin first on PATH.
func TestNoOpenTelemetryDependency(t *testing.T) {
	for _, cgo := range []string{"1", "0"} {
		// Each package with its imports, to name the edge that pulls one in.
		cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
		out, err := cmd.Output()
		require.NoError(t, err, "CGO_ENABLED=%s", cgo)
		var pulled []string // "importer -> otel package"
		for line := range strings.Lines(string(out)) {
			pkgs := strings.Fields(line)
			if len(pkgs) == 0 || isOpenTelemetry(pkgs[0]) {
				continue
			}
			for _, imp := range pkgs[1:] {
				if isOpenTelemetry(imp) {
					pulled = append(pulled, pkgs[0]+" -> "+imp)
				}
			}
		}
		slices.Sort(pulled)
		require.Empty(t, pulled, "CGO_ENABLED=%s: auditctl depends on OpenTelemetry", cgo)
	}
}

func isOpenTelemetry(pkg string) bool {
	return strings.HasPrefix(pkg, "go.opentelemetry.io/") || strings.HasPrefix(pkg, "github.com/open-telemetry/")
}
