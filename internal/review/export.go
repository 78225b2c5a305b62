package review

import (
	"bufio"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"
)

// Columns are the columns of an export, in order: every column of the
// trail (docs/FORMAT.md) and then the two a timeline adds.
var Columns = []string{
	"timestamp", "time_unix_nano", "end_time_unix_nano", "chain_id", "seq",
	"execution_id", "trace_id", "span_id", "parent_span_id",
	"agent_id", "agent_name", "service_name", "principal", "sender",
	"action_type", "target_system", "target_resource",
	"proposed_value", "previous_value", "reasoning", "approver",
	"result", "status_code", "attributes", "validation", "prev_hash", "entry_hash",
	"duration_ms", "depth",
}

// WriteJSONL writes one JSON object per step, one per line, with every
// column by name (null for NULL), as `show --json` gives the steps.
func WriteJSONL(w io.Writer, steps []Step) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range steps {
		s := steps[i]
		s.Violations = nil // not a column: the report and show --json carry them
		if err := enc.Encode(&s); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteCSV writes a header of Columns and one record per step (RFC 4180,
// CRLF line ends). So that NULL and the empty string stay apart, every text
// value is quoted (the empty string is "") and a NULL is an empty unquoted
// field; numbers are bare and times are RFC 3339 UTC with nanoseconds. Values
// are written exactly as stored: a spreadsheet may interpret a value that
// starts with '=' as a formula, so open exports in one with care. DuckDB
// reads it back with read_csv(file, allow_quoted_nulls = false).
func WriteCSV(w io.Writer, steps []Step) error {
	bw := bufio.NewWriter(w)
	for i, c := range Columns {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString(c)
	}
	bw.WriteString("\r\n")
	for i := range steps {
		writeCSVRecord(bw, &steps[i])
	}
	return bw.Flush()
}

func writeCSVRecord(w *bufio.Writer, s *Step) {
	str := func(v string) { w.WriteByte(','); quoteCSV(w, v) }
	opt := func(v *string) {
		w.WriteByte(',')
		if v != nil {
			quoteCSV(w, *v)
		}
	}
	num := func(v int64) { w.WriteByte(','); w.WriteString(strconv.FormatInt(v, 10)) }
	w.WriteString(s.Timestamp.UTC().Format(time.RFC3339Nano))
	num(s.TimeUnixNano)
	w.WriteByte(',')
	if s.EndTimeUnixNano != nil {
		w.WriteString(strconv.FormatInt(*s.EndTimeUnixNano, 10))
	}
	str(s.ChainID)
	num(s.Seq)
	str(s.ExecutionID)
	str(s.TraceID)
	str(s.SpanID)
	opt(s.ParentSpanID)
	opt(s.AgentID)
	opt(s.AgentName)
	opt(s.ServiceName)
	opt(s.Principal)
	opt(s.Sender)
	str(s.ActionType)
	str(s.TargetSystem)
	str(s.TargetResource)
	opt(s.ProposedValue)
	opt(s.PreviousValue)
	opt(s.Reasoning)
	opt(s.Approver)
	str(s.Result)
	str(s.StatusCode)
	str(s.Attributes)
	opt(s.Validation)
	str(s.PrevHash)
	str(s.EntryHash)
	w.WriteByte(',')
	if s.DurationMS != nil {
		w.WriteString(strconv.FormatFloat(*s.DurationMS, 'f', -1, 64))
	}
	num(int64(s.Depth))
	w.WriteString("\r\n")
}

func quoteCSV(w *bufio.Writer, v string) {
	w.WriteByte('"')
	w.WriteString(strings.ReplaceAll(v, `"`, `""`))
	w.WriteByte('"')
}
