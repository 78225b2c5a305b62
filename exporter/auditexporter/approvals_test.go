package auditexporter

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/approval"
	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/storetest"
)

func strp(s string) *string { return &s }

// TestApprovalEntries: the service's events become the entries
// docs/APPROVALS.md describes, through the span mapping: the collector's
// own agentaudit.approval.* keys unflagged, the request's sender under the
// senders policy, the decision's approver the reviewer.
func TestApprovalEntries(t *testing.T) {
	cfg := testConfig(t)
	cfg.Senders = map[string]SenderConfig{"crm-agent": {Agents: []string{"crm-*"}}, "alice": {Agents: []string{"*"}}}
	exp, _ := newTestExporter(t, cfg, storetest.NewMemory())
	at := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	a := &approval.Approval{
		ID: "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ExecutionID: "exec-1", TargetSystem: "HubSpot CRM", TargetResource: "Contact 1",
		ProposedValue: strp("new"), PreviousValue: strp("old"), Reasoning: strp("why"), Tool: strp("crm_update"),
		AgentName: strp("billing-agent"), Principal: strp("jane"),
		TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		Requester: strp("crm-agent"), Policy: strp("crm"), ExpiresAt: "2026-12-06T09:00:00Z",
	}
	attrs := func(e entry.Entry) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(e.Attributes), &m))
		return m
	}

	req := exp.approvalEntry(approval.Event{Kind: approval.EventRequest, At: at, Approval: a, Sender: a.Requester})
	assert.Equal(t, "request_approval", req.ActionType)
	assert.Equal(t, at.UnixNano(), req.TimeUnixNano)
	assert.Equal(t, "exec-1", req.ExecutionID)
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", req.TraceID, "in the agent's trace")
	require.NotNil(t, req.ParentSpanID)
	assert.Equal(t, "b7ad6b7169203331", *req.ParentSpanID, "a child of the agent's span")
	assert.NotEqual(t, "b7ad6b7169203331", req.SpanID, "with a span id of its own")
	assert.Equal(t, "new", *req.ProposedValue)
	assert.Equal(t, "old", *req.PreviousValue)
	assert.Equal(t, "why", *req.Reasoning)
	assert.Equal(t, "jane", *req.Principal)
	assert.Equal(t, "crm-agent", *req.Sender)
	assert.Nil(t, req.Approver)
	assert.Equal(t, "pending", req.Result)
	assert.Equal(t, map[string]any{
		entry.AttrApprovalID: a.ID, entry.AttrApprovalExpiresAt: a.ExpiresAt, entry.AttrApprovalPolicy: "crm", entry.AttrApprovalTool: "crm_update",
	}, attrs(req))
	require.NotNil(t, req.Validation, "the agent names an agent its sender may not write for")
	assert.Contains(t, *req.Validation, entry.ProblemSenderMismatch)
	assert.NotContains(t, *req.Validation, auditspan.ProblemReservedKey, "the collector's own keys are not flagged")

	a.Request = approval.Ref{ChainID: "collector-1", Seq: 3, EntryHash: "ab12"}
	a.Decision = &approval.Decision{Decision: "approve", Approver: strp("alice"), Comment: strp("ok")}
	dec := exp.approvalEntry(approval.Event{Kind: approval.EventDecision, At: at, Approval: a, Sender: strp("alice")})
	assert.Equal(t, "approve", dec.ActionType)
	assert.Equal(t, req.TraceID, dec.TraceID)
	assert.NotEqual(t, req.SpanID, dec.SpanID)
	assert.Equal(t, "alice", *dec.Approver)
	assert.Equal(t, "alice", *dec.Sender)
	assert.Equal(t, "ok", *dec.Reasoning, "the comment")
	assert.Equal(t, "approved", dec.Result)
	assert.Equal(t, "new", *dec.ProposedValue, "the decision holds what it approves")
	assert.Equal(t, map[string]any{entry.AttrApprovalID: a.ID, entry.AttrApprovalRequestHash: "ab12"}, attrs(dec))
	assert.Nil(t, dec.Validation, "a reviewer deciding about an agent does not write for it")

	a.Decision = &approval.Decision{Decision: "approve", Approver: strp("crm"), Auto: true}
	auto := exp.approvalEntry(approval.Event{Kind: approval.EventDecision, At: at, Approval: a})
	assert.Equal(t, "crm", *auto.Approver, "the auto policy's name is the approver")
	assert.Nil(t, auto.Sender)
	assert.Equal(t, true, attrs(auto)[entry.AttrApprovalAuto])

	a.Decision = &approval.Decision{Decision: "expire"}
	exp2 := exp.approvalEntry(approval.Event{Kind: approval.EventExpiry, At: at, Approval: a})
	assert.Equal(t, entry.ActionApprovalExpired, exp2.ActionType)
	assert.Equal(t, "expired", exp2.Result)
	assert.Nil(t, exp2.Approver)

	ps := []approvalpolicy.Policy{{Name: "crm", Decide: approvalpolicy.DecidePerson, Systems: []string{"HubSpot CRM"}}}
	pol := exp.approvalEntry(approval.Event{Kind: approval.EventPolicy, At: at, Policies: ps, Reviewers: []string{"alice"}, Endpoint: "127.0.0.1:4320"})
	assert.Equal(t, entry.ActionApprovalPolicy, pol.ActionType)
	assert.Equal(t, "agentaudit.approvals/collector-1", pol.ExecutionID)
	assert.Equal(t, approvalpolicy.Canonical(ps), *pol.ProposedValue)
	assert.Equal(t, []any{"alice"}, attrs(pol)[entry.AttrApprovalReviewers])
	assert.Nil(t, pol.Validation)
}
