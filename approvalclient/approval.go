package approvalclient

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Status is where an approval stands.
type Status string

// The statuses of docs/APPROVALS.md. Pending is the only one that changes.
const (
	Pending  Status = "pending"
	Approved Status = "approved"
	Rejected Status = "rejected"
	Expired  Status = "expired"
)

// Request is what an agent asks approval for (POST /v1/approvals).
// ExecutionID and TargetSystem are required; TargetResource may be "".
// The values are pointers because the trail tells null from "": pass
// exactly what the write will set as audit.value.proposed and
// audit.value.previous (nil for none).
type Request struct {
	ExecutionID    string
	TargetSystem   string
	TargetResource string
	ProposedValue  *string
	PreviousValue  *string
	Reasoning      string

	// Tool is the tool's name, which policies may match on.
	Tool string
	// AgentID, AgentName, ServiceName and Principal say who asks for whom,
	// as gen_ai.agent.id, gen_ai.agent.name, service.name and enduser.id
	// do on spans.
	AgentID, AgentName, ServiceName, Principal string

	// TraceID and SpanID (hex) place the request entry in the agent's
	// trace. When both are empty, Client.Request takes them from the span
	// in its ctx, if any.
	TraceID, SpanID string

	// ExpiresIn is how long the request may wait for a decision; 0 is the
	// service's default. The service refuses more than its maximum.
	ExpiresIn time.Duration

	// IdempotencyKey makes retries safe: a second request with the same
	// key (by the same requester) returns the first approval. When empty,
	// Client.Request generates one for its retries; set one yourself to
	// survive a restart of the agent between asking and hearing back.
	IdempotencyKey string
}

// Approval is an approval as the service shows it
// (GET /v1/approvals/{id}).
type Approval struct {
	ID     string `json:"id"`
	Status Status `json:"status"`

	ExecutionID    string  `json:"execution_id"`
	TargetSystem   string  `json:"target_system"`
	TargetResource string  `json:"target_resource"`
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

	// Requester is the agent's authenticated identity (nil without auth).
	Requester *string `json:"requester"`
	// Policy is the policy that matched the action, if any.
	Policy      *string   `json:"policy"`
	RequestedAt time.Time `json:"requested_at"`
	ExpiresAt   time.Time `json:"expires_at"`

	// Request is the trail entry of the request.
	Request EntryRef `json:"request"`
	// Decision is nil while pending.
	Decision *Decision `json:"decision"`
	// Checkpoint is the signed checkpoint note covering the decision
	// entry, once its batch is sealed.
	Checkpoint *string `json:"checkpoint"`
}

// EntryRef names an entry of the trail.
type EntryRef struct {
	ChainID   string `json:"chain_id"`
	Seq       int64  `json:"seq"`
	EntryHash string `json:"entry_hash"`
}

// Decision is how an approval was decided, and the entry recording it.
type Decision struct {
	// Decision is "approve", "reject" or "expire".
	Decision string `json:"decision"`
	// Approver is the reviewer's authenticated identity, or the name of
	// the auto policy that approved; nil when expired.
	Approver  *string   `json:"approver"`
	Auto      bool      `json:"auto"`
	Comment   *string   `json:"comment"`
	DecidedAt time.Time `json:"decided_at"`
	EntryRef
}

// Approved reports whether the action may go ahead.
func (a *Approval) Approved() bool { return a != nil && a.Status == Approved }

// Err is nil when a is approved, and otherwise says why the action must
// not go ahead: an error wrapping ErrRejected, ErrExpired or ErrPending
// (check with errors.Is).
func (a *Approval) Err() error {
	if a == nil {
		return errors.New("approvalclient: no approval")
	}
	switch a.Status {
	case Approved:
		return nil
	case Rejected:
		by, comment := "", ""
		if a.Decision != nil {
			if a.Decision.Approver != nil {
				by = " by " + *a.Decision.Approver
			}
			if a.Decision.Comment != nil {
				comment = fmt.Sprintf(" (%q)", *a.Decision.Comment)
			}
		}
		return fmt.Errorf("approval %s rejected%s%s: %w", a.ID, by, comment, ErrRejected)
	case Expired:
		return fmt.Errorf("approval %s expired at %s undecided: %w", a.ID, a.ExpiresAt.Format(time.RFC3339), ErrExpired)
	case Pending:
		return fmt.Errorf("approval %s: %w", a.ID, ErrPending)
	default:
		return fmt.Errorf("approval %s has status %q, which this client does not know", a.ID, a.Status)
	}
}

// Errors of a decision, from Approval.Err; check with errors.Is.
var (
	ErrRejected = errors.New("rejected")
	ErrExpired  = errors.New("expired")
	ErrPending  = errors.New("still pending")
)

// Errors of the API, matched by an *APIError of that HTTP status; check
// with errors.Is.
var (
	ErrBadRequest   = errors.New("bad request")         // 400
	ErrUnauthorized = errors.New("not authenticated")   // 401
	ErrForbidden    = errors.New("forbidden")           // 403
	ErrNotFound     = errors.New("no such approval")    // 404
	ErrConflict     = errors.New("no longer pending")   // 409
	ErrTooLarge     = errors.New("request too large")   // 413
	ErrUnavailable  = errors.New("service unavailable") // 503, and any 5xx
)

// APIError is an answer of the service that retrying cannot change (or,
// for Status 503, the last one when ctx ended): its HTTP status and the
// message of its {"error": "..."} body.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("approval service: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Is matches the sentinel of e's status.
func (e *APIError) Is(target error) bool {
	switch e.Status {
	case http.StatusBadRequest:
		return target == ErrBadRequest
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrForbidden
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrConflict
	case http.StatusRequestEntityTooLarge:
		return target == ErrTooLarge
	}
	return e.Status >= 500 && target == ErrUnavailable
}
