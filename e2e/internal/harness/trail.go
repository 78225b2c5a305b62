package harness

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// OpenDB opens an in-memory DuckDB that closes when the test ends.
func OpenDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// Quote is s as a DuckDB string literal.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TrailDB opens an in-memory DuckDB with the audit_entries view over the
// trail in dir, exactly as docs/FORMAT.md tells auditors to create it.
func TrailDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db := OpenDB(t)
	_, err := db.Exec(AuditEntriesView(filepath.ToSlash(dir)+"/**/*.parquet", true))
	require.NoError(t, err)
	return db
}

// AuditEntriesView is the statement docs/FORMAT.md gives auditors, over the
// files of glob: union_by_name reads files of format versions 1 and 2
// together, and the empty UNION adds end_time_unix_nano and sender when no
// file has them.
func AuditEntriesView(glob string, hive bool) string {
	return fmt.Sprintf(`CREATE OR REPLACE VIEW audit_entries AS SELECT * FROM read_parquet('%s', hive_partitioning = %t, union_by_name = true) UNION ALL BY NAME SELECT NULL::BIGINT AS end_time_unix_nano, NULL::VARCHAR AS sender WHERE false`,
		strings.ReplaceAll(glob, "'", "''"), hive)
}

// Violation is one row of docs/verify.sql.
type Violation struct {
	ChainID, Violation, Detail string
	Seq                        int64
}

// VerifySQL runs docs/verify.sql against db and returns its rows.
func VerifySQL(t *testing.T, db *sql.DB) []Violation {
	t.Helper()
	q, err := os.ReadFile(filepath.Join("..", "docs", "verify.sql"))
	require.NoError(t, err)
	rows, err := db.Query(strings.TrimSpace(string(q)))
	require.NoError(t, err)
	defer rows.Close()
	var out []Violation
	for rows.Next() {
		var v Violation
		var detail sql.NullString
		require.NoError(t, rows.Scan(&v.ChainID, &v.Seq, &v.Violation, &detail))
		v.Detail = detail.String
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}

// ParquetFiles lists the trail's Parquet files below dir.
func ParquetFiles(t *testing.T, dir string) []string {
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

// Row is one entry as DuckDB reads it back.
type Row struct {
	Timestamp                                                time.Time
	TimeUnixNano                                             int64
	EndTimeUnixNano                                          sql.NullInt64
	ChainID                                                  string
	Seq                                                      int64
	ExecutionID, TraceID, SpanID                             string
	ParentSpanID, AgentID, AgentName, ServiceName, Principal sql.NullString
	Sender                                                   sql.NullString
	ActionType, TargetSystem, TargetResource                 string
	ProposedValue, PreviousValue, Reasoning, Approver        sql.NullString
	Result, StatusCode, Attributes                           string
	Validation                                               sql.NullString
	PrevHash, EntryHash                                      string
}

// ReadRows reads every entry of the audit_entries view that matches where
// (a WHERE clause, or ""), ordered by chain and seq.
func ReadRows(t *testing.T, db *sql.DB, where string) []Row {
	t.Helper()
	rows, err := db.Query(`SELECT timestamp, time_unix_nano, end_time_unix_nano, chain_id, seq, execution_id, trace_id, span_id,
		parent_span_id, agent_id, agent_name, service_name, principal, sender, action_type, target_system, target_resource,
		proposed_value, previous_value, reasoning, approver, result, status_code, attributes, validation,
		prev_hash, entry_hash FROM audit_entries ` + where + ` ORDER BY chain_id, seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		require.NoError(t, rows.Scan(&r.Timestamp, &r.TimeUnixNano, &r.EndTimeUnixNano, &r.ChainID, &r.Seq, &r.ExecutionID, &r.TraceID, &r.SpanID,
			&r.ParentSpanID, &r.AgentID, &r.AgentName, &r.ServiceName, &r.Principal, &r.Sender, &r.ActionType, &r.TargetSystem, &r.TargetResource,
			&r.ProposedValue, &r.PreviousValue, &r.Reasoning, &r.Approver, &r.Result, &r.StatusCode, &r.Attributes, &r.Validation,
			&r.PrevHash, &r.EntryHash))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// NullString is p as DuckDB reads an optional column back: NULL when p is
// nil.
func NullString(p *string) sql.NullString {
	if p == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *p, Valid: true}
}
