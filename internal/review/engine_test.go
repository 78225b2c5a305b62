//go:build cgo

package review

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/trailcache"
	"github.com/agentaudit/agentaudit/internal/trailtest"
	"github.com/agentaudit/agentaudit/internal/verify"
)

func sp(s string) *string { return &s }

// act is one entry of a scenario trail.
type act struct {
	exec, action, system, resource string
	at, dur                        time.Duration
	span, parent                   string
	approver, agent                string
	proposed, previous             *string
	result, status                 string
}

func (a act) entry() entry.Entry {
	start := t0.Add(a.at).UnixNano()
	end := start + int64(a.dur)
	e := entry.Entry{
		TimeUnixNano: start, EndTimeUnixNano: &end, ExecutionID: a.exec,
		TraceID: fmt.Sprintf("%032x", len(a.exec)*7919+int(a.exec[len(a.exec)-1])), SpanID: fmt.Sprintf("%016x", hashString(a.span)),
		ActionType: a.action, TargetSystem: a.system, TargetResource: a.resource, ProposedValue: a.proposed, PreviousValue: a.previous,
		Result: "ok", StatusCode: "Unset", Attributes: "{}", ServiceName: sp("svc"), Principal: sp("jane@example.com"),
	}
	if a.parent != "" {
		e.ParentSpanID = sp(fmt.Sprintf("%016x", hashString(a.parent)))
	}
	if a.approver != "" {
		e.Approver = sp(a.approver)
	}
	if a.agent != "" {
		e.AgentName = sp(a.agent)
	}
	if a.result != "" {
		e.Result = a.result
	}
	if a.status != "" {
		e.StatusCode = a.status
	}
	if a.exec == "run-fail" {
		e.Sender = sp("CN=erp-sync,O=Example")
	}
	return e
}

func hashString(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// scenario is a trail of five runs over two chains and several files:
//
//	run-done    completed, nested steps, spans the two chains' files
//	run-wait    awaiting approval of a write to crm / c-2
//	run-fail    failed: its last action is an error
//	run-old     abandoned: nothing for 30 hours
//	run-nasty   values that break naive CSV, HTML and terminals
func scenario() (a, b []act) {
	const m = time.Minute
	a = []act{
		{exec: "run-old", action: "start", at: -30 * time.Hour, dur: time.Second, span: "o1", agent: "Old agent"},
		{exec: "run-done", action: "start", at: 0, dur: 10 * m, span: "d-root", agent: "Billing agent"},
		{exec: "run-done", action: "read", system: "crm", resource: "c-1", at: m, dur: 2 * time.Second, span: "d-read", parent: "d-root", agent: "Billing agent"},
		{exec: "run-done", action: "request_approval", system: "crm", resource: "c-1", at: 2 * m, dur: time.Second, span: "d-req", parent: "d-root"},
		{exec: "run-wait", action: "start", at: 3 * m, dur: time.Second, span: "w-root"},
		{exec: "run-done", action: "approve", system: "crm", resource: "c-1", at: 3 * m, dur: time.Second, span: "d-ok", parent: "d-root", approver: "ops@example.com"},
		{exec: "run-wait", action: "request_approval", system: "crm", resource: "c-2", at: 4 * m, dur: time.Second, span: "w-req", parent: "w-root"},
		{exec: "run-fail", action: "start", at: 5 * m, dur: time.Second, span: "f-root"},
	}
	b = []act{
		{exec: "run-done", action: "write", system: "crm", resource: "c-1", at: 4 * m, dur: 3 * time.Second, span: "d-write", parent: "d-root",
			proposed: sp("jane@new.example"), previous: sp("jane@old.example"), result: "200 OK"},
		{exec: "run-done", action: "read", system: "crm", resource: "c-1/check", at: 4*m + time.Second, dur: time.Second, span: "d-check", parent: "d-write"},
		{exec: "run-fail", action: "error", system: "erp", resource: "inv-9", at: 6 * m, dur: time.Second, span: "f-err", parent: "f-root", result: "error: 503", status: "Error"},
		{exec: "run-nasty", action: "write", system: "sys,\"quoted\"", resource: "line1\nline2", at: 7 * m, dur: time.Second, span: "n1",
			proposed: sp(""), previous: nil, result: "<script>alert(1)</script>", agent: "Agent \u202eevil"},
		{exec: "run-done", action: "end", at: 10 * m, dur: 0, span: "d-end", parent: "d-root"},
	}
	return a, b
}

// writeScenario writes the scenario under dir: chain-a in batches of 3,
// chain-b in batches of 2.
func writeScenario(t *testing.T, dir string) (wa, wb *trailtest.Writer) {
	t.Helper()
	a, b := scenario()
	var err error
	for _, c := range []struct {
		w    **trailtest.Writer
		id   string
		acts []act
		per  int
	}{{&wa, "chain-a", a, 3}, {&wb, "chain-b", b, 2}} {
		if *c.w, err = trailtest.New(dir, c.id, c.per, t0); err != nil {
			t.Fatal(err)
		}
		for _, x := range c.acts {
			if err := (*c.w).Add(x.entry()); err != nil {
				t.Fatal(err)
			}
		}
		if err := (*c.w).Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return wa, wb
}

func openEngine(t *testing.T, dir string) *Engine {
	t.Helper()
	trail, err := trailcache.Open(context.Background(), dir, trailcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(Options{Target: dir, Files: trail, Source: store.Dir(dir), Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func runIDs(runs []Run) string {
	var s []string
	for _, r := range runs {
		s = append(s, r.ExecutionID+"="+string(r.Status))
	}
	return strings.Join(s, " ")
}

func TestEngineRuns(t *testing.T) {
	dir := t.TempDir()
	writeScenario(t, dir)
	e := openEngine(t, dir)
	ctx := context.Background()
	runs, integ, err := e.Runs(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// Latest start first.
	if got, want := runIDs(runs), "run-nasty=in_progress run-fail=failed run-wait=awaiting_approval run-done=completed run-old=abandoned"; got != want {
		t.Errorf("runs:\n got %s\nwant %s", got, want)
	}
	if !integ.Intact || len(integ.Files) != 6 || integ.Checkpoint == nil || !integ.TrustedOnFirstUse {
		t.Errorf("integrity: %+v", integ)
	}
	done := runs[slices.IndexFunc(runs, func(r Run) bool { return r.ExecutionID == "run-done" })]
	if *done.Agent != "Billing agent" || *done.Principal != "jane@example.com" || !reflect.DeepEqual(done.Chains, []string{"chain-a", "chain-b"}) ||
		done.Entries != 7 || done.Actions != 5 || done.Approvals != 1 || done.PendingApprovals != 0 || *done.DurationMS != 600000 || !done.Intact {
		t.Errorf("run-done: %+v", done)
	}

	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"status", Filter{Statuses: []Status{StatusFailed, StatusAwaitingApproval}}, "run-fail=failed run-wait=awaiting_approval"},
		{"agent by name", Filter{Agent: "Billing agent"}, "run-done=completed"},
		{"agent by service", Filter{Agent: "svc", Statuses: []Status{StatusAbandoned}}, "run-old=abandoned"},
		{"approver", Filter{Approver: "ops@example.com"}, "run-done=completed"},
		{"target system", Filter{TargetSystem: "erp"}, "run-fail=failed"},
		{"text, any case", Filter{Text: "JANE@NEW"}, "run-done=completed"},
		{"text with LIKE wildcards is literal", Filter{Text: "c_1"}, ""},
		{"text matches the sender", Filter{Text: "ERP-SYNC"}, "run-fail=failed"},
		{"window: only run-done has entries in [t0+10m, t0+11m)", Filter{Since: ptime(t0.Add(10 * time.Minute)), Until: ptime(t0.Add(11 * time.Minute))}, "run-done=completed"},
		{"window before everything", Filter{Until: ptime(t0.Add(-40 * time.Hour))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs, _, err := e.Runs(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := runIDs(runs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			// A window must still see the run's entries outside it.
			for _, r := range runs {
				if r.ExecutionID == "run-done" && r.Entries != 7 {
					t.Errorf("run-done has %d entries, want all 7", r.Entries)
				}
			}
		})
	}
}

func ptime(t time.Time) *time.Time { return &t }

func TestEngineTimeline(t *testing.T) {
	dir := t.TempDir()
	writeScenario(t, dir)
	e := openEngine(t, dir)
	tl, err := e.Timeline(context.Background(), "run-done")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range tl.Steps {
		got = append(got, fmt.Sprintf("%s%s/%s", strings.Repeat(".", s.Depth), s.ActionType, s.TargetResource))
	}
	want := "start/ .read/c-1 .request_approval/c-1 .approve/c-1 .write/c-1 ..read/c-1/check .end/"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("timeline:\n got %s\nwant %s", g, want)
	}
	w := tl.Steps[4]
	if *w.DurationMS != 3000 || *w.ProposedValue != "jane@new.example" || w.ChainID != "chain-b" || w.File == "" || len(w.Violations) != 0 {
		t.Errorf("write step: %+v", w)
	}
	if tl.Status != StatusCompleted || !tl.Integrity.Intact {
		t.Errorf("status %s, integrity %+v", tl.Status, tl.Integrity)
	}
	// The run is more than a fifth of each file: verified whole.
	if len(tl.Integrity.Proven) != 0 {
		t.Errorf("proven %v, want none", tl.Integrity.Proven)
	}
	// The files holding it: chain-a's first two batches, chain-b's first
	// and third (the second holds other runs); the checkpoint the latest.
	if got := strings.Join(tl.Integrity.Files, " "); got != "dt=2026-03-09/chain-a-00000000000000000000.parquet dt=2026-03-09/chain-a-00000000000000000003.parquet "+
		"dt=2026-03-09/chain-b-00000000000000000000.parquet dt=2026-03-09/chain-b-00000000000000000004.parquet" {
		t.Errorf("files: %s", got)
	}
	if cp := tl.Integrity.Checkpoint; cp == nil || cp.ChainID != "chain-b" || cp.Size != 5 || cp.KeyName != "agentaudit-chain-b" || !strings.Contains(cp.Text, "batch 4 4") {
		t.Errorf("checkpoint: %+v", cp)
	}
	if r := tl.Integrity.Ranges; len(r) != 2 || r[0] != (SeqRange{"chain-a", 0, 5}) || r[1] != (SeqRange{"chain-b", 0, 4}) {
		t.Errorf("ranges: %+v", r)
	}
	if _, err := e.Timeline(context.Background(), "no-such-run"); err != ErrNoRun {
		t.Errorf("unknown run: %v, want ErrNoRun", err)
	}
}

// TestEngineTampered: a value rewritten in one file marks the runs with
// entries there, and the step; a file that is not Parquet at all is
// reported, and the other runs still answer.
func TestEngineTampered(t *testing.T) {
	dir := t.TempDir()
	_, wb := writeScenario(t, dir)
	// Rewrite chain-b's second batch (run-fail's error, run-nasty's write)
	// with run-fail's result changed and the hashes left as they were.
	tamper(t, filepath.Join(dir, filepath.FromSlash(wb.Files[1])))
	if err := os.WriteFile(filepath.Join(dir, "dt=2026-03-09", "chain-c-00000000000000000000.parquet"), []byte("not parquet"), 0o644); err != nil {
		t.Fatal(err)
	}

	e := openEngine(t, dir)
	runs, integ, err := e.Runs(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var marked []string
	for _, r := range runs {
		if !r.Intact {
			marked = append(marked, r.ExecutionID)
		}
	}
	// Both runs with entries in the tampered file; the others are in
	// intact files.
	if got := strings.Join(marked, " "); got != "run-nasty run-fail" {
		t.Errorf("runs marked: %q, want run-nasty run-fail", got)
	}
	kinds := map[verify.Kind]int{}
	for _, v := range integ.Violations {
		kinds[v.Kind]++
	}
	if integ.Intact || kinds[verify.HashMismatch] != 1 || kinds[verify.NotAuditFile] != 1 {
		t.Errorf("integrity: intact %v, violations %v", integ.Intact, integ.Violations)
	}
	tl, err := e.Timeline(context.Background(), "run-fail")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Integrity.Intact || len(tl.Steps[1].Violations) != 1 || tl.Steps[1].Violations[0].Kind != verify.HashMismatch || tl.Steps[1].Result != "200 OK" {
		t.Errorf("run-fail: intact %v, step %+v", tl.Integrity.Intact, tl.Steps[1])
	}
	// The tampered result no longer says error: the status follows the
	// rows as they are, and the badge says they were changed.
	if tl.Status != StatusFailed {
		t.Errorf("status %s", tl.Status)
	}
}

// tamper rewrites the batch file at p with its first entry's result
// changed and the hashes left as they were.
func tamper(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	es[0].Result = "200 OK"
	var buf bytes.Buffer
	if _, err := parquetfile.Encode(&buf, es); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExportRoundTrip: CSV and JSONL carry every column exactly: DuckDB
// reads back from them the rows it reads from the Parquet files.
func TestExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeScenario(t, dir)
	e := openEngine(t, dir)
	tls, err := e.Timelines(context.Background(), []string{"run-done", "run-nasty", "run-fail"})
	if err != nil {
		t.Fatal(err)
	}
	var steps []Step
	for _, tl := range tls {
		steps = append(steps, tl.Steps...)
	}
	out := t.TempDir()
	for _, f := range []struct {
		name  string
		write func(*os.File) error
	}{
		{"x.csv", func(w *os.File) error { return WriteCSV(w, steps) }},
		{"x.jsonl", func(w *os.File) error { return WriteJSONL(w, steps) }},
	} {
		w, err := os.Create(filepath.Join(out, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.write(w); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cols := strings.Join(Columns[:len(Columns)-2], ", ")
	parquetRows := queryAll(t, db, "SELECT "+cols+" FROM read_parquet('"+dir+"/**/*.parquet', union_by_name = true) WHERE execution_id IN ('run-done', 'run-nasty', 'run-fail') ORDER BY chain_id, seq")
	if len(parquetRows) != len(steps) {
		t.Fatalf("%d rows in Parquet, %d steps", len(parquetRows), len(steps))
	}
	for _, src := range []string{
		"read_csv('" + out + "/x.csv', header = true, allow_quoted_nulls = false, auto_detect = false, columns = " + csvColumns() + ")",
		"read_json('" + out + "/x.jsonl', format = 'newline_delimited', columns = " + jsonColumns() + ")",
	} {
		got := queryAll(t, db, "SELECT "+cols+" FROM "+src+" ORDER BY chain_id, seq")
		if !reflect.DeepEqual(got, parquetRows) {
			for i := range got {
				if !reflect.DeepEqual(got[i], parquetRows[i]) {
					t.Errorf("%s: row %d:\n got %q\nwant %q", src[:9], i, got[i], parquetRows[i])
					break
				}
			}
		}
	}
}

// csvColumns and jsonColumns give read_csv and read_json the export's types.
func csvColumns() string  { return exportTypes(true) }
func jsonColumns() string { return exportTypes(false) }

func exportTypes(csv bool) string {
	var parts []string
	for _, c := range Columns {
		typ := "VARCHAR"
		switch c {
		case "timestamp":
			typ = "TIMESTAMP_MS"
			if csv {
				typ = "TIMESTAMPTZ"
			}
		case "time_unix_nano", "end_time_unix_nano", "seq", "depth":
			typ = "BIGINT"
		case "duration_ms":
			typ = "DOUBLE"
		}
		parts = append(parts, fmt.Sprintf("'%s': '%s'", c, typ))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// queryAll returns every row as strings (NULL as "<NULL>").
func queryAll(t *testing.T, db *sql.DB, q string) [][]string {
	t.Helper()
	rows, err := db.Query("SET TimeZone = 'UTC'; " + q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				row[i] = "<NULL>"
			case time.Time:
				row[i] = v.UTC().Format(time.RFC3339Nano)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEngineV1Trail: a trail written in format 1 (no end times) is
// reviewed: steps without durations, statuses from start times.
func TestEngineV1Trail(t *testing.T) {
	dir := filepath.Join("..", "verify", "testdata", "trail-v1")
	e := openEngine(t, dir)
	runs, integ, err := e.Runs(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) == 0 || !integ.Intact {
		t.Fatalf("runs %d, integrity %+v", len(runs), integ)
	}
	tl, err := e.Timeline(context.Background(), runs[0].ExecutionID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tl.Steps {
		if s.EndTimeUnixNano != nil || s.DurationMS != nil {
			t.Fatalf("v1 step with an end time: %+v", s)
		}
	}
}

// TestEngineSeesNewBatches: a long-lived engine (serve) lists the trail
// again, so that batches sealed after it started show.
func TestEngineSeesNewBatches(t *testing.T) {
	old := relist
	relist = 0
	defer func() { relist = old }()
	dir := t.TempDir()
	wa, _ := writeScenario(t, dir)
	e := openEngine(t, dir)
	runs, _, err := e.Runs(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 5 {
		t.Fatalf("%d runs", len(runs))
	}
	if err := wa.Add(act{exec: "run-new", action: "start", at: 20 * time.Minute, dur: time.Second, span: "x"}.entry()); err != nil {
		t.Fatal(err)
	}
	if err := wa.Flush(); err != nil {
		t.Fatal(err)
	}
	runs, integ, err := e.Runs(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 6 || runs[0].ExecutionID != "run-new" || !integ.Intact {
		t.Errorf("after a new batch: %s, intact %v", runIDs(runs), integ.Intact)
	}
}

// everyFile selects every file whatever the filter, as bloom filters that
// admit every id would.
type everyFile struct{ *trailcache.Trail }

func (f everyFile) Select(ctx context.Context, _ trailcache.Filter) ([]trailcache.File, error) {
	return f.Trail.Select(ctx, trailcache.Filter{})
}

// proveAll makes the engine prove entries in every file that has a signed
// checkpoint, however much of the file they are, for the test.
func proveAll(t *testing.T) {
	old := proveRatio
	proveRatio = 0
	t.Cleanup(func() { proveRatio = old })
}

// TestEngineVerifiesFilesHoldingTheRun: of the files the footers select,
// show verifies those that hold rows of the run; a file that does not,
// tampered or not, is neither read for the answer nor verified.
func TestEngineVerifiesFilesHoldingTheRun(t *testing.T) {
	proveAll(t)
	dir := t.TempDir()
	_, wb := writeScenario(t, dir)
	// chain-b's second batch holds run-fail and run-nasty only.
	tamper(t, filepath.Join(dir, filepath.FromSlash(wb.Files[1])))
	trail, err := trailcache.Open(context.Background(), dir, trailcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(Options{Target: dir, Files: everyFile{trail}, Source: store.Dir(dir), Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tl, err := e.Timeline(context.Background(), "run-done")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Steps) != 7 || !tl.Integrity.Intact || len(tl.Integrity.Files) != 4 {
		t.Errorf("run-done: %d steps, integrity %+v", len(tl.Steps), tl.Integrity)
	}
	if n := len(e.checker.done); n != 0 || !reflect.DeepEqual(tl.Integrity.Proven, tl.Integrity.Files) {
		t.Errorf("%d files verified whole, %v proven; want the entries in the 4 files proven", n, tl.Integrity.Proven)
	}
	tl, err = e.Timeline(context.Background(), "run-fail")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Integrity.Intact || tl.Status != StatusFailed {
		t.Errorf("run-fail: status %s, integrity %+v", tl.Status, tl.Integrity)
	}
}

// TestEngineUnreadablePages: a file whose footer reads but whose pages do
// not is reported by runs of a window and by show, and the runs in the
// other files still answer.
func TestEngineUnreadablePages(t *testing.T) {
	dir := t.TempDir()
	_, wb := writeScenario(t, dir)
	p := filepath.Join(dir, filepath.FromSlash(wb.Files[1]))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the data pages, keeping the footer.
	for i := 4; i < len(data)/2; i++ {
		data[i] = 0xA5
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e := openEngine(t, dir)
	runs, integ, err := e.Runs(context.Background(), Filter{Since: ptime(t0), Until: ptime(t0.Add(11 * time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := runIDs(runs), "run-fail=in_progress run-wait=awaiting_approval run-done=completed"; got != want {
		t.Errorf("runs:\n got %s\nwant %s", got, want)
	}
	if integ.Intact || !slices.ContainsFunc(integ.Violations, func(v verify.Violation) bool {
		return v.File == wb.Files[1] && v.Kind == verify.NotAuditFile
	}) {
		t.Errorf("integrity: intact %v, violations %v", integ.Intact, integ.Violations)
	}
	// run-fail's error is in the unreadable file, its start in chain-a.
	tl, err := e.Timeline(context.Background(), "run-fail")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Steps) != 1 || tl.Integrity.Intact {
		t.Errorf("run-fail: %d steps, intact %v (a file that may hold it cannot be read)", len(tl.Steps), tl.Integrity.Intact)
	}
	// run-done is not in it: the bloom filters rule the file out.
	if tl, err = e.Timeline(context.Background(), "run-done"); err != nil || len(tl.Steps) != 7 || !tl.Integrity.Intact {
		t.Errorf("run-done: %v, %+v", err, tl)
	}
}

// TestEngineProofs: show proves a run's entries against the signed
// checkpoints; a batch rewritten with every hash recomputed passes on its
// own and is caught by its checkpoint; a batch without a checkpoint is
// verified whole.
func TestEngineProofs(t *testing.T) {
	proveAll(t)
	dir := t.TempDir()
	_, wb := writeScenario(t, dir)
	// chain-b's second batch (run-fail's error, run-nasty's write), with
	// run-fail's result changed and the chain recomputed from its first
	// entry: consistent on its own, not what was signed.
	p := filepath.Join(dir, filepath.FromSlash(wb.Files[1]))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	es[0].Result = "200 OK"
	for i := range es {
		if i > 0 {
			es[i].PrevHash = es[i-1].EntryHash
		}
		es[i].EntryHash = chain.Hash(&es[i])
	}
	var buf bytes.Buffer
	if _, err := parquetfile.Encode(&buf, es); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if errs := verify.CheckFile(wb.Files[1], buf.Bytes()); len(errs) != 0 {
		t.Fatalf("the rewritten batch is not consistent on its own: %v", errs)
	}
	// chain-a's second batch loses its checkpoint (it holds run-done's
	// approve and run-wait's start).
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(store.CheckpointKey("chain-a", 6)))); err != nil {
		t.Fatal(err)
	}

	e := openEngine(t, dir)
	tl, err := e.Timeline(context.Background(), "run-fail")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[verify.Kind]int{}
	for _, v := range tl.Integrity.Violations {
		kinds[v.Kind]++
	}
	if tl.Integrity.Intact || kinds[verify.CheckpointMismatch] != 1 || kinds[verify.HashMismatch] != 0 || tl.Steps[1].Result != "200 OK" {
		t.Errorf("run-fail: violations %v, steps %+v", tl.Integrity.Violations, tl.Steps)
	}
	// Its start, in chain-a's third batch, is proven; the rewritten batch
	// was verified whole.
	if got := strings.Join(tl.Integrity.Proven, " "); got != "dt=2026-03-09/chain-a-00000000000000000006.parquet" {
		t.Errorf("proven: %s", got)
	}

	tl, err = e.Timeline(context.Background(), "run-done")
	if err != nil {
		t.Fatal(err)
	}
	if !tl.Integrity.Intact || len(tl.Integrity.Files) != 4 || len(tl.Integrity.Proven) != 3 ||
		slices.Contains(tl.Integrity.Proven, "dt=2026-03-09/chain-a-00000000000000000003.parquet") ||
		!slices.ContainsFunc(tl.Integrity.Notes, func(n string) bool { return strings.Contains(n, "no signed checkpoint for batch chain-a 3-5") }) {
		t.Errorf("run-done: %+v", tl.Integrity)
	}
}

// TestEngineManyIDs: past literalIDs, ids are joined from a table; the
// answers are the same.
func TestEngineManyIDs(t *testing.T) {
	dir := t.TempDir()
	writeScenario(t, dir)
	e := openEngine(t, dir)
	ctx := context.Background()
	window := Filter{Since: ptime(t0), Until: ptime(t0.Add(11 * time.Minute))}
	runs, _, err := e.Runs(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	tls, err := e.Timelines(ctx, []string{"run-done", "run-fail", "run-nasty"})
	if err != nil {
		t.Fatal(err)
	}
	old := literalIDs
	literalIDs = 0
	t.Cleanup(func() { literalIDs = old })
	runs2, _, err := e.Runs(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	tls2, err := e.Timelines(ctx, []string{"run-done", "run-fail", "run-nasty"})
	if err != nil {
		t.Fatal(err)
	}
	if runIDs(runs) != runIDs(runs2) || len(runs) != 4 {
		t.Errorf("runs: %s, then %s", runIDs(runs), runIDs(runs2))
	}
	if !reflect.DeepEqual(tls, tls2) || len(tls) != 3 || len(tls[0].Steps) != 7 {
		t.Errorf("timelines differ: %+v\n%+v", tls, tls2)
	}
}

// TestEngineProvesReencodedFile: a batch file rewritten by DuckDB with the
// same rows and footer keys (another standard Parquet writer, as a
// compaction would) still has its run's entries proven.
func TestEngineProvesReencodedFile(t *testing.T) {
	proveAll(t)
	dir := t.TempDir()
	_, wb := writeScenario(t, dir)
	p := filepath.ToSlash(filepath.Join(dir, filepath.FromSlash(wb.Files[1])))
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT decode(key), decode(value) FROM parquet_kv_metadata(?)", p)
	if err != nil {
		t.Fatal(err)
	}
	var kv []string
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(k, "agentaudit.") {
			kv = append(kv, sqlString(k)+": "+sqlString(v))
		}
	}
	if err := rows.Err(); err != nil || len(kv) < 7 {
		t.Fatalf("footer keys %v: %v", kv, err)
	}
	if _, err := db.Exec("COPY (SELECT * FROM read_parquet(" + sqlString(p) + ") ORDER BY seq) TO " + sqlString(p+".tmp") +
		" (FORMAT parquet, COMPRESSION snappy, KV_METADATA {" + strings.Join(kv, ", ") + "})"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}

	e := openEngine(t, dir)
	tl, err := e.Timeline(context.Background(), "run-fail")
	if err != nil {
		t.Fatal(err)
	}
	if !tl.Integrity.Intact || !slices.Contains(tl.Integrity.Proven, wb.Files[1]) || len(tl.Steps) != 2 || tl.Steps[1].Result != "error: 503" {
		t.Errorf("run-fail: %+v, steps %+v", tl.Integrity, tl.Steps)
	}
}
