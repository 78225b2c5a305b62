package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tsa"
	"github.com/agentaudit/agentaudit/internal/tsa/localtsa"
)

// stampTrail stores beside each checkpoint of dir a token of s over it, as
// the exporter does with checkpoint.timestamp configured.
func stampTrail(t *testing.T, dir string, s *localtsa.Server) {
	t.Helper()
	names, err := store.Dir(dir).List(context.Background(), store.CheckpointsPrefix)
	require.NoError(t, err)
	for _, n := range names {
		if !store.IsCheckpointKey(n) {
			continue
		}
		cp, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		token, err := tsa.Request(ctx, s.URL, cp)
		cancel()
		require.NoError(t, err)
		chainID, size, err := store.ParseCheckpointKey(n)
		require.NoError(t, err)
		writeKeyFile(t, dir, store.TimestampKey(chainID, size), string(token))
	}
}

func TestVerifyTimestamps(t *testing.T) {
	a, b := localtsa.Start(t), localtsa.Start(t)
	dir := t.TempDir()
	signTrail(t, dir, writeTrail(t, dir))
	stampTrail(t, dir, a)
	certs := t.TempDir()
	aPEM, bPEM := filepath.Join(certs, "a.pem"), filepath.Join(certs, "b.pem")
	require.NoError(t, os.WriteFile(aPEM, a.PEM, 0o644))
	require.NoError(t, os.WriteFile(bPEM, b.PEM, 0o644))
	// The trail's entries are of 2026-03-09, the tokens of now.
	const year = "--tsa-max-delay=8760h"

	violations := func(out string) []string {
		var rep jsonReport
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		var kinds []string
		for _, v := range rep.Violations {
			kinds = append(kinds, v.Kind)
		}
		return kinds
	}

	out, errOut, code := auditctl(t, nil, "verify", "--json", "--tsa-cert", aPEM, "--require-timestamps", year, dir)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)

	out, _, code = auditctl(t, nil, "verify", "--json", "--tsa-cert", bPEM, year, dir)
	assert.Equal(t, exitViolations, code)
	assert.Equal(t, strings.Fields(strings.Repeat("bad_timestamp ", 6)), violations(out), "another TSA's tokens")

	out, _, code = auditctl(t, nil, "verify", "--json", "--tsa-cert", aPEM, dir)
	assert.Equal(t, exitViolations, code)
	assert.Equal(t, strings.Fields(strings.Repeat("bad_timestamp ", 6)), violations(out), "tokens months after their batches")
	out, _, _ = auditctl(t, nil, "verify", "--tsa-cert", aPEM, dir)
	assert.Contains(t, out, "bad_timestamp: token time")

	// The newest checkpoint not stamped yet: the older ones date the chain.
	require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(store.TimestampKey("replica-b", 30)))))
	out, errOut, code = auditctl(t, nil, "verify", "--tsa-cert", aPEM, "--require-timestamps", year, dir)
	assert.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "chain replica-b: timestamped up to size 20")
	// None stamped.
	for _, size := range []int64{10, 20} {
		require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(store.TimestampKey("replica-b", size)))))
	}
	out, _, code = auditctl(t, nil, "verify", "--json", "--tsa-cert", aPEM, "--require-timestamps", year, dir)
	assert.Equal(t, exitViolations, code)
	assert.Equal(t, []string{"missing_timestamp"}, violations(out))

	// Could not run.
	_, errOut, code = auditctl(t, nil, "verify", "--require-timestamps", dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "--require-timestamps needs --tsa-cert")
	_, errOut, code = auditctl(t, nil, "verify", "--tsa-cert", filepath.Join(certs, "none.pem"), dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "--tsa-cert: open")
	_, errOut, code = auditctl(t, nil, "verify", "--tsa-cert", filepath.Join(dir, filepath.FromSlash(store.CheckpointKey("replica-a", 10))), dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "no PEM CERTIFICATE block")
}
