//go:build cgo

package review

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/trailcache"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// An answer: the files a question's rows come from, brought local, kept
// when they hold the rows, checked, and shown to DuckDB as audit_entries.

// answer is the files an answer is read from, checked, on one DuckDB
// connection whose view audit_entries shows their rows.
type answer struct {
	conn *sql.Conn
	// materialized: the answer's rows are in the temp table answer_rows.
	materialized bool
	// idCond selects the rows of the ids asked for ("": join wanted_ids).
	idCond string
	checks []*fileCheck
	byPath map[string]*fileCheck
	links  []verify.Violation
}

func (a *answer) close() { a.conn.Close() }

// open selects the files f can match and brings them local, keeps those
// holding a row of ids when ids are given, checks the files kept (proving
// the answer's entries or verifying whole) and creates the view
// audit_entries over the readable ones, restricted to ids when given (and
// then over a copy of their rows with table).
func (e *Engine) open(ctx context.Context, f trailcache.Filter, ids []string, table bool) (*answer, error) {
	files, paths, err := e.selectLocal(ctx, f)
	if err != nil {
		return nil, err
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("review: DuckDB: %w", err)
	}
	a := &answer{conn: conn, byPath: map[string]*fileCheck{}}
	prove := make([]bool, len(files))
	if len(ids) > 0 {
		if err := a.setIDs(ctx, ids); err != nil {
			a.close()
			return nil, err
		}
		if files, paths, prove, err = a.gather(ctx, files, paths, ids, table); err != nil {
			a.close()
			return nil, err
		}
	}
	keys := make([]string, len(files))
	for i := range files {
		keys[i] = files[i].Key
	}
	if a.checks, err = e.checker.check(ctx, keys, paths, prove); err != nil {
		a.close()
		return nil, err
	}
	a.links = links(a.checks)
	var readable []string
	for _, fc := range a.checks {
		a.byPath[fc.path] = fc
		if fc.readable {
			readable = append(readable, fc.path)
		}
	}
	if err := a.createView(ctx, readable, len(ids) > 0); err != nil {
		a.close()
		return nil, err
	}
	if err := e.prove(ctx, a); err != nil {
		a.close()
		return nil, err
	}
	if len(ids) > 0 {
		// A file verified whole after a failed proof may no longer be
		// readable.
		var still []string
		for _, fc := range a.checks {
			if fc.readable {
				still = append(still, fc.path)
			}
		}
		if len(still) != len(readable) {
			if err := a.createView(ctx, still, true); err != nil {
				a.close()
				return nil, err
			}
		}
	}
	return a, nil
}

// selectLocal lists the trail again when the last listing is older than
// relist, and returns the files that may hold a row matching f with their
// local paths.
func (e *Engine) selectLocal(ctx context.Context, f trailcache.Filter) ([]trailcache.File, []string, error) {
	e.mu.Lock()
	stale := time.Since(e.listed) > relist
	if stale {
		e.listed = time.Now()
	}
	e.mu.Unlock()
	if stale {
		if _, err := e.opts.Files.Files(ctx); err != nil {
			e.mu.Lock()
			e.listed = time.Time{}
			e.mu.Unlock()
			return nil, nil, err
		}
	}
	files, err := e.opts.Files.Select(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	paths, err := e.opts.Files.Local(ctx, files)
	if err != nil {
		return nil, nil, err
	}
	return files, paths, nil
}

// setIDs fills the table wanted_ids with ids.
func (a *answer) setIDs(ctx context.Context, ids []string) error {
	if _, err := a.conn.ExecContext(ctx, "CREATE OR REPLACE TEMP TABLE wanted_ids (id VARCHAR)"); err != nil {
		return fmt.Errorf("review: DuckDB: %w", err)
	}
	return insertStrings(ctx, a.conn, "wanted_ids", ids)
}

// gather finds the rows of ids (also in wanted_ids), copied into the table
// answer_rows with table (materialize), and keeps, of files (and their local paths), those holding
// some, and those whose footer could not be read (verification says why):
// the bloom filters that selected them have false positives, and checking
// a file costs more than reading it for the answer. It says which files to
// prove the answer's entries of rather than verify whole (proveRatio).
// When DuckDB cannot read one of the files, it keeps them all, to be
// verified whole (verification finds which cannot be read), and the view
// joins with wanted_ids.
func (a *answer) gather(ctx context.Context, files []trailcache.File, paths []string, ids []string, table bool) ([]trailcache.File, []string, []bool, error) {
	var probe []string
	for i := range files {
		if files[i].Problem == "" {
			probe = append(probe, paths[i])
		}
	}
	all := func() ([]trailcache.File, []string, []bool, error) {
		return files, paths, make([]bool, len(files)), nil
	}
	if len(probe) == 0 {
		return all()
	}
	held, err := a.materialize(ctx, probe, ids, table)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		a.materialized, a.idCond = false, ""
		return all()
	}
	var keptFiles []trailcache.File
	var keptPaths []string
	var prove []bool
	for i := range files {
		n, ok := held[paths[i]]
		if files[i].Problem != "" || ok {
			keptFiles = append(keptFiles, files[i])
			keptPaths = append(keptPaths, paths[i])
			prove = append(prove, ok && n*proveRatio <= files[i].Rows)
		}
	}
	return keptFiles, keptPaths, prove, nil
}

// literalIDs: up to this many ids are written into the query as a list,
// which DuckDB applies in the Parquet scan (it reads the other columns of
// the matching rows only); more are joined with wanted_ids, after a scan
// of execution_id alone has found the files that hold them. A variable
// for tests.
var literalIDs = 1000

// materialize finds which of paths hold rows whose execution_id is in
// ids, and how many each (files holding none are absent). With table, it
// copies those rows into the table answer_rows: worth it when the answer
// is read several times and is small (a run's timeline), not when it is
// large and its queries need a few columns (runs).
func (a *answer) materialize(ctx context.Context, paths, ids []string, table bool) (map[string]int64, error) {
	if len(ids) <= literalIDs {
		a.idCond = "execution_id IN (" + strings.Join(quoteAll(ids), ", ") + ")"
	} else {
		a.idCond = "execution_id IN (SELECT id FROM wanted_ids)"
	}
	if !table || len(ids) > literalIDs {
		held, err := perFile(ctx, a.conn, "SELECT filename, count(*) FROM read_parquet("+pathList(paths)+
			", union_by_name = true, hive_partitioning = false, filename = true) WHERE "+a.idCond+" GROUP BY filename")
		if err != nil || !table {
			return held, err
		}
		paths = paths[:0:0]
		for p := range held {
			paths = append(paths, p)
		}
		slices.Sort(paths)
	}
	src := emptyEntries
	if len(paths) > 0 {
		src = entriesFrom(paths)
	}
	if _, err := a.conn.ExecContext(ctx, "CREATE OR REPLACE TEMP TABLE answer_rows AS SELECT * FROM ("+src+") WHERE "+a.idCond); err != nil {
		return nil, err
	}
	a.materialized = true
	return perFile(ctx, a.conn, "SELECT file, count(*) FROM answer_rows GROUP BY file")
}

// perFile runs q, whose rows are a file and a count.
func perFile(ctx context.Context, conn *sql.Conn, q string) (map[string]int64, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var p string
		var n int64
		if err := rows.Scan(&p, &n); err != nil {
			return nil, err
		}
		out[p] = n
	}
	return out, rows.Err()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = sqlString(s)
	}
	return out
}

// proveRatio: the answer's entries in a file are proven (prove.go) when
// they are at most 1/proveRatio of its rows; past that, verifying the file
// whole costs less. Proving costs little a row of the file (its seq and
// entry_hash columns) but about 10 µs an entry of the answer (every column
// through database/sql, then hashed); verifying, about 4 µs a row of the
// file. Measured on runs of a day (docs/PERFORMANCE.md, "Reviewing runs"):
// 1 (prove every file) takes twice as long as 5; 3 to 10 are alike. A
// variable for tests, whose files are small.
var proveRatio int64 = 5

// pathList is paths as a DuckDB list of string literals.
func pathList(paths []string) string { return "[" + strings.Join(quoteAll(paths), ", ") + "]" }

// createView points audit_entries at the rows of paths (none: an empty
// view): those of answer_rows when the answer was materialized, else the
// files' rows, restricted to wanted_ids when byID.
func (a *answer) createView(ctx context.Context, paths []string, byID bool) error {
	var q string
	switch {
	case a.materialized && len(paths) == 0:
		q = "SELECT * FROM answer_rows WHERE false"
	case a.materialized:
		q = "SELECT * FROM answer_rows WHERE file IN (SELECT unnest(" + pathList(paths) + "))"
	case len(paths) == 0:
		q = emptyEntries
	default:
		q = entriesFrom(paths)
		if byID {
			cond := a.idCond
			if cond == "" {
				cond = "execution_id IN (SELECT id FROM wanted_ids)"
			}
			q = "SELECT * FROM (" + q + ") WHERE " + cond
		}
	}
	if _, err := a.conn.ExecContext(ctx, "CREATE OR REPLACE TEMP VIEW audit_entries AS "+q); err != nil {
		return fmt.Errorf("review: reading the trail's files: %w", err)
	}
	return nil
}

// entriesFrom is the rows of the files at paths, with the
// end_time_unix_nano and sender columns even when every file is of format
// v1, and a column file naming each row's file.
func entriesFrom(paths []string) string {
	return "SELECT * RENAME (filename AS file) FROM read_parquet(" + pathList(paths) +
		", union_by_name = true, hive_partitioning = false, filename = true)" +
		" UNION ALL BY NAME SELECT NULL::BIGINT AS end_time_unix_nano, NULL::VARCHAR AS sender WHERE false"
}

// emptyEntries is a relation with the trail's columns and no row.
const emptyEntries = `SELECT NULL::TIMESTAMP_MS AS "timestamp", NULL::BIGINT AS time_unix_nano,
  NULL::BIGINT AS end_time_unix_nano, NULL::VARCHAR AS chain_id, NULL::BIGINT AS seq,
  NULL::VARCHAR AS execution_id, NULL::VARCHAR AS trace_id, NULL::VARCHAR AS span_id,
  NULL::VARCHAR AS parent_span_id, NULL::VARCHAR AS agent_id, NULL::VARCHAR AS agent_name,
  NULL::VARCHAR AS service_name, NULL::VARCHAR AS principal, NULL::VARCHAR AS sender, NULL::VARCHAR AS action_type,
  NULL::VARCHAR AS target_system, NULL::VARCHAR AS target_resource, NULL::VARCHAR AS proposed_value,
  NULL::VARCHAR AS previous_value, NULL::VARCHAR AS reasoning, NULL::VARCHAR AS approver,
  NULL::VARCHAR AS result, NULL::VARCHAR AS status_code, NULL::VARCHAR AS attributes,
  NULL::VARCHAR AS validation, NULL::VARCHAR AS prev_hash, NULL::VARCHAR AS entry_hash,
  NULL::VARCHAR AS file WHERE false`

func insertStrings(ctx context.Context, conn *sql.Conn, table string, vals []string) error {
	const chunk = 500
	for start := 0; start < len(vals); start += chunk {
		part := vals[start:min(start+chunk, len(vals))]
		q := "INSERT INTO " + table + " VALUES " + strings.TrimSuffix(strings.Repeat("(?),", len(part)), ",")
		args := make([]any, len(part))
		for i, v := range part {
			args[i] = v
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("review: DuckDB: %w", err)
		}
	}
	return nil
}

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
