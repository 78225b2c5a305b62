package e2e

// docs/verify.sql's approval checks (docs/APPROVALS.md) against auditctl
// verify's, on a trail with every case (internal/verify/approvaltest).

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify/approvaltest"
)

func apWriteBatch(t *testing.T, dir string, es []entry.Entry) {
	t.Helper()
	var buf bytes.Buffer
	_, err := parquetfile.Encode(&buf, es)
	require.NoError(t, err)
	p := filepath.Join(dir, filepath.FromSlash(store.BatchKey(es[0].ChainID, es[0].Seq, time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC))))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
}

// TestApprovalsSQLAgrees: verify.sql reports the (chain_id, seq, kind) of
// every approval case, as auditctl verify does, and nothing else.
func TestApprovalsSQLAgrees(t *testing.T) {
	tr := approvaltest.Build()
	dir := t.TempDir()
	svc := tr.Chains[approvaltest.Service]
	apWriteBatch(t, dir, svc[:tr.Split])
	apWriteBatch(t, dir, svc[tr.Split:])
	apWriteBatch(t, dir, tr.Chains[approvaltest.Other])

	want := harness.SQLKeys(func() (vs []harness.Violation) {
		for _, w := range tr.Want {
			vs = append(vs, harness.Violation{ChainID: w.ChainID, Seq: w.Seq, Violation: w.Kind})
		}
		return vs
	}())
	sqlRows := harness.VerifySQL(t, harness.TrailDB(t, dir))
	for _, v := range sqlRows {
		t.Logf("verify.sql: %s %d %s: %s", v.ChainID, v.Seq, v.Violation, v.Detail)
	}
	require.Equal(t, want, harness.SQLKeys(sqlRows), "verify.sql")
	require.Equal(t, want, harness.ReportKeys(harness.Verify(t, dir)), "auditctl verify")
}
