// Package approvaltest builds a trail with every case of the approval
// checks (docs/APPROVALS.md, "The checks"), for the tests of
// internal/verify and the end-to-end comparison with docs/verify.sql. It
// is test support: no production code imports it.
package approvaltest // import "github.com/agentaudit/agentaudit/internal/verify/approvaltest"

import (
	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/trailtest"
)

// Want is one violation the trail must have.
type Want struct {
	ChainID string
	Seq     int64
	Kind    string
	// Detail is a text the violation's detail contains (Go's verify only).
	Detail string
}

// The chains of the trail: the service's (where the agent's writes land
// too, as they do through one exporter) and a second collector's.
const (
	Service = "svc"
	Other   = "other"
)

// Trail is the built trail: each chain's entries, chained, and the
// violations it must have.
type Trail struct {
	Chains map[string][]entry.Entry
	Want   []Want
	// Split is where the service chain's entries are cut into two files:
	// writes of the second file precede its first policy entry, so their
	// coverage comes from the first file's.
	Split int
}

type builder struct {
	t      Trail
	chains map[string]*chain.Chain
	clock  int64
	reqs   map[string]*entry.Entry // the request of each id, for its hash
}

func s(v string) *string { return &v }

// add appends e to chain id, timed after everything before it, and
// returns its seq.
func (b *builder) add(id string, e entry.Entry) int64 {
	b.clock += 1_000_000
	e.TimeUnixNano = trailtest.Start + b.clock
	end := e.TimeUnixNano + 500
	e.EndTimeUnixNano = &end
	c, ok := b.chains[id]
	if !ok {
		c = chain.New(id, chain.Genesis())
		b.chains[id] = c
	}
	c.Append(&e)
	b.t.Chains[id] = append(b.t.Chains[id], e)
	return e.Seq
}

func (b *builder) want(id string, seq int64, kind, detail string) {
	b.t.Want = append(b.t.Want, Want{ChainID: id, Seq: seq, Kind: kind, Detail: detail})
}

func base(action, exec, system, resource string, proposed *string) entry.Entry {
	return entry.Entry{
		ExecutionID: exec, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		AgentID: s("crm-agent-7"), AgentName: s("crm-agent"), ServiceName: s("crm-agent"),
		ActionType: action, TargetSystem: system, TargetResource: resource,
		ProposedValue: proposed, PreviousValue: s("old@example.com"),
		Result: "200 OK", StatusCode: "Unset", Attributes: `{}`,
	}
}

func (b *builder) policy(ps ...approvalpolicy.Policy) int64 {
	e := base(entry.ActionApprovalPolicy, "agentaudit.approvals/"+Service, "agentaudit approvals", "127.0.0.1:4320", s(approvalpolicy.Canonical(ps)))
	e.PreviousValue, e.AgentID, e.AgentName, e.ServiceName = nil, nil, nil, nil
	e.Result = "in force"
	e.Attributes = `{"` + entry.AttrApprovalReviewers + `":"[\"alice@example.com\"]"}`
	return b.add(Service, e)
}

// request records the service's request for approval id by requester.
func (b *builder) request(id, requester, exec, system, resource, proposed string) int64 {
	e := base("request_approval", exec, system, resource, s(proposed))
	e.Sender = s(requester)
	e.Result = "pending"
	e.Attributes = `{"` + entry.AttrApprovalExpiresAt + `":"2026-03-09T10:30:00.000000000Z","` + entry.AttrApprovalID + `":"` + id + `"}`
	seq := b.add(Service, e)
	b.reqs[id] = &b.t.Chains[Service][len(b.t.Chains[Service])-1]
	return seq
}

// decide records the service's decision (approve, reject or the expiry)
// on id by approver (sent by sender; "" for NULL).
func (b *builder) decide(id, action, approver, sender string, auto bool) int64 {
	return b.decideHash(id, action, approver, sender, auto, b.reqs[id].EntryHash)
}

func (b *builder) decideHash(id, action, approver, sender string, auto bool, requestHash string) int64 {
	q := b.reqs[id]
	e := base(action, q.ExecutionID, q.TargetSystem, q.TargetResource, q.ProposedValue)
	e.Reasoning = s("ok")
	if approver != "" {
		e.Approver = s(approver)
	}
	if sender != "" {
		e.Sender = s(sender)
	}
	e.Result = map[string]string{"approve": "approved", "reject": "rejected", entry.ActionApprovalExpired: "expired"}[action]
	attrs := `{`
	if auto {
		attrs += `"` + entry.AttrApprovalAuto + `":"true",`
	}
	e.Attributes = attrs + `"` + entry.AttrApprovalID + `":"` + id + `","` + entry.AttrApprovalRequestHash + `":"` + requestHash + `"}`
	return b.add(Service, e)
}

// write records the agent's write, naming approval id ("" for none).
func (b *builder) write(chainID, id, exec, system, resource, proposed string) int64 {
	return b.writeWith(chainID, id, exec, system, resource, proposed, "", "Unset")
}

func (b *builder) writeWith(chainID, id, exec, system, resource, proposed, tool, status string) int64 {
	e := base("write", exec, system, resource, s(proposed))
	e.Sender = s("agent-1")
	attrs := `{`
	if id != "" {
		attrs += `"` + entry.KeyApprovalID + `":"` + id + `",`
	}
	if tool != "" {
		attrs += `"` + entry.KeyToolName + `":"` + tool + `",`
	}
	e.Attributes = attrs + `"http.request.method":"PATCH"}`
	if status == "Error" {
		e.StatusCode, e.Result = "Error", "error: 500"
	}
	return b.add(chainID, e)
}

const (
	crm     = "HubSpot CRM"
	agent   = "agent-1"
	alice   = "alice@example.com"
	contact = "Contact #48291 (email field)"
	newMail = "jane@newdomain.com"
)

// Build returns the trail.
func Build() Trail {
	b := &builder{t: Trail{Chains: map[string][]entry.Entry{}}, chains: map[string]*chain.Chain{}, reqs: map[string]*entry.Entry{}}
	mm := "approval_mismatch"
	policies := []approvalpolicy.Policy{
		{Name: "crm-contact-writes", Decide: approvalpolicy.DecidePerson, Systems: []string{crm}, Resources: []string{"Contact *"}},
		{Name: "sandbox-auto", Decide: approvalpolicy.DecideAuto, Systems: []string{"Sandbox *"}},
		{Name: "deletes", Decide: approvalpolicy.DecidePerson, Tools: []string{"*_delete"}},
	}
	// Before any policy: nothing is covered.
	b.write(Service, "", "e0", crm, contact, newMail)
	b.policy(policies...)
	// Covered writes without approval, checked in the first file.
	b.want(Service, b.write(Service, "", "e0", crm, "Contact #1", newMail), "unapproved_write", `"crm-contact-writes"`)
	b.want(Service, b.writeWith(Service, "", "e0", "Billing", "Invoice 7", "x", "invoice_delete", "Unset"), "unapproved_write", `"deletes"`)
	b.want(Service, b.write(Service, "", "e0", "crm_delete", "Invoice 7", "x"), "unapproved_write", `"deletes"`) // the system is the tool
	b.write(Service, "", "e0", crm, "Deal #7", "x")                                                              // not covered

	// A clean approval: request, decision, write.
	b.request("apr_ok", agent, "e1", crm, contact, newMail)
	b.decide("apr_ok", "approve", alice, alice, false)
	b.write(Service, "apr_ok", "e1", crm, contact, newMail)
	b.t.Split = len(b.t.Chains[Service])

	// The second file: covered writes before its own policy entry.
	b.want(Service, b.write(Service, "", "e2", crm, "Contact #2", newMail), "unapproved_write", `"crm-contact-writes"`)
	// A reused approval, a write different from the approved one.
	b.want(Service, b.write(Service, "apr_ok", "e1", crm, contact, newMail), "approval_reused", "already used")
	for _, c := range []struct{ id, exec, res, proposed, field string }{
		{"apr_val", "e3", contact, "other@example.com", "proposed_value"},
		{"apr_res", "e3", "Contact #9 (email field)", newMail, "target_resource"},
		{"apr_exec", "e4", contact, newMail, "execution_id"},
	} {
		b.request(c.id, agent, "e3", crm, contact, newMail)
		b.decide(c.id, "approve", alice, alice, false)
		b.want(Service, b.write(Service, c.id, c.exec, crm, c.res, c.proposed), mm, c.field)
	}
	// Rejected, expired, pending, unknown.
	b.request("apr_rej", agent, "e5", crm, contact, newMail)
	b.decide("apr_rej", "reject", alice, alice, false)
	b.want(Service, b.write(Service, "apr_rej", "e5", crm, contact, newMail), mm, "rejected")
	b.request("apr_exp", agent, "e5", crm, contact, newMail)
	b.decide("apr_exp", entry.ActionApprovalExpired, "", "", false)
	b.want(Service, b.write(Service, "apr_exp", "e5", crm, contact, newMail), mm, "expired")
	b.request("apr_pend", agent, "e5", crm, contact, newMail)
	b.want(Service, b.write(Service, "apr_pend", "e5", crm, contact, newMail), mm, "pending")
	b.want(Service, b.write(Service, "apr_nowhere", "e5", crm, contact, newMail), mm, "names no request")
	// A failed attempt and its retry are fine; a third write reuses it.
	b.request("apr_retry", agent, "e6", crm, contact, newMail)
	b.decide("apr_retry", "approve", alice, alice, false)
	b.writeWith(Service, "apr_retry", "e6", crm, contact, newMail, "", "Error")
	b.write(Service, "apr_retry", "e6", crm, contact, newMail)
	b.want(Service, b.write(Service, "apr_retry", "e6", crm, contact, newMail), "approval_reused", "already used")
	// Self-approval, by approver and by sender.
	b.request("apr_self", agent, "e7", crm, contact, newMail)
	b.want(Service, b.decide("apr_self", "approve", agent, agent, false), "self_approved", agent)
	b.request("apr_self2", agent, "e7", crm, contact, newMail)
	b.want(Service, b.decide("apr_self2", "reject", alice, agent, false), "self_approved", "sent by")
	// An auto policy's approval (its name is the approver): clean.
	b.request("apr_auto", agent, "e8", "Sandbox eu", "row 1", "x")
	b.decide("apr_auto", "approve", "sandbox-auto", "", true)
	b.write(Service, "apr_auto", "e8", "Sandbox eu", "row 1", "x")
	// Written before its decision; a decision naming another request.
	b.request("apr_early", agent, "e9", crm, contact, newMail)
	b.want(Service, b.write(Service, "apr_early", "e9", crm, contact, newMail), mm, "before its decision")
	b.decide("apr_early", "approve", alice, alice, false)
	b.request("apr_hash", agent, "e9", crm, contact, newMail)
	b.decideHash("apr_hash", "approve", alice, alice, false, "0000000000000000000000000000000000000000000000000000000000000000")
	b.want(Service, b.write(Service, "apr_hash", "e9", crm, contact, newMail), mm, "request_hash")
	// An agent forges the service's entries: flagged reserved_key, ignored.
	forged := base("request_approval", "e10", crm, contact, s(newMail))
	forged.Attributes = `{"` + entry.AttrApprovalID + `":"apr_forged"}`
	forged.Validation = s(`[{"field":"` + entry.AttrApprovalID + `","problem":"reserved_key","detail":"reserved for the collector, supplied by the sender; kept in attributes, not trusted"}]`)
	b.add(Service, forged)
	forged.ActionType, forged.Approver = "approve", s(alice)
	b.add(Service, forged)
	b.want(Service, b.write(Service, "apr_forged", "e10", crm, contact, newMail), mm, "names no request")

	// Across chains: approved in the service's chain, written in another.
	b.request("apr_x", agent, "e11", crm, contact, newMail)
	b.decide("apr_x", "approve", alice, alice, false)
	b.write(Other, "apr_x", "e11", crm, contact, newMail)
	b.write(Other, "", "e11", crm, contact, newMail) // no policy in force in this chain
	b.want(Other, b.write(Other, "apr_x", "e11", crm, contact, newMail), "approval_reused", "already used")
	b.want(Other, b.write(Other, "apr_ok", "e1", crm, contact, newMail), "approval_reused", `chain "svc"`)

	// A later policy entry replaces the policies in force.
	b.policy(policies[1])
	b.write(Service, "", "e12", crm, "Contact #3", newMail)
	b.want(Service, b.write(Service, "", "e12", "Sandbox us", "row 2", "y"), "unapproved_write", `"sandbox-auto"`)
	return b.t
}
