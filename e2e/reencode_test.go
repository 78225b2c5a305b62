package e2e

// Trails re-encoded by DuckDB: docs/FORMAT.md tells auditors to trust the
// rows, not their encoding, so every file of a trail rewritten by another
// standard writer with the same rows and footer key-values (a compaction,
// an export) must verify, and a value changed in the rewrite must still be
// caught at its seq. Every identifier here starts with "re".

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/trailtest"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// reEntry is entry i of a test chain: realistic values, a root span (NULL
// parent_span_id) every eighth, NULL optional columns in other patterns,
// no end time nor sender every tenth (a row of format version 1).
func reEntry(i int64) entry.Entry {
	s := func(v string) *string { return &v }
	e := trailtest.Entry(i)
	end := e.TimeUnixNano + 900_000
	e.EndTimeUnixNano, e.Sender, e.ServiceName = &end, s("svc-crm-agent"), nil
	e.TraceID = fmt.Sprintf("%032x", i/8*7919+1)
	e.ParentSpanID = s(fmt.Sprintf("%016x", i/8*104729+1))
	if i%8 == 0 {
		e.ParentSpanID = nil
	}
	if i%7 == 0 {
		e.ServiceName = s("")
	}
	if i%10 == 9 {
		e.EndTimeUnixNano, e.Sender = nil, nil
	}
	return e
}

// reTrail writes two chains of 5,000 entries, 1,500 to a file (four files
// each), with signed checkpoints, and returns the directory and the keys.
func reTrail(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	var keys []string
	for _, id := range []string{"replica-0", "replica-1"} {
		w, err := trailtest.New(dir, id, 1500, time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		for i := range int64(5000) {
			require.NoError(t, w.Add(reEntry(i)))
		}
		require.NoError(t, w.Flush())
		keys = append(keys, w.Files...)
	}
	return dir, keys
}

// reRewrite rewrites the file at path with DuckDB: COPY of the query
// (where {src} stands for the file) in seq order, with the file's footer
// key-values, as a compaction would keep them.
func reRewrite(t *testing.T, db *sql.DB, path, query string) {
	t.Helper()
	p := filepath.ToSlash(path)
	rows, err := db.Query("SELECT decode(key), decode(value) FROM parquet_kv_metadata(?)", p)
	require.NoError(t, err)
	var kv []string
	for rows.Next() {
		var k, v string
		require.NoError(t, rows.Scan(&k, &v))
		if strings.HasPrefix(k, "agentaudit.") {
			kv = append(kv, harness.Quote(k)+": "+harness.Quote(v))
		}
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Len(t, kv, 8, "footer keys")
	q := strings.ReplaceAll(query, "{src}", "read_parquet("+harness.Quote(p)+")")
	_, err = db.Exec("COPY (" + q + " ORDER BY seq) TO " + harness.Quote(p+".tmp") +
		" (FORMAT parquet, KV_METADATA {" + strings.Join(kv, ", ") + "})")
	require.NoError(t, err, q)
	require.NoError(t, os.Rename(path+".tmp", path))
}

// TestReencodedByDuckDB: every file of a two-chain trail rewritten by
// DuckDB with the same rows and footer key-values verifies intact with
// `auditctl verify` (exit 0), signed checkpoints included; the same
// rewrite with one value changed in one file of each chain exits 1 with
// exactly those seqs' hash_mismatch.
func TestReencodedByDuckDB(t *testing.T) {
	bin := harness.BuildAuditctl(t, t.TempDir())
	db, err := sql.Open("duckdb", "")
	require.NoError(t, err)
	defer db.Close()

	dir, keys := reTrail(t)
	require.Len(t, keys, 8)
	for _, k := range keys {
		reRewrite(t, db, filepath.Join(dir, filepath.FromSlash(k)), "SELECT * FROM {src}")
	}
	out, errOut, code := harness.RunAuditctl(t, bin, "verify", "--json", dir)
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errOut)
	var rep verify.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.True(t, rep.Intact)
	assert.Equal(t, int64(10000), rep.Entries)
	assert.Equal(t, 8, rep.StoredCheckpoints)

	// One value changed in the rewrite of one file of each chain: a
	// string in the one, an integer (and its timestamp) in the other.
	dir, keys = reTrail(t)
	for _, k := range keys {
		q := "SELECT * FROM {src}"
		switch k {
		case keys[1]: // replica-0, seq 1500 to 2999
			q = "SELECT * REPLACE (CASE WHEN seq = 2222 THEN target_resource || ' ' ELSE target_resource END AS target_resource) FROM {src}"
		case keys[6]: // replica-1, seq 3000 to 4499
			q = "SELECT * REPLACE (CASE WHEN seq = 3001 THEN time_unix_nano + 1000000 ELSE time_unix_nano END AS time_unix_nano," +
				" CASE WHEN seq = 3001 THEN timestamp + INTERVAL 1 MILLISECOND ELSE timestamp END AS timestamp) FROM {src}"
		}
		reRewrite(t, db, filepath.Join(dir, filepath.FromSlash(k)), q)
	}
	out, errOut, code = harness.RunAuditctl(t, bin, "verify", "--json", dir)
	require.Equal(t, 1, code, "stdout: %s\nstderr: %s", out, errOut)
	rep = verify.Report{}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	var got []string
	for _, v := range rep.Violations {
		got = append(got, v.ChainID+"/"+strconv.FormatInt(v.Seq, 10)+"/"+string(v.Kind))
	}
	assert.Equal(t, []string{"replica-0/2222/hash_mismatch", "replica-1/3001/hash_mismatch"}, got, out)
}
