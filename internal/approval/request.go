package approval

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Requests: an agent asks (POST /v1/approvals), and the approval ids.

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
