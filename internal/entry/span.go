package entry

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Options control normalization.
type Options struct {
	// MaxValueBytes limits every string value; 0 means DefaultMaxValueBytes.
	MaxValueBytes int
}

func (o Options) maxValueBytes() int {
	if o.MaxValueBytes <= 0 {
		return DefaultMaxValueBytes
	}
	return o.MaxValueBytes
}

// Field names of problems that are not about one attribute.
const (
	fieldTraceID    = "trace_id"
	fieldSpanID     = "span_id"
	fieldAttributes = "attributes" // an attribute key, not a value, was repaired
)

// maxValidationDetail bounds the raw text of an unparseable audit.validation
// kept in the problem's Detail.
const maxValidationDetail = 1 << 10

// IsAudit reports whether span is audit-tagged: it carries the key
// audit.action.type, with a value of any type. It costs one attribute lookup.
func IsAudit(span ptrace.Span) bool {
	_, ok := span.Attributes().Get(KeyActionType)
	return ok
}

// StripPayload removes the audit payload from span's attributes: what the
// agent read or wrote (audit.value.*) and why (audit.reasoning). The
// monitoring side does this to audit-tagged spans.
func StripPayload(span ptrace.Span) {
	span.Attributes().RemoveIf(isPayloadKey)
}

func isPayloadKey(k string, _ pcommon.Value) bool {
	return k == KeyReasoning || strings.HasPrefix(k, KeyValuePrefix)
}

// FromSpan maps an audit-tagged span and its resource to an Entry. It never
// fails: each missing or malformed field is filled in and recorded as a
// Problem in the entry's Validation. ChainID, Seq, PrevHash and EntryHash are
// left for the chain package. The span is not modified.
//
// Fields and fallbacks:
//   - ActionType: audit.action.type; "" is flagged empty, a value outside
//     KnownActionTypes is kept verbatim and flagged unknown_value.
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
//     audit.validation, gen_ai.agent.id, gen_ai.agent.name and enduser.id, as
//     canonical JSON (see appendCanonical). Unknown audit.* keys stay there and
//     are flagged unknown_key.
//
// Non-string values become their string form (Int decimal, Double shortest
// 'g', Bool true/false, Bytes standard base64, Slice and Map canonical JSON,
// Empty "") flagged not_string with the type name as Detail. Invalid UTF-8 is
// replaced by U+FFFD and flagged invalid_utf8: in a value under the value's
// top-level key, in a top-level attribute key under "attributes", in a nested
// map key under the enclosing top-level key. A string longer than
// opts.MaxValueBytes is cut at a rune boundary and flagged truncated with the
// full length and SHA-256. Problems already recorded in audit.validation by
// Normalize are merged with the new ones.
func FromSpan(res pcommon.Resource, span ptrace.Span, opts Options) Entry {
	m := mapper{max: opts.maxValueBytes()}
	return m.fromSpan(res, span)
}

// Normalize rewrites an audit-tagged span in place so that FromSpan on the
// result gives the same Entry while the span itself carries the repairs:
// the contract keys get their final string values (execution id defaulted,
// result derived, target system "" when missing), every other string value is
// repaired and truncated, and audit.validation holds the problems as JSON
// (removed when there are none). Non-string values outside the contract keep
// their type, and keys are not renamed (a repaired key could collide with an
// existing one): FromSpan repairs them again, flagging the same problem.
// Normalize is idempotent and does nothing to a span that is not audit-tagged.
func Normalize(res pcommon.Resource, span ptrace.Span, opts Options) {
	if !IsAudit(span) {
		return
	}
	// Most spans are well-formed: one pass over the attributes proves that
	// mapping would find no problem and change no value, and then only a
	// missing audit.result remains to fill in.
	if result, ok := clean(res, span, opts.maxValueBytes()); ok {
		if result != "" {
			span.Attributes().PutStr(KeyResult, result)
		}
		return
	}
	normalizeFully(res, span, opts)
}

// normalizeFully is Normalize without the shortcut for clean spans.
func normalizeFully(res pcommon.Resource, span ptrace.Span, opts Options) {
	e := FromSpan(res, span, opts)
	attrs := span.Attributes()

	q := mapper{max: opts.maxValueBytes(), quiet: true}
	attrs.Range(func(k string, v pcommon.Value) bool {
		if !isMappedKey(k) {
			q.repairInPlace(v)
		}
		return true
	})

	putStr(attrs, KeyActionType, e.ActionType)
	putStr(attrs, KeyExecutionID, e.ExecutionID)
	putStr(attrs, KeyTargetSystem, e.TargetSystem)
	if _, ok := attrs.Get(KeyTargetResource); ok {
		putStr(attrs, KeyTargetResource, e.TargetResource)
	}
	putOptional(attrs, KeyValueProposed, e.ProposedValue)
	putOptional(attrs, KeyValuePrevious, e.PreviousValue)
	putOptional(attrs, KeyReasoning, e.Reasoning)
	putOptional(attrs, KeyApprover, e.Approver)
	putStr(attrs, KeyResult, e.Result)
	// Identity keys found on the span were taken from it; those on the
	// resource are left alone (the resource is shared by many spans).
	for _, id := range [...]struct {
		key string
		val *string
	}{{KeyAgentID, e.AgentID}, {KeyAgentName, e.AgentName}, {KeyEndUserID, e.Principal}} {
		if _, ok := attrs.Get(id.key); ok && id.val != nil {
			putStr(attrs, id.key, *id.val)
		}
	}
	if e.Validation != nil {
		putStr(attrs, KeyValidation, *e.Validation)
	} else {
		attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return k == KeyValidation })
	}
}

// clean reports whether FromSpan would record no problem for span and
// Normalize would leave every value as it is: both ids set; action type,
// execution id and target system non-empty strings, the action type a known
// one; every other contract and identity value a string; no audit.validation
// and no unknown audit.* key; every string (nested ones included) valid UTF-8
// within max bytes and every key valid UTF-8. Where audit.result is absent it
// also returns the derived result, which Normalize stores ("" when
// audit.result is present). Duplicate keys are all checked, which is stricter
// than mapping (it reads the first): a span in doubt takes the full path.
func clean(res pcommon.Resource, span ptrace.Span, max int) (result string, ok bool) {
	if span.TraceID().IsEmpty() || span.SpanID().IsEmpty() {
		return "", false
	}
	const (
		hasAction = 1 << iota
		hasExecution
		hasTarget
		hasResult
	)
	var has int
	ok = true
	span.Attributes().Range(func(k string, v pcommon.Value) bool {
		switch slotOf(k) {
		case slotActionType:
			s, good := cleanString(v, max)
			ok = good && isKnownActionType(s)
			has |= hasAction
		case slotExecutionID:
			s, good := cleanString(v, max)
			ok = good && s != ""
			has |= hasExecution
		case slotTargetSystem:
			s, good := cleanString(v, max)
			ok = good && s != ""
			has |= hasTarget
		case slotResult:
			_, ok = cleanString(v, max)
			has |= hasResult
		case slotTargetResource, slotProposed, slotPrevious, slotReasoning, slotApprover,
			slotAgentID, slotAgentName, slotEndUserID, slotServiceName:
			_, ok = cleanString(v, max)
		case slotValidation:
			ok = false
		default: // error.type, http.response.status_code and the rest
			ok = validUTF8(k) && !strings.HasPrefix(k, KeyPrefix) && cleanValue(v, max)
		}
		return ok
	})
	if !ok || has&(hasAction|hasExecution|hasTarget) != hasAction|hasExecution|hasTarget {
		return "", false
	}
	// The resource's identity keys are read when the span lacks them.
	resAttrs := res.Attributes()
	for _, k := range [...]string{KeyAgentID, KeyAgentName, KeyServiceName, KeyEndUserID} {
		if v, found := resAttrs.Get(k); found {
			if _, good := cleanString(v, max); !good {
				return "", false
			}
		}
	}
	if has&hasResult == 0 {
		result = deriveResult(span)
		if !validUTF8(result) || len(result) > max {
			return "", false
		}
	}
	return result, true
}

// cleanString returns v's string when v is a valid UTF-8 string within max
// bytes.
func cleanString(v pcommon.Value, max int) (string, bool) {
	if v.Type() != pcommon.ValueTypeStr {
		return "", false
	}
	s := v.Str()
	return s, len(s) <= max && validUTF8(s)
}

// cleanValue reports whether mapping v records no problem: every string in
// it, nested ones included, valid UTF-8 within max bytes, every byte string
// within max bytes of base64, every map key valid.
func cleanValue(v pcommon.Value, max int) bool {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		_, ok := cleanString(v, max)
		return ok
	case pcommon.ValueTypeBytes:
		return base64.StdEncoding.EncodedLen(v.Bytes().Len()) <= max
	case pcommon.ValueTypeSlice:
		sl := v.Slice()
		for i := 0; i < sl.Len(); i++ {
			if !cleanValue(sl.At(i), max) {
				return false
			}
		}
	case pcommon.ValueTypeMap:
		ok := true
		v.Map().Range(func(k string, mv pcommon.Value) bool {
			ok = validUTF8(k) && cleanValue(mv, max)
			return ok
		})
		return ok
	}
	return true
}

// putStr sets key to the string s unless it already holds exactly that.
func putStr(attrs pcommon.Map, key, s string) {
	if v, ok := attrs.Get(key); ok && v.Type() == pcommon.ValueTypeStr && v.Str() == s {
		return
	}
	attrs.PutStr(key, s)
}

func putOptional(attrs pcommon.Map, key string, s *string) {
	if s != nil {
		putStr(attrs, key, *s)
	}
}

// isMappedKey reports whether key has its own column (or is
// audit.validation) and is therefore left out of the attributes column.
func isMappedKey(key string) bool {
	slot := slotOf(key)
	return slot != slotOther && slot < slotUnmapped
}

func isKnownActionType(s string) bool {
	switch s {
	case "start", "read", "write", "request_approval", "approve", "reject", "error", "end":
		return true
	}
	return false
}

// mapper carries the limit and collects problems while one span is mapped.
// A quiet mapper only transforms values and records nothing.
type mapper struct {
	max      int
	quiet    bool
	problems []Problem
}

func (m *mapper) add(p Problem) {
	if !m.quiet {
		m.problems = append(m.problems, p)
	}
}

// maxPooledBuf keeps the odd huge attributes buffer out of the pool.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Attribute slots: the keys fromSpan reads, found in one pass over the
// span's attributes. The first slotUnmapped are mapped keys (isMappedKey):
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
	slotValidation
	slotAgentID
	slotAgentName
	slotEndUserID
	slotServiceName
	slotErrorType
	slotHTTPStatus
	numSlots

	slotUnmapped = slotServiceName // keys from here on are also kept in attributes
	slotOther    = -1
)

// slotOf returns the slot of key, or slotOther.
func slotOf(key string) int {
	switch key {
	case KeyActionType:
		return slotActionType
	case KeyExecutionID:
		return slotExecutionID
	case KeyTargetSystem:
		return slotTargetSystem
	case KeyTargetResource:
		return slotTargetResource
	case KeyValueProposed:
		return slotProposed
	case KeyValuePrevious:
		return slotPrevious
	case KeyReasoning:
		return slotReasoning
	case KeyApprover:
		return slotApprover
	case KeyResult:
		return slotResult
	case KeyValidation:
		return slotValidation
	case KeyAgentID:
		return slotAgentID
	case KeyAgentName:
		return slotAgentName
	case KeyEndUserID:
		return slotEndUserID
	case KeyServiceName:
		return slotServiceName
	case KeyErrorType:
		return slotErrorType
	case KeyHTTPStatus:
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

func (m *mapper) fromSpan(res pcommon.Resource, span ptrace.Span) Entry {
	resAttrs := res.Attributes()
	e := Entry{
		TimeUnixNano: int64(span.StartTimestamp()),
		StatusCode:   span.Status().Code().String(),
	}

	// One pass over the attributes finds the keys of the contract and
	// collects the others for the attributes column.
	var sa spanAttrs
	var arr [16]keyValue
	kvs := arr[:0]
	span.Attributes().Range(func(k string, v pcommon.Value) bool {
		slot := slotOf(k)
		if slot != slotOther && sa.found&(1<<slot) == 0 {
			sa.found |= 1 << slot
			sa.vals[slot] = v
		}
		if slot != slotOther && slot < slotUnmapped {
			return true
		}
		k = m.sanitizeKey(fieldAttributes, k)
		if strings.HasPrefix(k, KeyPrefix) {
			m.add(Problem{Field: k, Kind: ProblemUnknownKey, Detail: "kept in attributes"})
		}
		kvs = append(kvs, keyValue{key: k, val: v})
		return true
	})

	// One allocation for the three ids and one for the optional fields: the
	// exporter maps about 100k spans per request.
	var idHex [64]byte
	tid, sid, pid := span.TraceID(), span.SpanID(), span.ParentSpanID()
	hex.Encode(idHex[0:32], tid[:])
	hex.Encode(idHex[32:48], sid[:])
	hex.Encode(idHex[48:64], pid[:])
	ids := string(idHex[:])
	slots := new([9]string)

	e.TraceID = ids[0:32]
	if tid.IsEmpty() {
		m.add(Problem{Field: fieldTraceID, Kind: ProblemInvalidID, Detail: "empty trace id"})
	}
	e.SpanID = ids[32:48]
	if sid.IsEmpty() {
		m.add(Problem{Field: fieldSpanID, Kind: ProblemInvalidID, Detail: "empty span id"})
	}
	if !pid.IsEmpty() {
		slots[0] = ids[48:64]
		e.ParentSpanID = &slots[0]
	}

	if v, ok := sa.get(slotActionType); ok {
		e.ActionType = m.valueString(KeyActionType, v)
		switch {
		case e.ActionType == "":
			m.add(Problem{Field: KeyActionType, Kind: ProblemEmpty})
		case !isKnownActionType(e.ActionType):
			m.add(Problem{Field: KeyActionType, Kind: ProblemUnknownValue, Detail: "kept verbatim"})
		}
	} else {
		m.add(Problem{Field: KeyActionType, Kind: ProblemMissing})
	}

	if v, ok := sa.get(slotExecutionID); ok {
		e.ExecutionID = m.valueString(KeyExecutionID, v)
		if e.ExecutionID == "" {
			m.add(Problem{Field: KeyExecutionID, Kind: ProblemEmpty})
		}
	}
	if e.ExecutionID == "" {
		// Sanitized like any value so that a tiny limit cuts it the same
		// way here as when FromSpan reads it back from a normalized span.
		e.ExecutionID = m.sanitize(KeyExecutionID, e.TraceID)
		m.add(Problem{Field: KeyExecutionID, Kind: ProblemDefaulted, Detail: "defaulted to trace id"})
	}

	if v, ok := sa.get(slotTargetSystem); ok {
		e.TargetSystem = m.valueString(KeyTargetSystem, v)
	}
	if e.TargetSystem == "" {
		m.add(Problem{Field: KeyTargetSystem, Kind: ProblemMissing})
	}
	if v, ok := sa.get(slotTargetResource); ok {
		e.TargetResource = m.valueString(KeyTargetResource, v)
	}

	e.ProposedValue = m.optional(&sa, slotProposed, KeyValueProposed, &slots[1])
	e.PreviousValue = m.optional(&sa, slotPrevious, KeyValuePrevious, &slots[2])
	e.Reasoning = m.optional(&sa, slotReasoning, KeyReasoning, &slots[3])
	e.Approver = m.optional(&sa, slotApprover, KeyApprover, &slots[4])

	e.AgentID = m.identity(&sa, resAttrs, slotAgentID, KeyAgentID, &slots[5])
	e.AgentName = m.identity(&sa, resAttrs, slotAgentName, KeyAgentName, &slots[6])
	e.ServiceName = m.identity(&sa, resAttrs, slotServiceName, KeyServiceName, &slots[7])
	e.Principal = m.identity(&sa, resAttrs, slotEndUserID, KeyEndUserID, &slots[8])

	if v, ok := sa.get(slotResult); ok {
		e.Result = m.valueString(KeyResult, v)
	} else {
		e.Result = m.sanitize(KeyResult, deriveResultOf(span, &sa))
	}

	bp := bufPool.Get().(*[]byte)
	buf := m.appendObject((*bp)[:0], "", kvs)
	e.Attributes = string(buf)
	if cap(buf) <= maxPooledBuf {
		*bp = buf
		bufPool.Put(bp)
	}

	if v, ok := sa.get(slotValidation); ok {
		raw := v.Str()
		if v.Type() != pcommon.ValueTypeStr {
			raw = v.AsString()
		}
		if ps, err := parseProblems(raw); err == nil {
			m.problems = append(m.problems, ps...)
		} else {
			detail := truncate(strings.ToValidUTF8(raw, "\uFFFD"), maxValidationDetail)
			m.add(Problem{Field: KeyValidation, Kind: ProblemUnknownValue, Detail: detail})
		}
	}

	if len(m.problems) > 0 {
		m.problems = sortProblems(m.problems)
		s := string(appendProblems(nil, m.problems))
		e.Validation = &s
	}
	return e
}

// deriveResult is the result of a span without audit.result; see FromSpan.
func deriveResult(span ptrace.Span) string {
	attrs := span.Attributes()
	var sa spanAttrs
	if v, ok := attrs.Get(KeyErrorType); ok {
		sa.found, sa.vals[slotErrorType] = sa.found|1<<slotErrorType, v
	}
	if v, ok := attrs.Get(KeyHTTPStatus); ok {
		sa.found, sa.vals[slotHTTPStatus] = sa.found|1<<slotHTTPStatus, v
	}
	return deriveResultOf(span, &sa)
}

// deriveResultOf is deriveResult with the span's error.type and
// http.response.status_code already looked up.
func deriveResultOf(span ptrace.Span, sa *spanAttrs) string {
	status := span.Status()
	if status.Code() == ptrace.StatusCodeError {
		if v, ok := sa.get(slotErrorType); ok {
			if s := v.AsString(); s != "" {
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

// plainString is the string form of a scalar value, without bookkeeping.
func plainString(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeInt:
		return strconv.FormatInt(v.Int(), 10)
	case pcommon.ValueTypeDouble:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	case pcommon.ValueTypeBool:
		return strconv.FormatBool(v.Bool())
	}
	return v.AsString()
}

// optional stores the string form of the slot's value in dst and returns
// dst, or nil when the span does not hold key.
func (m *mapper) optional(sa *spanAttrs, slot int, key string, dst *string) *string {
	v, ok := sa.get(slot)
	if !ok {
		return nil
	}
	*dst = m.valueString(key, v)
	return dst
}

// identity is optional, falling back to the resource's attributes.
func (m *mapper) identity(sa *spanAttrs, resAttrs pcommon.Map, slot int, key string, dst *string) *string {
	if p := m.optional(sa, slot, key, dst); p != nil {
		return p
	}
	v, ok := resAttrs.Get(key)
	if !ok {
		return nil
	}
	*dst = m.valueString(key, v)
	return dst
}

// valueString returns the string form of v, repaired and truncated, and
// records what was done under field.
func (m *mapper) valueString(field string, v pcommon.Value) string {
	var s string
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return m.sanitize(field, v.Str())
	case pcommon.ValueTypeSlice, pcommon.ValueTypeMap:
		s = string(m.appendCanonical(nil, field, v))
	case pcommon.ValueTypeBytes:
		s = base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())
	case pcommon.ValueTypeEmpty:
		s = ""
	default:
		s = plainString(v)
	}
	m.add(Problem{Field: field, Kind: ProblemNotString, Detail: v.Type().String()})
	return m.sanitize(field, s)
}

// sanitize repairs invalid UTF-8 in s and truncates it to the limit,
// recording both under field. Valid values within the limit are returned
// as they are, without a copy.
func (m *mapper) sanitize(field, s string) string {
	if !validUTF8(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		m.add(Problem{Field: field, Kind: ProblemInvalidUTF8, Detail: "replaced with U+FFFD"})
	}
	if len(s) > m.max {
		if !m.quiet {
			m.add(Problem{
				Field:         field,
				Kind:          ProblemTruncated,
				Detail:        "truncated to " + strconv.Itoa(m.max) + " bytes",
				OriginalBytes: int64(len(s)),
				SHA256:        sha256Hex(s),
			})
		}
		s = truncate(s, m.max)
	}
	return s
}

// sha256Hex hashes s without copying it: the hash only reads the bytes.
func sha256Hex(s string) string {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
	return hex.EncodeToString(sum[:])
}

// truncate cuts valid UTF-8 s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// repairInPlace applies sanitize to every string in v, in place.
func (m *mapper) repairInPlace(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		if s := v.Str(); !validUTF8(s) || len(s) > m.max {
			v.SetStr(m.sanitize("", s))
		}
	case pcommon.ValueTypeSlice:
		sl := v.Slice()
		for i := 0; i < sl.Len(); i++ {
			m.repairInPlace(sl.At(i))
		}
	case pcommon.ValueTypeMap:
		v.Map().Range(func(_ string, mv pcommon.Value) bool {
			m.repairInPlace(mv)
			return true
		})
	}
}

type keyValue struct {
	key string // repaired
	val pcommon.Value
}

// sanitizeKey repairs invalid UTF-8 in a map key, recording it under field.
func (m *mapper) sanitizeKey(field, k string) string {
	if validUTF8(k) {
		return k
	}
	m.add(Problem{Field: field, Kind: ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"})
	return strings.ToValidUTF8(k, "\uFFFD")
}

// appendObject writes kvs sorted bytewise by key. Of duplicate keys the
// first one wins, as with pcommon.Map.Get. When field is "" each value's
// problems are recorded under its own key.
func (m *mapper) appendObject(dst []byte, field string, kvs []keyValue) []byte {
	slices.SortStableFunc(kvs, func(a, b keyValue) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i, kv := range kvs {
		if i > 0 && kv.key == kvs[i-1].key {
			continue
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, kv.key)
		dst = append(dst, ':')
		f := field
		if f == "" {
			f = kv.key
		}
		dst = m.appendCanonical(dst, f, kv.val)
	}
	return append(dst, '}')
}

// appendCanonical appends v as canonical JSON: strings (repaired and
// truncated) as JSON strings, Int as an integer, Double as a number in
// shortest 'g' form (NaN and infinities as the strings "NaN", "Infinity",
// "-Infinity"), Bool as true/false, Bytes as a standard base64 string
// (truncated as strings are), Slice
// as an array, Map as an object with keys sorted bytewise, Empty as null.
// No insignificant whitespace and no HTML escaping.
func (m *mapper) appendCanonical(dst []byte, field string, v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return appendJSONString(dst, m.sanitize(field, v.Str()))
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(dst, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		return appendJSONFloat(dst, v.Double())
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(dst, v.Bool())
	case pcommon.ValueTypeBytes:
		// Base64 needs no JSON escaping. Longer than the limit, it is
		// truncated like a string (the SHA-256 is of the full base64 form).
		raw := v.Bytes().AsRaw()
		if base64.StdEncoding.EncodedLen(len(raw)) > m.max {
			return appendJSONString(dst, m.sanitize(field, base64.StdEncoding.EncodeToString(raw)))
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, raw)
		return append(dst, '"')
	case pcommon.ValueTypeSlice:
		sl := v.Slice()
		dst = append(dst, '[')
		for i := 0; i < sl.Len(); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = m.appendCanonical(dst, field, sl.At(i))
		}
		return append(dst, ']')
	case pcommon.ValueTypeMap:
		var arr [16]keyValue
		kvs := arr[:0]
		v.Map().Range(func(k string, mv pcommon.Value) bool {
			kvs = append(kvs, keyValue{key: m.sanitizeKey(field, k), val: mv})
			return true
		})
		return m.appendObject(dst, field, kvs)
	}
	return append(dst, "null"...)
}
