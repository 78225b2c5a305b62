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

	"github.com/agentaudit/agentaudit/internal/store"
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
	Source store.Reader
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
