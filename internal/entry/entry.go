// Package entry holds the audit entry model: the Entry, the problems its
// validation column records, and the attribute keys and action types of the
// contract agents use.
//
// An Entry is what one row of the audit trail holds. Its fields map one to one
// onto the Parquet columns named in docs/FORMAT.md; the chain package assigns
// ChainID, Seq, PrevHash and EntryHash, everything else comes from the span
// (the mapping is package auditspan).
//
// The package imports no OpenTelemetry package: the verifier an auditor runs
// (cmd/auditctl) depends on it, and on nothing of the collector.
package entry // import "github.com/agentaudit/agentaudit/internal/entry"

// Attribute keys of the contract agents use. They are part of the product's
// public interface: never rename them.
const (
	KeyActionType     = "audit.action.type"
	KeyExecutionID    = "audit.execution.id"
	KeyTargetSystem   = "audit.target.system"
	KeyTargetResource = "audit.target.resource"
	KeyValueProposed  = "audit.value.proposed"
	KeyValuePrevious  = "audit.value.previous"
	KeyReasoning      = "audit.reasoning"
	KeyApprover       = "audit.approver"
	KeyResult         = "audit.result"

	// KeyApprovalID names, on a write, the approval the approval service
	// granted for it (docs/APPROVALS.md). It has no column: it is kept in
	// the attributes column, where verify reads it, and is not flagged as
	// an unknown audit.* key.
	KeyApprovalID = "audit.approval.id"

	// KeyValidation is written by the processor in audit mode: the problems it
	// found and repaired, as the JSON array that lands in the validation column.
	KeyValidation = "audit.validation"

	// KeyPrefix marks every key of the contract; KeyValuePrefix the payload keys
	// that the monitoring pipeline strips along with KeyReasoning.
	KeyPrefix      = "audit."
	KeyValuePrefix = "audit.value."

	KeyAgentID     = "gen_ai.agent.id"
	KeyAgentName   = "gen_ai.agent.name"
	KeyServiceName = "service.name"
	KeyEndUserID   = "enduser.id"
	KeyErrorType   = "error.type"
	KeyHTTPStatus  = "http.response.status_code"

	// KeyToolName is the tool a write called (OpenTelemetry's GenAI
	// conventions), which approval policies match by glob; without it a
	// write's target system is its tool, where framework capture puts it.
	KeyToolName = "gen_ai.tool.name"
)

// IsUnknownAuditKey reports whether k, an attribute key kept in the
// attributes column, starts with KeyPrefix without being one of the
// contract's keys that have no column (KeyApprovalID): the mapping flags
// such a key ProblemUnknownKey.
func IsUnknownAuditKey(k string) bool {
	return len(k) >= len(KeyPrefix) && k[:len(KeyPrefix)] == KeyPrefix && k != KeyApprovalID
}

// The action types the contract names. Other values are kept verbatim and
// flagged in the entry's validation. tool_call is a tool call whose effect
// (read or write) is unknown: what framework capture (internal/capture)
// records when no tool rule names the tool.
var KnownActionTypes = []string{"start", "read", "write", "request_approval", "approve", "reject", "error", "end", "tool_call"}

// IsKnownActionType reports whether s is one of KnownActionTypes.
func IsKnownActionType(s string) bool { return isKnownActionType(s) }

func isKnownActionType(s string) bool {
	switch s {
	case "start", "read", "write", "request_approval", "approve", "reject", "error", "end", "tool_call":
		return true
	}
	return false
}

// DefaultMaxValueBytes is the default limit on one attribute value: longer
// values are truncated and the SHA-256 of the full value is recorded.
const DefaultMaxValueBytes = 64 << 10

// DefaultMaxEntryBytes is the default limit on one entry (see EntryBytes):
// 16 values at the default value limit, so that every column at its own
// limit still fits, while 300 such values (19.5 MB) do not. Past it, the
// largest values are cut (ProblemEntryTruncated).
const DefaultMaxEntryBytes = 1 << 20

// MinMaxEntryBytes is the least limit on one entry the components accept.
// The problems Normalize writes into audit.validation are merged again when
// the exporter maps the span only while they take at most the entry limit
// (an agent could send any text there): 64 KiB is some 400 problems, more
// than a span made by an OpenTelemetry SDK (128 attributes by default) has.
const MinMaxEntryBytes = 64 << 10

// MaxDepth is how deeply attribute values may nest: a top-level value is at
// depth 1, its elements at depth 2. Arrays and maps deeper than this are
// stored empty and flagged ProblemTooDeep.
const MaxDepth = 64

// ReservedActionPrefix starts the action types of the entries the collector
// writes itself, such as ActionLoss. No span can produce one: a span's
// audit.action.type that starts with it (in any letter case) is stored with
// ReservedActionMark in front and flagged ProblemReservedValue.
const (
	ReservedActionPrefix = "agentaudit."
	ReservedActionMark   = "reserved:"

	// ActionLoss is the action type of an entry that records lost data.
	ActionLoss = ReservedActionPrefix + "loss"

	// ActionApprovalPolicy is the action type of the entry the approval
	// service writes at every start: the policies in force in its chain
	// from then on, as approvalpolicy's canonical JSON in proposed_value
	// (docs/APPROVALS.md).
	ActionApprovalPolicy = ReservedActionPrefix + "approval_policy"
	// ActionApprovalExpired is the action type of the entry the approval
	// service writes when a request expires undecided.
	ActionApprovalExpired = ReservedActionPrefix + "approval_expired"
)

// The attributes of the entries the approval service writes
// (docs/APPROVALS.md, "The entries the service writes"). They are in the
// collector's reserved key namespace (ReservedActionPrefix): an agent that
// sets one has it flagged reserved_key, and verify ignores the entry.
const (
	// AttrApprovalPrefix starts every one of them (not KeyApprovalID, the
	// agent's: audit.approval.id).
	AttrApprovalPrefix = ReservedActionPrefix + "approval."

	AttrApprovalID          = AttrApprovalPrefix + "id"           // the approval's id, on its request, decision and expiry
	AttrApprovalRequestHash = AttrApprovalPrefix + "request_hash" // on a decision or expiry: the request's entry_hash
	AttrApprovalExpiresAt   = AttrApprovalPrefix + "expires_at"   // on a request: RFC 3339 with nanoseconds, UTC
	AttrApprovalPolicy      = AttrApprovalPrefix + "policy"       // the policy that matched the request (or decided it, auto)
	AttrApprovalTool        = AttrApprovalPrefix + "tool"         // on a request: the tool, when the agent named it
	AttrApprovalAuto        = AttrApprovalPrefix + "auto"         // "true" on a decision an auto policy made
	AttrApprovalReviewers   = AttrApprovalPrefix + "reviewers"    // on a policy entry: the reviewers, a JSON array
)

// IsReservedActionType reports whether s is in the reserved action-type
// namespace: it starts with ReservedActionPrefix, ASCII letter case ignored.
func IsReservedActionType(s string) bool {
	if len(s) < len(ReservedActionPrefix) {
		return false
	}
	for i := range len(ReservedActionPrefix) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != ReservedActionPrefix[i] {
			return false
		}
	}
	return true
}

// Entry is one audit record. Optional fields are nil when the span did not
// carry them; the Parquet column is then NULL.
type Entry struct {
	TimeUnixNano int64 // span start time, nanoseconds since the Unix epoch, UTC
	// EndTimeUnixNano is the span's end time, nanoseconds since the Unix
	// epoch, UTC. Every entry the collector writes has it (trail format
	// version 2); it is nil only for an entry of format version 1, written
	// before end times were recorded, whose hash is the version 1 encoding
	// (docs/FORMAT.md, "The entry hash").
	EndTimeUnixNano *int64
	ChainID         string
	Seq             int64
	ExecutionID     string
	TraceID         string // 32 lower-case hex digits
	SpanID          string // 16 lower-case hex digits
	ParentSpanID    *string
	AgentID         *string
	AgentName       *string
	ServiceName     *string
	Principal       *string // enduser.id: the person the agent acts for
	Sender          *string // the sender's authenticated identity (SenderOf); nil when unauthenticated, and in a version 1 entry
	ActionType      string
	TargetSystem    string
	TargetResource  string
	ProposedValue   *string
	PreviousValue   *string
	Reasoning       *string
	Approver        *string
	Result          string
	StatusCode      string // "Unset", "Ok" or "Error"; "Code(n)" for another code n
	Attributes      string // the span's other attributes, canonical JSON object
	Validation      *string
	PrevHash        string // 64 lower-case hex digits
	EntryHash       string // 64 lower-case hex digits
}

// Problem is one defect found in an audit span and how it was handled. An
// entry's Validation column holds its problems as a JSON array, sorted by
// Field then Kind, or NULL when there are none.
type Problem struct {
	Field string `json:"field"` // the attribute key, e.g. "audit.target.system"
	Kind  string `json:"problem"`
	// Detail says what was done about it, e.g. "defaulted to trace id".
	Detail string `json:"detail,omitempty"`
	// OriginalBytes and SHA256 describe a value before truncation.
	OriginalBytes int64  `json:"original_bytes,omitempty"`
	SHA256        string `json:"sha256,omitempty"`
}

// Problem kinds.
const (
	ProblemMissing      = "missing"       // a key the contract expects is absent
	ProblemEmpty        = "empty"         // present but empty
	ProblemUnknownValue = "unknown_value" // audit.action.type outside KnownActionTypes
	ProblemNotString    = "not_string"    // converted to its string form
	ProblemInvalidUTF8  = "invalid_utf8"  // repaired: bad bytes replaced by U+FFFD
	ProblemTruncated    = "truncated"     // cut to the limit; OriginalBytes and SHA256 set
	ProblemUnknownKey   = "unknown_key"   // an audit.* key outside the contract, kept in attributes
	ProblemDefaulted    = "defaulted"     // absent and filled from another source
	ProblemInvalidID    = "invalid_id"    // an empty trace or span id

	ProblemEntryTruncated = "entry_truncated" // a value emptied to fit max_entry_bytes; OriginalBytes and SHA256 set
	ProblemTooDeep        = "too_deep"        // arrays and maps nested deeper than MaxDepth stored empty
	ProblemDuplicateKey   = "duplicate_key"   // a key repeated: the first value kept; OriginalBytes and SHA256 of a dropped one
	ProblemNULByte        = "nul_byte"        // a column value holds a NUL byte, kept
	ProblemOutOfRange     = "out_of_range"    // a time past the largest int64, clamped
	ProblemReservedValue  = "reserved_value"  // an action type in the reserved namespace, stored marked
	ProblemBeforeStart    = "before_start"    // an end time before the start time (or unset), stored as given
)

// ProblemSenderMismatch: the authenticated sender may not write for the
// agent the entry names (the exporter's senders policy). The entry is
// recorded as it was sent.
const ProblemSenderMismatch = "sender_mismatch"

// EntryBytes is the size that Options.MaxEntryBytes bounds: the sum of the
// byte lengths of e's text columns from execution_id to validation (the
// columns the span fills; chain_id and the hashes are not counted).
func EntryBytes(e *Entry) int {
	n := len(e.ExecutionID) + len(e.TraceID) + len(e.SpanID) + len(e.ActionType) + len(e.TargetSystem) +
		len(e.TargetResource) + len(e.Result) + len(e.StatusCode) + len(e.Attributes)
	for _, p := range [...]*string{e.ParentSpanID, e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.Sender,
		e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Validation} {
		if p != nil {
			n += len(*p)
		}
	}
	return n
}
