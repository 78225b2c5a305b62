package harness

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
	"github.com/stretchr/testify/require"
)

// BuildAuditctl builds cmd/auditctl into dir and returns the binary's path.
func BuildAuditctl(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "auditctl")
	build := exec.Command("go", "build", "-o", bin, "github.com/agentaudit/agentaudit/cmd/auditctl")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building auditctl: %s", out)
	return bin
}

// Verify runs the verifier library over dir.
func Verify(t *testing.T, dir string) *verify.Report {
	t.Helper()
	rep, err := verify.Verify(context.Background(), store.Dir(dir), verify.Options{})
	require.NoError(t, err)
	return rep
}

// SQLKeys is the (chain_id, seq, violation) set of docs/verify.sql.
func SQLKeys(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.ChainID+"/"+strconv.FormatInt(v.Seq, 10)+"/"+v.Violation)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ReportKeys is the same set from auditctl's report: its violations of the
// kinds verify.sql knows, a missing file counting as the gap SQL sees.
func ReportKeys(rep *verify.Report) []string {
	var out []string
	for _, v := range rep.Violations {
		kind := v.Kind
		if kind == verify.MissingFile {
			kind = verify.Gap
		}
		if !slices.Contains(verify.SQLKinds, kind) {
			continue
		}
		out = append(out, v.ChainID+"/"+strconv.FormatInt(v.Seq, 10)+"/"+string(kind))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// RunAuditctl runs auditctl and returns its stdout, stderr and exit status.
func RunAuditctl(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return stdout.String(), stderr.String(), 0
}
