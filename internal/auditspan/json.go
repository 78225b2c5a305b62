package auditspan

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// The canonical JSON written here is the byte-exact form of the attributes
// and validation columns, so it is hashed into the chain: it must never
// change. Strings are escaped exactly as encoding/json does with
// SetEscapeHTML(false): '"' and '\\', the control characters (\b \f \n \r \t
// in short form, the others as \u00xx with lower-case hex), U+2028 and U+2029;
// nothing else. Callers pass valid UTF-8 only.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s, which must be valid UTF-8, as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONFloat appends f as a JSON number in its shortest 'g' form, the
// same digits as the string form of a Double value. JSON has no NaN or
// infinities: those become the strings "NaN", "Infinity" and "-Infinity".
func appendJSONFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// compareProblems orders problems by Field, then Kind, then the remaining
// fields so that the order is total and the encoding deterministic.
func compareProblems(a, b entry.Problem) int {
	if c := cmp.Compare(a.Field, b.Field); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Detail, b.Detail); c != 0 {
		return c
	}
	if c := cmp.Compare(a.OriginalBytes, b.OriginalBytes); c != 0 {
		return c
	}
	return cmp.Compare(a.SHA256, b.SHA256)
}

// sortProblems sorts ps and removes duplicates in place.
func sortProblems(ps []entry.Problem) []entry.Problem {
	slices.SortFunc(ps, compareProblems)
	return slices.Compact(ps)
}

// appendProblems appends ps as a compact JSON array of objects with the keys
// of Problem's JSON tags, in declaration order, empty optional keys omitted.
func appendProblems(dst []byte, ps []entry.Problem) []byte {
	dst = append(dst, '[')
	for i, p := range ps {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"field":`...)
		dst = appendJSONString(dst, p.Field)
		dst = append(dst, `,"problem":`...)
		dst = appendJSONString(dst, p.Kind)
		if p.Detail != "" {
			dst = append(dst, `,"detail":`...)
			dst = appendJSONString(dst, p.Detail)
		}
		if p.OriginalBytes != 0 {
			dst = append(dst, `,"original_bytes":`...)
			dst = strconv.AppendInt(dst, p.OriginalBytes, 10)
		}
		if p.SHA256 != "" {
			dst = append(dst, `,"sha256":`...)
			dst = appendJSONString(dst, p.SHA256)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

var errMalformedValidation = errors.New("not a JSON array of problems")

// parseProblems reads a validation value: a JSON array of problem objects,
// each with a non-empty problem kind, and no other keys than Problem's. The
// field may be empty: an attribute key can be.
func parseProblems(s string) ([]entry.Problem, error) {
	trimmed := bytes.TrimSpace([]byte(s))
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, errMalformedValidation
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	var ps []entry.Problem
	if err := dec.Decode(&ps); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errMalformedValidation
	}
	for _, p := range ps {
		if p.Kind == "" {
			return nil, errMalformedValidation
		}
	}
	return ps, nil
}
