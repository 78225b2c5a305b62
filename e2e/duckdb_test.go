package e2e

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/stretchr/testify/require"
)

// trailDB opens an in-memory DuckDB with the audit_entries view over the
// trail in dir, exactly as docs/FORMAT.md tells auditors to create it.
func trailDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec(auditEntriesView(filepath.ToSlash(dir)+"/**/*.parquet", true))
	require.NoError(t, err)
	return db
}

// auditEntriesView is the statement docs/FORMAT.md gives auditors, over the
// files of glob: union_by_name reads files of format versions 1 and 2
// together, and the empty UNION adds end_time_unix_nano and sender when no
// file has them.
func auditEntriesView(glob string, hive bool) string {
	return fmt.Sprintf(`CREATE OR REPLACE VIEW audit_entries AS SELECT * FROM read_parquet('%s', hive_partitioning = %t, union_by_name = true) UNION ALL BY NAME SELECT NULL::BIGINT AS end_time_unix_nano, NULL::VARCHAR AS sender WHERE false`,
		strings.ReplaceAll(glob, "'", "''"), hive)
}

// violation is one row of docs/verify.sql.
type violation struct {
	ChainID, Violation, Detail string
	Seq                        int64
}

// runVerifySQL runs docs/verify.sql against db and returns its rows.
func runVerifySQL(t *testing.T, db *sql.DB) []violation {
	t.Helper()
	q, err := os.ReadFile(filepath.Join("..", "docs", "verify.sql"))
	require.NoError(t, err)
	rows, err := db.Query(strings.TrimSpace(string(q)))
	require.NoError(t, err)
	defer rows.Close()
	var out []violation
	for rows.Next() {
		var v violation
		var detail sql.NullString
		require.NoError(t, rows.Scan(&v.ChainID, &v.Seq, &v.Violation, &detail))
		v.Detail = detail.String
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}

// parquetFiles lists the trail's Parquet files below dir.
func parquetFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".parquet") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	return files
}
