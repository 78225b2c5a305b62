package web

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentaudit/agentaudit/internal/review"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// fakeReviewer answers from fixed timelines and records every Filter it
// is asked with.
type fakeReviewer struct {
	target    string
	timelines []*review.Timeline // newest start first
	integrity review.Integrity   // of Runs
	fail      error              // when set, Runs and Timeline fail with it

	mu      sync.Mutex
	filters []review.Filter
}

var errTrailDown = errors.New("s3: GetObject dt=2026-03-09/chain-a.parquet: connection refused")

func (f *fakeReviewer) Target() string { return f.target }

func (f *fakeReviewer) Runs(_ context.Context, flt review.Filter) ([]review.Run, review.Integrity, error) {
	f.mu.Lock()
	f.filters = append(f.filters, flt)
	f.mu.Unlock()
	if f.fail != nil {
		return nil, review.Integrity{}, f.fail
	}
	var runs []review.Run
	for _, tl := range f.timelines {
		if matches(tl, flt) {
			runs = append(runs, tl.Run)
		}
	}
	return runs, f.integrity, nil
}

// matches implements the parts of Filter the tests use: Statuses, Agent
// and Text (case-insensitive, over ids, agent, principal, senders,
// targets, approvers and values).
func matches(tl *review.Timeline, flt review.Filter) bool {
	if len(flt.Statuses) > 0 && !slices.Contains(flt.Statuses, tl.Status) {
		return false
	}
	if flt.Agent != "" && deref(tl.Run.Agent) != flt.Agent {
		return false
	}
	if flt.Text != "" {
		hay := []string{tl.ExecutionID, deref(tl.Run.Agent), deref(tl.Run.Principal)}
		for _, s := range tl.Steps {
			hay = append(hay, deref(s.Sender), s.TargetSystem, s.TargetResource, deref(s.Approver), deref(s.ProposedValue), deref(s.PreviousValue), deref(s.Reasoning), s.Result)
		}
		needle := strings.ToLower(flt.Text)
		found := false
		for _, h := range hay {
			if strings.Contains(strings.ToLower(h), needle) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (f *fakeReviewer) Timeline(_ context.Context, id string) (*review.Timeline, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	for _, tl := range f.timelines {
		if tl.ExecutionID == id {
			return tl, nil
		}
	}
	return nil, review.ErrNoRun
}

func (f *fakeReviewer) lastFilter() review.Filter {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.filters) == 0 {
		return review.Filter{Text: "(Runs was not called)"}
	}
	return f.filters[len(f.filters)-1]
}

func (f *fakeReviewer) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.filters)
}

func sp(s string) *string { return &s }

func fp(f float64) *float64 { return &f }

func tp(t time.Time) *time.Time { return &t }

// Fixture ids. weirdID holds what an id may: a slash, URL syntax, markup,
// NUL, a right-to-left override and non-Latin text.
const (
	idCompleted = "exec-a7f3b2c1"
	idFailed    = "exec-failed-01"
	idProgress  = "exec-progress-01"
	idAwaiting  = "exec-awaiting-01"
	idAbandoned = "exec-abandoned-01"
	idTampered  = "exec-tampered-01"
	idDot       = ".."
	weirdID     = "run/1 ?a=b#frag %2F<script>alert(1)</script>\x00\u202eevil ملف"
)

// Fixture senders: an mTLS client certificate's subject, a bearer token's name.
const (
	senderCRM     = "CN=crm-agent,O=Example Corp"
	senderBilling = "svc-billing"
)

// bigValue is a 1 MiB value with a marker at its very end.
var bigValue = strings.Repeat("0123456789abcdef", 65536-1) + "END-OF-BIG-VALUE"

var t0 = time.Date(2026, 3, 9, 14, 23, 7, 123_000_000, time.UTC)

const noteText = "agentaudit.example/trail/chain-a\n42\nq2Xw3r+Z2c1k8Yb1YpQ0sE2mJqv3dG1lRj6mLrN0xBc=\n\n— agentaudit-test Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==\n"

func intactIntegrity(ranges ...review.SeqRange) review.Integrity {
	cp := review.Checkpoint{
		ChainID: "chain-a", Size: 42, Head: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		BatchFirst: 30, BatchLast: 41, BatchRoot: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
		KeyName: "agentaudit-test", KeyID: "a1b2c3d4", Key: "agentaudit-test+a1b2c3d4+AQID",
		Object: "checkpoints/chain-a/00000000000000000041", Text: noteText,
	}
	return review.Integrity{
		Intact: true, Checkpoint: &cp, Checkpoints: []review.Checkpoint{cp},
		Files:   []string{"dt=2026-03-09/chain-a-00000000000000000030.parquet"},
		Proven:  []string{"dt=2026-03-09/chain-a-00000000000000000030.parquet"},
		Ranges:  ranges,
		Command: "auditctl verify /var/audit-data",
	}
}

// step builds a step of run id at t0+ms.
func step(id string, seq int64, ms int, depth int, action, system, resource, result string) review.Step {
	ts := t0.Add(time.Duration(ms) * time.Millisecond)
	end := ts.Add(250 * time.Millisecond).UnixNano()
	return review.Step{
		Timestamp: ts, TimeUnixNano: ts.UnixNano(), EndTimeUnixNano: &end,
		ChainID: "chain-a", Seq: seq, ExecutionID: id,
		TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b71692033" + string(rune('a'+seq%26)) + "1",
		AgentName: sp("crm-agent"), Principal: sp("jane@example.com"),
		ActionType: action, TargetSystem: system, TargetResource: resource,
		Result: result, StatusCode: "Ok", Attributes: "{}",
		PrevHash:   strings.Repeat("0", 64),
		EntryHash:  strings.Repeat("ab", 32),
		DurationMS: fp(250), Depth: depth,
		File: "dt=2026-03-09/chain-a-00000000000000000030.parquet",
	}
}

func run(id string, status review.Status, start time.Time, end *time.Time, steps []review.Step) review.Run {
	r := review.Run{
		ExecutionID: id, Agent: sp("crm-agent"), AgentName: sp("crm-agent"), Principal: sp("jane@example.com"),
		Status: status, Start: start, End: end, LastActivity: start.Add(time.Minute),
		Entries: int64(len(steps)), Chains: []string{"chain-a"}, Intact: true,
	}
	if end != nil {
		r.DurationMS = fp(float64(end.Sub(start)) / float64(time.Millisecond))
		r.LastActivity = *end
	}
	for _, s := range steps {
		switch s.ActionType {
		case "start", "end":
		default:
			r.Actions++
		}
		switch s.ActionType {
		case "approve":
			r.Approvals++
		case "reject":
			r.Rejections++
		case "request_approval":
			r.ApprovalRequests++
		case "error":
			r.Errors++
		}
	}
	return r
}

func timeline(r review.Run, steps []review.Step, in review.Integrity) *review.Timeline {
	return &review.Timeline{ExecutionID: r.ExecutionID, Status: r.Status, Run: r, Steps: steps, Integrity: in}
}

// fixture is a trail with a run in every status, a tampered run, nested
// steps, a validation array, and hostile values.
func fixture() *fakeReviewer {
	var tls []*review.Timeline

	// The article's example: read a contact, request approval, get it,
	// write, with a nested tool call.
	c := []review.Step{
		step(idCompleted, 0, 0, 0, "start", "crm-agent", "", "ok"),
		step(idCompleted, 1, 100, 1, "read", "HubSpot CRM", "Contact #48291", "200 OK"),
		step(idCompleted, 2, 200, 1, "request_approval", "HubSpot CRM", "Contact #48291 (email field)", "requested"),
		step(idCompleted, 3, 300, 1, "approve", "HubSpot CRM", "Contact #48291 (email field)", "approved"),
		step(idCompleted, 4, 400, 1, "write", "HubSpot CRM", "Contact #48291 (email field)", "200 OK (field updated)"),
		step(idCompleted, 5, 450, 2, "read", "Clearbit", "person/jane", "200 OK"),
		step(idCompleted, 6, 500, 0, "end", "crm-agent", "", "ok"),
	}
	c[3].Approver = sp("ops@company.com")
	c[4].Approver = sp("ops@company.com")
	c[4].PreviousValue = sp("jane@olddomain.com")
	c[4].ProposedValue = sp("jane@newdomain.com")
	c[4].Reasoning = sp("Email bounced; found updated address via Clearbit")
	c[4].Validation = sp(`[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},{"field":"audit.value.proposed","problem":"truncated","original_bytes":70000,"sha256":"ab12"}]`)
	c[5].Validation = sp(`not json at all <b>`)
	// Who sent them, as the collector authenticated it: the agent's client
	// certificate, but the approval request came with another service's
	// token (flagged by the senders policy), and the nested read came
	// unauthenticated.
	for i := range c {
		c[i].Sender = sp(senderCRM)
	}
	c[2].Sender = sp(senderBilling)
	c[2].Validation = sp(`[{"field":"sender","problem":"sender_mismatch","detail":"sender \"svc-billing\" may not write for agent_name \"crm-agent\""}]`)
	c[5].Sender = nil
	rc := run(idCompleted, review.StatusCompleted, t0, tp(t0.Add(750*time.Millisecond)), c)
	rc.Approvals, rc.ApprovalRequests = 1, 1
	tls = append(tls, timeline(rc, c, intactIntegrity(review.SeqRange{ChainID: "chain-a", FirstSeq: 0, LastSeq: 6})))

	f := []review.Step{
		step(idFailed, 7, 1000, 0, "start", "billing-agent", "", "ok"),
		step(idFailed, 8, 1100, 1, "error", "Stripe", "invoice/in_1", "error: card_declined"),
		step(idFailed, 9, 1200, 0, "end", "billing-agent", "", "error"),
	}
	f[1].StatusCode = "Error"
	// The run began on a collector of format version 1 (no end time, no
	// sender column); the rest came from an authenticated sender.
	f[0].EndTimeUnixNano, f[0].DurationMS = nil, nil
	f[1].Sender, f[2].Sender = sp("billing-bot"), sp("billing-bot")
	rf := run(idFailed, review.StatusFailed, t0.Add(-time.Hour), tp(t0.Add(-time.Hour+3*time.Second)), f)
	rf.Agent, rf.AgentName = sp("billing-agent"), sp("billing-agent")
	tls = append(tls, timeline(rf, f, intactIntegrity()))

	p := []review.Step{step(idProgress, 10, 2000, 0, "start", "support-agent", "", "ok")}
	rp := run(idProgress, review.StatusInProgress, t0.Add(-2*time.Hour), nil, p)
	rp.Agent, rp.AgentName = sp("support-agent"), sp("support-agent")
	tls = append(tls, timeline(rp, p, intactIntegrity()))

	a := []review.Step{
		step(idAwaiting, 11, 3000, 0, "start", "crm-agent", "", "ok"),
		step(idAwaiting, 12, 3100, 1, "request_approval", "Salesforce", "Opportunity 9", "requested"),
	}
	ra := run(idAwaiting, review.StatusAwaitingApproval, t0.Add(-3*time.Hour), nil, a)
	ra.PendingApprovals = 1
	tls = append(tls, timeline(ra, a, intactIntegrity()))

	b := []review.Step{step(idAbandoned, 13, 4000, 0, "start", "crm-agent", "", "ok")}
	rb := run(idAbandoned, review.StatusAbandoned, t0.Add(-72*time.Hour), nil, b)
	tls = append(tls, timeline(rb, b, intactIntegrity()))

	// Tampered: a rewritten entry and a missing file.
	v1 := verify.Violation{File: "dt=2026-03-09/chain-a-00000000000000000014.parquet", ChainID: "chain-a", Seq: 15, Kind: verify.HashMismatch, Detail: "entry_hash 00ff… is not the SHA-256 of the row (computed 7a1c…)"}
	v2 := verify.Violation{File: "dt=2026-03-09/chain-a-00000000000000000020.parquet", ChainID: "chain-a", Seq: 17, Through: 19, Kind: verify.MissingFile, Detail: "seq 17 to 19 missing between two files"}
	x := []review.Step{
		step(idTampered, 14, 5000, 0, "start", "payments-agent", "", "ok"),
		step(idTampered, 15, 5100, 1, "write", "Ledger", "konto/DE89", "ok"),
		step(idTampered, 16, 5200, 0, "end", "payments-agent", "", "ok"),
	}
	x[1].ProposedValue = sp("1.234,56 €")
	x[1].Violations = []verify.Violation{v1}
	rx := run(idTampered, review.StatusCompleted, t0.Add(-4*time.Hour), tp(t0.Add(-4*time.Hour+time.Second)), x)
	rx.Intact, rx.Violations = false, 2
	rx.Agent, rx.AgentName = sp("payments-agent"), sp("payments-agent")
	ix := intactIntegrity(review.SeqRange{ChainID: "chain-a", FirstSeq: 14, LastSeq: 16})
	ix.Intact, ix.Checkpoint, ix.Violations = false, nil, []verify.Violation{v1, v2}
	ix.TrustedOnFirstUse = true
	tls = append(tls, timeline(rx, x, ix))

	// Hostile values: markup, NUL, bidi override, 1 MiB.
	w := []review.Step{
		step(weirdID, 20, 6000, 0, "start", "<img src=x onerror=alert(1)>", "", "ok"),
		step(weirdID, 21, 6100, 1, "write", "Files\x00system", "path/\u202egpj.exe", "<script>alert('result')</script>"),
	}
	w[1].ProposedValue = sp(bigValue)
	w[1].PreviousValue = sp("line one\nline two\x00with NUL\u202Eright-to-left\u2066isolate")
	w[1].Reasoning = sp("عربى نص — mixed with English, and a zero width space\u200b.")
	w[1].Approver = sp(`"><script>alert('approver')</script>`)
	w[1].Sender = sp("<script>alert('sender')</script>\u202eCN=x")
	rw := run(weirdID, review.StatusCompleted, t0.Add(-5*time.Hour), tp(t0.Add(-5*time.Hour+time.Second)), w)
	rw.Agent, rw.AgentName = sp("<b>bold agent</b>"), sp("<b>bold agent</b>")
	tls = append(tls, timeline(rw, w, intactIntegrity()))

	d := []review.Step{step(idDot, 22, 7000, 0, "start", "dot-agent", "", "ok")}
	rd := run(idDot, review.StatusCompleted, t0.Add(-6*time.Hour), tp(t0.Add(-6*time.Hour+time.Second)), d)
	tls = append(tls, timeline(rd, d, intactIntegrity()))

	in := intactIntegrity()
	in.Intact, in.Violations = false, []verify.Violation{v1, v2}
	return &fakeReviewer{target: "s3://audit-bucket/prod trail", timelines: tls, integrity: in}
}

// now is the fixed clock of the tests.
func now() time.Time { return t0.Add(90 * time.Minute) }
