//go:build cgo

package review

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" database/sql driver

	"github.com/agentaudit/agentaudit/internal/trailcache"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// runsSQL defines a run's status (README, "Run status").
//
//go:embed runs.sql
var runsSQL string

// Files is the trail's batch files, chosen by what they can hold and
// brought local (*trailcache.Trail).
type Files interface {
	// Files lists the trail anew (new batches appear as the collector
	// seals them).
	Files(ctx context.Context) ([]trailcache.File, error)
	Select(ctx context.Context, f trailcache.Filter) ([]trailcache.File, error)
	Local(ctx context.Context, files []trailcache.File) ([]string, error)
}

// Options configure an Engine.
type Options struct {
	// Target names the trail (a directory or s3://bucket/prefix).
	Target string
	Files  Files
	// Source reads the checkpoints and keys stored beside the trail.
	Source verify.Source
	// Keys are verifier keys the reviewer gave; none: the keys published
	// beside the trail, trusted on first use.
	Keys []string
	// AbandonAfter is DefaultAbandonAfter when 0.
	AbandonAfter time.Duration
	// Now is time.Now when nil: the instant statuses are computed at.
	Now func() time.Time
	// Workers verify files in parallel; 0 means 4.
	Workers int
	// MemoryLimit bounds DuckDB ("512MB"); "" for DuckDB's default.
	MemoryLimit string
}

// maxBloomIDs is how many execution ids a second pass looks up in the
// files' bloom filters; past it, every file whose statistics allow it is
// read, which is cheaper than that many lookups.
const maxBloomIDs = 4096

// Engine answers review questions with DuckDB. It is safe for concurrent
// use.
type Engine struct {
	opts    Options
	db      *sql.DB
	checker *checker

	mu     sync.Mutex
	listed time.Time // when the trail was last listed
}

// relist is how old a listing may be before a question lists the trail
// again: a long-lived reviewer (serve) sees the batches sealed since,
// without a listing per request.
var relist = 2 * time.Second

var _ Reviewer = (*Engine)(nil)

// Open starts an in-process DuckDB. Close it.
func Open(opts Options) (*Engine, error) {
	if opts.AbandonAfter == 0 {
		opts.AbandonAfter = DefaultAbandonAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	dsn := ""
	if opts.MemoryLimit != "" {
		dsn = "?memory_limit=" + opts.MemoryLimit
	}
	db, err := sql.Open("duckdb", dsn)
	if err != nil {
		return nil, fmt.Errorf("review: starting DuckDB: %w", err)
	}
	// parquet_metadata_cache: an answer reads the same files in several
	// queries; their footers are decoded once.
	if _, err := db.Exec("LOAD parquet; SET GLOBAL parquet_metadata_cache = true"); err != nil {
		db.Close()
		return nil, fmt.Errorf("review: starting DuckDB: %w", err)
	}
	return &Engine{opts: opts, db: db, checker: newChecker(opts.Source, opts.Keys, opts.Workers)}, nil
}

// Close releases DuckDB.
func (e *Engine) Close() error { return e.db.Close() }

// Target names the trail.
func (e *Engine) Target() string { return e.opts.Target }

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
func pathList(paths []string) string {
	quoted := make([]string, len(paths))
	for i, p := range paths {
		quoted[i] = sqlString(p)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

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

// setParams sets the variables runs.sql reads.
func (e *Engine) setParams(ctx context.Context, conn *sql.Conn) error {
	now := e.opts.Now().UnixNano()
	_, err := conn.ExecContext(ctx, fmt.Sprintf("SET VARIABLE as_of_ns = %d::BIGINT; SET VARIABLE abandon_after_ns = %d::BIGINT",
		now, e.opts.AbandonAfter.Nanoseconds()))
	if err != nil {
		return fmt.Errorf("review: DuckDB: %w", err)
	}
	return nil
}

// Runs returns the runs matching f, latest start first.
func (e *Engine) Runs(ctx context.Context, f Filter) ([]Run, Integrity, error) {
	tf := trailcache.Filter{}
	var ids []string
	if f.Since != nil || f.Until != nil {
		// Two passes: the runs with an entry in the window, then every
		// entry of those runs, wherever it is.
		tf.Since, tf.Until = nanos(f.Since), nanos(f.Until)
		var err error
		if ids, err = e.windowIDs(ctx, tf); err != nil {
			return nil, Integrity{}, err
		}
		if len(ids) == 0 {
			return []Run{}, e.integrityOf(nil, nil), nil
		}
		tf = trailcache.Filter{}
		if len(ids) <= maxBloomIDs {
			tf.ExecutionIDs = ids
		}
	}
	a, err := e.open(ctx, tf, ids, false)
	if err != nil {
		return nil, Integrity{}, err
	}
	defer a.close()
	if err := e.setParams(ctx, a.conn); err != nil {
		return nil, Integrity{}, err
	}
	where, args := f.where()
	rows, err := a.conn.QueryContext(ctx, "SELECT * FROM ("+runsSQL+") AS runs"+where+" ORDER BY start_ns DESC, execution_id", args...)
	if err != nil {
		return nil, Integrity{}, fmt.Errorf("review: runs: %w", err)
	}
	runs, err := scanRuns(rows)
	if err != nil {
		return nil, Integrity{}, err
	}
	integ, err := e.integrity(ctx, a, runs)
	return runs, integ, err
}

func nanos(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// windowIDs returns the ids of the runs with an entry in f's time window.
// It verifies nothing: every file holding such an entry holds a row of
// the ids, so the second pass verifies it. Only when DuckDB cannot read a
// file does it verify them all, to read the others.
func (e *Engine) windowIDs(ctx context.Context, f trailcache.Filter) ([]string, error) {
	files, paths, err := e.selectLocal(ctx, f)
	if err != nil {
		return nil, err
	}
	var readable []string
	for i := range files {
		if files[i].Problem == "" {
			readable = append(readable, paths[i])
		}
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("review: DuckDB: %w", err)
	}
	a := &answer{conn: conn}
	defer a.close()
	q := "SELECT DISTINCT execution_id FROM audit_entries WHERE true"
	var args []any
	if f.Since != nil {
		q += " AND time_unix_nano >= ?"
		args = append(args, *f.Since)
	}
	if f.Until != nil {
		q += " AND time_unix_nano < ?"
		args = append(args, *f.Until)
	}
	q += " ORDER BY 1"
	err = a.createView(ctx, readable, false)
	var ids []string
	if err == nil {
		ids, err = queryStrings(ctx, a.conn, q, args...)
	}
	if err == nil || ctx.Err() != nil {
		return ids, err
	}
	// A file DuckDB cannot read: verification tells which.
	a2, err := e.open(ctx, f, nil, false)
	if err != nil {
		return nil, err
	}
	defer a2.close()
	ids, err = queryStrings(ctx, a2.conn, q, args...)
	if err != nil {
		return nil, fmt.Errorf("review: runs: %w", err)
	}
	return ids, nil
}

// where is the SQL condition on the runs relation that f adds, with its
// arguments.
func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	if len(f.Statuses) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?,", len(f.Statuses)), ",")
		conds = append(conds, "status IN ("+ph+")")
		for _, s := range f.Statuses {
			args = append(args, string(s))
		}
	}
	entryCond := func(cond string, vals ...any) {
		conds = append(conds, "execution_id IN (SELECT execution_id FROM audit_entries WHERE "+cond+")")
		args = append(args, vals...)
	}
	if f.Agent != "" {
		entryCond("agent_id = ? OR agent_name = ? OR service_name = ?", f.Agent, f.Agent, f.Agent)
	}
	if f.Approver != "" {
		entryCond("approver = ?", f.Approver)
	}
	if f.TargetSystem != "" {
		entryCond("target_system = ?", f.TargetSystem)
	}
	if f.Since != nil {
		entryCond("time_unix_nano >= ?", f.Since.UnixNano())
	}
	if f.Until != nil {
		entryCond("time_unix_nano < ?", f.Until.UnixNano())
	}
	if f.Text != "" {
		like := "%" + escapeLike(strings.ToLower(f.Text)) + "%"
		cols := []string{"execution_id", "agent_id", "agent_name", "service_name", "principal", "sender", "action_type",
			"target_system", "target_resource", "proposed_value", "previous_value", "reasoning", "approver", "result", "attributes"}
		parts := make([]string, len(cols))
		vals := make([]any, len(cols))
		for i, c := range cols {
			parts[i] = "lower(" + c + ") LIKE ? ESCAPE '\\'"
			vals[i] = like
		}
		entryCond(strings.Join(parts, " OR "), vals...)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func scanRuns(rows *sql.Rows) ([]Run, error) {
	defer rows.Close()
	runs := []Run{}
	for rows.Next() {
		var r Run
		var agent, agentID, agentName, service, principal sql.NullString
		var status string
		var startNS, lastNS int64
		var endNS sql.NullInt64
		var chains []any
		if err := rows.Scan(&r.ExecutionID, &agent, &agentID, &agentName, &service, &principal, &status,
			&startNS, &endNS, &lastNS, &r.Entries, &r.Actions, &r.Errors, &r.Approvals, &r.Rejections,
			&r.ApprovalRequests, &r.PendingApprovals, &r.AfterEnd, &chains); err != nil {
			return nil, fmt.Errorf("review: runs: %w", err)
		}
		r.Agent, r.AgentID, r.AgentName, r.ServiceName, r.Principal =
			optString(agent), optString(agentID), optString(agentName), optString(service), optString(principal)
		r.Status = Status(status)
		r.Start = time.Unix(0, startNS).UTC()
		r.LastActivity = time.Unix(0, lastNS).UTC()
		if endNS.Valid {
			end := time.Unix(0, endNS.Int64).UTC()
			r.End = &end
			d := float64(endNS.Int64-startNS) / 1e6
			r.DurationMS = &d
		}
		for _, c := range chains {
			if s, ok := c.(string); ok {
				r.Chains = append(r.Chains, s)
			}
		}
		r.Intact = true
		runs = append(runs, r)
	}
	return runs, rows.Err()
}

func optString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

// integrity says what verification found of the files behind runs, and
// marks each run with an entry in a file that is not intact, counting the
// violations of its files: a run's records are only as good as the files
// that hold them. (Which steps a violation concerns, show marks.)
func (e *Engine) integrity(ctx context.Context, a *answer, runs []Run) (Integrity, error) {
	integ := e.integrityOf(a.checks, a.links)
	if len(integ.Violations) == 0 || len(runs) == 0 {
		return integ, nil
	}
	perFile := map[*fileCheck]int{}
	for _, v := range integ.Violations {
		if fc := a.byKey(v.File); fc != nil && fc.readable {
			perFile[fc]++
		}
	}
	affected := map[string]int{}
	for fc, n := range perFile {
		ids, err := queryStrings(ctx, a.conn, "SELECT DISTINCT execution_id FROM audit_entries WHERE file = ?", fc.path)
		if err != nil {
			return integ, err
		}
		for _, id := range ids {
			affected[id] += n
		}
	}
	for i := range runs {
		if n := affected[runs[i].ExecutionID]; n > 0 {
			runs[i].Intact, runs[i].Violations = false, n
		}
	}
	return integ, nil
}

func (a *answer) byKey(key string) *fileCheck {
	// A checkpoint's violation names the checkpoint object: it concerns
	// the batch sealed with it.
	for _, fc := range a.checks {
		if fc.key == key || fc.cpObject == key {
			return fc
		}
	}
	return nil
}

func queryStrings(ctx context.Context, conn *sql.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("review: DuckDB: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// integrityOf summarizes checks.
func (e *Engine) integrityOf(checks []*fileCheck, linkViolations []verify.Violation) Integrity {
	integ := Integrity{Violations: []verify.Violation{}, Checkpoints: []Checkpoint{}, Files: []string{}, Proven: []string{}, Ranges: []SeqRange{},
		Command: e.command(), TrustedOnFirstUse: len(e.opts.Keys) == 0}
	ranges := map[string]*SeqRange{}
	for _, fc := range checks {
		integ.Files = append(integ.Files, fc.key)
		if fc.proven {
			integ.Proven = append(integ.Proven, fc.key)
		}
		integ.Violations = append(integ.Violations, fc.violations...)
		integ.Notes = append(integ.Notes, fc.notes...)
		if fc.checkpoint != nil {
			integ.Checkpoints = append(integ.Checkpoints, *fc.checkpoint)
		}
		if fc.footerOK {
			f := fc.footer
			if r := ranges[f.ChainID]; r == nil {
				ranges[f.ChainID] = &SeqRange{ChainID: f.ChainID, FirstSeq: f.FirstSeq, LastSeq: f.LastSeq}
			} else {
				r.FirstSeq, r.LastSeq = min(r.FirstSeq, f.FirstSeq), max(r.LastSeq, f.LastSeq)
			}
		}
	}
	integ.Violations = append(integ.Violations, linkViolations...)
	integ.Notes = append(integ.Notes, e.checker.keyNotes...)
	for _, r := range ranges {
		integ.Ranges = append(integ.Ranges, *r)
	}
	slices.SortFunc(integ.Ranges, func(a, b SeqRange) int { return strings.Compare(a.ChainID, b.ChainID) })
	slices.SortFunc(integ.Checkpoints, func(a, b Checkpoint) int {
		if c := strings.Compare(a.ChainID, b.ChainID); c != 0 {
			return c
		}
		return int(a.Size - b.Size)
	})
	if n := len(integ.Checkpoints); n > 0 {
		latest := integ.Checkpoints[n-1]
		integ.Checkpoint = &latest
	}
	integ.Intact = len(integ.Violations) == 0
	return integ
}

func (e *Engine) command() string {
	cmd := "auditctl verify"
	if len(e.opts.Keys) > 0 {
		cmd += " --key KEYFILE"
	}
	return cmd + " " + shellQuote(e.opts.Target)
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Timeline returns one run's steps in true order, its status and the
// integrity of the files holding it.
func (e *Engine) Timeline(ctx context.Context, executionID string) (*Timeline, error) {
	tls, err := e.Timelines(ctx, []string{executionID})
	if err != nil {
		return nil, err
	}
	return tls[0], nil
}

// Timelines returns the timelines of the runs ids, in the order of ids,
// skipping runs the trail has no entry of; ErrNoRun when it has none of
// them, an *UnreadableError when files that could hold them cannot be read.
func (e *Engine) Timelines(ctx context.Context, ids []string) ([]*Timeline, error) {
	f := trailcache.Filter{}
	if len(ids) <= maxBloomIDs {
		f.ExecutionIDs = ids
	}
	a, err := e.open(ctx, f, ids, true)
	if err != nil {
		return nil, err
	}
	defer a.close()
	if err := e.setParams(ctx, a.conn); err != nil {
		return nil, err
	}
	rows, err := a.conn.QueryContext(ctx, "SELECT * FROM ("+runsSQL+") AS runs")
	if err != nil {
		return nil, fmt.Errorf("review: show: %w", err)
	}
	runs, err := scanRuns(rows)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		if slices.ContainsFunc(a.checks, func(fc *fileCheck) bool { return !fc.readable }) {
			// The runs may be in a file that cannot be read: say so.
			return nil, &UnreadableError{Integrity: e.integrityOf(a.checks, a.links)}
		}
		return nil, ErrNoRun
	}
	steps, err := e.steps(ctx, a)
	if err != nil {
		return nil, err
	}
	byRun := map[string][]Step{}
	for _, s := range steps {
		byRun[s.ExecutionID] = append(byRun[s.ExecutionID], s)
	}
	runByID := map[string]Run{}
	for _, r := range runs {
		runByID[r.ExecutionID] = r
	}
	var out []*Timeline
	for _, id := range ids {
		r, ok := runByID[id]
		if !ok {
			continue
		}
		delete(runByID, id) // an id given twice is exported once
		st := nest(byRun[id])
		// Integrity of the files that hold the run's entries, not of
		// every file the bloom filters could not rule out; a file that
		// cannot be read might hold some, so it counts.
		held := map[string]bool{}
		for _, s := range st {
			held[s.File] = true
		}
		var checks []*fileCheck
		for _, fc := range a.checks {
			if held[fc.key] || !fc.readable {
				checks = append(checks, fc)
			}
		}
		one := []Run{r}
		integ, err := e.integrity(ctx, &answer{conn: a.conn, checks: checks, byPath: a.byPath, links: links(checks)}, one)
		if err != nil {
			return nil, err
		}
		markSteps(st, integ.Violations)
		out = append(out, &Timeline{ExecutionID: id, Status: one[0].Status, Run: one[0], Steps: st, Integrity: integ})
	}
	return out, nil
}

// UnreadableError: the answer may lie in files that cannot be read.
type UnreadableError struct{ Integrity Integrity }

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("review: %d file(s) of the trail cannot be read (run auditctl verify)", len(e.Integrity.Violations))
}

const stepColumns = `"timestamp", time_unix_nano, end_time_unix_nano, chain_id, seq, execution_id, trace_id, span_id,
  parent_span_id, agent_id, agent_name, service_name, principal, sender, action_type, target_system, target_resource,
  proposed_value, previous_value, reasoning, approver, result, status_code, attributes, validation,
  prev_hash, entry_hash, file`

// steps reads every row of audit_entries as steps, in true order (not
// nested).
func (e *Engine) steps(ctx context.Context, a *answer) ([]Step, error) {
	rows, err := a.conn.QueryContext(ctx, "SELECT "+stepColumns+" FROM audit_entries ORDER BY time_unix_nano, chain_id, seq")
	if err != nil {
		return nil, fmt.Errorf("review: steps: %w", err)
	}
	defer rows.Close()
	var steps []Step
	for rows.Next() {
		var s Step
		var file string
		if err := scanStep(rows, &s, &file); err != nil {
			return nil, err
		}
		if fc := a.byPath[file]; fc != nil {
			s.File = fc.key
		} else {
			s.File = file
		}
		steps = append(steps, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return steps, nil
}

// scanStep scans a row of stepColumns into s, and the local path of its
// file into file.
func scanStep(rows *sql.Rows, s *Step, file *string) error {
	*s = Step{}
	var end sql.NullInt64
	var parent, agentID, agentName, service, principal, sender, proposed, previous, reasoning, approver, validation sql.NullString
	if err := rows.Scan(&s.Timestamp, &s.TimeUnixNano, &end, &s.ChainID, &s.Seq, &s.ExecutionID, &s.TraceID, &s.SpanID,
		&parent, &agentID, &agentName, &service, &principal, &sender, &s.ActionType, &s.TargetSystem, &s.TargetResource,
		&proposed, &previous, &reasoning, &approver, &s.Result, &s.StatusCode, &s.Attributes, &validation,
		&s.PrevHash, &s.EntryHash, file); err != nil {
		return fmt.Errorf("review: steps: %w", err)
	}
	s.Timestamp = s.Timestamp.UTC()
	if end.Valid {
		v := end.Int64
		s.EndTimeUnixNano = &v
		if v >= s.TimeUnixNano {
			d := float64(v-s.TimeUnixNano) / 1e6
			s.DurationMS = &d
		}
	}
	s.ParentSpanID, s.AgentID, s.AgentName, s.ServiceName, s.Principal = optString(parent), optString(agentID), optString(agentName), optString(service), optString(principal)
	s.Sender = optString(sender)
	s.ProposedValue, s.PreviousValue, s.Reasoning, s.Approver, s.Validation = optString(proposed), optString(previous), optString(reasoning), optString(approver), optString(validation)
	return nil
}
