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
// It knows entries, not spans: the exporter builds each entry from an
// Event (Builder), through the same mapping as spans, and tells it who
// sent a request (Identify) through the collector's auth extensions.
package approval // import "github.com/agentaudit/agentaudit/internal/approval"

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
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
		switch {
		case !now.Before(a.expiresAt()):
			if err := s.expireLocked(a, now); err != nil {
				s.warnLocked("expiry", "Cannot record the expiry of an approval; retrying", zap.String("approval", a.ID), zap.Error(err))
			}
		case s.autoPolicy(a) != nil:
			if err := s.decideLocked(a, "approve", nil, nil, s.autoPolicy(a), now); err != nil {
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

// RequestInput is what an agent asks for (POST /v1/approvals).
type RequestInput struct {
	ExecutionID    *string `json:"execution_id"`
	TargetSystem   *string `json:"target_system"`
	TargetResource *string `json:"target_resource"`
	ProposedValue  *string `json:"proposed_value"`
	PreviousValue  *string `json:"previous_value"`
	Reasoning      *string `json:"reasoning"`
	Tool           *string `json:"tool"`
	AgentID        *string `json:"agent_id"`
	AgentName      *string `json:"agent_name"`
	ServiceName    *string `json:"service_name"`
	Principal      *string `json:"principal"`
	TraceID        string  `json:"trace_id"`
	SpanID         string  `json:"span_id"`
	ExpiresIn      string  `json:"expires_in"`
	IdempotencyKey string  `json:"idempotency_key"`
}

// apiError is an answer other than success: its HTTP status and message.
type apiError struct {
	status     int
	msg        string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: 400, msg: fmt.Sprintf(format, args...)}
}

// recordError is what a failure to record answers: 503 when it passes.
func recordError(err error) error {
	if ue := (*UnavailableError)(nil); errors.As(err, &ue) {
		return &apiError{status: 503, msg: ue.Error(), retryAfter: 5 * time.Second}
	}
	return &apiError{status: 500, msg: err.Error()}
}

// maxIdempotencyKey bounds an idempotency key.
const maxIdempotencyKey = 256

// Request records a new approval request by who; it returns the approval
// and true, or the earlier one of the same idempotency key and false.
func (s *Service) Request(who Identity, in RequestInput) (Approval, bool, error) {
	var requester *string
	if who.ID != "" {
		requester = &who.ID
	}
	switch {
	case in.ExecutionID == nil || *in.ExecutionID == "":
		return Approval{}, false, badRequest(`"execution_id" is required`)
	case in.TargetSystem == nil || *in.TargetSystem == "":
		return Approval{}, false, badRequest(`"target_system" is required`)
	case in.TargetResource == nil:
		return Approval{}, false, badRequest(`"target_resource" is required (it may be "")`)
	case in.TraceID != "" && !isHex(in.TraceID, 32):
		return Approval{}, false, badRequest(`"trace_id" %q is not 32 hex digits`, in.TraceID)
	case in.SpanID != "" && !isHex(in.SpanID, 16):
		return Approval{}, false, badRequest(`"span_id" %q is not 16 hex digits`, in.SpanID)
	case in.SpanID != "" && in.TraceID == "":
		return Approval{}, false, badRequest(`"span_id" needs "trace_id": it names a span of that trace`)
	case len(in.IdempotencyKey) > maxIdempotencyKey:
		return Approval{}, false, badRequest(`"idempotency_key" is longer than %d bytes`, maxIdempotencyKey)
	}
	life := s.cfg.DefaultExpiry
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d <= 0 {
			return Approval{}, false, badRequest(`"expires_in" %q is not a positive duration such as "15m"`, in.ExpiresIn)
		}
		if d > s.cfg.MaxExpiry {
			return Approval{}, false, badRequest(`"expires_in" %s is past the longest allowed, %s`, d, s.cfg.MaxExpiry)
		}
		life = d
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if in.IdempotencyKey != "" {
		if id, ok := s.byKey[idemKey(requester, in.IdempotencyKey)]; ok {
			a := s.byID[id]
			if field := a.differs(in); field != "" {
				return Approval{}, false, &apiError{status: 409, msg: fmt.Sprintf(`"idempotency_key" %q was used for approval %s, whose %q differs: use a new key for another request`, in.IdempotencyKey, id, field)}
			}
			return a.public(), false, nil
		}
	}
	if !s.policy {
		return Approval{}, false, &apiError{status: 503, msg: "the approval service has not recorded its policies yet; retry later", retryAfter: s.cfg.Tick}
	}
	now := s.now()
	id := newID()
	a := &Approval{
		ID: id, Status: Pending,
		ExecutionID: *in.ExecutionID, TargetSystem: *in.TargetSystem, TargetResource: *in.TargetResource,
		ProposedValue: in.ProposedValue, PreviousValue: in.PreviousValue, Reasoning: in.Reasoning,
		Tool: in.Tool, AgentID: in.AgentID, AgentName: in.AgentName, ServiceName: in.ServiceName, Principal: in.Principal,
		TraceID: strings.ToLower(in.TraceID), SpanID: strings.ToLower(in.SpanID),
		Requester: requester, RequestedAt: formatTime(now), ExpiresAt: formatTime(now.Add(life)),
		IdempotencyKey: in.IdempotencyKey,
	}
	if a.TraceID == "" {
		sum := sha256.Sum256([]byte("agentaudit.approval\x00" + id))
		a.TraceID = hex.EncodeToString(sum[:16])
	}
	tool := a.TargetSystem
	if a.Tool != nil {
		tool = *a.Tool
	}
	if p, ok := approvalpolicy.First(s.cfg.Policies, a.TargetSystem, a.TargetResource, tool); ok {
		name := p.Name
		a.Policy = &name
	}
	es := []entry.Entry{s.build(Event{Kind: EventRequest, At: now, Approval: a, Sender: requester})}
	if err := s.rec.Record(es); err != nil {
		return Approval{}, false, recordError(err)
	}
	s.timeline.add(es)
	s.cfg.Count("requested")
	a.Request = Ref{ChainID: es[0].ChainID, Seq: es[0].Seq, EntryHash: es[0].EntryHash}
	s.byID[id] = a
	if a.IdempotencyKey != "" {
		s.byKey[idemKey(requester, a.IdempotencyKey)] = id
	}
	if p := s.autoPolicy(a); p != nil {
		// Should this fail, the next tick decides it.
		if err := s.decideLocked(a, "approve", nil, nil, p, now); err != nil {
			s.logger.Warn("Cannot record an automatic approval yet; retrying", zap.String("approval", id), zap.Error(err))
		}
	}
	if err := s.state.save(a); err != nil {
		s.logger.Error("Cannot save an approval's state; it is recorded in the trail but a restart will forget it", zap.String("approval", id), zap.Error(err))
	}
	return a.public(), true, nil
}

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

// differs names the first field of the action in that a does not hold, or
// "" when in asks for a's action again.
func (a *Approval) differs(in RequestInput) string {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	switch {
	case !eq(&a.ExecutionID, in.ExecutionID):
		return "execution_id"
	case !eq(&a.TargetSystem, in.TargetSystem):
		return "target_system"
	case !eq(&a.TargetResource, in.TargetResource):
		return "target_resource"
	case !eq(a.ProposedValue, in.ProposedValue):
		return "proposed_value"
	case !eq(a.PreviousValue, in.PreviousValue):
		return "previous_value"
	}
	return ""
}

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

func idemKey(requester *string, key string) string {
	if requester == nil {
		return "\x00" + key
	}
	return *requester + "\x00" + key
}

// newID returns a new approval id: "apr_" and 26 base32 characters of 16
// random bytes.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "apr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// validID reports whether id has the shape newID gives.
func validID(id string) bool {
	rest, ok := strings.CutPrefix(id, "apr_")
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
