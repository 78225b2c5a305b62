// Package review answers the questions reviewers ask of a trail: which runs
// there are and in what state, what one run did step by step, and whether the
// records behind the answer are intact and signed.
//
// The run status is a contract (README, "Run status"), defined once, in SQL,
// in runs.sql, which every view uses and which an auditor can run in DuckDB
// by hand. The query engine is DuckDB (github.com/duckdb/duckdb-go), over
// local copies of the batch files that can hold the answer
// (internal/trailcache). It needs cgo: the files that use it build only with
// cgo, so that the collector and `auditctl verify` never link it. This file
// and the rendering code are plain Go.
package review // import "github.com/agentaudit/agentaudit/internal/review"

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/agentaudit/agentaudit/internal/verify"
)

// Status is a run's state, derived from its entries (README, "Run status").
type Status string

// The statuses, in the order a run list shows them.
const (
	StatusInProgress       Status = "in_progress"
	StatusAwaitingApproval Status = "awaiting_approval"
	StatusCompleted        Status = "completed"
	StatusFailed           Status = "failed"
	StatusAbandoned        Status = "abandoned"
)

// Statuses lists every status.
var Statuses = []Status{StatusInProgress, StatusAwaitingApproval, StatusCompleted, StatusFailed, StatusAbandoned}

// DefaultAbandonAfter is how long a run without an end entry may go without
// any entry before it counts as abandoned.
const DefaultAbandonAfter = 24 * time.Hour

// Run is one execution: one line of `auditctl runs`. Times are UTC.
type Run struct {
	ExecutionID string `json:"execution_id"`
	// Agent is the run's agent by the documented rule: the first
	// agent_name of the run, else its first agent_id, else its first
	// service_name (first in step order); null when none is set.
	Agent       *string `json:"agent"`
	AgentID     *string `json:"agent_id"`
	AgentName   *string `json:"agent_name"`
	ServiceName *string `json:"service_name"`
	// Principal is the first principal (enduser.id) of the run.
	Principal *string `json:"principal"`
	Status    Status  `json:"status"`
	// Start is the time of the run's first start entry, else of its first
	// entry. End is set when the run is completed or failed: the end time
	// of the entry that decided it.
	Start time.Time  `json:"start"`
	End   *time.Time `json:"end"`
	// LastActivity is the latest end (or start) time of any entry.
	LastActivity time.Time `json:"last_activity"`
	// DurationMS is End - Start in milliseconds; null without an End.
	DurationMS *float64 `json:"duration_ms"`
	// Entries counts every entry; Actions those that are neither start nor
	// end; Errors those with an error (action error, status Error or a
	// result starting with "error").
	Entries          int64 `json:"entries"`
	Actions          int64 `json:"actions"`
	Errors           int64 `json:"errors"`
	Approvals        int64 `json:"approvals"` // approve entries
	Rejections       int64 `json:"rejections"`
	ApprovalRequests int64 `json:"approval_requests"`
	// PendingApprovals counts request_approval entries with no later
	// approve or reject for the same target.
	PendingApprovals int64 `json:"pending_approvals"`
	// AfterEnd counts entries later than the run's deciding end entry;
	// they do not change its status.
	AfterEnd int64 `json:"after_end"`
	// Chains are the chains holding the run's entries.
	Chains []string `json:"chains"`
	// Intact is false when a file holding the run's entries failed
	// verification (the run's own entries or others); Violations counts
	// the violations of those files.
	Intact     bool `json:"intact"`
	Violations int  `json:"violations"`
}

// Step is one entry of a run's timeline: every column of the entry, by its
// column name, plus its duration and nesting depth.
type Step struct {
	Timestamp       time.Time `json:"timestamp"`
	TimeUnixNano    int64     `json:"time_unix_nano"`
	EndTimeUnixNano *int64    `json:"end_time_unix_nano"`
	ChainID         string    `json:"chain_id"`
	Seq             int64     `json:"seq"`
	ExecutionID     string    `json:"execution_id"`
	TraceID         string    `json:"trace_id"`
	SpanID          string    `json:"span_id"`
	ParentSpanID    *string   `json:"parent_span_id"`
	AgentID         *string   `json:"agent_id"`
	AgentName       *string   `json:"agent_name"`
	ServiceName     *string   `json:"service_name"`
	Principal       *string   `json:"principal"`
	Sender          *string   `json:"sender"`
	ActionType      string    `json:"action_type"`
	TargetSystem    string    `json:"target_system"`
	TargetResource  string    `json:"target_resource"`
	ProposedValue   *string   `json:"proposed_value"`
	PreviousValue   *string   `json:"previous_value"`
	Reasoning       *string   `json:"reasoning"`
	Approver        *string   `json:"approver"`
	Result          string    `json:"result"`
	StatusCode      string    `json:"status_code"`
	Attributes      string    `json:"attributes"`
	Validation      *string   `json:"validation"`
	PrevHash        string    `json:"prev_hash"`
	EntryHash       string    `json:"entry_hash"`

	// DurationMS is end_time_unix_nano - time_unix_nano in milliseconds;
	// null for a v1 entry (no end time) or an end before the start.
	DurationMS *float64 `json:"duration_ms"`
	// Depth is the nesting level: 0 for a step whose parent span is not a
	// step of the run, else its parent's depth + 1.
	Depth int `json:"depth"`
	// File is the batch file holding the entry, below the target.
	File string `json:"file"`
	// Violations are what verification found wrong with this entry.
	Violations []verify.Violation `json:"violations,omitempty"`
}

// Timeline is one run in detail: `auditctl show`.
type Timeline struct {
	ExecutionID string    `json:"execution_id"`
	Status      Status    `json:"status"`
	Run         Run       `json:"run"`
	Steps       []Step    `json:"steps"`
	Integrity   Integrity `json:"integrity"`
}

// Integrity is what verification says of the files an answer came from.
type Integrity struct {
	// Intact: every file checked is intact on its own, consecutive files
	// of a chain link, and each batch's signed checkpoint verifies and
	// matches its file.
	Intact     bool               `json:"intact"`
	Violations []verify.Violation `json:"violations"`
	// Checkpoint is the signed checkpoint covering the answer's latest
	// entry (the one sealed with its batch); null when none verified.
	Checkpoint *Checkpoint `json:"checkpoint"`
	// Checkpoints are the checkpoints of every batch checked.
	Checkpoints []Checkpoint `json:"checkpoints"`
	// Files are the batch files checked.
	Files []string `json:"files"`
	// Proven are the files of Files whose entries in the answer were
	// proven against the signed checkpoint sealed with them: each entry
	// hashes to its entry_hash, and the file's entry hashes, seq first to
	// last, give the Merkle root the checkpoint signs. The other entries
	// of these files are not recomputed (auditctl verify does); the other
	// files were verified whole.
	Proven []string `json:"proven"`
	// Ranges are the seq ranges of the answer's entries, per chain.
	Ranges []SeqRange `json:"ranges"`
	// Command re-verifies the whole trail, for the record.
	Command string `json:"command"`
	// Notes are caveats: batches without a checkpoint, chains without a key.
	Notes []string `json:"notes"`
	// TrustedOnFirstUse: the checkpoints were checked with the keys
	// published beside the trail, not with keys the reviewer gave.
	TrustedOnFirstUse bool `json:"trusted_on_first_use"`
}

// SeqRange is the range of seqs of one chain that an answer spans.
type SeqRange struct {
	ChainID  string `json:"chain_id"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
}

// IsProven reports whether the answer's entries in file were proven (a
// file of Proven).
func (i Integrity) IsProven(file string) bool { return slices.Contains(i.Proven, file) }

// Checkpoint is a signed checkpoint that verified.
type Checkpoint struct {
	ChainID    string `json:"chain_id"`
	Size       int64  `json:"size"`
	Head       string `json:"head"`
	BatchFirst int64  `json:"batch_first"`
	BatchLast  int64  `json:"batch_last"`
	BatchRoot  string `json:"batch_root"`
	// KeyName and KeyID name the key whose signature verified; Key is
	// the verifier key.
	KeyName string `json:"key_name"`
	KeyID   string `json:"key_id"`
	Key     string `json:"key"`
	// Object is where it is stored below the target; Text the note, verbatim.
	Object string `json:"object"`
	Text   string `json:"text"`
}

// Filter selects runs. Empty fields select everything.
type Filter struct {
	Statuses []Status
	// Agent matches a run any of whose entries has this agent_id,
	// agent_name or service_name.
	Agent string
	// Since and Until select runs with an entry whose time is in
	// [Since, Until).
	Since, Until *time.Time
	Approver     string // a run any of whose entries has this approver
	TargetSystem string // a run any of whose entries has this target_system
	// Text matches, case-insensitively, a run whose execution id, agent,
	// principal, sender, target, approver or any value contains it.
	Text string
}

// Reviewer is what the web view and the CLI ask. Runs returns the runs
// matching f, newest start first, and the integrity of the files read;
// Timeline one run (ErrNoRun when the trail has no entry of it).
type Reviewer interface {
	Runs(ctx context.Context, f Filter) ([]Run, Integrity, error)
	Timeline(ctx context.Context, executionID string) (*Timeline, error)
	// Target names the trail, e.g. "s3://bucket/prefix" or a directory.
	Target() string
}

// ErrNoRun: the trail holds no entry of the execution asked for.
var ErrNoRun = errors.New("review: no entry of this execution")
