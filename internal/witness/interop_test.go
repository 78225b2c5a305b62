package witness

import (
	"os"
	"os/exec"
	"testing"
)

// TestInterop runs the tests of the interop module (interop/go.mod):
// our client against transparency-dev's witness and its client against
// our server. They live in a module of their own so that the witness's
// dependencies stay out of this module's build; go test ./... here does
// not descend into it, hence this test. "go" is the toolchain running
// this test (go test puts its GOROOT/bin first on PATH).
func TestInterop(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("-short: the interop module compiles transparency-dev's witness")
	}
	cmd := exec.CommandContext(t.Context(), "go", "test", "-count=1", "./...")
	cmd.Dir = "interop"
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+os.Getenv("GOFLAGS")+" -mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in interop/ (after a change of the main go.mod, run go mod tidy there): %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
