package verify

import (
	"os"
	"testing"
)

// TestMain removes the benchmarks' trail (benchDir), shared by the
// benchmarks of one run, when they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchTrail.dir != "" {
		os.RemoveAll(benchTrail.dir)
	}
	os.Exit(code)
}
