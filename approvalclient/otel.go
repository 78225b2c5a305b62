package approvalclient

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The attribute keys of the contract (README, "The attribute contract";
// docs/APPROVALS.md) that the write span carries.
const (
	KeyActionType     = "audit.action.type"
	KeyExecutionID    = "audit.execution.id"
	KeyTargetSystem   = "audit.target.system"
	KeyTargetResource = "audit.target.resource"
	KeyValueProposed  = "audit.value.proposed"
	KeyValuePrevious  = "audit.value.previous"
	KeyApprovalID     = "audit.approval.id"
)

// Attach names approval a on span (audit.approval.id), for a span that
// sets its other audit.* attributes itself. It does nothing when either
// is nil.
func Attach(span trace.Span, a *Approval) {
	if span == nil || a == nil {
		return
	}
	span.SetAttributes(attribute.String(KeyApprovalID, a.ID))
}

// WriteAttributes are the audit.* attributes of the write that a
// approved, exactly as approved: audit.action.type "write", the
// execution, the target system and resource, the proposed and previous
// values (absent when null) and audit.approval.id. `auditctl verify`
// reports approval_mismatch when a write's execution, target or proposed
// value differs from its approval's, so set these and do not override
// them; add audit.result (and audit.reasoning, if you like) after the
// write.
func WriteAttributes(a *Approval) []attribute.KeyValue {
	if a == nil {
		return nil
	}
	kv := []attribute.KeyValue{
		attribute.String(KeyActionType, "write"),
		attribute.String(KeyExecutionID, a.ExecutionID),
		attribute.String(KeyTargetSystem, a.TargetSystem),
		attribute.String(KeyTargetResource, a.TargetResource),
	}
	if a.ProposedValue != nil {
		kv = append(kv, attribute.String(KeyValueProposed, *a.ProposedValue))
	}
	if a.PreviousValue != nil {
		kv = append(kv, attribute.String(KeyValuePrevious, *a.PreviousValue))
	}
	return append(kv, attribute.String(KeyApprovalID, a.ID))
}
