// Package chain links audit entries into a SHA-256 hash chain.
//
// Each entry's hash covers a canonical, length-prefixed encoding of every
// column of the entry, including the previous entry's hash, so that changing,
// removing, inserting or reordering an entry breaks every later link. The
// encoding is deliberately simple enough to recompute in plain SQL (see
// docs/FORMAT.md and docs/verify.sql): auditors need not trust this code.
package chain // import "github.com/agentaudit/agentaudit/internal/chain"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unsafe"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// The format tags: the first field of every canonical encoding. A tag
// separates this format's hashes from any other use of SHA-256 and names
// the encoding's version, which decides its fields.
const (
	// FormatTagV2 starts the encoding of an entry with an end time
	// (entry.Entry.EndTimeUnixNano set): every entry the collector writes.
	FormatTagV2 = "agentaudit.entry.v2"
	// FormatTagV1 starts the encoding of an entry without one: a row of
	// trail format version 1, or a version 1 entry sealed into a later
	// file from a write-ahead log an older collector wrote. A row whose
	// end_time_unix_nano is NULL is hashed as version 1.
	FormatTagV1 = "agentaudit.entry.v1"
)

// GenesisHash is the prev_hash of a chain's first entry (seq 0).
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// nullField encodes a NULL. It cannot be confused with any string, whose
// encoding always starts with a decimal digit.
const nullField = '-'

// Head is the state a chain continues from.
type Head struct {
	// Size is the number of entries in the chain, which is also the seq the
	// next entry gets.
	Size int64
	// Hash is the entry_hash of entry Size-1, or GenesisHash when Size is 0.
	Hash string
}

// Genesis is the head of an empty chain.
func Genesis() Head { return Head{Size: 0, Hash: GenesisHash} }

// Chain assigns sequence numbers and hashes. It is not safe for concurrent
// use: the caller serializes appends, which fixes the order of the chain.
type Chain struct {
	id   string
	head Head
	buf  []byte
	sum  [sha256.Size]byte
}

// New returns a chain named id that continues from head.
func New(id string, head Head) *Chain {
	return &Chain{id: id, head: head}
}

// ID returns the chain id.
func (c *Chain) ID() string { return c.id }

// Head returns the current head: the size and the last entry's hash.
func (c *Chain) Head() Head { return c.head }

// Append links e at the end of the chain: it sets e.ChainID, e.Seq,
// e.PrevHash and e.EntryHash, and advances the head.
func (c *Chain) Append(e *entry.Entry) {
	e.ChainID = c.id
	e.Seq = c.head.Size
	e.PrevHash = c.head.Hash
	c.buf = AppendCanonical(c.buf[:0], e)
	c.sum = sha256.Sum256(c.buf)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], c.sum[:])
	e.EntryHash = string(h[:]) // one allocation, where hex.EncodeToString makes two
	c.head = Head{Size: e.Seq + 1, Hash: e.EntryHash}
}

// Canonical returns the canonical encoding of the entry last appended. It
// is valid until the next Append: copy it to keep it.
func (c *Chain) Canonical() []byte { return c.buf }

// Sum returns the entry hash of the entry last appended as the raw 32
// bytes of its SHA-256 (its EntryHash is their hex), for whoever needs the
// digest itself, such as a batch's Merkle tree: nothing hashes twice.
func (c *Chain) Sum() [sha256.Size]byte { return c.sum }

// Hash returns the hex SHA-256 of e's canonical encoding, the value its
// entry_hash must have. It reads e.PrevHash and ignores e.EntryHash.
func Hash(e *entry.Entry) string {
	sum := sha256.Sum256(AppendCanonical(nil, e))
	return hex.EncodeToString(sum[:])
}

// AppendCanonical appends the canonical encoding of e to dst. With an end
// time (e.EndTimeUnixNano not nil), version 2:
//
//	field(FormatTagV2) || field(chain_id) || field(seq) || field(time_unix_nano) ||
//	field(end_time_unix_nano) ||
//	field(execution_id) || field(trace_id) || field(span_id) || field(parent_span_id) ||
//	field(agent_id) || field(agent_name) || field(service_name) || field(principal) ||
//	field(sender) ||
//	field(action_type) || field(target_system) || field(target_resource) ||
//	field(proposed_value) || field(previous_value) || field(reasoning) ||
//	field(approver) || field(result) || field(status_code) || field(attributes) ||
//	field(validation) || field(prev_hash)
//
// Without one, version 1: the same with field(FormatTagV1) first and no
// field(end_time_unix_nano) nor field(sender). Version 1 has no sender: an
// entry without an end time must have none (parquetfile.Encode refuses
// one that has), or the sender would be stored but not hashed.
//
// field(NULL) is the single byte '-' and field(s) is the decimal byte
// length of s, a ':' and the bytes of s. Integers are encoded as the string of
// their decimal digits (with a leading '-' when negative). entry_hash itself
// is not part of the encoding.
func AppendCanonical(dst []byte, e *entry.Entry) []byte {
	// Room for the whole encoding at once: the appends below then never
	// copy what is already written.
	dst = slices.Grow(dst, canonicalBound(e))
	if e.EndTimeUnixNano == nil {
		dst = appendString(dst, FormatTagV1)
	} else {
		dst = appendString(dst, FormatTagV2)
	}
	dst = appendString(dst, e.ChainID)
	dst = appendInt(dst, e.Seq)
	dst = appendInt(dst, e.TimeUnixNano)
	if e.EndTimeUnixNano != nil {
		dst = appendInt(dst, *e.EndTimeUnixNano)
	}
	dst = appendString(dst, e.ExecutionID)
	dst = appendString(dst, e.TraceID)
	dst = appendString(dst, e.SpanID)
	dst = appendOptional(dst, e.ParentSpanID)
	dst = appendOptional(dst, e.AgentID)
	dst = appendOptional(dst, e.AgentName)
	dst = appendOptional(dst, e.ServiceName)
	dst = appendOptional(dst, e.Principal)
	if e.EndTimeUnixNano != nil {
		dst = appendOptional(dst, e.Sender)
	}
	dst = appendString(dst, e.ActionType)
	dst = appendString(dst, e.TargetSystem)
	dst = appendString(dst, e.TargetResource)
	dst = appendOptional(dst, e.ProposedValue)
	dst = appendOptional(dst, e.PreviousValue)
	dst = appendOptional(dst, e.Reasoning)
	dst = appendOptional(dst, e.Approver)
	dst = appendString(dst, e.Result)
	dst = appendString(dst, e.StatusCode)
	dst = appendString(dst, e.Attributes)
	dst = appendOptional(dst, e.Validation)
	dst = appendString(dst, e.PrevHash)
	return dst
}

// canonicalBound is at least the length of e's canonical encoding: the
// bytes of its strings, the three integers' digits and sign, and for each of
// the 26 fields at most a 20-digit length and a ':'.
func canonicalBound(e *entry.Entry) int {
	n := 26*21 + 3*20 + len(FormatTagV2) + len(e.ChainID) + len(e.ExecutionID) + len(e.TraceID) +
		len(e.SpanID) + len(e.ActionType) + len(e.TargetSystem) + len(e.TargetResource) + len(e.Result) +
		len(e.StatusCode) + len(e.Attributes) + len(e.PrevHash)
	for _, p := range [...]*string{e.ParentSpanID, e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.Sender,
		e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Validation} {
		if p != nil {
			n += len(*p)
		}
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = appendLength(dst, len(s))
	return append(dst, s...)
}

// appendLength appends n in decimal and a ':': for n below 100, most of a
// canonical encoding's fields, without strconv.
func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 10:
		return append(dst, byte('0'+n), ':')
	case n < 100:
		return append(dst, byte('0'+n/10), byte('0'+n%10), ':')
	}
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, ':')
}

func appendOptional(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, nullField)
	}
	return appendString(dst, *s)
}

func appendInt(dst []byte, v int64) []byte {
	var tmp [20]byte
	digits := strconv.AppendInt(tmp[:0], v, 10)
	dst = appendLength(dst, len(digits))
	return append(dst, digits...)
}

// ErrMalformed: bytes that are not a canonical encoding of this format.
var ErrMalformed = errors.New("chain: malformed canonical encoding")

// DecodeCanonical parses one canonical encoding at the start of b, as
// AppendCanonical writes it, of either version (its tag says which: a
// version 2 entry has an end time and a sender field, a version 1 entry
// neither), and returns the entry (with EntryHash recomputed from the
// bytes) and the rest of b. It is the inverse of AppendCanonical; errors
// wrap ErrMalformed.
func DecodeCanonical(b []byte) (entry.Entry, []byte, error) {
	d := decoder{b: b, start: b}
	var e entry.Entry
	d.entry(&e)
	if d.err != nil {
		return entry.Entry{}, b, d.err
	}
	n := len(b) - len(d.b)
	sum := sha256.Sum256(b[:n])
	e.EntryHash = hex.EncodeToString(sum[:])
	return e, d.b, nil
}

// entry reads the fields of one encoding into e.
func (d *decoder) entry(e *entry.Entry) {
	v2 := false
	switch tag := d.str(); {
	case d.err != nil:
	case tag == FormatTagV2:
		v2 = true
	case tag != FormatTagV1:
		d.fail("format tag %q, want %q or %q", tag, FormatTagV2, FormatTagV1)
	}
	e.ChainID = d.str()
	e.Seq = d.int()
	e.TimeUnixNano = d.int()
	e.EndTimeUnixNano = nil
	if v2 {
		if end := d.int(); d.err == nil {
			e.EndTimeUnixNano = &end
		}
	}
	e.ExecutionID = d.str()
	e.TraceID = d.str()
	e.SpanID = d.str()
	e.ParentSpanID = d.opt()
	e.AgentID = d.opt()
	e.AgentName = d.opt()
	e.ServiceName = d.opt()
	e.Principal = d.opt()
	e.Sender = nil
	if v2 {
		e.Sender = d.opt()
	}
	e.ActionType = d.str()
	e.TargetSystem = d.str()
	e.TargetResource = d.str()
	e.ProposedValue = d.opt()
	e.PreviousValue = d.opt()
	e.Reasoning = d.opt()
	e.Approver = d.opt()
	e.Result = d.str()
	e.StatusCode = d.str()
	e.Attributes = d.str()
	e.Validation = d.opt()
	e.PrevHash = d.str()
}

type decoder struct {
	b, start []byte
	err      error
	// view makes strings alias b instead of copying; optional values then
	// go to opts in order.
	view bool
	opts *[NumOptional]string
	nopt int
}

// NumOptional is the number of optional (nullable) string fields of an
// entry of version 2 (a version 1 entry has one fewer: no sender).
const NumOptional = 11

// DecodeView parses one canonical encoding at the start of b into e, like
// DecodeCanonical, but without copying or hashing: e's strings alias b,
// which must not change while e is in use, its optional fields point into
// opts (the end time of a version 2 entry is allocated), and e.EntryHash
// is left alone. It returns the rest of b.
func DecodeView(b []byte, e *entry.Entry, opts *[NumOptional]string) ([]byte, error) {
	d := decoder{b: b, start: b, view: true, opts: opts}
	d.entry(e)
	if d.err != nil {
		return b, d.err
	}
	return d.b, nil
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w at byte %d: %s", ErrMalformed, len(d.start)-len(d.b), fmt.Sprintf(format, args...))
	}
}

// field reads one field; null reports a NULL.
func (d *decoder) field() (s string, null bool) {
	if d.err != nil {
		return "", false
	}
	if len(d.b) > 0 && d.b[0] == nullField {
		d.b = d.b[1:]
		return "", true
	}
	// The length's digits and its ':' in one pass; the slow path only
	// names what is wrong.
	var n uint64
	colon := 0
	for colon < len(d.b) && colon < 20 && d.b[colon] >= '0' && d.b[colon] <= '9' {
		n = n*10 + uint64(d.b[colon]-'0')
		colon++
	}
	if colon == 0 || colon > 19 || colon == len(d.b) || d.b[colon] != ':' || (colon > 1 && d.b[0] == '0') {
		colon = bytes.IndexByte(d.b, ':')
		if colon <= 0 || colon > 20 {
			d.fail("no length prefix")
		} else {
			d.fail("bad length %q", d.b[:colon])
		}
		return "", false
	}
	rest := d.b[colon+1:]
	if uint64(len(rest)) < n {
		d.fail("length %d past the end", n)
		return "", false
	}
	d.b = rest[n:]
	if d.view {
		if n == 0 {
			return "", false
		}
		return unsafe.String(&rest[0], int(n)), false
	}
	return string(rest[:n]), false
}

func (d *decoder) str() string {
	s, null := d.field()
	if null {
		d.fail("NULL where a value is required")
	}
	return s
}

func (d *decoder) opt() *string {
	s, null := d.field()
	if null || d.err != nil {
		return nil
	}
	var p *string
	if d.opts != nil {
		p = &d.opts[d.nopt]
		d.nopt++
	} else {
		p = new(string)
	}
	*p = s
	return p
}

func (d *decoder) int() int64 {
	s := d.str()
	if d.err != nil {
		return 0
	}
	neg := len(s) > 0 && s[0] == '-'
	digits := s
	if neg {
		digits = s[1:]
	}
	u, ok := parseDecimal([]byte(digits))
	switch {
	case !ok || (neg && u == 0):
	case !neg && u <= math.MaxInt64:
		return int64(u)
	case neg && u <= 1<<63:
		return int64(-u) // two's complement: -(1<<63) is math.MinInt64
	}
	d.fail("bad integer %q", s)
	return 0
}

// parseDecimal parses the digits of a canonical non-negative decimal: no
// sign, no leading zero (but for "0" itself), at most 19 digits. Without
// strconv: the decoder runs once per field of every entry sealed.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
