package approval

// The approvals' state on disk: one JSON file per approval under the
// state directory, replaced whole (internal/atomicfile), so that a crash
// leaves either the old or the new file.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
)

// Status is where an approval stands.
type Status string

// The statuses of docs/APPROVALS.md.
const (
	Pending  Status = "pending"
	Approved Status = "approved"
	Rejected Status = "rejected"
	Expired  Status = "expired"
)

// Ref names an entry of the trail.
type Ref struct {
	ChainID   string `json:"chain_id"`
	Seq       int64  `json:"seq"`
	EntryHash string `json:"entry_hash"`
}

// Decision is how an approval was decided.
type Decision struct {
	// Decision is "approve", "reject" or "expire".
	Decision string  `json:"decision"`
	Approver *string `json:"approver"`
	Auto     bool    `json:"auto"`
	Comment  *string `json:"comment"`
	At       string  `json:"decided_at"`
	Ref
}

// Approval is one approval, as the API shows it and as its state file
// holds it.
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

	Requester   *string `json:"requester"`
	Policy      *string `json:"policy"`
	RequestedAt string  `json:"requested_at"`
	ExpiresAt   string  `json:"expires_at"`

	Request    Ref       `json:"request"`
	Decision   *Decision `json:"decision"`
	Checkpoint *string   `json:"checkpoint"`

	// IdempotencyKey is the requester's key for retries; not shown.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// timeFormat is how times are written: RFC 3339 with nanoseconds, UTC.
const timeFormat = time.RFC3339Nano

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// expiresAt is when a pending approval expires.
func (a *Approval) expiresAt() time.Time {
	t, _ := time.Parse(timeFormat, a.ExpiresAt)
	return t
}

// public is a copy of a for the API: without what only the service keeps.
func (a *Approval) public() Approval {
	c := *a
	c.IdempotencyKey = ""
	return c
}

// stateDir keeps the approvals' files.
type stateDir struct{ dir string }

func (d stateDir) path(id string) string { return filepath.Join(d.dir, id+".json") }

// save writes a's file durably (atomicfile).
func (d stateDir) save(a *Approval) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(d.path(a.ID), b, 0o600)
}

// remove deletes a's file.
func (d stateDir) remove(id string) error {
	if err := os.Remove(d.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// load reads every approval's file. A file that cannot be read is an
// error: the service must not start and forget a pending approval.
func (d stateDir) load() ([]*Approval, error) {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	names, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var out []*Approval
	for _, n := range names {
		name := n.Name()
		if atomicfile.IsTemp(name) {
			os.Remove(filepath.Join(d.dir, name)) // a write cut short: the file it was to replace is intact
			continue
		}
		if !strings.HasSuffix(name, ".json") || !validID(strings.TrimSuffix(name, ".json")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.dir, name))
		if err != nil {
			return nil, err
		}
		a := new(Approval)
		if err := json.Unmarshal(b, a); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(d.dir, name), err)
		}
		if a.ID+".json" != name {
			return nil, fmt.Errorf("%s: holds approval %q", filepath.Join(d.dir, name), a.ID)
		}
		out = append(out, a)
	}
	return out, nil
}
