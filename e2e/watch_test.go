package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
)

// TestWatchCatchesOperatorRewrite: `auditctl watch` remembers a
// collector's trail; the collector, restarted on the same trail, records
// more, and the next round checks only what was added (a consistency
// proof from the remembered checkpoint, the new files); then the operator
// rewrites the whole trail with its own key (rewriteTrail): it verifies on
// its own, but watch reports the history changed and exits 1.
func TestWatchCatchesOperatorRewrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const chainID = "watch-replica"
	bin := harness.BuildAuditctl(t, t.TempDir())
	skey, vkey, err := checkpoint.GenerateKey(chainID)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "operator.vkey")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkey+"\n"), 0o644))
	base := t.TempDir()
	trail := filepath.Join(base, "audit-data")
	opts := harness.CollectorOptions{
		ChainID: chainID, MaxEntries: 3, DataDir: trail,
		Store: "    file:\n      directory: " + trail +
			"\n    spool:\n      directory: " + filepath.Join(base, "spool") +
			"\n    checkpoint:\n      key_env: AGENTAUDIT_E2E_WATCH_KEY\n",
		Env: []string{"AGENTAUDIT_E2E_WATCH_KEY=" + skey},
	}
	record := func(execID string) int64 {
		c := harness.StartCollector(t, opts)
		harness.SendCRMRun(t, ctx, c, execID)
		c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(len(harness.CRMRun)))
		c.Stop()
		return latestCheckpoint(t, trail, chainID)
	}
	state := t.TempDir()

	first := record("exec-watch-a")
	out, errOut, code := harness.RunAuditctl(t, bin, "watch", "--state", state, "--key", keyFile, trail)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, fmt.Sprintf("chain %s: verified whole, checkpoint at size %d remembered", chainID, first))

	second := record("exec-watch-b")
	require.Greater(t, second, first)
	out, errOut, code = harness.RunAuditctl(t, bin, "watch", "--state", state, "--key", keyFile, "--json", trail)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	var round struct {
		Intact  bool  `json:"intact"`
		Entries int64 `json:"entries"`
		Chains  []struct {
			From, To    int64
			ProofHashes int `json:"proof_hashes"`
		} `json:"chains"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &round), out)
	assert.True(t, round.Intact)
	assert.Equal(t, second-first, round.Entries, "only the entries added since")
	require.Len(t, round.Chains, 1)
	assert.Equal(t, first, round.Chains[0].From)
	assert.Equal(t, second, round.Chains[0].To)

	rewriteTrail(t, trail, chainID, skey)
	out, errOut, code = harness.RunAuditctl(t, bin, "verify", "--key", keyFile, trail)
	require.Equal(t, 0, code, "the rewrite verifies on its own:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	out, errOut, code = harness.RunAuditctl(t, bin, "watch", "--state", state, "--key", keyFile, trail)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "is not proved to extend the one remembered")
	assert.True(t, strings.Contains(out, "HISTORY CHANGED"), out)
}
