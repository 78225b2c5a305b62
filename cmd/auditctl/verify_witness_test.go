package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/witness"
)

// TestVerifyWitnessFlags: --witness takes a key or a file holding one;
// a chain without cosignatures is a violation (exit 1); bad keys and
// --cosignatures out of range cannot run (exit 2). The e2e suite runs the
// whole path (e2e/witness_test.go).
func TestVerifyWitnessFlags(t *testing.T) {
	dir := t.TempDir()
	writeTrail(t, dir)
	_, vkey, err := witness.GenerateKey("witness.test/w1", false)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "w1.vkey")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkey+"\n"), 0o644))

	out, errOut, code := auditctl(t, nil, "verify", dir)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	for _, w := range []string{vkey, keyFile} {
		out, errOut, code = auditctl(t, nil, "verify", "--witness", w, dir)
		assert.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
		assert.Contains(t, out, "missing_cosignature")
	}
	for _, args := range [][]string{
		{"--witness", "not a key"},
		{"--witness", filepath.Join(t.TempDir(), "missing.vkey")},
		{"--witness", vkey, "--cosignatures", "2"},
		{"--cosignatures", "1"},
		{"--witness", vkey, "--cosignatures", "-1"},
	} {
		_, errOut, code = auditctl(t, nil, append(append([]string{"verify"}, args...), dir)...)
		assert.Equal(t, 2, code, "%v: %s", args, errOut)
	}
}
