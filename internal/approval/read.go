package approval

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Reads: an approval (with a long poll), the reviewers' list and a run's
// timeline, the pending count, and the checkpoints that cover decisions.

// Pending returns how many approvals wait for a decision.
func (s *Service) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.byID {
		if a.Status == Pending {
			n++
		}
	}
	return n
}

// Get returns approval id as who may see it, waiting up to wait while it
// is pending.
func (s *Service) Get(who Identity, id string, wait time.Duration, done <-chan struct{}) (Approval, error) {
	if wait > s.cfg.MaxWait {
		wait = s.cfg.MaxWait
	}
	var timer <-chan time.Time
	for {
		s.mu.Lock()
		a, ok := s.byID[id]
		if !ok || !s.mayRead(who, a) {
			s.mu.Unlock()
			// An approval another agent asked for is as unknown as one
			// never asked for.
			return Approval{}, &apiError{status: 404, msg: fmt.Sprintf("no approval %q", id)}
		}
		if a.Status != Pending || wait <= 0 {
			out := a.public()
			s.mu.Unlock()
			return out, nil
		}
		ch, ok := s.changed[id]
		if !ok {
			ch = make(chan struct{})
			s.changed[id] = ch
		}
		s.mu.Unlock()
		if timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			wait = 0
		case <-done:
			wait = 0
		case <-s.stop:
			wait = 0
		}
	}
}

// List returns the approvals of a status, newest first, for a reviewer.
func (s *Service) List(who Identity, status Status, limit int) ([]Approval, error) {
	if !s.IsReviewer(who) {
		return nil, &apiError{status: 403, msg: "not a reviewer: only reviewers may list approvals"}
	}
	s.mu.Lock()
	var out []Approval
	for _, a := range s.byID {
		if a.Status == status {
			out = append(out, a.public())
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Approval) int {
		if c := strings.Compare(b.RequestedAt, a.RequestedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Context returns the timeline of approval id's execution, for a
// reviewer.
func (s *Service) Context(who Identity, id string) ([]TimelineEntry, error) {
	if !s.IsReviewer(who) {
		return nil, &apiError{status: 403, msg: "not a reviewer: only reviewers may read a run's context"}
	}
	s.mu.Lock()
	a, ok := s.byID[id]
	var exec string
	if ok {
		exec = a.ExecutionID
	}
	s.mu.Unlock()
	if !ok {
		return nil, &apiError{status: 404, msg: fmt.Sprintf("no approval %q", id)}
	}
	return s.timeline.get(exec), nil
}

// Observe notes entries the exporter recorded, for the runs' timelines.
// It is cheap: a lock and a map lookup per entry.
func (s *Service) Observe(entries []entry.Entry) { s.timeline.add(entries) }

// Checkpointed notes a signed checkpoint covering the chain up to size:
// decisions recorded below it are answered with it from now on. It does
// not block (the recorder's sealer calls it).
func (s *Service) Checkpointed(size int64, note []byte) {
	s.cpMu.Lock()
	s.cpSize, s.cpNote = size, note
	s.cpMu.Unlock()
	select {
	case s.cpWake <- struct{}{}:
	default:
	}
}

// applyCheckpoints gives each decided approval the first checkpoint that
// covers its decision entry.
func (s *Service) applyCheckpoints() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.cpWake:
		}
		s.cpMu.Lock()
		size, note := s.cpSize, string(s.cpNote)
		s.cpMu.Unlock()
		s.mu.Lock()
		for _, a := range s.byID {
			d := a.Decision
			if d == nil || a.Checkpoint != nil || d.ChainID != s.cfg.ChainID || d.Seq >= size {
				continue
			}
			a.Checkpoint = &note
			if err := s.state.save(a); err != nil {
				s.logger.Warn("Cannot save an approval's checkpoint", zap.String("approval", a.ID), zap.Error(err))
			}
		}
		s.mu.Unlock()
	}
}
