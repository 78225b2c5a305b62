package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"crypto/sha256"
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// lossEntry is the entry that records, in the trail itself, the loss an
// operator accepted (README, "Recovery"; the recorder's salvage.go decides
// what was lost and renumbered): action type entry.ActionLoss; principal and approver
// the operator; reasoning the operator's reason; target the segment and
// offset; result what was lost and renumbered; attributes the facts as
// agentaudit.loss.* keys. It is mapped from a span, like every entry, so
// that its columns are what the mapping makes of them.
func lossEntry(chainID string, seg wal.Segment, acc *wal.Acceptance, result string) entry.Entry {
	id := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", chainID, seg.Name, seg.Corrupt.Offset)))
	res := pcommon.NewResource()
	res.Attributes().PutStr(entry.KeyServiceName, "agentaudit")
	span := ptrace.NewSpan()
	span.SetName(entry.ActionLoss)
	span.SetTraceID(pcommon.TraceID(id[:16]))
	span.SetSpanID(pcommon.SpanID(id[16:24]))
	span.SetStartTimestamp(pcommon.NewTimestampFromTime(acc.At))
	span.SetEndTimestamp(pcommon.NewTimestampFromTime(acc.At))
	attrs := span.Attributes()
	attrs.PutStr(entry.KeyActionType, "error") // replaced below: no span can carry ActionLoss
	attrs.PutStr(entry.KeyExecutionID, fmt.Sprintf("agentaudit.loss/%s/%d", chainID, seg.FirstSeq))
	attrs.PutStr(entry.KeyTargetSystem, "agentaudit write-ahead log")
	attrs.PutStr(entry.KeyTargetResource, fmt.Sprintf("%s@%d", seg.Name, seg.Corrupt.Offset))
	attrs.PutStr(entry.KeyReasoning, acc.Reason)
	attrs.PutStr(entry.KeyApprover, acc.By)
	attrs.PutStr(entry.KeyEndUserID, acc.By)
	attrs.PutStr(entry.KeyResult, result)
	attrs.PutStr("agentaudit.loss.segment", seg.Name)
	attrs.PutInt("agentaudit.loss.offset", seg.Corrupt.Offset)
	attrs.PutStr("agentaudit.loss.corruption", seg.Corrupt.Reason)
	en := auditspan.FromOwnSpan(res, span, auditspan.Options{}) // its agentaudit.loss.* keys are the collector's own
	en.ActionType = entry.ActionLoss
	return en
}
