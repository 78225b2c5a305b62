package e2e

// auditctl verify sees what the reader sees: what DuckDB's glob reads
// under a trail directory, checked against a real DuckDB. Every identifier
// here starts with "vr" (this package is shared).

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// vrWrite encodes es with the collector's writer to path.
func vrWrite(t *testing.T, path string, es []entry.Entry) {
	t.Helper()
	var buf bytes.Buffer
	_, err := parquetfile.Encode(&buf, es)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// vrFiles is what DuckDB's glob returns for pattern, relative to dir.
func vrFiles(t *testing.T, db *sql.DB, dir, pattern string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT file FROM glob(?)`, filepath.ToSlash(dir)+"/"+pattern)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var f string
		require.NoError(t, rows.Scan(&f))
		rel, err := filepath.Rel(dir, filepath.FromSlash(f))
		require.NoError(t, err)
		out = append(out, filepath.ToSlash(rel))
	}
	require.NoError(t, rows.Err())
	slices.Sort(out)
	return out
}

// TestVrVerifierSeesWhatTheReaderSees: a forged continuation of a chain,
// outside the trail, linked in under a batch's name: DuckDB's
// read_parquet('<dir>/**/*.parquet') follows the link and shows its rows
// (an approver no one recorded) and verify.sql, whose chain they continue
// consistently, reports nothing; auditctl reports the link as
// not_regular_file and reads none of it. The other names DuckDB's globs
// reach are covered too: dot-names (read by DuckDB, checked by auditctl), a
// symbolic link to a directory (followed by 'dt=*/*.parquet', not by '**'),
// a directory named *.parquet (its files read).
func TestVrVerifierSeesWhatTheReaderSees(t *testing.T) {
	base := t.TempDir()
	dir, outside := filepath.Join(base, "trail"), filepath.Join(base, "outside")
	c := chain.New("vr-a", chain.Genesis())
	es := make([]entry.Entry, 15)
	for i := range es {
		es[i] = harness.SampleEntry(int64(i))
		if i >= 10 {
			es[i].Approver = harness.Strp("mallory@example.com")
		}
		c.Append(&es[i])
	}
	vrWrite(t, filepath.Join(dir, filepath.FromSlash(store.BatchKey("vr-a", 0, harness.Day))), es[:10])
	forged := filepath.Join(outside, "forged.parquet")
	vrWrite(t, forged, es[10:])
	linkName := store.BatchKey("vr-a", 10, harness.Day)
	require.NoError(t, os.Symlink(forged, filepath.Join(dir, filepath.FromSlash(linkName))))

	db := harness.TrailDB(t, dir)
	var rows, mallory int
	require.NoError(t, db.QueryRow(`SELECT count(*), count(*) FILTER (approver = 'mallory@example.com') FROM audit_entries`).Scan(&rows, &mallory))
	assert.Equal(t, 15, rows, "DuckDB follows the link")
	assert.Equal(t, 5, mallory)
	assert.Empty(t, harness.VerifySQL(t, db), "the forged rows continue the chain: verify.sql sees nothing wrong")

	rep := harness.Verify(t, dir)
	assert.False(t, rep.Intact)
	require.Len(t, rep.Violations, 1, "%v", rep.Violations)
	v := rep.Violations[0]
	assert.Equal(t, verify.NotRegularFile, v.Kind)
	assert.Equal(t, linkName, v.File)
	assert.Contains(t, v.Detail, "symlink to "+forged)
	assert.Equal(t, int64(10), rep.Entries, "auditctl read nothing through the link")

	// What else DuckDB's globs reach.
	require.NoError(t, os.MkdirAll(filepath.Join(outside, "dir"), 0o755))
	vrWrite(t, filepath.Join(outside, "dir", "vr-b-00000000000000000000.parquet"), es[:1])
	require.NoError(t, os.Symlink(filepath.Join(outside, "dir"), filepath.Join(dir, "dt=2026-03-10")))
	hidden := ".hidden/" + store.BatchKey("vr-a", 0, harness.Day)
	vrWrite(t, filepath.Join(dir, filepath.FromSlash(hidden)), es[:10])
	vrWrite(t, filepath.Join(dir, "d.parquet", "vr-c-00000000000000000000.parquet"), es[:1])

	assert.Equal(t, []string{
		".hidden/dt=2026-03-09/vr-a-00000000000000000000.parquet",
		"d.parquet/vr-c-00000000000000000000.parquet",
		"dt=2026-03-09/vr-a-00000000000000000000.parquet",
		"dt=2026-03-09/vr-a-00000000000000000010.parquet",
	}, vrFiles(t, db, dir, "**/*.parquet"), "** reads dot-names and inside a directory named *.parquet, not the directory, and does not enter a linked directory")
	assert.Contains(t, vrFiles(t, db, dir, "*/*.parquet"), "dt=2026-03-10/vr-b-00000000000000000000.parquet", "* enters a linked directory")

	rep = harness.Verify(t, dir)
	got := map[string]verify.Kind{}
	for _, v := range rep.Violations {
		if _, ok := got[v.File]; !ok || v.Kind == verify.NotRegularFile {
			got[v.File] = v.Kind
		}
	}
	assert.Equal(t, verify.NotRegularFile, got[linkName])
	assert.Equal(t, verify.NotRegularFile, got["dt=2026-03-10"], "the linked directory")
	assert.Equal(t, verify.NotRegularFile, got["d.parquet"], "the directory named *.parquet")
	assert.Contains(t, got, hidden, "the dot-named copy is checked: it duplicates seq 0 to 9")
	assert.Contains(t, got, "d.parquet/vr-c-00000000000000000000.parquet", "the file in the directory named *.parquet is checked")
	assert.Equal(t, 6, rep.Files)
}
