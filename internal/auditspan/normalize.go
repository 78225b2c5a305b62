package auditspan

import (
	"encoding/base64"
	"math"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Normalize rewrites an audit-tagged span in place so that FromSpan on the
// result gives the same Entry while the span itself carries the repairs:
// the contract keys get their final string values (execution id defaulted,
// result derived, target system "" when missing, action type marked when
// reserved), every other string value is repaired and truncated, arrays
// and maps past MaxDepth are emptied, the dropped values of duplicate keys
// are removed, values cut to fit MaxEntryBytes are emptied, the sender's
// audit.validation (unsealed) and keys starting with ReservedKeyPrefix are
// moved aside into KeyMoved, and audit.validation holds the problems as
// JSON, sealed in KeySeal (all three removed when there is no problem).
// Non-string values outside the contract keep their type, keys are
// not renamed (a repaired key could collide with an existing one), and the
// span's times and status are left as they are: FromSpan repairs them
// again, flagging the same problem. Normalize is idempotent and does
// nothing to a span that is not audit-tagged.
//
// It reports whether the span holds problems afterwards: whether it has
// audit.validation, which callers count without looking it up again.
func Normalize(res pcommon.Resource, span ptrace.Span, opts Options) (problems bool) {
	if !IsAudit(span) {
		_, problems = span.Attributes().Get(entry.KeyValidation)
		return problems
	}
	// Most spans are well-formed: one pass over the attributes proves that
	// mapping would find no problem and change no value, and then only a
	// missing audit.result remains to fill in.
	if result, ok := clean(res, span, opts); ok {
		if result != "" {
			span.Attributes().PutStr(entry.KeyResult, result)
		}
		return false
	}
	return normalizeFully(res, span, opts)
}

// normalizeFully is Normalize without the shortcut for clean spans.
func normalizeFully(res pcommon.Resource, span ptrace.Span, opts Options) (problems bool) {
	m := opts.mapper()
	e := m.fromSpan(res, span)
	attrs := span.Attributes()
	if m.dups {
		removeDuplicateKeys(attrs)
	}

	q := mapper{max: opts.maxValueBytes(), quiet: true}
	repair := func(k string, v pcommon.Value) bool {
		if len(m.cut) > 0 && m.isCut(q.sanitizeKey("", k)) {
			v.SetStr("")
		} else {
			q.repairInPlace(v, 1)
		}
		return true
	}
	var own [numSlots - slotValidation]bool // a sealed span's pipeline keys seen
	attrs.Range(func(k string, v pcommon.Value) bool {
		slot := slotOf(k)
		switch {
		case isMapped(slot):
		case m.sealed && slot >= slotValidation && !own[slot-slotValidation]:
			own[slot-slotValidation] = true
			if slot == slotMoved {
				// The sender's values moved aside: each as the attribute
				// it was.
				v.Map().Range(repair)
			}
		default:
			repair(k, v)
		}
		return true
	})
	// Where the pipeline writes, the sender's values make room.
	// (A duplicate it removes, mapping flagged.)
	moved, _ := moveAside(attrs, m.sealed)

	putStr(attrs, entry.KeyActionType, e.ActionType)
	putStr(attrs, entry.KeyExecutionID, e.ExecutionID)
	putStr(attrs, entry.KeyTargetSystem, e.TargetSystem)
	if _, ok := attrs.Get(entry.KeyTargetResource); ok {
		putStr(attrs, entry.KeyTargetResource, e.TargetResource)
	}
	putOptional(attrs, entry.KeyValueProposed, e.ProposedValue)
	putOptional(attrs, entry.KeyValuePrevious, e.PreviousValue)
	putOptional(attrs, entry.KeyReasoning, e.Reasoning)
	putOptional(attrs, entry.KeyApprover, e.Approver)
	putStr(attrs, entry.KeyResult, e.Result)
	// Identity keys found on the span were taken from it; those on the
	// resource are left alone (the resource is shared by many spans).
	for _, id := range [...]struct {
		key string
		val *string
	}{{entry.KeyAgentID, e.AgentID}, {entry.KeyAgentName, e.AgentName}, {entry.KeyEndUserID, e.Principal}} {
		if _, ok := attrs.Get(id.key); ok && id.val != nil {
			putStr(attrs, id.key, *id.val)
		}
	}
	if e.Validation != nil {
		// A span normalized again (the processor after the connector)
		// keeps its seal when nothing it covers changed.
		if v, _ := attrs.Get(entry.KeyValidation); !m.sealed || moved || m.hasMoved || v.Str() != *e.Validation {
			putStr(attrs, entry.KeyValidation, *e.Validation)
			putSeal(span)
		}
	} else {
		// Only a sealed span can hold these without a problem to record.
		attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return k == entry.KeyValidation || k == KeySeal || k == KeyMoved })
	}
	return e.Validation != nil
}

// AddProblems adds ps to the pipeline's findings on span, as Normalize
// writes them: merged with the sealed audit.validation, if any, sorted,
// without duplicates, and sealed (see seal.go). A sender's audit.validation
// or reserved keys are moved aside into KeyMoved first, as Normalize moves
// them (mapping flags them), a later duplicate of one removed and flagged
// duplicate_key here, as mapping would. Framework capture calls it before
// Normalize.
func AddProblems(span ptrace.Span, ps []entry.Problem) {
	attrs := span.Attributes()
	var all []entry.Problem
	sealed := isSealed(span)
	if sealed {
		v, _ := attrs.Get(entry.KeyValidation)
		if old, err := parseProblems(v.Str()); err == nil {
			all = append(all, old...)
		} else {
			// Not what the pipeline writes: kept as mapping keeps it.
			all = append(all, entry.Problem{Field: entry.KeyValidation, Kind: entry.ProblemUnknownValue,
				Detail: truncate(strings.ToValidUTF8(v.Str(), "\uFFFD"), maxValidationDetail)})
		}
	}
	_, dups := moveAside(attrs, sealed)
	all = append(all, dups...)
	all = sortProblems(append(all, ps...))
	attrs.PutStr(entry.KeyValidation, string(appendProblems(nil, all)))
	putSeal(span)
}

// removeDuplicateKeys removes from m every key (after UTF-8 repair) that
// an earlier one already has: what mapping dropped.
func removeDuplicateKeys(m pcommon.Map) {
	seen := make(map[string]struct{}, m.Len())
	q := mapper{quiet: true}
	m.RemoveIf(func(k string, _ pcommon.Value) bool {
		k = q.sanitizeKey("", k)
		if _, dup := seen[k]; dup {
			return true
		}
		seen[k] = struct{}{}
		return false
	})
}

// duplicateKeys reports whether two keys of m are equal after UTF-8 repair.
func duplicateKeys(m pcommon.Map) bool {
	if m.Len() < 2 {
		return false
	}
	keys := make([]string, 0, m.Len())
	q := mapper{quiet: true}
	m.Range(func(k string, _ pcommon.Value) bool {
		keys = append(keys, q.sanitizeKey("", k))
		return true
	})
	slices.Sort(keys)
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			return true
		}
	}
	return false
}

// keyBit is one bit of a 64-bit filter of a map's keys: two equal keys have
// the same bit, so a map whose keys set 64-bit filter bits without a
// collision has no duplicate key. It reads three bytes, not the whole key.
func keyBit(k string) uint64 {
	n := uint(len(k))
	if n == 0 {
		return 1
	}
	return 1 << ((n*0x9E3779B1 ^ uint(k[n-1])*0x85EBCA6B ^ uint(k[n/2])*0xC2B2AE35) >> 7 & 63)
}

// Bounds the clean check uses to prove an entry within MaxEntryBytes without
// building it: JSON escaping at most sextuples a string (a control byte
// becomes \u00xx), and each value adds at most cleanValueOverhead bytes
// (quotes, separators, a number's digits); cleanFixedBytes covers the ids,
// status and brackets.
const (
	cleanEscapeFactor  = 6
	cleanValueOverhead = 32
	cleanFixedBytes    = 128
)

// clean reports whether FromSpan would record no problem for span and
// Normalize would leave every value as it is: both ids set; start and end
// times within int64, the end not before the start; a status code of the
// enum; action type, execution id and
// target system non-empty strings, the action type a known one; every other
// contract and identity value a string; no audit.validation (so no seal is
// computed for a clean span), no unknown audit.* key, no key starting with
// ReservedKeyPrefix and no key twice (a filter of the keys' bits proves
// most spans free of duplicates without comparing keys); every string (nested ones
// included) valid UTF-8 within max bytes, the column values without a NUL
// byte, every key valid UTF-8; nothing nested deeper than MaxDepth; and a
// bound on the entry's size (cleanEscapeFactor) within MaxEntryBytes. Where
// audit.result is absent it also returns the derived result, which
// Normalize stores ("" when audit.result is present).
func clean(res pcommon.Resource, span ptrace.Span, opts Options) (result string, ok bool) {
	if span.TraceID().IsEmpty() || span.SpanID().IsEmpty() {
		return "", false
	}
	if start, end := span.StartTimestamp(), span.EndTimestamp(); uint64(start) > math.MaxInt64 || uint64(end) > math.MaxInt64 || end < start {
		return "", false
	}
	switch span.Status().Code() {
	case ptrace.StatusCodeUnset, ptrace.StatusCodeOk, ptrace.StatusCodeError:
	default:
		return "", false
	}
	max := opts.maxValueBytes()
	const required = 1<<slotActionType | 1<<slotExecutionID | 1<<slotTargetSystem
	var seen uint32                         // the slots found
	var errorType, httpStatus pcommon.Value // for the result; zero when absent
	var filter uint64
	collision := false
	size := cleanFixedBytes
	ok = true
	span.Attributes().Range(func(k string, v pcommon.Value) bool {
		slot := slotOf(k)
		if slot == slotOther {
			bit := keyBit(k)
			collision = collision || filter&bit != 0
			filter |= bit
			size += cleanEscapeFactor*len(k) + cleanValueOverhead
			ok = validUTF8(k) && !entry.IsUnknownAuditKey(k) && !IsReservedKey(k) && cleanValue(v, max, 1, &size)
			return ok
		}
		if seen&(1<<slot) != 0 {
			ok = false // a duplicate
			return false
		}
		seen |= 1 << slot
		var s string
		switch slot {
		case slotActionType:
			s, ok = cleanColumn(v, max)
			ok = ok && entry.IsKnownActionType(s)
		case slotExecutionID, slotTargetSystem:
			s, ok = cleanColumn(v, max)
			ok = ok && s != ""
		case slotValidation, slotSeal, slotMoved:
			ok = false
		case slotErrorType, slotHTTPStatus:
			if slot == slotErrorType {
				errorType = v
			} else {
				httpStatus = v
			}
			size += cleanEscapeFactor*len(k) + cleanValueOverhead
			ok = cleanValue(v, max, 1, &size)
		case slotServiceName: // a column and an attribute
			s, ok = cleanColumn(v, max)
			size += cleanEscapeFactor*(len(k)+len(s)) + cleanValueOverhead
		default:
			s, ok = cleanColumn(v, max)
		}
		size += len(s)
		return ok
	})
	if !ok || seen&required != required {
		return "", false
	}
	// The resource's identity keys are read when the span lacks them.
	resAttrs := res.Attributes()
	for _, k := range [...]string{entry.KeyAgentID, entry.KeyAgentName, entry.KeyServiceName, entry.KeyEndUserID} {
		if v, found := resAttrs.Get(k); found {
			s, good := cleanColumn(v, max)
			if !good {
				return "", false
			}
			size += len(s)
		}
	}
	if seen&(1<<slotResult) == 0 {
		var sa spanAttrs
		sa.vals[slotErrorType], sa.vals[slotHTTPStatus] = errorType, httpStatus
		sa.found = seen & (1<<slotErrorType | 1<<slotHTTPStatus)
		result = deriveResultOf(span, &sa)
		if !validText(result) || len(result) > max {
			return "", false
		}
		size += len(result)
	}
	if size > opts.maxEntryBytes() || collision && duplicateKeys(span.Attributes()) {
		return "", false
	}
	return result, true
}

// cleanColumn returns v's string when v is a string a column stores as it
// is: valid UTF-8 without a NUL byte, within max bytes.
func cleanColumn(v pcommon.Value, max int) (string, bool) {
	if v.Type() != pcommon.ValueTypeStr {
		return "", false
	}
	s := v.Str()
	return s, len(s) <= max && validText(s)
}

// cleanValue reports whether mapping v, at depth, records no problem: every
// string in it, nested ones included, valid UTF-8 within max bytes, every
// byte string within max bytes of base64, every map key valid and no map
// key twice, no array or map with elements deeper than MaxDepth (v itself
// is at depth; a top-level value at 1). It adds a bound on v's JSON size
// to *size.
func cleanValue(v pcommon.Value, max, depth int, size *int) bool {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		s := v.Str()
		*size += cleanEscapeFactor*len(s) + cleanValueOverhead
		return len(s) <= max && validUTF8(s)
	case pcommon.ValueTypeBytes:
		n := base64.StdEncoding.EncodedLen(v.Bytes().Len())
		*size += n + cleanValueOverhead
		return n <= max
	case pcommon.ValueTypeSlice:
		sl := v.Slice()
		*size += cleanValueOverhead
		if depth > entry.MaxDepth && sl.Len() > 0 {
			return false
		}
		for i := 0; i < sl.Len(); i++ {
			if !cleanValue(sl.At(i), max, depth+1, size) {
				return false
			}
		}
	case pcommon.ValueTypeMap:
		mm := v.Map()
		*size += cleanValueOverhead
		if depth > entry.MaxDepth && mm.Len() > 0 {
			return false
		}
		ok := true
		var filter uint64
		collision := false
		mm.Range(func(k string, mv pcommon.Value) bool {
			bit := keyBit(k)
			collision = collision || filter&bit != 0
			filter |= bit
			*size += cleanEscapeFactor*len(k) + cleanValueOverhead
			ok = validUTF8(k) && cleanValue(mv, max, depth+1, size)
			return ok
		})
		return ok && !(collision && duplicateKeys(mm))
	default:
		*size += cleanValueOverhead
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
