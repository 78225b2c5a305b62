package auditspan

// Values: the string form of attribute values for the columns, their
// repair and truncation, and the canonical JSON of the attributes column.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// plainString is the string form of a value (see FromSpan), without
// bookkeeping, repair or truncation.
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
	return asString(v)
}

// asString is v.AsString, but arrays and maps are canonical JSON (strings
// repaired, not truncated) cut at MaxDepth: pdata's form recurses as deep
// as the value goes.
func asString(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeSlice, pcommon.ValueTypeMap:
		q := mapper{max: math.MaxInt, quiet: true}
		return string(q.appendCanonical(nil, "", v, 1))
	}
	return v.AsString()
}

// duplicate records that a value of key field was dropped because an
// earlier one has the same key: with the length and SHA-256 of its string
// form (strings repaired, not truncated).
func (m *mapper) duplicate(field string, nested bool, v pcommon.Value) {
	if !nested {
		m.dups = true
	}
	if m.quiet {
		return
	}
	s := plainString(v)
	if v.Type() == pcommon.ValueTypeStr {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	detail := "kept the first value"
	if nested {
		detail = "kept the first value of a nested key"
	}
	m.add(entry.Problem{Field: field, Kind: entry.ProblemDuplicateKey, Detail: detail, OriginalBytes: int64(len(s)), SHA256: sha256Hex(s)})
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
		if s = v.Str(); len(s) <= m.max && validText(s) {
			return s
		}
		return m.column(field, s)
	case pcommon.ValueTypeSlice, pcommon.ValueTypeMap:
		s = string(m.appendCanonical(nil, field, v, 1))
	case pcommon.ValueTypeBytes:
		s = base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())
	case pcommon.ValueTypeEmpty:
		s = ""
	default:
		s = plainString(v)
	}
	m.add(entry.Problem{Field: field, Kind: entry.ProblemNotString, Detail: v.Type().String()})
	return m.sanitize(field, s)
}

// column is sanitize for a string a column stores as it is, outside JSON:
// a NUL byte in it is kept and recorded.
func (m *mapper) column(field, s string) string {
	s = m.sanitize(field, s)
	if strings.IndexByte(s, 0) >= 0 {
		m.add(entry.Problem{Field: field, Kind: entry.ProblemNULByte, Detail: "kept"})
	}
	return s
}

// sanitize repairs invalid UTF-8 in s and truncates it to the limit,
// recording both under field. Valid values within the limit are returned
// as they are, without a copy.
func (m *mapper) sanitize(field, s string) string {
	if !validUTF8(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		m.add(entry.Problem{Field: field, Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"})
	}
	if len(s) > m.max {
		if !m.quiet {
			m.add(entry.Problem{
				Field:         field,
				Kind:          entry.ProblemTruncated,
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

// repairInPlace applies sanitize to every string in v, at depth, in place,
// empties the arrays and maps deeper than MaxDepth and removes the values
// of repeated map keys after the first, as mapping does.
func (m *mapper) repairInPlace(v pcommon.Value, depth int) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		if s := v.Str(); !validUTF8(s) || len(s) > m.max {
			v.SetStr(m.sanitize("", s))
		}
	case pcommon.ValueTypeSlice:
		sl := v.Slice()
		if depth > entry.MaxDepth && sl.Len() > 0 {
			v.SetEmptySlice()
			return
		}
		for i := 0; i < sl.Len(); i++ {
			m.repairInPlace(sl.At(i), depth+1)
		}
	case pcommon.ValueTypeMap:
		mm := v.Map()
		if depth > entry.MaxDepth && mm.Len() > 0 {
			v.SetEmptyMap()
			return
		}
		if duplicateKeys(mm) {
			removeDuplicateKeys(mm)
		}
		mm.Range(func(_ string, mv pcommon.Value) bool {
			m.repairInPlace(mv, depth+1)
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
	m.add(entry.Problem{Field: field, Kind: entry.ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"})
	return strings.ToValidUTF8(k, "\uFFFD")
}

// appendObject writes kvs, the values at depth, sorted bytewise by key. Of
// duplicate keys the first one wins, as with pcommon.Map.Get; the others
// are recorded. When field is "" each value's problems are recorded under
// its own key.
func (m *mapper) appendObject(dst []byte, field string, kvs []keyValue, depth int) []byte {
	slices.SortStableFunc(kvs, func(a, b keyValue) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i, kv := range kvs {
		if i > 0 && kv.key == kvs[i-1].key {
			if field == "" {
				m.duplicate(kv.key, false, kv.val)
			} else {
				m.duplicate(field, true, kv.val)
			}
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
		dst = m.appendCanonical(dst, f, kv.val, depth)
	}
	return append(dst, '}')
}

// appendCanonical appends v as canonical JSON: strings (repaired and
// truncated) as JSON strings, Int as an integer, Double as a number in
// shortest 'g' form (NaN and infinities as the strings "NaN", "Infinity",
// "-Infinity"), Bool as true/false, Bytes as a standard base64 string
// (truncated as strings are), Slice
// as an array, Map as an object with keys sorted bytewise, Empty as null.
// No insignificant whitespace and no HTML escaping. v is at depth (a
// top-level value at 1): an array or map deeper than MaxDepth is written
// empty, so that the recursion is bounded.
func (m *mapper) appendCanonical(dst []byte, field string, v pcommon.Value, depth int) []byte {
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
		if depth > entry.MaxDepth && sl.Len() > 0 {
			m.tooDeep(field)
			return append(dst, "[]"...)
		}
		dst = append(dst, '[')
		for i := 0; i < sl.Len(); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = m.appendCanonical(dst, field, sl.At(i), depth+1)
		}
		return append(dst, ']')
	case pcommon.ValueTypeMap:
		if depth > entry.MaxDepth && v.Map().Len() > 0 {
			m.tooDeep(field)
			return append(dst, "{}"...)
		}
		var arr [16]keyValue
		kvs := arr[:0]
		v.Map().Range(func(k string, mv pcommon.Value) bool {
			kvs = append(kvs, keyValue{key: m.sanitizeKey(field, k), val: mv})
			return true
		})
		return m.appendObject(dst, field, kvs, depth+1)
	}
	return append(dst, "null"...)
}

func (m *mapper) tooDeep(field string) {
	m.add(entry.Problem{Field: field, Kind: entry.ProblemTooDeep, Detail: "nested deeper than " + strconv.Itoa(entry.MaxDepth) + " levels: stored empty"})
}
