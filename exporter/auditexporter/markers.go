package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

// The markers of coverage: the collector writes an entry into its chain
// when it starts (saying how the run before ended) and when it stops
// cleanly, so that an auditor sees when recording was off (issue 18,
// docs/FORMAT.md "Coverage").

import (
	"crypto/sha256"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/recorder"
)

// The action types of the markers, in the collector's reserved namespace
// (entry.ReservedActionPrefix), so that no span can produce one.
const (
	actionRecorderStart = entry.ReservedActionPrefix + "recorder_start"
	actionRecorderStop  = entry.ReservedActionPrefix + "recorder_stop"
)

// The results of the start marker, by how the previous run ended.
var startResults = map[recorder.Previous]string{
	recorder.FirstStart:  "first start",
	recorder.CleanStop:   "after a clean stop",
	recorder.UncleanStop: "no record of a clean stop",
}

// markerEntry is the start (previous set) or stop marker at at, mapped
// from a span like every entry: execution agentaudit.recorder/<chain_id>,
// target the recorder and the chain, and the collector's version.
func (e *auditExporter) markerEntry(action string, previous recorder.Previous, at time.Time) entry.Entry {
	id := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", action, e.cfg.ChainID, at.UnixNano()))
	res := pcommon.NewResource()
	res.Attributes().PutStr(entry.KeyServiceName, "agentaudit")
	span := ptrace.NewSpan()
	span.SetName(action)
	span.SetTraceID(pcommon.TraceID(id[:16]))
	span.SetSpanID(pcommon.SpanID(id[16:24]))
	ts := pcommon.NewTimestampFromTime(at)
	span.SetStartTimestamp(ts)
	span.SetEndTimestamp(ts)
	span.Status().SetCode(ptrace.StatusCodeOk)
	attrs := span.Attributes()
	attrs.PutStr(entry.KeyActionType, "error") // replaced below: no span can carry a reserved action type
	attrs.PutStr(entry.KeyExecutionID, "agentaudit.recorder/"+e.cfg.ChainID)
	attrs.PutStr(entry.KeyTargetSystem, "agentaudit recorder")
	attrs.PutStr(entry.KeyTargetResource, e.cfg.ChainID)
	attrs.PutStr("agentaudit.recorder.version", e.version)
	if action == actionRecorderStart {
		attrs.PutStr(entry.KeyResult, startResults[previous])
		attrs.PutStr("agentaudit.recorder.previous", string(previous))
	} else {
		attrs.PutStr(entry.KeyResult, "clean stop")
	}
	en := auditspan.FromOwnSpan(res, span, e.opts) // its agentaudit.recorder.* keys are the collector's own
	en.ActionType = action
	return en
}

// mark appends a marker. Markers are not counted as accepted entries
// (otelcol_agentaudit_entries_accepted counts what senders sent), but are
// sealed and stored like every entry. The recorder takes them even while
// it refuses senders' entries (a backlog, a full spool: AppendOwn), so that
// each keeps its place: before every entry of the run it starts, after
// every entry of the run it stops. A marker it cannot write (the log
// failed) is logged and missing, which the trail shows (docs/FORMAT.md,
// "Coverage").
func (e *auditExporter) mark(action string, previous recorder.Previous) {
	en := e.markerEntry(action, previous, e.now())
	if err := e.rec.AppendOwn([]entry.Entry{en}); err != nil {
		e.logger.Warn("Cannot record a coverage marker in the trail", zap.String("marker", action), zap.Error(err))
	}
}
