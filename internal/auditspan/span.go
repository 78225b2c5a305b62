package auditspan

import (
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Options control normalization.
type Options struct {
	// MaxValueBytes limits every string value; 0 means DefaultMaxValueBytes.
	MaxValueBytes int
	// MaxEntryBytes limits the entry (EntryBytes); 0 means
	// DefaultMaxEntryBytes.
	MaxEntryBytes int
}

func (o Options) maxValueBytes() int {
	if o.MaxValueBytes <= 0 {
		return entry.DefaultMaxValueBytes
	}
	return o.MaxValueBytes
}

func (o Options) maxEntryBytes() int {
	if o.MaxEntryBytes <= 0 {
		return entry.DefaultMaxEntryBytes
	}
	return o.MaxEntryBytes
}

func (o Options) mapper() mapper {
	return mapper{max: o.maxValueBytes(), maxEntry: o.maxEntryBytes()}
}

// Field names of problems that are not about one attribute.
const (
	fieldTraceID    = "trace_id"
	fieldSpanID     = "span_id"
	fieldAttributes = "attributes" // an attribute key, not a value, was repaired
	fieldStatusCode = "status_code"
	fieldTime       = "time_unix_nano"
	fieldEndTime    = "end_time_unix_nano"
	fieldEntry      = "entry" // the entry as a whole
)

// maxValidationDetail bounds the raw text of an unparseable audit.validation
// kept in the problem's Detail.
const maxValidationDetail = 1 << 10

// IsAudit reports whether span is audit-tagged: it carries the key
// audit.action.type, with a value of any type. It costs one attribute lookup.
func IsAudit(span ptrace.Span) bool {
	_, ok := span.Attributes().Get(entry.KeyActionType)
	return ok
}

// StripPayload removes the audit payload from span's attributes: what the
// agent read or wrote (audit.value.*) and why (audit.reasoning). The
// monitoring side does this to audit-tagged spans.
func StripPayload(span ptrace.Span) {
	span.Attributes().RemoveIf(isPayloadKey)
}

func isPayloadKey(k string, _ pcommon.Value) bool {
	return k == entry.KeyReasoning || strings.HasPrefix(k, entry.KeyValuePrefix)
}

// FromSpan maps an audit-tagged span and its resource to an Entry. It never
// fails: each missing or malformed field is filled in and recorded as a
// Problem in the entry's Validation. ChainID, Seq, PrevHash and EntryHash are
// left for the chain package. The span is not modified.
//
// Fields and fallbacks:
//   - TimeUnixNano: the span's start time; past the largest int64 it is
//     clamped to it and flagged out_of_range with the original value.
//   - EndTimeUnixNano: the span's end time, never nil, clamped like the
//     start time; an end time before the start time (0, unset, included)
//     is stored as it is and flagged before_start.
//   - StatusCode: "Unset", "Ok" or "Error"; another code n is stored as
//     "Code(n)" and flagged unknown_value.
//   - ActionType: audit.action.type; "" is flagged empty, a value outside
//     KnownActionTypes is kept verbatim and flagged unknown_value. A value
//     in the reserved namespace (IsReservedActionType) is stored with
//     ReservedActionMark in front and flagged reserved_value, the original
//     in the Detail.
//   - ExecutionID: audit.execution.id; when absent or empty, the trace id,
//     flagged defaulted ("defaulted to trace id").
//   - TargetSystem: audit.target.system; when absent or empty, "" flagged
//     missing (the column cannot tell the two apart).
//   - TargetResource: audit.target.resource, "" when absent (not flagged).
//   - ProposedValue, PreviousValue, Reasoning, Approver: nil when absent.
//   - Result: audit.result; when absent it is derived from the span:
//     status Error gives "error: " + error.type, or "error: " + the status
//     message when error.type is absent or empty, or "error" when both are;
//     otherwise a present, non-empty http.response.status_code gives its
//     string form ("200"); otherwise status Ok gives "ok", and "unset" is
//     left. A derived result is not a problem.
//   - AgentID, AgentName, ServiceName, Principal: gen_ai.agent.id,
//     gen_ai.agent.name, service.name, enduser.id, from the span's attributes
//     first, then the resource's; nil when on neither.
//   - TraceID, SpanID: lower-case hex; an empty id is stored as zeros and
//     flagged invalid_id. ParentSpanID: hex, nil when empty.
//   - Attributes: every span attribute except the contract keys,
//     gen_ai.agent.id, gen_ai.agent.name, enduser.id and, on a sealed span,
//     the pipeline's audit.validation, KeySeal and KeyMoved, as canonical
//     JSON (see appendCanonical). Unknown audit.* keys stay there and are
//     flagged unknown_key; an audit.validation without a seal that verifies
//     stays there, flagged unsealed_validation; a key starting with
//     ReservedKeyPrefix stays there, flagged reserved_key. The sender's
//     values KeyMoved holds on a sealed span are there under their own keys,
//     flagged the same way.
//
// Non-string values become their string form (Int decimal, Double shortest
// 'g', Bool true/false, Bytes standard base64, Slice and Map canonical JSON,
// Empty "") flagged not_string with the type name as Detail. Invalid UTF-8 is
// replaced by U+FFFD and flagged invalid_utf8: in a value under the value's
// top-level key, in a top-level attribute key under "attributes", in a nested
// map key under the enclosing top-level key. A string longer than
// opts.MaxValueBytes is cut at a rune boundary and flagged truncated with the
// full length and SHA-256. A NUL byte in a column's string is kept and
// flagged nul_byte (in attributes JSON escapes it). Arrays and maps nested
// deeper than MaxDepth are stored empty and flagged too_deep. A key that
// occurs twice (top level or in a nested map, after repair) keeps its first
// value; each dropped one is flagged duplicate_key with the length and
// SHA-256 of its string form. An entry over opts.MaxEntryBytes has its
// largest values emptied (see cutEntry), each flagged entry_truncated.
//
// Problems that the pipeline (Normalize, AddProblems) recorded in
// audit.validation are merged with the new ones when its seal verifies (see
// seal.go); an audit.validation sealed but longer than opts.MaxEntryBytes is
// not merged but flagged truncated. Without a seal that verifies,
// audit.validation is the sender's and never parsed.
func FromSpan(res pcommon.Resource, span ptrace.Span, opts Options) entry.Entry {
	m := opts.mapper()
	return m.fromSpan(res, span)
}

// FromOwnSpan is FromSpan for a span the collector built itself, such as
// the record of a loss the operator accepted: its keys starting with
// ReservedKeyPrefix are its own, kept in attributes and not flagged.
func FromOwnSpan(res pcommon.Resource, span ptrace.Span, opts Options) entry.Entry {
	m := opts.mapper()
	m.own = true
	return m.fromSpan(res, span)
}

// feedsColumn reports whether key, kept in attributes, is also read for a
// column: service.name, error.type, http.response.status_code.
func feedsColumn(key string) bool {
	slot := slotOf(key)
	return slot >= slotUnmapped && slot < slotValidation
}

// isMapped reports whether the key of slot has its own column and is
// therefore left out of the attributes column.
func isMapped(slot int) bool {
	return slot != slotOther && slot < slotUnmapped
}

// mapper carries the limits and collects problems while one span is mapped.
// A quiet mapper only transforms values and records nothing.
type mapper struct {
	max      int
	maxEntry int
	quiet    bool
	problems []entry.Problem

	// What fromSpan did that Normalize must do to the span too.
	dups     bool                // a top-level key occurred twice
	cut      map[string]struct{} // the attributes (repaired keys) emptied by cutEntry
	sealed   bool                // audit.validation is the pipeline's (see seal.go)
	hasMoved bool                // and the span has KeyMoved, which repairs may change
	own      bool                // the collector built the span: its reserved keys are its own
}

func (m *mapper) isCut(key string) bool {
	_, ok := m.cut[key]
	return ok
}

func (m *mapper) add(p entry.Problem) {
	if !m.quiet {
		m.problems = append(m.problems, p)
	}
}

// maxPooledBuf keeps the odd huge attributes buffer out of the pool.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Attribute slots: the keys fromSpan reads, found in one pass over the
// span's attributes. The first slotUnmapped are mapped keys (isMapped):
// they have their own column and stay out of the attributes column.
const (
	slotActionType = iota
	slotExecutionID
	slotTargetSystem
	slotTargetResource
	slotProposed
	slotPrevious
	slotReasoning
	slotApprover
	slotResult
	slotAgentID
	slotAgentName
	slotEndUserID
	slotServiceName
	slotErrorType
	slotHTTPStatus
	// The pipeline's keys: kept in attributes unless the span is sealed.
	slotValidation
	slotSeal
	slotMoved
	numSlots

	slotUnmapped = slotServiceName // keys from here on are also kept in attributes
	slotOther    = -1
)

// slotOf returns the slot of key, or slotOther.
func slotOf(key string) int {
	switch key {
	case entry.KeyActionType:
		return slotActionType
	case entry.KeyExecutionID:
		return slotExecutionID
	case entry.KeyTargetSystem:
		return slotTargetSystem
	case entry.KeyTargetResource:
		return slotTargetResource
	case entry.KeyValueProposed:
		return slotProposed
	case entry.KeyValuePrevious:
		return slotPrevious
	case entry.KeyReasoning:
		return slotReasoning
	case entry.KeyApprover:
		return slotApprover
	case entry.KeyResult:
		return slotResult
	case entry.KeyValidation:
		return slotValidation
	case KeySeal:
		return slotSeal
	case KeyMoved:
		return slotMoved
	case entry.KeyAgentID:
		return slotAgentID
	case entry.KeyAgentName:
		return slotAgentName
	case entry.KeyEndUserID:
		return slotEndUserID
	case entry.KeyServiceName:
		return slotServiceName
	case entry.KeyErrorType:
		return slotErrorType
	case entry.KeyHTTPStatus:
		return slotHTTPStatus
	}
	return slotOther
}

// spanAttrs holds the values of the slots found on a span; the first
// occurrence of a key wins, as with pcommon.Map.Get.
type spanAttrs struct {
	vals  [numSlots]pcommon.Value
	found uint32
}

func (a *spanAttrs) get(slot int) (pcommon.Value, bool) {
	return a.vals[slot], a.found&(1<<slot) != 0
}

func (m *mapper) fromSpan(res pcommon.Resource, span ptrace.Span) entry.Entry {
	resAttrs := res.Attributes()
	var e entry.Entry
	start, end := uint64(span.StartTimestamp()), uint64(span.EndTimestamp())
	e.TimeUnixNano = m.time(fieldTime, "start", start)
	// One allocation for the optional fields and the end time: the
	// exporter maps about 100k spans per request.
	opt := new(struct {
		slots [9]string
		end   int64
	})
	slots := &opt.slots
	opt.end = m.time(fieldEndTime, "end", end)
	e.EndTimeUnixNano = &opt.end
	if end < start {
		m.add(entry.Problem{Field: fieldEndTime, Kind: entry.ProblemBeforeStart, Detail: "end time before start time"})
	}
	switch code := span.Status().Code(); code {
	case ptrace.StatusCodeUnset, ptrace.StatusCodeOk, ptrace.StatusCodeError:
		e.StatusCode = code.String()
	default:
		e.StatusCode = "Code(" + strconv.Itoa(int(code)) + ")"
		m.add(entry.Problem{Field: fieldStatusCode, Kind: entry.ProblemUnknownValue, Detail: "stored as " + e.StatusCode})
	}

	// One pass over the attributes finds the keys of the contract and
	// collects the others for the attributes column.
	var sa spanAttrs
	var arr [16]keyValue
	kvs := arr[:0]
	span.Attributes().Range(func(k string, v pcommon.Value) bool {
		slot := slotOf(k)
		if slot != slotOther {
			if sa.found&(1<<slot) == 0 {
				sa.found |= 1 << slot
				sa.vals[slot] = v
			} else if slot < slotUnmapped {
				// Keys kept in attributes are checked there.
				m.duplicate(k, false, v)
			}
			if slot < slotUnmapped {
				return true
			}
		}
		k = m.sanitizeKey(fieldAttributes, k)
		if slot == slotOther {
			// The pipeline's keys are flagged once the seal is checked.
			m.flagKey(k)
		}
		kvs = append(kvs, keyValue{key: k, val: v})
		return true
	})

	// One allocation for the three ids (and one, above, for the optional
	// fields).
	var idHex [64]byte
	tid, sid, pid := span.TraceID(), span.SpanID(), span.ParentSpanID()
	hex.Encode(idHex[0:32], tid[:])
	hex.Encode(idHex[32:48], sid[:])
	hex.Encode(idHex[48:64], pid[:])
	ids := string(idHex[:])

	e.TraceID = ids[0:32]
	if tid.IsEmpty() {
		m.add(entry.Problem{Field: fieldTraceID, Kind: entry.ProblemInvalidID, Detail: "empty trace id"})
	}
	e.SpanID = ids[32:48]
	if sid.IsEmpty() {
		m.add(entry.Problem{Field: fieldSpanID, Kind: entry.ProblemInvalidID, Detail: "empty span id"})
	}
	if !pid.IsEmpty() {
		slots[0] = ids[48:64]
		e.ParentSpanID = &slots[0]
	}

	validation, hasValidation := sa.get(slotValidation)
	seal, hasSeal := sa.get(slotSeal)
	moved, hasMoved := sa.get(slotMoved)
	m.sealed = hasValidation && hasSeal && verifySeal(tid, sid, validation, seal, moved, hasMoved)
	m.hasMoved = hasMoved
	if m.sealed {
		kvs = m.unseal(kvs, moved, hasMoved)
	} else {
		for _, k := range [...]struct {
			key string
			ok  bool
		}{{entry.KeyValidation, hasValidation}, {KeySeal, hasSeal}, {KeyMoved, hasMoved}} {
			if k.ok {
				m.flagKey(k.key)
			}
		}
	}

	if v, ok := sa.get(slotActionType); ok {
		e.ActionType = m.valueString(entry.KeyActionType, v)
		if entry.IsReservedActionType(e.ActionType) {
			m.add(entry.Problem{Field: entry.KeyActionType, Kind: entry.ProblemReservedValue, Detail: e.ActionType})
			e.ActionType = truncate(entry.ReservedActionMark+e.ActionType, m.max)
		}
		switch {
		case e.ActionType == "":
			m.add(entry.Problem{Field: entry.KeyActionType, Kind: entry.ProblemEmpty})
		case !entry.IsKnownActionType(e.ActionType):
			m.add(entry.Problem{Field: entry.KeyActionType, Kind: entry.ProblemUnknownValue, Detail: "kept verbatim"})
		}
	} else {
		m.add(entry.Problem{Field: entry.KeyActionType, Kind: entry.ProblemMissing})
	}

	if v, ok := sa.get(slotExecutionID); ok {
		e.ExecutionID = m.valueString(entry.KeyExecutionID, v)
		if e.ExecutionID == "" {
			m.add(entry.Problem{Field: entry.KeyExecutionID, Kind: entry.ProblemEmpty})
		}
	}
	if e.ExecutionID == "" {
		// Sanitized like any value so that a tiny limit cuts it the same
		// way here as when FromSpan reads it back from a normalized span.
		e.ExecutionID = m.sanitize(entry.KeyExecutionID, e.TraceID)
		m.add(entry.Problem{Field: entry.KeyExecutionID, Kind: entry.ProblemDefaulted, Detail: "defaulted to trace id"})
	}

	if v, ok := sa.get(slotTargetSystem); ok {
		e.TargetSystem = m.valueString(entry.KeyTargetSystem, v)
	}
	if e.TargetSystem == "" {
		m.add(entry.Problem{Field: entry.KeyTargetSystem, Kind: entry.ProblemMissing})
	}
	if v, ok := sa.get(slotTargetResource); ok {
		e.TargetResource = m.valueString(entry.KeyTargetResource, v)
	}

	e.ProposedValue = m.optional(&sa, slotProposed, entry.KeyValueProposed, &slots[1])
	e.PreviousValue = m.optional(&sa, slotPrevious, entry.KeyValuePrevious, &slots[2])
	e.Reasoning = m.optional(&sa, slotReasoning, entry.KeyReasoning, &slots[3])
	e.Approver = m.optional(&sa, slotApprover, entry.KeyApprover, &slots[4])

	e.AgentID = m.identity(&sa, resAttrs, slotAgentID, entry.KeyAgentID, &slots[5])
	e.AgentName = m.identity(&sa, resAttrs, slotAgentName, entry.KeyAgentName, &slots[6])
	e.ServiceName = m.identity(&sa, resAttrs, slotServiceName, entry.KeyServiceName, &slots[7])
	e.Principal = m.identity(&sa, resAttrs, slotEndUserID, entry.KeyEndUserID, &slots[8])

	if v, ok := sa.get(slotResult); ok {
		e.Result = m.valueString(entry.KeyResult, v)
	} else {
		e.Result = m.column(entry.KeyResult, deriveResultOf(span, &sa))
	}

	bp := bufPool.Get().(*[]byte)
	buf := m.appendObject((*bp)[:0], "", kvs, 1)
	e.Attributes = string(buf)
	if cap(buf) <= maxPooledBuf {
		*bp = buf
		bufPool.Put(bp)
	}

	if m.sealed {
		raw := validation.Str()
		if len(raw) > m.maxEntry {
			// Bounded by the entry's limit, not the value limit: a
			// pipeline with a larger limit than the exporter's can write
			// more problems than an entry here may hold.
			full := strings.ToValidUTF8(raw, "\uFFFD")
			m.add(entry.Problem{Field: entry.KeyValidation, Kind: entry.ProblemTruncated, Detail: "not merged: longer than max_entry_bytes",
				OriginalBytes: int64(len(full)), SHA256: sha256Hex(full)})
		} else if ps, err := parseProblems(raw); err == nil {
			m.problems = append(m.problems, ps...)
		} else {
			detail := truncate(strings.ToValidUTF8(raw, "\uFFFD"), maxValidationDetail)
			m.add(entry.Problem{Field: entry.KeyValidation, Kind: entry.ProblemUnknownValue, Detail: detail})
		}
	}

	m.setValidation(&e)
	if entry.EntryBytes(&e) > m.maxEntry {
		m.cutEntry(&e, kvs)
	}
	return e
}

// flagKey records what a key kept in attributes is when the contract or
// the collector reserves it: a sender's audit.validation, an unknown
// audit.* key, a key in the collector's namespace.
func (m *mapper) flagKey(k string) {
	switch {
	case k == entry.KeyValidation:
		m.add(entry.Problem{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed})
	case entry.IsUnknownAuditKey(k):
		m.add(entry.Problem{Field: k, Kind: entry.ProblemUnknownKey, Detail: "kept in attributes"})
	case IsReservedKey(k) && !m.own:
		m.add(entry.Problem{Field: k, Kind: ProblemReservedKey, Detail: detailReservedKey})
	}
}

// unseal returns kvs, the attributes of a sealed span, without the
// pipeline's keys (the first occurrence of each: the one the seal
// covers) and with the sender's values that KeyMoved holds under their own
// keys, first (they were moved from before anything added later), each
// flagged as it would be in place. A later occurrence of a pipeline key
// stays, flagged as the sender's.
func (m *mapper) unseal(kvs []keyValue, moved pcommon.Value, hasMoved bool) []keyValue {
	out := kvs[:0] // filtered in place
	if hasMoved {
		mm := moved.Map()
		out = make([]keyValue, 0, len(kvs)+mm.Len())
		mm.Range(func(k string, v pcommon.Value) bool {
			k = m.sanitizeKey(fieldAttributes, k)
			m.flagKey(k)
			out = append(out, keyValue{key: k, val: v})
			return true
		})
	}
	var taken [numSlots - slotValidation]bool
	for _, kv := range kvs {
		if slot := slotOf(kv.key); slot >= slotValidation {
			if !taken[slot-slotValidation] {
				taken[slot-slotValidation] = true
				continue
			}
			m.flagKey(kv.key)
		}
		out = append(out, kv)
	}
	return out
}

// time is a span time (what OTLP carries: unsigned nanoseconds) as an
// int64: past the largest int64 it is clamped to it and flagged
// out_of_range under field, the detail naming which time (start, end) and
// its original value.
func (m *mapper) time(field, which string, ns uint64) int64 {
	if ns > math.MaxInt64 {
		m.add(entry.Problem{Field: field, Kind: entry.ProblemOutOfRange,
			Detail: which + " time " + strconv.FormatUint(ns, 10) + " ns clamped to the largest int64"})
		return math.MaxInt64
	}
	return int64(ns)
}

// deriveResultOf is the result of a span without audit.result (see
// FromSpan), given the span's error.type and http.response.status_code as
// found in sa.
func deriveResultOf(span ptrace.Span, sa *spanAttrs) string {
	status := span.Status()
	if status.Code() == ptrace.StatusCodeError {
		if v, ok := sa.get(slotErrorType); ok {
			if s := asString(v); s != "" {
				return "error: " + s
			}
		}
		if msg := status.Message(); msg != "" {
			return "error: " + msg
		}
		return "error"
	}
	if v, ok := sa.get(slotHTTPStatus); ok {
		if s := plainString(v); s != "" {
			return s
		}
	}
	if status.Code() == ptrace.StatusCodeOk {
		return "ok"
	}
	return "unset"
}
