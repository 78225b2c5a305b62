package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
)

// coverageSQL is the query of docs/FORMAT.md's "Coverage" section: every
// start, with what came before it.
func coverageSQL(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "FORMAT.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "\n## Coverage\n")
	require.True(t, ok, "FORMAT.md has a Coverage section")
	_, q, ok := strings.Cut(section, "```sql\n")
	require.True(t, ok, "the Coverage section has an SQL block")
	q, _, ok = strings.Cut(q, "```")
	require.True(t, ok)
	return q
}

// TestCoverageMarkers: three collectors one after the other on one spool,
// the second killed. The trail holds each start and clean stop; the
// documented query shows each start, whether a stop marker came before it,
// and, after one, for how long recording was off; auditctl runs leaves the
// markers out; the trail verifies.
func TestCoverageMarkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const chainID, pause = "coverage-1", 300 * time.Millisecond
	opts := harness.CollectorOptions{ChainID: chainID, MaxEntries: 4, DataDir: filepath.Join(t.TempDir(), "audit-data")}

	c := harness.StartCollector(t, opts)
	harness.SendCRMRun(t, ctx, c, "exec-cov-1")
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(len(harness.CRMRun)))
	c.Stop()
	time.Sleep(pause)
	c = harness.StartCollector(t, opts)
	harness.SendCRMRun(t, ctx, c, "exec-cov-2")
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(len(harness.CRMRun)))
	c.Kill()
	time.Sleep(pause)
	c = harness.StartCollector(t, opts)
	// otelcol installs its SIGTERM handler only after the pipelines (and
	// their ports) are up: a SIGTERM right away would kill it uncleanly.
	time.Sleep(500 * time.Millisecond)
	c.Stop()

	db := harness.TrailDB(t, opts.DataDir)
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql")
	assert.Equal(t, harness.Runs(false, true, false), harness.TrailMarkers(t, db))

	// start, 9 entries, stop; start, 9 entries (killed); start, stop.
	rows, err := db.Query(coverageSQL(t))
	require.NoError(t, err)
	defer rows.Close()
	type start struct {
		chainID         string
		seq             int64
		result          string
		afterStopMarker sql.NullBool
		offMS           sql.NullInt64
	}
	var got []start
	for rows.Next() {
		var s start
		require.NoError(t, rows.Scan(&s.chainID, &s.seq, &s.result, &s.afterStopMarker, &s.offMS))
		got = append(got, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, got, 3, "%+v", got)
	assert.Equal(t, start{chainID: chainID, seq: 0, result: "first start"}, got[0], "nothing before the first start")
	for i, want := range []struct {
		seq             int64
		result          string
		afterStopMarker bool
	}{
		{11, "after a clean stop", true},
		{21, "no record of a clean stop", false},
	} {
		s := got[i+1]
		assert.Equal(t, chainID, s.chainID)
		assert.Equal(t, want.seq, s.seq)
		assert.Equal(t, want.result, s.result)
		assert.Equal(t, sql.NullBool{Bool: want.afterStopMarker, Valid: true}, s.afterStopMarker, "start at seq %d", s.seq)
		if !want.afterStopMarker {
			assert.False(t, s.offMS.Valid, "after a crash the trail does not say when recording stopped: %+v", s)
			continue
		}
		require.True(t, s.offMS.Valid)
		assert.GreaterOrEqual(t, s.offMS.Int64, pause.Milliseconds(), "start at seq %d: off at least as long as the pause", s.seq)
		assert.Less(t, s.offMS.Int64, time.Minute.Milliseconds(), "start at seq %d", s.seq)
	}

	// The review's run views leave the collector's markers out.
	bin := harness.BuildAuditctl(t, t.TempDir())
	out, errOut, code := harness.RunAuditctl(t, bin, "runs", "--json", opts.DataDir)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	var runs []struct {
		ExecutionID string `json:"execution_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &runs))
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ExecutionID)
	}
	assert.ElementsMatch(t, []string{"exec-cov-1", "exec-cov-2"}, ids, "no run of the recorder's own")
}
