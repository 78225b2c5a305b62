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
	"path/filepath"
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
