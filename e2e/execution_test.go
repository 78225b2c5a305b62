package e2e

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestAgentExecutionEndToEnd runs once per way to split the stream (see
// harness.SplitConfigs): each must give the trail and the monitoring
// backend the same.
func TestAgentExecutionEndToEnd(t *testing.T) {
	harness.EachSplit(t, testAgentExecution)
}

func testAgentExecution(t *testing.T, split string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Three entries per file, so the run spans several files and links
	// across them.
	c := harness.StartCollector(t, harness.CollectorOptions{ChainID: "collector-1", MaxEntries: 3, Split: split})

	sent, runSC := harness.SendCRMRun(t, ctx, c, harness.ExecID)

	// The collector counts what it recorded.
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(len(harness.CRMRun)))
	ignored, _ := c.Metric("otelcol_agentaudit_spans_ignored")
	assert.Zero(t, ignored, "only audit spans reach the exporter")

	// The monitoring backend sees every span, for latency and errors, but
	// none of the audit payload.
	mon := c.Monitoring.Received()
	require.Len(t, mon, 2*len(harness.CRMRun)+1, "every LLM, audit and run span reaches monitoring")
	audited := 0
	for _, s := range mon {
		if _, ok := s.Attributes().Get("audit.action.type"); ok {
			audited++
		}
		s.Attributes().Range(func(k string, _ pcommon.Value) bool {
			assert.False(t, k == "audit.reasoning" || strings.HasPrefix(k, "audit.value."),
				"monitoring received payload key %q on span %q", k, s.Name())
			return true
		})
	}
	assert.Equal(t, len(harness.CRMRun), audited, "audit spans stay visible to monitoring, stripped")
	c.Stop()

	files := harness.ParquetFiles(t, c.DataDir)
	require.Len(t, files, 4, "9 entries and the start and stop markers in batches of 3")
	for _, f := range files {
		rel, err := filepath.Rel(c.DataDir, f)
		require.NoError(t, err)
		assert.Regexp(t, `^dt=\d{4}-\d{2}-\d{2}/collector-1-\d{20}\.parquet$`, filepath.ToSlash(rel))
		info, err := os.Stat(f)
		require.NoError(t, err)
		assert.Zero(t, info.Mode().Perm()&0o222, "%s must be read-only", f)
	}

	db := harness.TrailDB(t, c.DataDir)
	all := harness.ReadRows(t, db, "")
	got, markers := harness.SplitMarkers(all)
	require.Len(t, got, len(harness.CRMRun), "only audit-tagged spans are recorded; LLM spans are not")
	assert.Equal(t, harness.OneCleanRun, markers)
	start, stop := all[0], all[len(all)-1]
	assert.Equal(t, harness.ActionRecorderStart, start.ActionType, "the chain begins with the start marker")
	assert.Equal(t, strings.Repeat("0", 64), start.PrevHash)
	assert.Equal(t, harness.ActionRecorderStop, stop.ActionType, "and ends with the stop marker")
	harness.CheckCRMRows(t, got, sent, runSC, "collector-1", 1, start.EntryHash)

	// "Everything execution X did", the README's query.
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM audit_entries WHERE execution_id = ?`, harness.ExecID).Scan(&n))
	assert.Equal(t, len(harness.CRMRun), n)

	// The footer carries each batch's chain facts.
	var kv int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM parquet_kv_metadata('`+filepath.ToSlash(files[1])+`')
		WHERE decode(key) IN ('agentaudit.chain_id', 'agentaudit.first_seq', 'agentaudit.last_seq',
		'agentaudit.prev_hash', 'agentaudit.last_hash', 'agentaudit.format_version')`).Scan(&kv))
	assert.Equal(t, 6, kv)

	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql finds nothing wrong in an intact trail")

	// Rewrite one value in place: the approver of the approval entry.
	const approval = 5 // CRMRun[4], after the start marker
	require.Equal(t, "approve", got[approval-1].ActionType)
	rewriteValue(t, db, files, approval, "approver", "'mallory@company.com'")
	db2 := harness.TrailDB(t, c.DataDir)
	v := harness.VerifySQL(t, db2)
	require.Len(t, v, 1, "verify.sql reports exactly the rewritten entry: %+v", v)
	assert.Equal(t, harness.Violation{ChainID: "collector-1", Seq: approval, Violation: "hash_mismatch", Detail: v[0].Detail}, v[0])
}

// rewriteValue replaces column col of entry seq with the SQL expression
// expr, rewriting the file that holds it the way an attacker with write
// access would.
func rewriteValue(t *testing.T, db *sql.DB, files []string, seq int64, col, expr string) {
	t.Helper()
	for _, f := range files {
		var n int
		src := filepath.ToSlash(f)
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM read_parquet('`+src+`') WHERE seq = ?`, seq).Scan(&n))
		if n == 0 {
			continue
		}
		tmp := f + ".tmp"
		_, err := db.Exec(`COPY (SELECT * REPLACE (CASE WHEN seq = ` + strconv.FormatInt(seq, 10) + ` THEN ` + expr + ` ELSE ` + col + ` END AS ` + col + `)
			FROM read_parquet('` + src + `')) TO '` + filepath.ToSlash(tmp) + `' (FORMAT parquet)`)
		require.NoError(t, err)
		require.NoError(t, os.Remove(f))
		require.NoError(t, os.Rename(tmp, f))
		return
	}
	t.Fatalf("no file holds seq %d", seq)
}
