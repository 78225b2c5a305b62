//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVerifyNotRegularFile: a symbolic link named like a batch, which
// DuckDB's read_parquet('<dir>/**/*.parquet') follows, is a violation (exit
// 1, never INTACT), and so is a pipe, which verify does not open (it would
// wait forever), even when nothing else is there (exit 1, not 2).
func TestVerifyNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	keys := writeTrail(t, dir)
	outside := t.TempDir()
	forged := filepath.Join(outside, "forged.parquet")
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(keys[0])))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(forged, data, 0o644))
	name := "dt=2026-03-09/replica-a-00000000000000000030.parquet"
	require.NoError(t, os.Symlink(forged, filepath.Join(dir, filepath.FromSlash(name))))

	out, errOut, code := auditctl(t, nil, "verify", dir)
	require.Equal(t, exitViolations, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, name+": not_regular_file: symlink to "+forged+": ")
	assert.NotContains(t, out, "INTACT")
	assert.Contains(t, out, "chain replica-a: 30 entries in 3 files", "the link was not followed")

	out, _, code = auditctl(t, nil, "verify", "--json", dir)
	require.Equal(t, exitViolations, code, out)
	var rep jsonReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.False(t, rep.Intact)
	require.Len(t, rep.Violations, 1)
	v := rep.Violations[0]
	assert.Equal(t, "not_regular_file", v.Kind)
	assert.Equal(t, name, v.File)
	assert.Equal(t, "replica-a", v.ChainID)
	assert.Equal(t, int64(-1), v.Seq)
	assert.True(t, strings.HasPrefix(v.Detail, "symlink to "+forged), v.Detail)

	only := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(only, "x.parquet"), 0o644))
	out, errOut, code = auditctl(t, nil, "verify", only)
	require.Equal(t, exitViolations, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "x.parquet: not_regular_file: named pipe (FIFO): ")
	assert.True(t, strings.HasSuffix(out, "VIOLATIONS: 1 violation found\n"), out)
}
