//go:build cgo

package review

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"
)

// step is one row of a status scenario: the columns runs.sql reads.
type step struct {
	exec   string
	at     time.Duration // start, after t0
	dur    time.Duration // end - start; -1 for a v1 entry (no end time)
	chain  string
	seq    int64
	action string
	target string // target_resource; target_system is "crm"
	result string // "" for ok
	status string // status_code, "" for Unset
	agent  [3]string
}

var t0 = time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)

// loadSteps creates audit_entries as a table of steps on conn.
func loadSteps(t *testing.T, conn *sql.Conn, steps []step) {
	t.Helper()
	ctx := context.Background()
	_, err := conn.ExecContext(ctx, `CREATE OR REPLACE TEMP TABLE audit_entries (
		"timestamp" TIMESTAMP_MS, time_unix_nano BIGINT, end_time_unix_nano BIGINT, chain_id VARCHAR, seq BIGINT,
		execution_id VARCHAR, trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR,
		agent_id VARCHAR, agent_name VARCHAR, service_name VARCHAR, principal VARCHAR,
		action_type VARCHAR, target_system VARCHAR, target_resource VARCHAR,
		proposed_value VARCHAR, previous_value VARCHAR, reasoning VARCHAR, approver VARCHAR,
		result VARCHAR, status_code VARCHAR, attributes VARCHAR, validation VARCHAR, prev_hash VARCHAR, entry_hash VARCHAR)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		start := t0.Add(s.at).UnixNano()
		var end any
		if s.dur >= 0 {
			end = start + int64(s.dur)
		}
		chain := s.chain
		if chain == "" {
			chain = "c"
		}
		seq := s.seq
		if seq == 0 {
			seq = int64(i)
		}
		result, status := s.result, s.status
		if result == "" {
			result = "ok"
		}
		if status == "" {
			status = "Unset"
		}
		null := func(v string) any {
			if v == "" {
				return nil
			}
			return v
		}
		_, err := conn.ExecContext(ctx, `INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, 't', ?, NULL, ?, ?, ?, 'p', ?, 'crm', ?, NULL, NULL, NULL, NULL, ?, ?, '{}', NULL, 'h', 'h')`,
			time.Unix(0, start).UTC(), start, end, chain, seq, s.exec, fmt.Sprintf("s%d", i),
			null(s.agent[0]), null(s.agent[1]), null(s.agent[2]), s.action, s.target, result, status)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunStatus checks runs.sql, the status contract, on one scenario per
// status and per edge case, against statuses computed by hand.
func TestRunStatus(t *testing.T) {
	asOf := t0.Add(30 * time.Hour) // runs whose last entry is before t0+6h are abandoned
	const m, ms = time.Minute, time.Millisecond
	late := 10 * time.Hour // after the abandon line
	type want struct {
		status                                  Status
		entries, actions, errors, approvals     int64
		rejections, requests, pending, afterEnd int64
		end                                     string // End - t0; "" for no end
		agent                                   string
	}
	d := func(x time.Duration) string { return x.String() }
	cases := []struct {
		name  string
		steps []step
		want  want
	}{
		{"in progress", []step{{at: late, action: "start"}, {at: late + m, action: "read"}},
			want{status: StatusInProgress, entries: 2, actions: 1}},
		{"awaiting approval", []step{{at: late, action: "start"}, {at: late + m, action: "request_approval", target: "c1"}},
			want{status: StatusAwaitingApproval, entries: 2, actions: 1, requests: 1, pending: 1}},
		{"approved and going on", []step{{at: late, action: "start"}, {at: late + m, action: "request_approval", target: "c1"},
			{at: late + 2*m, action: "approve", target: "c1"}, {at: late + 3*m, action: "write", target: "c1"}},
			want{status: StatusInProgress, entries: 4, actions: 3, approvals: 1, requests: 1}},
		{"rejected", []step{{at: late, action: "request_approval", target: "c1"}, {at: late + m, action: "reject", target: "c1"}},
			want{status: StatusInProgress, entries: 2, actions: 2, rejections: 1, requests: 1}},
		{"completed", []step{{at: 0, action: "start"}, {at: m, action: "write"}, {at: 2 * m, dur: 5 * time.Second, action: "end"}},
			want{status: StatusCompleted, entries: 3, actions: 1, end: d(2*m + 5*time.Second)}},
		{"failed: end with status Error", []step{{at: 0, action: "start"}, {at: 2 * m, action: "end", status: "Error", result: "boom"}},
			want{status: StatusFailed, entries: 2, errors: 1, end: d(2*m + ms)}},
		{"failed: end with an error result", []step{{at: 0, action: "start"}, {at: 2 * m, action: "end", result: "Error: timeout"}},
			want{status: StatusFailed, entries: 2, errors: 1, end: d(2*m + ms)}},
		{"failed: error as the last action", []step{{at: late, action: "start"}, {at: late + m, dur: time.Second, action: "error", result: "error: 500"}},
			want{status: StatusFailed, entries: 2, actions: 1, errors: 1, end: d(late + m + time.Second)}},
		{"an error, then going on", []step{{at: late, action: "start"}, {at: late + m, action: "error"}, {at: late + 2*m, action: "read"}},
			want{status: StatusInProgress, entries: 3, actions: 2, errors: 1}},
		{"a failed write is not a failed run", []step{{at: late, action: "write", status: "Error"}},
			want{status: StatusInProgress, entries: 1, actions: 1, errors: 1}},
		{"abandoned", []step{{at: 0, action: "start"}, {at: m, action: "read"}},
			want{status: StatusAbandoned, entries: 2, actions: 1}},
		{"abandoned while awaiting approval", []step{{at: 0, action: "request_approval", target: "c1"}},
			want{status: StatusAbandoned, entries: 1, actions: 1, requests: 1, pending: 1}},
		{"error last beats abandoned", []step{{at: 0, action: "error"}},
			want{status: StatusFailed, entries: 1, actions: 1, errors: 1, end: d(ms)}},
		{"expired: the service's expiry ends the request", []step{{at: late, action: "request_approval", target: "c1"},
			{at: late + m, action: "agentaudit.approval_expired", target: "c1"}},
			want{status: StatusInProgress, entries: 2, actions: 2, requests: 1}},
		{"expiry of another target", []step{{at: late, action: "request_approval", target: "c1"},
			{at: late + m, action: "agentaudit.approval_expired", target: "c2"}},
			want{status: StatusAwaitingApproval, entries: 2, actions: 2, requests: 1, pending: 1}},
		{"two requests, one decided", []step{{at: late, action: "request_approval", target: "c1"}, {at: late + m, action: "request_approval", target: "c2"},
			{at: late + 2*m, action: "approve", target: "c1"}},
			want{status: StatusAwaitingApproval, entries: 3, actions: 3, approvals: 1, requests: 2, pending: 1}},
		{"two requests, both decided", []step{{at: late, action: "request_approval", target: "c1"}, {at: late + m, action: "request_approval", target: "c2"},
			{at: late + 2*m, action: "approve", target: "c2"}, {at: late + 3*m, action: "reject", target: "c1"}},
			want{status: StatusInProgress, entries: 4, actions: 4, approvals: 1, rejections: 1, requests: 2}},
		{"two requests for one target, one decision", []step{{at: late, action: "request_approval", target: "c1"}, {at: late + m, action: "request_approval", target: "c1"},
			{at: late + 2*m, action: "approve", target: "c1"}},
			want{status: StatusInProgress, entries: 3, actions: 3, approvals: 1, requests: 2}},
		{"approve without request", []step{{at: late, action: "start"}, {at: late + m, action: "approve", target: "c9"}},
			want{status: StatusInProgress, entries: 2, actions: 1, approvals: 1}},
		{"approval of another target", []step{{at: late, action: "request_approval", target: "c1"}, {at: late + m, action: "approve", target: "c2"}},
			want{status: StatusAwaitingApproval, entries: 2, actions: 2, approvals: 1, requests: 1, pending: 1}},
		{"decision before the request", []step{{at: late, action: "approve", target: "c1"}, {at: late + m, action: "request_approval", target: "c1"}},
			want{status: StatusAwaitingApproval, entries: 2, actions: 2, approvals: 1, requests: 1, pending: 1}},
		{"tie broken by seq: decision after", []step{{at: late, seq: 5, action: "request_approval", target: "c1"}, {at: late, seq: 6, action: "approve", target: "c1"}},
			want{status: StatusInProgress, entries: 2, actions: 2, approvals: 1, requests: 1}},
		{"tie broken by seq: decision before", []step{{at: late, seq: 6, action: "request_approval", target: "c1"}, {at: late, seq: 5, action: "approve", target: "c1"}},
			want{status: StatusAwaitingApproval, entries: 2, actions: 2, approvals: 1, requests: 1, pending: 1}},
		{"entries after the end", []step{{at: 0, action: "start"}, {at: m, action: "end"}, {at: 2 * m, action: "write"}, {at: 3 * m, action: "error"}},
			want{status: StatusCompleted, entries: 4, actions: 2, errors: 1, afterEnd: 2, end: d(m + ms)}},
		{"the last end decides", []step{{at: 0, action: "start"}, {at: m, action: "end"}, {at: 2 * m, action: "end", result: "error: late failure"}},
			want{status: StatusFailed, entries: 3, errors: 1, end: d(2*m + ms)}},
		{"end arrived first (seq), true order by time", []step{{at: 2 * m, seq: 1, action: "end"}, {at: 0, seq: 2, action: "start"}, {at: m, seq: 3, action: "write"}},
			want{status: StatusCompleted, entries: 3, actions: 1, end: d(2*m + ms)}},
		{"v1 entries without end time", []step{{at: late, dur: -1, action: "start"}, {at: late + m, dur: -1, action: "end"}},
			want{status: StatusCompleted, entries: 2, end: d(late + m)}},
		{"across chains", []step{{at: late, chain: "a", seq: 10, action: "start"}, {at: late + m, chain: "b", seq: 3, action: "end"}},
			want{status: StatusCompleted, entries: 2, end: d(late + m + ms)}},
		{"agent: first agent_name", []step{{at: late, action: "start", agent: [3]string{"", "", "svc"}}, {at: late + m, action: "read", agent: [3]string{"id-1", "Billing agent", "svc"}}},
			want{status: StatusInProgress, entries: 2, actions: 1, agent: "Billing agent"}},
		{"agent: agent_id without a name", []step{{at: late, action: "start", agent: [3]string{"id-1", "", "svc"}}},
			want{status: StatusInProgress, entries: 1, agent: "id-1"}},
		{"agent: service_name alone", []step{{at: late, action: "start", agent: [3]string{"", "", "svc"}}},
			want{status: StatusInProgress, entries: 1, agent: "svc"}},
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.steps {
				tc.steps[i].exec = "run"
				if tc.steps[i].dur == 0 {
					tc.steps[i].dur = time.Millisecond
				}
			}
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			loadSteps(t, conn, tc.steps)
			e := &Engine{opts: Options{Now: func() time.Time { return asOf }, AbandonAfter: DefaultAbandonAfter}}
			if err := e.setParams(ctx, conn); err != nil {
				t.Fatal(err)
			}
			rows, err := conn.QueryContext(ctx, runsSQL)
			if err != nil {
				t.Fatal(err)
			}
			runs, err := scanRuns(rows)
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 {
				t.Fatalf("%d runs, want 1", len(runs))
			}
			r := runs[0]
			got := want{status: r.Status, entries: r.Entries, actions: r.Actions, errors: r.Errors, approvals: r.Approvals,
				rejections: r.Rejections, requests: r.ApprovalRequests, pending: r.PendingApprovals, afterEnd: r.AfterEnd}
			if r.End != nil {
				got.end = d(r.End.Sub(t0))
			}
			if r.Agent != nil {
				got.agent = *r.Agent
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if (r.End == nil) != (r.DurationMS == nil) {
				t.Errorf("end %v but duration %v", r.End, r.DurationMS)
			}
			if r.End != nil && *r.DurationMS != float64(r.End.Sub(r.Start).Nanoseconds())/1e6 {
				t.Errorf("duration %v ms, want end - start = %v", *r.DurationMS, r.End.Sub(r.Start))
			}
		})
	}
}

// TestCollectorRecordsAreNoRuns: the approval service's policy entries
// (docs/APPROVALS.md) and the start and stop markers are in the trail but
// are no agent's run.
func TestCollectorRecordsAreNoRuns(t *testing.T) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	loadSteps(t, conn, []step{
		{exec: "agentaudit.approvals/c", at: 0, dur: time.Millisecond, action: "agentaudit.approval_policy"},
		{exec: "run", at: time.Minute, dur: time.Millisecond, action: "start"},
		{exec: "agentaudit.approvals/c", at: 2 * time.Minute, dur: time.Millisecond, action: "agentaudit.approval_policy"},
		{exec: "agentaudit.recorder/c", at: 3 * time.Minute, dur: time.Millisecond, action: "agentaudit.recorder_start"},
		{exec: "agentaudit.recorder/c", at: 4 * time.Minute, dur: time.Millisecond, action: "agentaudit.recorder_stop"},
	})
	e := &Engine{opts: Options{Now: func() time.Time { return t0.Add(time.Hour) }, AbandonAfter: DefaultAbandonAfter}}
	if err := e.setParams(ctx, conn); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, runsSQL)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := scanRuns(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ExecutionID != "run" {
		t.Fatalf("runs %+v, want only the agent's run", runs)
	}
}
