package approval

import (
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Decisions: who may decide, a reviewer's or an auto policy's decision,
// an expiry, and the entry that ends an approval.

// IsReviewer reports whether who may decide approvals.
func (s *Service) IsReviewer(who Identity) bool {
	if who.ID == "" {
		return false
	}
	if slices.Contains(s.cfg.Reviewers, who.ID) {
		return true
	}
	c := s.cfg.ReviewerClaim
	if c == nil || who.Attr == nil {
		return false
	}
	for _, name := range []string{c.Name, "claims." + c.Name} {
		switch v := who.Attr(name).(type) {
		case string:
			if v == c.Value {
				return true
			}
		case []string:
			if slices.Contains(v, c.Value) {
				return true
			}
		case []any:
			if slices.Contains(v, any(c.Value)) {
				return true
			}
		}
	}
	return false
}

// mayRead reports whether who may read a: its requester, or a reviewer.
func (s *Service) mayRead(who Identity, a *Approval) bool {
	if a.Requester == nil || *a.Requester == who.ID {
		return true
	}
	return s.IsReviewer(who)
}

// Decide records a reviewer's decision, "approve" or "reject".
func (s *Service) Decide(who Identity, id, decision string, comment *string) (Approval, error) {
	if decision != "approve" && decision != "reject" {
		return Approval{}, badRequest(`"decision" %q is not "approve" or "reject"`, decision)
	}
	if !s.IsReviewer(who) {
		return Approval{}, &apiError{status: 403, msg: "not a reviewer: only the identities in \"reviewers\", or with \"reviewer_claim\", may decide"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Approval{}, &apiError{status: 404, msg: fmt.Sprintf("no approval %q", id)}
	}
	if a.Requester != nil && *a.Requester == who.ID {
		s.cfg.Count("self_approval_refused")
		return Approval{}, &apiError{status: 403, msg: "self_approval: the identity that requested an approval may not decide it"}
	}
	now := s.now()
	if a.Status == Pending && !now.Before(a.expiresAt()) {
		if err := s.expireLocked(a, now); err != nil {
			return Approval{}, recordError(err)
		}
	}
	if a.Status != Pending {
		return Approval{}, &apiError{status: 409, msg: fmt.Sprintf("approval %q is %s", id, a.Status)}
	}
	if err := s.decideLocked(a, decision, &who.ID, comment, nil, now); err != nil {
		return Approval{}, recordError(err)
	}
	return a.public(), nil
}

// decideLocked records a's decision: by the reviewer, or by the auto
// policy p.
func (s *Service) decideLocked(a *Approval, decision string, reviewer, comment *string, p *approvalpolicy.Policy, now time.Time) error {
	d := &Decision{Decision: decision, Approver: reviewer, Comment: comment, At: formatTime(now)}
	if p != nil {
		name := p.Name
		d.Approver, d.Auto = &name, true
	}
	return s.closeLocked(a, d, EventDecision, reviewer, now)
}

// expireLocked records that a expired undecided.
func (s *Service) expireLocked(a *Approval, now time.Time) error {
	return s.closeLocked(a, &Decision{Decision: "expire", At: formatTime(now)}, EventExpiry, nil, now)
}

// closeLocked records the entry that ends a, and a's new state.
func (s *Service) closeLocked(a *Approval, d *Decision, kind EventKind, sender *string, now time.Time) error {
	next := *a
	next.Decision = d
	es := []entry.Entry{s.build(Event{Kind: kind, At: now, Approval: &next, Sender: sender})}
	if err := s.rec.Record(es); err != nil {
		return err
	}
	s.timeline.add(es)
	d.Ref = Ref{ChainID: es[0].ChainID, Seq: es[0].Seq, EntryHash: es[0].EntryHash}
	what := d.Decision
	if d.Auto {
		what = "auto_approve"
	}
	s.cfg.Count(what)
	switch d.Decision {
	case "approve":
		next.Status = Approved
	case "reject":
		next.Status = Rejected
	default:
		next.Status = Expired
	}
	*a = next
	if err := s.state.save(a); err != nil {
		s.logger.Error("Cannot save an approval's state; its decision is recorded in the trail but a restart will forget it", zap.String("approval", a.ID), zap.Error(err))
	}
	if ch, ok := s.changed[a.ID]; ok {
		close(ch)
		delete(s.changed, a.ID)
	}
	return nil
}
