package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// TestCkCheckpointCatchesTruncation: a collector writes a trail with signed
// checkpoints; an auditor keeps `auditctl checkpoint`; the trail's last file
// is then removed, with its stored checkpoint, so that the trail verifies on
// its own; `verify --checkpoint` with the kept one exits 1 with
// ends_before_checkpoint. And `prove` of an entry round-trips through
// `prove --check`, which rejects a tampered proof.
func TestCkCheckpointCatchesTruncation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const chainID = "ck-replica"
	c := harness.StartCollector(t, harness.CollectorOptions{ChainID: chainID, MaxEntries: 3})
	harness.SendCRMRun(t, ctx, c, "exec-ck-a")
	harness.SendCRMRun(t, ctx, c, "exec-ck-b")
	n := 2 * len(harness.CRMRun)
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(n))
	c.Stop()
	trail := c.DataDir
	bin := harness.BuildAuditctl(t, t.TempDir())

	out, errOut, code := harness.RunAuditctl(t, bin, "verify", trail)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "note: trusting the published key agentaudit-"+chainID+"+")
	assert.NotContains(t, out, "has no stored checkpoint")

	kept, errOut, code := harness.RunAuditctl(t, bin, "checkpoint", trail)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "trusting the published key")
	assert.True(t, strings.HasPrefix(kept, "agentaudit/"+chainID+"\n"), kept)
	keptFile := filepath.Join(t.TempDir(), "kept.checkpoint")
	require.NoError(t, os.WriteFile(keptFile, []byte(kept), 0o644))
	keys, err := filepath.Glob(filepath.Join(trail, "keys", chainID+"-*.vkey"))
	require.NoError(t, err)
	require.Len(t, keys, 1, "the published key")
	keyFile := keys[0]

	// An inclusion proof of one entry, checked without the trail.
	proof, errOut, code := harness.RunAuditctl(t, bin, "prove", trail, "4")
	require.Equal(t, 0, code, errOut)
	proofFile := filepath.Join(t.TempDir(), "proof.json")
	require.NoError(t, os.WriteFile(proofFile, []byte(proof), 0o644))
	out, errOut, code = harness.RunAuditctl(t, bin, "prove", "--check", proofFile, "--key", keyFile)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "VALID")
	var bundle map[string]any
	require.NoError(t, json.Unmarshal([]byte(proof), &bundle))
	path := bundle["audit_path"].([]any)
	require.NotEmpty(t, path)
	path[0] = strings.Repeat("0", 64)
	tampered, err := json.Marshal(bundle)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(proofFile, tampered, 0o644))
	out, _, code = harness.RunAuditctl(t, bin, "prove", "--check", proofFile, "--key", keyFile)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "INVALID")

	// The tail truncated: the last batch and its checkpoint removed.
	files := harness.ParquetFiles(t, trail)
	slices.Sort(files)
	last := files[len(files)-1]
	require.NoError(t, os.Remove(last))
	cps, err := filepath.Glob(filepath.Join(trail, "checkpoints", chainID, "*.checkpoint"))
	require.NoError(t, err)
	slices.Sort(cps)
	require.NoError(t, os.Remove(cps[len(cps)-1]))
	_, _, code = harness.RunAuditctl(t, bin, "verify", trail)
	assert.Equal(t, 0, code, "on its own the shortened trail verifies")

	out, errOut, code = harness.RunAuditctl(t, bin, "verify", "--json", "--checkpoint", keptFile, "--key", keyFile, trail)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	var rep verify.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.True(t, rep.Checkpoint)
	require.Len(t, rep.Violations, 1, "%+v", rep.Violations)
	v := rep.Violations[0]
	assert.Equal(t, verify.EndsBeforeCheckpoint, v.Kind)
	assert.Equal(t, keptFile, v.File)
	assert.Equal(t, chainID, v.ChainID)
	assert.Equal(t, int64(n+1), v.Seq, "the kept checkpoint's last seq: the start marker, the runs, the stop marker")
}
