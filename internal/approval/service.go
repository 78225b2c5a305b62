// Package approval is the approval service (docs/APPROVALS.md): an agent
// asks before an important action, a reviewer decides, and the service
// records the request and the decision in the trail itself, the decision
// with the reviewer's authenticated identity and the hash of the request
// it decides.
//
// The service keeps each approval in a file of its own under its state
// directory (state.go) and writes its entries through a Recorder, the
// exporter's chain: an answer is given only once the entry is durable, and
// the state file saved after it. A crash between the two leaves a request
// entry in the trail that the service has forgotten: the agent had no
// answer and asks again; the trail shows one request that was never
// decided.
//
// Its parts: the service and its ticks (this file: the policy entry,
// expiry, automatic approvals, history), requests (request.go), decisions
// (decide.go), reads and long polls (read.go), the state on disk
// (state.go), the runs' timelines (timeline.go), the HTTP API and the
// inbox (http.go).
//
// It knows entries, not spans: the exporter builds each entry from an
// Event (Builder), through the same mapping as spans, and tells it who
// sent a request (Identify) through the collector's auth extensions.
package approval // import "github.com/agentaudit/agentaudit/internal/approval"

import (
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Recorder appends entries to the trail and returns once they are
// durable, with their chain id, seq and entry hash set. An error that the
// client may retry later is an *UnavailableError.
type Recorder interface {
	Record(entries []entry.Entry) error
}

// UnavailableError is a refusal of the trail that passes: the spool is
// full, the collector is shutting down.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// EventKind is what an entry the service writes records.
type EventKind int

// The entries of docs/APPROVALS.md, "The entries the service writes".
const (
	EventPolicy EventKind = iota
	EventRequest
	EventDecision
	EventExpiry
)

// Event is what the Builder makes an entry of.
type Event struct {
	Kind EventKind
	At   time.Time
	// Approval is the approval requested, decided or expired (nil for
	// EventPolicy); for EventDecision and EventExpiry its Decision is set.
	Approval *Approval
	// Policies, Reviewers and Endpoint are the policy entry's.
	Policies  []approvalpolicy.Policy
	Reviewers []string
	Endpoint  string
	// Sender is the authenticated identity whose action this is (the
	// requester, the reviewer), or nil.
	Sender *string
}

// Builder maps an event to the entry that records it.
type Builder func(Event) entry.Entry

// Identity is who sent an HTTP request, as the auth extension and the
// exporter's senders say: ID is "" when the request named no one; Attr
// reads the auth extension's attributes (nil without any).
type Identity struct {
	ID   string
	Attr func(name string) any
}

// Claim is a claim of the auth extension that makes a reviewer.
type Claim struct{ Name, Value string }

// Config is what the service is given.
type Config struct {
	ChainID       string
	StateDir      string
	Endpoint      string // for the policy entry
	Policies      []approvalpolicy.Policy
	Reviewers     []string
	ReviewerClaim *Claim
	DefaultExpiry time.Duration
	MaxExpiry     time.Duration
	// MaxWait bounds a long poll.
	MaxWait time.Duration
	// Tick is how often expiries and retries are looked at; 0 is 1s.
	Tick time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Count is told what happens, for the collector's metrics: "requested",
	// "approve", "reject", "expire", "auto_approve" (each recorded), and
	// "self_approval_refused". It must be cheap; nil counts nothing.
	Count func(what string)
}

// Service is the approval service. New, Start, Handler, Shutdown.
type Service struct {
	cfg    Config
	rec    Recorder
	build  Builder
	logger *zap.Logger
	state  stateDir
	now    func() time.Time

	// mu guards the approvals and is held while their entries are
	// recorded, so that an approval is decided once: approvals arrive at
	// the pace of people, not of spans.
	mu      sync.Mutex
	byID    map[string]*Approval
	byKey   map[string]string        // requester and idempotency key → id
	changed map[string]chan struct{} // closed when the approval changes
	policy  bool                     // the policy entry is recorded

	timeline *timelines
	warned   map[string]time.Time // when each kind of retried failure was last logged (under mu)

	cpMu   sync.Mutex
	cpSize int64 // the newest checkpoint not yet applied to approvals
	cpNote []byte
	cpWake chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a service over cfg, recording through rec with build.
func New(cfg Config, rec Recorder, build Builder, logger *zap.Logger) *Service {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Count == nil {
		cfg.Count = func(string) {}
	}
	return &Service{
		cfg: cfg, rec: rec, build: build, logger: logger,
		state: stateDir{cfg.StateDir}, now: now,
		byID: map[string]*Approval{}, byKey: map[string]string{}, changed: map[string]chan struct{}{}, warned: map[string]time.Time{},
		timeline: newTimelines(maxTimelineExecutions, maxTimelineEntries),
		cpWake:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
}

// Start loads the approvals an earlier run left, records the policy entry
// (or keeps trying, refusing requests meanwhile) and starts expiring
// approvals. It fails when the state cannot be read: the service must not
// forget a pending approval.
func (s *Service) Start() error {
	as, err := s.state.load()
	if err != nil {
		return fmt.Errorf("approvals: state in %s: %w", s.cfg.StateDir, err)
	}
	s.mu.Lock()
	for _, a := range as {
		s.byID[a.ID] = a
		if a.IdempotencyKey != "" {
			s.byKey[idemKey(a.Requester, a.IdempotencyKey)] = a.ID
		}
	}
	s.mu.Unlock()
	s.tick() // the policy entry, and what expired while the collector was down
	s.wg.Add(2)
	go s.run()
	go s.applyCheckpoints()
	return nil
}

// Shutdown stops the service's goroutines and wakes every long poll, which
// answers with the approval as it is.
func (s *Service) Shutdown() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *Service) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.tick()
		}
	}
}

// tick records the policy entry if it is not yet, expires the approvals
// whose time is up, and decides those an auto policy covers whose decision
// could not be recorded with their request.
func (s *Service) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.policy {
		if err := s.recordPolicyLocked(); err != nil {
			s.warnLocked("policy", "Cannot record the approval policy entry yet; approval requests are refused until it is", zap.Error(err))
			return
		}
	}
	now := s.now()
	for id, a := range s.byID {
		if a.Status != Pending {
			s.forgetLocked(id, a, now)
			continue
		}
		auto := s.autoPolicy(a)
		switch {
		case !now.Before(a.expiresAt()):
			if err := s.expireLocked(a, now); err != nil {
				s.warnLocked("expiry", "Cannot record the expiry of an approval; retrying", zap.String("approval", a.ID), zap.Error(err))
			}
		case auto != nil:
			if err := s.decideLocked(a, "approve", nil, nil, auto, now); err != nil {
				s.warnLocked("auto", "Cannot record an automatic approval; retrying", zap.String("approval", a.ID), zap.Error(err))
			}
		}
	}
}

// warnEvery is how often a failure retried every tick is logged.
const warnEvery = time.Minute

// warnLocked logs a failure the ticks retry, at most once per warnEvery
// for each kind, so that an outage of the trail does not flood the log.
func (s *Service) warnLocked(kind, msg string, fields ...zap.Field) {
	now := time.Now()
	if last, ok := s.warned[kind]; ok && now.Sub(last) < warnEvery {
		return
	}
	s.warned[kind] = now
	s.logger.Warn(msg, fields...)
}

func (s *Service) recordPolicyLocked() error {
	e := s.build(Event{Kind: EventPolicy, At: s.now(), Policies: s.cfg.Policies, Reviewers: s.cfg.Reviewers, Endpoint: s.cfg.Endpoint})
	es := []entry.Entry{e}
	if err := s.rec.Record(es); err != nil {
		return err
	}
	s.timeline.add(es)
	s.policy = true
	return nil
}

// History is how long a decided approval is kept, for its agent's reads
// and the inbox's history; the trail keeps it for good.
const History = 30 * 24 * time.Hour

// forgetLocked drops a, decided, once it is older than History.
func (s *Service) forgetLocked(id string, a *Approval, now time.Time) {
	decided, err := time.Parse(timeFormat, a.Decision.At)
	if err != nil || now.Sub(decided) < History {
		return
	}
	if err := s.state.remove(id); err != nil {
		s.logger.Warn("Cannot remove the state of an old approval", zap.String("approval", id), zap.Error(err))
		return
	}
	delete(s.byID, id)
	if a.IdempotencyKey != "" {
		delete(s.byKey, idemKey(a.Requester, a.IdempotencyKey))
	}
}

// autoPolicy is the auto policy that decides a, or nil.
func (s *Service) autoPolicy(a *Approval) *approvalpolicy.Policy {
	if a.Policy == nil {
		return nil
	}
	for i := range s.cfg.Policies {
		p := &s.cfg.Policies[i]
		if p.Name == *a.Policy && p.Decide == approvalpolicy.DecideAuto {
			return p
		}
	}
	return nil
}
