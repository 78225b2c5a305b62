package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/agentaudit/agentaudit/approvalclient"
	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/browsertest"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// The demo tokens of testdata/agentaudit-approvals.yaml and the identities
// its senders give them.
const (
	agentToken    = "agent-demo-token"
	reviewerToken = "reviewer-demo-token"
	agentID       = "crm-agent"
	reviewerID    = "alice@example.com"
)

// approvalsCollector is the collector of testdata/agentaudit-approvals.yaml
// on free ports, with its trail and spool in a test directory.
type approvalsCollector struct {
	t                        *testing.T
	cfg, dir, data, spool    string
	grpc, http, api, metrics string
	proc                     *harness.Process
}

func newApprovalsCollector(t *testing.T) *approvalsCollector {
	t.Helper()
	dir := t.TempDir()
	c := &approvalsCollector{
		t: t, dir: dir, data: filepath.Join(dir, "audit-data"), spool: filepath.Join(dir, "audit-spool"),
		grpc: harness.FreeAddr(t), http: harness.FreeAddr(t), api: harness.FreeAddr(t), metrics: harness.FreeAddr(t),
	}
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "agentaudit-approvals.yaml"))
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(c.metrics)
	require.NoError(t, err)
	cfg := string(raw)
	for _, r := range [][2]string{
		{"endpoint: 127.0.0.1:4317", "endpoint: " + c.grpc},
		{"endpoint: 127.0.0.1:4318", "endpoint: " + c.http},
		{"endpoint: 127.0.0.1:4320", "endpoint: " + c.api},
		{"directory: ./audit-data", "directory: " + c.data},
		{"directory: ./audit-spool", "directory: " + c.spool},
		// Batches sealed within a second: the checkpoints come soon.
		{"max_age: 10s", "max_age: 1s"},
		{"\nservice:\n", fmt.Sprintf("\nservice:\n  telemetry:\n    metrics:\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: %s\n                port: %s\n", host, port)},
	} {
		require.Equal(t, 1, strings.Count(cfg, r[0]), "testdata/agentaudit-approvals.yaml has %q once", r[0])
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	// A fixed chain id: the default is the host name.
	cfg = strings.Replace(cfg, "  agentaudit:\n", "  agentaudit:\n    chain_id: e2e-approvals\n", 1)
	c.cfg = filepath.Join(dir, "agentaudit-approvals.yaml")
	require.NoError(t, os.WriteFile(c.cfg, []byte(cfg), 0o600))
	return c
}

func (c *approvalsCollector) start() {
	c.t.Helper()
	c.proc = harness.StartProcess(c.t, harness.CollectorBin(), c.cfg, c.dir, nil)
	c.proc.WaitListening(c.t, c.grpc, c.http, c.api)
}

func (c *approvalsCollector) url() string { return "http://" + c.api }

func (c *approvalsCollector) client(token string) *approvalclient.Client {
	return &approvalclient.Client{BaseURL: c.url(), Token: token, PollWait: 2 * time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
}

// decide posts a decision with token and returns the status code.
func (c *approvalsCollector) decide(token, id, decision, comment string) int {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"decision": decision, "comment": comment})
	req, err := http.NewRequest(http.MethodPost, c.url()+"/v1/approvals/"+id+"/decision", bytes.NewReader(body))
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// get reads approval id with token.
func (c *approvalsCollector) get(token, id string) *approvalclient.Approval {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url()+"/v1/approvals/"+id, nil)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	require.Equal(c.t, http.StatusOK, resp.StatusCode)
	var a approvalclient.Approval
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&a))
	return &a
}

// write sends, as the agent, one write span with attrs over OTLP/HTTP;
// its audit.result is name.
func (c *approvalsCollector) write(name string, attrs map[string]string, failed bool) {
	c.t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "crm-agent")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetName(name)
	span.SetTraceID(pcommon.TraceID([16]byte{1, byte(len(name)), byte(time.Now().UnixNano())}))
	span.SetSpanID(pcommon.SpanID([8]byte{2, byte(time.Now().UnixNano())}))
	now := time.Now()
	span.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	span.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	if failed {
		span.Status().SetCode(ptrace.StatusCodeError)
		span.Status().SetMessage("429 rate limited")
	} else {
		span.Status().SetCode(ptrace.StatusCodeOk)
	}
	span.Attributes().PutStr("audit.action.type", "write")
	span.Attributes().PutStr("audit.result", name) // names the write in the trail
	for k, v := range attrs {
		span.Attributes().PutStr(k, v)
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(c.t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+c.http+"/v1/traces", bytes.NewReader(body))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+agentToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(c.t, http.StatusOK, resp.StatusCode, "the write span is acknowledged: %s", b)
}

// writeApproved sends the write a approved, as approvalclient says to.
func (c *approvalsCollector) writeApproved(name string, a *approvalclient.Approval, change func(map[string]string), failed bool) {
	c.t.Helper()
	attrs := map[string]string{}
	for _, kv := range approvalclient.WriteAttributes(a) {
		attrs[string(kv.Key)] = kv.Value.AsString()
	}
	if change != nil {
		change(attrs)
	}
	c.write(name, attrs, failed)
}

// verifyTrail stops the collector (it seals everything) and runs
// auditctl verify --json over the trail: the violations as
// "kind@action_type:detail-prefix" keyed by seq, and the exit code.
func (c *approvalsCollector) verifyTrail() (*verify.Report, int) {
	c.t.Helper()
	c.proc.Terminate(c.t)
	bin := harness.BuildAuditctl(c.t, c.t.TempDir())
	out, errOut, code := harness.RunAuditctl(c.t, bin, "verify", "--json", c.data)
	var rep verify.Report
	require.NoError(c.t, json.Unmarshal([]byte(out), &rep), "auditctl verify --json: %s\n%s", out, errOut)
	return &rep, code
}

func contactRequest(proposed string) approvalclient.Request {
	prev := "jane@olddomain.com"
	return approvalclient.Request{
		ExecutionID: "exec-approvals-1", TargetSystem: "HubSpot CRM", TargetResource: "Contact #48291 (email field)",
		ProposedValue: &proposed, PreviousValue: &prev, Reasoning: "Email bounced; found the new address via Clearbit",
		AgentName: "crm-agent", ServiceName: "crm-agent",
	}
}

// TestApprovalAttacks runs the attacks of issue 17 against the collector
// of testdata/agentaudit-approvals.yaml: what the service refuses, and
// what verify then reports of the writes an agent makes anyway.
func TestApprovalAttacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newApprovalsCollector(t)
	c.start()
	agent, reviewer := c.client(agentToken), c.client(reviewerToken)

	approved := func(proposed string) *approvalclient.Approval {
		a, err := agent.Request(ctx, contactRequest(proposed))
		require.NoError(t, err)
		require.Equal(t, approvalclient.Pending, a.Status)
		require.Equal(t, http.StatusOK, c.decide(reviewerToken, a.ID, "approve", "ok"))
		a, err = agent.Wait(ctx, a.ID)
		require.NoError(t, err)
		require.True(t, a.Approved())
		return a
	}

	// The agent approves its own request: refused.
	a := approved("jane@newdomain.com")
	mine, err := agent.Request(ctx, contactRequest("x@y"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, c.decide(agentToken, mine.ID, "approve", ""), "an agent is no reviewer")
	// A reviewer who asks may not decide either.
	own, err := reviewer.Request(ctx, contactRequest("own@y"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, c.decide(reviewerToken, own.ID, "approve", ""), "self-approval is refused")
	// Decisions on unknown and decided ids.
	assert.Equal(t, http.StatusNotFound, c.decide(reviewerToken, "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "approve", ""))
	assert.Equal(t, http.StatusConflict, c.decide(reviewerToken, a.ID, "reject", ""), "decided once")
	// An expired request: the service expires it and records that.
	exp := contactRequest("late@y")
	exp.ExpiresIn = time.Second
	late, err := agent.Request(ctx, exp)
	require.NoError(t, err)
	late, err = agent.Wait(ctx, late.ID)
	require.NoError(t, err)
	assert.Equal(t, approvalclient.Expired, late.Status)
	assert.Equal(t, http.StatusConflict, c.decide(reviewerToken, late.ID, "approve", ""), "an expired request cannot be approved")
	rejected, err := agent.Request(ctx, contactRequest("no@y"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, c.decide(reviewerToken, rejected.ID, "reject", "wrong address"))
	rejected, err = agent.Wait(ctx, rejected.ID)
	require.NoError(t, err)
	assert.Equal(t, approvalclient.Rejected, rejected.Status)

	// What the service did, in its metrics.
	events := map[string]float64{}
	pending := -1.0
	for _, smp := range harness.ScrapeSamples(t, c.metrics) {
		switch smp.Name {
		case "otelcol_agentaudit_approvals_total", "otelcol_agentaudit_approvals":
			events[smp.Labels] += smp.Value
		case "otelcol_agentaudit_approvals_pending":
			pending = smp.Value
		}
	}
	count := func(event string) float64 {
		for labels, v := range events {
			if strings.Contains(labels, `event="`+event+`"`) {
				return v
			}
		}
		return 0
	}
	assert.Equal(t, 5.0, count("requested"), "metrics: %v", events)
	assert.Equal(t, 1.0, count("approve"))
	assert.Equal(t, 1.0, count("reject"))
	assert.Equal(t, 1.0, count("expire"))
	assert.Equal(t, 1.0, count("self_approval_refused"))
	assert.Equal(t, 2.0, pending, "the agent's and the reviewer's own requests wait")

	// The writes.
	c.writeApproved("write-failed-first", a, nil, true) // a failed try does not use the approval up
	c.writeApproved("write-ok", a, nil, false)
	c.writeApproved("write-replayed", a, nil, false)
	b := approved("jane@newdomain.com")
	c.writeApproved("write-other-value", b, func(m map[string]string) { m["audit.value.proposed"] = "attacker@evil.example" }, false)
	c.writeApproved("write-expired", late, nil, false)
	c.writeApproved("write-rejected", rejected, nil, false)
	c.write("write-unapproved", map[string]string{
		"audit.execution.id": "exec-approvals-1", "audit.target.system": "HubSpot CRM",
		"audit.target.resource": "Contact #1 (phone field)", "audit.value.proposed": "555",
	}, false)
	c.write("write-uncovered", map[string]string{
		"audit.execution.id": "exec-approvals-1", "audit.target.system": "Internal wiki", "audit.target.resource": "Page 7",
	}, false)

	rep, code := c.verifyTrail()
	// Each write is named by its result (the write helpers set it).
	names := map[int64]string{}
	for _, r := range harness.ReadRows(t, harness.TrailDB(t, c.data), "") {
		names[r.Seq] = r.Result
	}
	got := map[string]string{}
	for _, v := range rep.Violations {
		got[names[v.Seq]] = string(v.Kind)
	}
	assert.Equal(t, map[string]string{
		"write-replayed":    "approval_reused",
		"write-other-value": "approval_mismatch",
		"write-expired":     "approval_mismatch",
		"write-rejected":    "approval_mismatch",
		"write-unapproved":  "unapproved_write",
	}, got, "verify: %+v", rep.Violations)
	assert.NotZero(t, code, "verify fails on the violations")
}

// TestApprovalSurvivesRestart: the collector dies (SIGKILL) while a
// request is pending and an agent waits on it; after the restart the
// request is still pending, the agent's long poll resumes, and the
// decision made then reaches it.
func TestApprovalSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newApprovalsCollector(t)
	c.start()
	agent := c.client(agentToken)
	a, err := agent.Request(ctx, contactRequest("jane@newdomain.com"))
	require.NoError(t, err)

	waited := make(chan *approvalclient.Approval, 1)
	go func() {
		w, err := agent.Wait(ctx, a.ID)
		assert.NoError(t, err)
		waited <- w
	}()
	time.Sleep(300 * time.Millisecond) // the poll is under way
	c.proc.Kill(t)
	c.start()

	st := c.get(reviewerToken, a.ID)
	assert.Equal(t, approvalclient.Pending, st.Status, "still pending after the crash")
	assert.Equal(t, a.Request, st.Request, "the same request entry")
	select {
	case w := <-waited:
		t.Fatalf("the wait ended before a decision: %+v", w)
	default:
	}
	require.Equal(t, http.StatusOK, c.decide(reviewerToken, a.ID, "approve", "after the restart"))
	select {
	case w := <-waited:
		require.NotNil(t, w)
		assert.True(t, w.Approved(), "the resumed long poll hears the decision")
		assert.Equal(t, reviewerID, *w.Decision.Approver)
	case <-ctx.Done():
		t.Fatal("the agent's wait never returned")
	}
	c.writeApproved("write-after-restart", a, nil, false)
	rep, code := c.verifyTrail()
	assert.Empty(t, rep.Violations)
	assert.Zero(t, code)
}

// agentEvent is a line the approval agent (e2e/agents/approval.mjs)
// prints.
type agentEvent struct {
	Event  string `json:"event"`
	ID     string `json:"id"`
	Status string `json:"status"`
}

// TestApprovalInTheInbox is issue 17's end to end: a real agent (the
// Vercel AI SDK with its mock model, e2e/agents/approval.mjs) stops at the
// SDK's own tool-approval hook (needsApproval) before its CRM update, asks
// through the JavaScript helper of clients/js and waits; a
// reviewer signs in to the inbox in headless Chromium, sees the proposed
// change and approves it with a comment; the agent's long poll returns and
// its write lands. The trail holds the request, the decision and the
// write, linked by hash, and verify finds it intact.
func TestApprovalInTheInbox(t *testing.T) {
	dir := agentScripts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newApprovalsCollector(t)
	c.start()

	// The agent, in the background, until it has written.
	cmd := exec.CommandContext(ctx, nodeBin, "approval.mjs")
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "AGENTAUDIT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+c.http,
		"AGENTAUDIT_APPROVALS_URL="+c.url(),
		"AGENTAUDIT_TOKEN="+agentToken)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	events := make(chan agentEvent, 16)
	go func() {
		defer close(events)
		dec := json.NewDecoder(stdout)
		for {
			var ev agentEvent
			if err := dec.Decode(&ev); err != nil {
				return
			}
			events <- ev
		}
	}()
	next := func(want string) agentEvent {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				require.True(t, ok, "the agent ended before %q: %s", want, stderr.String())
				t.Logf("agent: %+v", ev)
				if ev.Event == want {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %q from the agent: %s", want, stderr.String())
			}
		}
	}
	id := next("approval_requested").ID
	require.NotEmpty(t, id)

	// The reviewer, in the inbox.
	b := browsertest.Start(t)
	require.NoError(t, b.Open(c.url()+"/"))
	n, err := b.Count(".approval")
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is shown before signing in")
	require.NoError(t, b.Type("#token", reviewerToken))
	require.NoError(t, b.Click("#signin"))
	card := fmt.Sprintf(`.approval[data-id=%q]`, id)
	require.NoError(t, b.WaitFor(card+`[data-status="pending"]`, 30*time.Second))
	a := c.get(reviewerToken, id)
	for sel, want := range map[string]*string{" .proposed": a.ProposedValue, " .previous": a.PreviousValue, " .reasoning": a.Reasoning} {
		require.NotNil(t, want, sel)
		texts, err := b.Texts(card + sel)
		require.NoError(t, err)
		assert.Equal(t, []string{*want}, texts, "the inbox shows%s as requested", sel)
	}
	require.NoError(t, b.Click(card+" details.context summary"))
	require.NoError(t, b.WaitText(card+" table.timeline", "request_approval", 10*time.Second), "the run's timeline so far")
	require.NoError(t, b.Type(card+" textarea.comment", "Checked against Clearbit"))
	require.NoError(t, b.Click(card+" .approve"))

	// The agent hears it and writes.
	assert.Equal(t, "approved", next("decided").Status)
	next("written")
	require.NoError(t, cmd.Wait(), "the agent: %s", stderr.String())

	require.NoError(t, b.Click("#tab-decided"))
	require.NoError(t, b.WaitText(card+`[data-status="approved"] .approver`, reviewerID, 10*time.Second))
	errs, err := b.ConsoleErrors()
	require.NoError(t, err)
	assert.Empty(t, errs, "the inbox logs no errors")

	// Once its batch is sealed, the approval comes with the signed
	// checkpoint that covers the decision.
	var cp string
	require.Eventually(t, func() bool {
		if a := c.get(agentToken, id); a.Checkpoint != nil {
			cp = *a.Checkpoint
			return true
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the checkpoint covering the decision")
	lines := strings.Split(cp, "\n")
	require.GreaterOrEqual(t, len(lines), 3, cp)
	assert.Equal(t, "agentaudit/e2e-approvals", lines[0])
	cpFile := filepath.Join(t.TempDir(), "approval.checkpoint")
	require.NoError(t, os.WriteFile(cpFile, []byte(cp), 0o600))

	rep, code := c.verifyTrail()
	assert.Empty(t, rep.Violations)
	assert.Zero(t, code, "verify finds the trail intact")
	keys, err := filepath.Glob(filepath.Join(c.data, "keys", "e2e-approvals-*.vkey"))
	require.NoError(t, err)
	require.Len(t, keys, 1, "the published key")
	out, errOut, code := harness.RunAuditctl(t, harness.BuildAuditctl(t, t.TempDir()), "verify", "--checkpoint", cpFile, "--key", keys[0], c.data)
	assert.Zero(t, code, "the approval's checkpoint is signed and the trail extends it: %s%s", out, errOut)

	// Request → decision → write, linked by hash.
	var req, dec, write *harness.Row
	rows := harness.ReadRows(t, harness.TrailDB(t, c.data), "")
	for i := range rows {
		r := &rows[i]
		var attrs map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.Attributes), &attrs))
		switch {
		case r.ActionType == "request_approval" && attrs["agentaudit.approval.id"] == id:
			req = r
		case r.ActionType == "approve" && attrs["agentaudit.approval.id"] == id:
			dec = r
			require.NotNil(t, req, "the decision comes after the request")
			assert.Equal(t, req.EntryHash, attrs["agentaudit.approval.request_hash"], "the decision names the request's hash")
		case r.ActionType == "write" && attrs["audit.approval.id"] == id:
			write = r
		}
	}
	require.NotNil(t, req, "the request entry")
	require.NotNil(t, dec, "the decision entry")
	require.NotNil(t, write, "the write entry")
	assert.Equal(t, agentID, req.Sender.String, "the request's sender is the agent's authenticated identity")
	assert.Equal(t, reviewerID, dec.Approver.String, "the approver is the reviewer's authenticated identity")
	assert.Equal(t, reviewerID, dec.Sender.String)
	assert.Equal(t, "Checked against Clearbit", dec.Reasoning.String, "the comment is recorded")
	assert.Equal(t, agentID, write.Sender.String)
	assert.Equal(t, req.ProposedValue, write.ProposedValue, "the write is what was approved")
	assert.Equal(t, req.TargetSystem, write.TargetSystem)
	assert.Equal(t, req.TargetResource, write.TargetResource)
	assert.Equal(t, req.ExecutionID, write.ExecutionID)
	assert.Less(t, dec.Seq, write.Seq)
	size, err := strconv.ParseInt(lines[1], 10, 64)
	require.NoError(t, err)
	assert.Greater(t, size, dec.Seq, "the checkpoint covers the decision")
}
