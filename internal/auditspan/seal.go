package auditspan

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"strings"
	"sync"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Sealing: the pipeline's findings reach the exporter in a way no sender
// can forge.
//
// The connector and the processor (Normalize, and AddProblems for framework
// capture) write the problems they find into audit.validation, and the
// exporter (FromSpan) takes them as its own findings. A sender can set any
// attribute, audit.validation included, so the pipeline seals what it
// writes: KeySeal holds, in lower-case hex,
//
//	HMAC-SHA256(key, trace_id ‖ span_id ‖ uint64be(len(v)) ‖ v ‖ moved)
//
// where key is 32 random bytes drawn once per process, trace_id and span_id
// are the span's 16 and 8 raw bytes, v is audit.validation's text and moved
// is the canonical JSON of KeyMoved's entries (each value at depth 1), or
// nothing when the span has no KeyMoved. FromSpan takes audit.validation as
// findings only when the seal verifies; otherwise the value is the
// sender's: it stays in the attributes column under audit.validation, flagged
// ProblemUnsealedValidation, and is never parsed.
//
// The key never leaves the process and is not kept: only a pipeline in the
// exporter's process can seal, and a seal is worth nothing after a restart
// or in another collector. A span normalized by a collector in front of
// this one arrives with its findings unsealed, and they are kept, flagged,
// as the sender's.
//
// Keys starting with ReservedKeyPrefix (any letter case) are the
// collector's. One a sender sets, KeySeal and KeyMoved included, is kept in
// attributes and flagged ProblemReservedKey, never trusted. Before the
// pipeline writes its keys, the sender's audit.validation and every key of
// the collector's namespace are moved aside into KeyMoved, a map from the
// original key to the value, which the exporter trusts only under a seal
// that verifies, and then unpacks into the attributes column under the
// original keys: the entry is the one the exporter alone would make of the
// span as sent. (FromOwnSpan maps a span the collector built itself, whose
// reserved keys are its own.)

// Keys the collector writes on an audit span.
const (
	// KeySeal holds the seal of audit.validation and KeyMoved (see above).
	KeySeal = "agentaudit.seal"
	// KeyMoved holds, under a seal, the sender's own values of the keys
	// the pipeline writes (audit.validation, and any key starting with
	// ReservedKeyPrefix), moved aside from their keys.
	KeyMoved = "agentaudit.moved"

	// ReservedKeyPrefix starts the attribute keys the collector reserves
	// for itself (in any letter case), as ReservedActionPrefix does for
	// action types.
	ReservedKeyPrefix = "agentaudit."
)

// Problem kinds for what a sender put under the pipeline's keys.
const (
	// ProblemUnsealedValidation: an audit.validation the pipeline did not
	// seal; kept in attributes, not taken as findings.
	ProblemUnsealedValidation = "unsealed_validation"
	// ProblemReservedKey: a key starting with ReservedKeyPrefix that the
	// sender set (a KeySeal that does not verify included); kept in
	// attributes, not trusted.
	ProblemReservedKey = "reserved_key"
)

// Details of the problems above.
const (
	detailUnsealed    = "supplied by the sender; kept in attributes, not taken as findings"
	detailReservedKey = "reserved for the collector, supplied by the sender; kept in attributes, not trusted"
)

// IsReservedKey reports whether k is in the collector's key namespace: it
// starts with ReservedKeyPrefix, ASCII letter case ignored.
func IsReservedKey(k string) bool {
	// Most keys fail on the first byte.
	return len(k) >= len(ReservedKeyPrefix) && k[0]|0x20 == 'a' && entry.IsReservedActionType(k)
}

// sealKey is the process's secret: see above.
var sealKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k) // never fails: a failure crashes the program
	return k
}()

// A sealer computes seals; its buffer, on the heap with it, keeps sealing
// free of allocations.
type sealer struct {
	mac hash.Hash
	buf [16 + 8 + 8 + sha256.Size]byte // trace id, span id, length; then the sum
}

var sealers = sync.Pool{New: func() any { return &sealer{mac: hmac.New(sha256.New, sealKey)} }}

// sealOf returns the seal of validation and moved on the span with ids tid
// and sid; moved is the canonical form of KeyMoved (appendMoved), nil when
// absent.
func sealOf(tid pcommon.TraceID, sid pcommon.SpanID, validation string, moved []byte) [sha256.Size]byte {
	s := sealers.Get().(*sealer)
	s.mac.Reset()
	copy(s.buf[0:16], tid[:])
	copy(s.buf[16:24], sid[:])
	binary.BigEndian.PutUint64(s.buf[24:32], uint64(len(validation)))
	s.mac.Write(s.buf[:32])
	s.mac.Write(unsafe.Slice(unsafe.StringData(validation), len(validation)))
	s.mac.Write(moved)
	sum := [sha256.Size]byte(s.mac.Sum(s.buf[32:32]))
	sealers.Put(s)
	return sum
}

// appendMoved appends the canonical JSON of moved's entries, each value at
// depth 1 (as its attribute was), strings repaired but not cut.
func appendMoved(dst []byte, moved pcommon.Map) []byte {
	q := mapper{max: math.MaxInt, quiet: true}
	kvs := make([]keyValue, 0, moved.Len())
	moved.Range(func(k string, v pcommon.Value) bool {
		kvs = append(kvs, keyValue{key: q.sanitizeKey("", k), val: v})
		return true
	})
	return q.appendObject(dst, "", kvs, 1)
}

// verifySeal reports whether seal is the seal of validation and moved (when
// hasMoved) on the span with ids tid and sid.
func verifySeal(tid pcommon.TraceID, sid pcommon.SpanID, validation, seal, moved pcommon.Value, hasMoved bool) bool {
	if validation.Type() != pcommon.ValueTypeStr || seal.Type() != pcommon.ValueTypeStr {
		return false
	}
	var given [sha256.Size]byte
	if s := seal.Str(); len(s) != hex.EncodedLen(len(given)) || strings.ToLower(s) != s {
		return false
	} else if _, err := hex.Decode(given[:], unsafe.Slice(unsafe.StringData(s), len(s))); err != nil {
		return false
	}
	var m []byte
	if hasMoved {
		if moved.Type() != pcommon.ValueTypeMap {
			return false
		}
		m = appendMoved(nil, moved.Map())
	}
	want := sealOf(tid, sid, validation.Str(), m)
	return hmac.Equal(given[:], want[:])
}

// isSealed reports whether span's audit.validation carries a seal that
// verifies.
func isSealed(span ptrace.Span) bool {
	attrs := span.Attributes()
	v, ok := attrs.Get(entry.KeyValidation)
	if !ok {
		return false
	}
	s, ok := attrs.Get(KeySeal)
	if !ok {
		return false
	}
	moved, hasMoved := attrs.Get(KeyMoved)
	return verifySeal(span.TraceID(), span.SpanID(), v, s, moved, hasMoved)
}

// putSeal seals span's audit.validation and KeyMoved, which the pipeline
// has just written.
func putSeal(span ptrace.Span) {
	attrs := span.Attributes()
	v, _ := attrs.Get(entry.KeyValidation)
	var m []byte
	if moved, ok := attrs.Get(KeyMoved); ok && moved.Type() == pcommon.ValueTypeMap {
		m = appendMoved(nil, moved.Map())
	}
	sum := sealOf(span.TraceID(), span.SpanID(), v.Str(), m)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	if old, ok := attrs.Get(KeySeal); ok && old.Type() == pcommon.ValueTypeStr && old.Str() == string(h[:]) {
		return // normalized again: no need for a new string
	}
	attrs.PutStr(KeySeal, string(h[:]))
}

// moveAside moves the sender's values of the keys the pipeline writes into
// KeyMoved: audit.validation, unless the span is sealed, and every key
// starting with ReservedKeyPrefix, but for the pipeline's own (the first
// audit.validation, KeySeal and KeyMoved) of a sealed span. They go after
// the entries a sealed span's KeyMoved already has, in order. A key
// KeyMoved already holds (after UTF-8 repair) is a later duplicate: it is
// removed, as Normalize removes duplicates, and the duplicate_key problem
// mapping records for it is returned. It reports whether it changed attrs.
func moveAside(attrs pcommon.Map, sealed bool) (changed bool, dups []entry.Problem) {
	var own [numSlots - slotValidation]bool
	senders := func(k string) bool {
		if k != entry.KeyValidation && !IsReservedKey(k) {
			return false
		}
		if slot := slotOf(k); sealed && slot >= slotValidation && !own[slot-slotValidation] {
			own[slot-slotValidation] = true
			return false
		}
		return true
	}
	n := 0
	attrs.Range(func(k string, _ pcommon.Value) bool {
		if senders(k) {
			n++
		}
		return true
	})
	if n == 0 {
		return false, nil
	}
	own = [len(own)]bool{}
	moved := pcommon.NewMap()
	if sealed {
		if v, ok := attrs.Get(KeyMoved); ok && v.Type() == pcommon.ValueTypeMap {
			v.Map().MoveTo(moved)
		}
	}
	var m mapper // records the duplicates
	q := mapper{quiet: true}
	holds := func(k string) bool {
		k = q.sanitizeKey("", k)
		found := false
		moved.Range(func(mk string, _ pcommon.Value) bool {
			found = q.sanitizeKey("", mk) == k
			return !found
		})
		return found
	}
	attrs.RemoveIf(func(k string, v pcommon.Value) bool {
		if !senders(k) {
			return false
		}
		if holds(k) {
			m.duplicate(q.sanitizeKey("", k), false, v)
			return true
		}
		v.MoveTo(moved.PutEmpty(k))
		return true
	})
	moved.MoveTo(attrs.PutEmptyMap(KeyMoved))
	return true, m.problems
}
