package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// acCopyTree copies the trail in src to a new directory, files writable so
// that tests can tamper with them.
func acCopyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !strings.HasSuffix(p, ".parquet") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// acRewrite replaces the file of dir holding (chainID, seq) with the result
// of query, where {src} stands for the file, the way an attacker with
// DuckDB and write access would.
func acRewrite(t *testing.T, dir, chainID string, seq int64, query string) {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	require.NoError(t, err)
	defer db.Close()
	for _, f := range harness.ParquetFiles(t, dir) {
		src := filepath.ToSlash(f)
		var n int
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM read_parquet('`+src+`') WHERE chain_id = ? AND seq = ?`, chainID, seq).Scan(&n))
		if n == 0 {
			continue
		}
		tmp := f + ".tmp"
		q := strings.ReplaceAll(query, "{src}", "read_parquet('"+src+"')")
		_, err := db.Exec(`COPY (` + q + `) TO '` + filepath.ToSlash(tmp) + `' (FORMAT parquet)`)
		require.NoError(t, err, q)
		require.NoError(t, os.Remove(f))
		require.NoError(t, os.Rename(tmp, f))
		return
	}
	t.Fatalf("no file holds %s seq %d", chainID, seq)
}

// acCollectorTrail runs two collectors (two replicas, two chains) with three
// entries to a file, sends each two agent runs, and returns one directory
// holding both trails, as a shared prefix would.
func acCollectorTrail(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	merged := t.TempDir()
	for _, id := range []string{"replica-1", "replica-2"} {
		c := harness.StartCollector(t, harness.CollectorOptions{ChainID: id, MaxEntries: 3})
		harness.SendCRMRun(t, ctx, c, "exec-"+id+"-a")
		harness.SendCRMRun(t, ctx, c, "exec-"+id+"-b")
		c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(2*len(harness.CRMRun)))
		c.Stop()
		// The collector's own directory, whatever else it holds beside the
		// batches (checkpoints, keys), verifies as it is.
		rep := harness.Verify(t, c.DataDir)
		require.True(t, rep.Intact, "%+v", rep.Violations)
		require.Len(t, rep.Chains, 1)
		for _, f := range harness.ParquetFiles(t, c.DataDir) {
			rel, err := filepath.Rel(c.DataDir, f)
			require.NoError(t, err)
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(merged, rel)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(merged, rel), data, 0o444))
		}
	}
	return merged
}

// TestAcCollectorTrail: a trail two collectors wrote verifies clean with
// auditctl (the binary, exit 0) and with docs/verify.sql; after each
// tampering SQL can see, both report the same (chain_id, seq, violation)
// set, on a fresh copy of the trail each time.
func TestAcCollectorTrail(t *testing.T) {
	trail := acCollectorTrail(t)
	n := 2*len(harness.CRMRun) + 2 // entries per chain: the runs and the start and stop markers

	bin := harness.BuildAuditctl(t, t.TempDir())
	cmd := exec.Command(bin, "verify", "--json", trail)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "auditctl verify exits 0 on the collector's trail\n%s\n%s", stdout.String(), stderr.String())
	var rep verify.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
	assert.True(t, rep.Intact)
	require.Len(t, rep.Chains, 2, "one chain per replica, verified together")
	for i, c := range rep.Chains {
		assert.Equal(t, fmt.Sprintf("replica-%d", i+1), c.ChainID)
		assert.Equal(t, int64(n), c.Entries)
		assert.Equal(t, (n+2)/3, c.Files, "three entries to a file, the last one short")
		assert.Equal(t, int64(n-1), c.LastSeq)
	}
	db := harness.TrailDB(t, trail)
	assert.Empty(t, harness.VerifySQL(t, db))
	assert.Equal(t, slices.Concat(harness.OneCleanRun, harness.OneCleanRun), harness.TrailMarkers(t, db), "each replica's start and stop")

	const c1 = "replica-1"
	for _, tc := range []struct {
		name  string
		seq   int64
		query string
	}{
		{"value rewritten", 5, `SELECT * REPLACE (CASE WHEN seq = 5 THEN 'mallory@company.com' ELSE approver END AS approver) FROM {src}`}, // the approval, after the start marker
		{"row deleted", 7, `SELECT * FROM {src} WHERE seq <> 7`},
		{"first row of a file deleted", 9, `SELECT * FROM {src} WHERE seq <> 9`},
		{"row duplicated", 10, `SELECT * FROM (SELECT * FROM {src} UNION ALL SELECT * FROM {src} WHERE seq = 10) ORDER BY seq`},
		{"seq reordered", 13, `SELECT * REPLACE (CASE WHEN seq = 13 THEN 14 WHEN seq = 14 THEN 13 ELSE seq END AS seq) FROM {src} ORDER BY seq`},
		{"timestamp rewritten", 16, `SELECT * REPLACE (CASE WHEN seq = 16 THEN "timestamp" + INTERVAL 1 SECOND ELSE "timestamp" END AS "timestamp") FROM {src}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := acCopyTree(t, trail)
			acRewrite(t, dir, c1, tc.seq, tc.query)
			sqlKeys := harness.SQLKeys(harness.VerifySQL(t, harness.TrailDB(t, dir)))
			rep := harness.Verify(t, dir)
			require.NotEmpty(t, sqlKeys, "verify.sql sees this tampering")
			assert.False(t, rep.Intact)
			var lines []string
			for _, v := range rep.Violations {
				lines = append(lines, v.String())
			}
			assert.Equal(t, sqlKeys, harness.ReportKeys(rep), "auditctl and docs/verify.sql agree; auditctl says:\n%s", strings.Join(lines, "\n"))
			// DuckDB does not carry the footer over: auditctl says so.
			assert.Contains(t, lines, fmt.Sprintf("%s: seq %d: footer_missing: footer key \"agentaudit.chain_id\" missing",
				rep.Violations[slices.IndexFunc(rep.Violations, func(v verify.Violation) bool { return v.Kind == verify.FooterMissing })].File,
				rep.Violations[slices.IndexFunc(rep.Violations, func(v verify.Violation) bool { return v.Kind == verify.FooterMissing })].Seq))
			for _, c := range rep.Chains {
				assert.Equal(t, c.ChainID != c1, c.Intact, "only %s was touched", c1)
			}
		})
	}
}

// acBenchTrail writes chains*perChain entries, perFile to a file, below
// dir, and returns the total.
func acBenchTrail(b *testing.B, dir string, chains, perChain, perFile int) int64 {
	b.Helper()
	var canonical int64
	for k := range chains {
		id := fmt.Sprintf("replica-%d", k)
		c := chain.New(id, chain.Genesis())
		es := make([]entry.Entry, perChain)
		for i := range es {
			es[i] = harness.SampleEntry(int64(i))
			c.Append(&es[i])
			canonical += int64(len(chain.AppendCanonical(nil, &es[i])))
		}
		for start := 0; start < perChain; start += perFile {
			var buf bytes.Buffer
			if _, err := parquetfile.Encode(&buf, es[start:min(start+perFile, perChain)]); err != nil {
				b.Fatal(err)
			}
			p := filepath.Join(dir, filepath.FromSlash(store.BatchKey(id, int64(start), time.Unix(0, es[0].TimeUnixNano))))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, buf.Bytes(), 0o444); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("%d entries, %d canonical bytes each on average", chains*perChain, canonical/int64(chains*perChain))
	return int64(chains * perChain)
}

// BenchmarkVerifyVsSQL times auditctl's verifier and docs/verify.sql in
// DuckDB over the same files, side by side: 200k realistic entries in 20
// files (AC_BENCH_ENTRIES changes the count), with all cores and with one
// (GOMAXPROCS=1 and a single worker; DuckDB SET threads = 1).
//
//	go test -run '^$' -bench BenchmarkVerifyVsSQL -benchtime 3x ./e2e/
func BenchmarkVerifyVsSQL(b *testing.B) {
	total := 200_000
	if v, err := strconv.Atoi(os.Getenv("AC_BENCH_ENTRIES")); err == nil && v >= 20 {
		total = v
	}
	dir := b.TempDir()
	n := acBenchTrail(b, dir, 2, total/2, total/20)
	q, err := os.ReadFile(filepath.Join("..", "docs", "verify.sql"))
	if err != nil {
		b.Fatal(err)
	}
	for _, threads := range []int{runtime.NumCPU(), 1} {
		b.Run(fmt.Sprintf("auditctl/threads=%d", threads), func(b *testing.B) {
			old := runtime.GOMAXPROCS(threads)
			defer runtime.GOMAXPROCS(old)
			for b.Loop() {
				rep, err := verify.Verify(context.Background(), store.Dir(dir), verify.Options{Workers: threads})
				if err != nil {
					b.Fatal(err)
				}
				if !rep.Intact || rep.Entries != n {
					b.Fatalf("intact %v, %d entries, want %d", rep.Intact, rep.Entries, n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
		b.Run(fmt.Sprintf("verify.sql/threads=%d", threads), func(b *testing.B) {
			db, err := sql.Open("duckdb", "")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1) // one connection: SET applies to the query
			for _, stmt := range []string{
				"SET threads = " + strconv.Itoa(threads),
				harness.AuditEntriesView(filepath.ToSlash(dir)+"/**/*.parquet", true),
			} {
				if _, err := db.Exec(stmt); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				rows, err := db.Query(strings.TrimSpace(string(q)))
				if err != nil {
					b.Fatal(err)
				}
				found := 0
				for rows.Next() {
					found++
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
				rows.Close()
				if found != 0 {
					b.Fatalf("verify.sql found %d violations in a clean trail", found)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
