package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
)

// The canonical encoding of a row, built from its columns as internal/chain
// builds it from an entry, and the rows hashed: what the verifier compares
// with each row's entry_hash.

// appendField appends the canonical field of string column c at row i: its
// length-prefixed value, or "-" for NULL.
func appendField(dst []byte, c *column, i int) []byte {
	if c.null[i] {
		return append(dst, '-')
	}
	v := c.strs[i]
	dst = appendLen(dst, len(v))
	return append(dst, v...)
}

// appendLen appends n in decimal and ':', faster than strconv for the short
// lengths of most fields.
func appendLen(dst []byte, n int) []byte {
	switch {
	case n < 10:
		return append(dst, byte('0'+n), ':')
	case n < 100:
		return append(dst, byte('0'+n/10), byte('0'+n%10), ':')
	case n < 1000:
		return append(dst, byte('0'+n/100), byte('0'+n/10%10), byte('0'+n%10), ':')
	}
	return append(strconv.AppendInt(dst, int64(n), 10), ':')
}

func appendIntField(dst []byte, c *column, i int) []byte {
	if c.null[i] {
		return append(dst, '-')
	}
	v := c.ints[i]
	if v < 0 {
		var tmp [20]byte
		digits := strconv.AppendInt(tmp[:0], v, 10)
		return append(appendLen(dst, len(digits)), digits...)
	}
	// Right to left, two digits at a time: the digits, ':', their count.
	var tmp [24]byte
	k := len(tmp)
	u := uint64(v)
	for u >= 100 {
		q := u / 100
		d := (u - q*100) * 2
		k -= 2
		tmp[k], tmp[k+1] = digits2[d], digits2[d+1]
		u = q
	}
	if u >= 10 {
		k -= 2
		tmp[k], tmp[k+1] = digits2[2*u], digits2[2*u+1]
	} else {
		k--
		tmp[k] = byte('0' + u)
	}
	n := len(tmp) - k // at most 19
	k--
	tmp[k] = ':'
	if n >= 10 {
		k -= 2
		tmp[k], tmp[k+1] = '1', byte('0'+n-10)
	} else {
		k--
		tmp[k] = byte('0' + n)
	}
	return append(dst, tmp[k:]...)
}

const digits2 = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// nonNil backs empty strings: a NULL string value is nil, an empty one is
// not.
var nonNil = make([]byte, 0)

// floorMilli is nanoseconds rounded down (towards negative infinity) to
// whole milliseconds: floor(nanos / 1e6), what the writer stores in the
// timestamp column (docs/FORMAT.md). Go's / truncates towards zero, like
// DuckDB's //, hence the correction for negative remainders.
func floorMilli(nanos int64) int64 {
	ms := nanos / 1e6
	if nanos%1e6 < 0 {
		ms--
	}
	return ms
}

// isMilli reports whether v, a value of the timestamp column c, is the
// instant ms milliseconds after the epoch, compared as DuckDB reads it (and
// docs/verify.sql checks it): milli- and microseconds exactly, nanoseconds
// truncated towards zero to microseconds. ms is a floorMilli, so ms*1000
// cannot overflow.
func (c *column) isMilli(v, ms int64) bool {
	switch c.perMs {
	case 1:
		return v == ms
	case 1000:
		return v == ms*1000
	default: // nanoseconds
		return v/1000 == ms*1000
	}
}

// canonical appends the canonical encoding of row i of r.cols to b.
func (r *fileReader) canonical(b []byte, i int) []byte {
	cols := &r.cols
	b = r.appendHead(b, i)
	v2 := r.isV2(i)
	// appendField, inlined by hand: this loop runs 20 times per entry.
	for c := colExecutionID; c <= colPrevHash; c++ {
		v := cols[c].strs[i]
		if v == nil { // NULL; an empty string is not nil
			b = append(b, '-')
		} else {
			switch n := len(v); {
			case n < 10:
				b = append(b, byte('0'+n), ':')
			case n < 100:
				b = append(b, byte('0'+n/10), byte('0'+n%10), ':')
			default:
				b = appendLen(b, n)
			}
			b = append(b, v...)
		}
		if c == colPrincipal && v2 {
			b = r.appendSender(b, i)
		}
	}
	return b
}

// isV2 reports whether row i is of version 2: it has an end time.
func (r *fileReader) isV2(i int) bool {
	return r.hasEnd && !r.cols[colEndTimeUnixNano].null[i]
}

// sender returns row i's sender (nil for NULL, and in a file without the
// column).
func (r *fileReader) sender(i int) []byte {
	if !r.hasSender {
		return nil
	}
	return r.cols[colSender].strs[i]
}

// appendSender appends the sender field of row i, of version 2.
func (r *fileReader) appendSender(b []byte, i int) []byte {
	v := r.sender(i)
	if v == nil {
		return append(b, '-')
	}
	return append(appendLen(b, len(v)), v...)
}

// appendHead appends the fields of row i's canonical encoding before
// execution_id: the tag, chain_id, seq, time_unix_nano, and in version 2
// end_time_unix_nano. A row whose end time is NULL, or of a file without
// the column, is hashed as version 1.
func (r *fileReader) appendHead(b []byte, i int) []byte {
	cols := &r.cols
	v2 := r.isV2(i)
	if v2 {
		b = append(b, tagV2...)
	} else {
		b = append(b, tagV1...)
	}
	b = appendField(b, &cols[colChainID], i)
	b = appendIntField(b, &cols[colSeq], i)
	b = appendIntField(b, &cols[colTimeUnixNano], i)
	if v2 {
		b = appendIntField(b, &cols[colEndTimeUnixNano], i)
	}
	return b
}

// Rows are encoded rowBlock at a time into slots of rowSlot bytes, column
// by column: the values of a column are read in order (the columns are
// stored column by column), and the slots stay in cache while filled. A
// block with a longer row is encoded row by row (canonical).
const (
	rowBlock = 32
	rowSlot  = 2048
)

// lenPrefix[n] is the encoded length n < 1000 ("n:"), in the low
// lenPrefixSize[n] bytes, to be stored as one word.
var lenPrefix, lenPrefixSize = func() (p [1000]uint32, size [1000]uint8) {
	for n := range p {
		b := appendLen(nil, n)
		for i, c := range b {
			p[n] |= uint32(c) << (8 * i)
		}
		size[n] = uint8(len(b))
	}
	return p, size
}()

// canonicalBlock encodes rows i0 to i0+m-1 into r.block, row k in slot k,
// up to end[k] (an offset in r.block); false when one of them does not fit
// its slot.
func (r *fileReader) canonicalBlock(i0, m int, end *[rowBlock]int) bool {
	if r.block == nil {
		r.block = new([rowBlock * rowSlot]byte)
	}
	buf := r.block[:]
	cols := &r.cols
	for k := range m {
		b := buf[k*rowSlot : k*rowSlot : (k+1)*rowSlot]
		b = r.appendHead(b, i0+k)
		if len(b) > rowSlot || cap(b) != rowSlot {
			return false // did not fit: append moved it
		}
		end[k] = k*rowSlot + len(b)
	}
	for c := colExecutionID; c <= colPrevHash; c++ {
		// The field of each row's value, written at end[k] of its slot:
		// '-' for NULL, else the length, ':' and the value. Every write
		// stays inside slot k (below limit).
		for k, v := range cols[c].strs[i0 : i0+m] {
			p, limit := end[k], (k+1)*rowSlot
			if v == nil { // NULL; an empty string is not nil
				if p >= limit {
					return false
				}
				buf[p] = '-'
				end[k] = p + 1
				continue
			}
			n := len(v)
			if n < 1000 && n+4 <= limit-p {
				// Four bytes written, the prefix's kept: the value or
				// the next field overwrites the rest.
				binary.LittleEndian.PutUint32(buf[p:p+4], lenPrefix[n])
				p += int(lenPrefixSize[n])
			} else {
				if n > rowSlot || n+8 > limit-p {
					return false
				}
				p = len(appendLen(buf[:p], n))
			}
			end[k] = p + copy(buf[p:p+n], v)
		}
		if c != colPrincipal {
			continue
		}
		for k := range m {
			if r.isV2(i0+k) && !putField(buf, k, end, r.sender(i0+k)) {
				return false
			}
		}
	}
	return true
}

// putField writes the field of value v (nil for NULL) at end[k] of slot k
// of buf and advances end[k]; false when it does not fit the slot.
func putField(buf []byte, k int, end *[rowBlock]int, v []byte) bool {
	p, limit := end[k], (k+1)*rowSlot
	if v == nil { // NULL; an empty string is not nil
		if p >= limit {
			return false
		}
		buf[p] = '-'
		end[k] = p + 1
		return true
	}
	n := len(v)
	if n > rowSlot || n+8 > limit-p {
		return false
	}
	p = len(appendLen(buf[:p], n))
	end[k] = p + copy(buf[p:p+n], v)
	return true
}

// hashRows recomputes the hash of the n rows in r.cols, checks the
// timestamps and records the rows of res.chainID. It returns how many rows
// belong to another chain, and the chain and seq of the first.
func (r *fileReader) hashRows(res *fileResult, n int) (foreign int64, firstChain string, firstSeq int64) {
	var end [rowBlock]int
	for i0 := 0; i0 < n; i0 += rowBlock {
		m := min(rowBlock, n-i0)
		inBlock := r.canonicalBlock(i0, m, &end)
		for k := range m {
			var b []byte
			if inBlock {
				b = r.block[k*rowSlot : end[k]]
			} else {
				r.long = r.canonical(r.long[:0], i0+k)
				b = r.long
			}
			sum := sha256.Sum256(b)
			if f, c, s := r.checkRow(res, i0+k, &sum); f {
				if foreign == 0 {
					firstChain, firstSeq = c, s
				}
				foreign++
			}
		}
	}
	return foreign, firstChain, firstSeq
}

// hexPairs[b] is the byte b as two lower-case hex digits.
var hexPairs = func() (t [256][2]byte) {
	const digits = "0123456789abcdef"
	for b := range t {
		t[b] = [2]byte{digits[b>>4], digits[b&15]}
	}
	return t
}()

// hexEncode is hex.Encode of a hash, a pair of digits at a time.
func hexEncode(dst *[64]byte, sum *[32]byte) {
	for i, b := range sum {
		dst[2*i], dst[2*i+1] = hexPairs[b][0], hexPairs[b][1]
	}
}
