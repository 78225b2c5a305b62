// Package hexzstd writes and reads one shape of standard zstd frame (RFC
// 8878): the PLAIN-encoded Parquet page of a column whose values are all 64
// lower-case hex digits, like entry_hash and prev_hash. Each value is a
// 4-byte length (64) and 64 digits. The frame holds
//
//   - a raw block with the first length prefix;
//   - compressed blocks whose literals are the digits, Huffman-coded with a
//     fixed table that gives each of the 16 digits a 4-bit code (its own
//     value), in four streams; and whose sequences, one per value but the
//     last, all say "64 literals, then copy 4 bytes from 68 back" (the next
//     length prefix), in RLE mode, so that the sequence bitstream is the
//     same 12 bits repeated.
//
// Any zstd decoder reads it. It is about 5% smaller than what zstd itself
// writes for such a page (a value costs 268 bits instead of about 284: the
// prefix 12 bits, the digits exactly 4 bits each), and costs almost nothing
// to write. A Huffman stream of 4-bit codes equal to
// the digits' values is the page's digits hex-decoded into bytes, in reverse
// order: Decode hex-encodes the streams back, many times faster than a
// general zstd decoder, and reports false for any frame not exactly in this
// shape, which the caller hands to a general decoder.
//
// AppendFrameHeader, AppendBlockHeader and AppendLiteralsHeader are also
// what internal/parquetfile's literal-only frames are built with.
package hexzstd

import (
	"encoding/binary"
	"math/bits"
)

const (
	magic      = 0xFD2FB528
	descriptor = 2<<6 | 1<<5 // Frame_Content_Size_Flag 2 (4 bytes), Single_Segment_Flag
	headerSize = 4 + 1 + 4

	maxBlock = 128 << 10

	valueLen  = 64                   // hex digits in a value
	recordLen = 4 + valueLen         // a PLAIN value: length prefix and digits
	perBlock  = maxBlock / recordLen // sequences in a full block: 1927

	// MinValues is the fewest values written in this shape: four Huffman
	// streams need enough literals to be worth their jump table.
	MinValues = 16

	// Sequences_Section_Header of the RLE sequences: Symbol_Compression_Modes
	// with all three in RLE_Mode, then the three symbols: Literals_Length
	// code 25 (baseline 64, 6 extra bits, here 0), Offset code 6
	// (Offset_Value 64 + 6 extra bits, here 7: 71, an offset of 68) and
	// Match_Length code 1 (4 bytes).
	rleModes = 1<<6 | 1<<4 | 1<<2
	llCode   = 25
	ofCode   = 6
	mlCode   = 1
)

// tree is the Huffman_Tree_Description of the fixed table: weights given
// directly (header byte 127 + 102), 4 bits each, for the symbols 0 to 101:
// weight 1 for '0' to '9' and 'a' to 'e', 0 for all others; 'f' (102) gets
// the implied last weight, 1. Sixteen symbols of weight 1 make a table of
// log 4 in which every symbol has a 4-bit code, assigned in symbol order:
// '0' is 0000, ..., 'f' is 1111.
var tree = func() []byte {
	const n = 'f' // weights listed for symbols 0 to 'f'-1
	w := make([]byte, 1+(n+1)/2)
	w[0] = 127 + n
	for s := 0; s < n; s++ {
		if s >= '0' && s <= '9' || s >= 'a' && s <= 'e' {
			w[1+s/2] |= 1 << (4 * (1 - s%2)) // first weight in the high nibble
		}
	}
	return w
}()

// digits are the lower-case hex digits.
const digits = "0123456789abcdef"

// Append appends to dst the page, which must be at least MinValues PLAIN
// values of 64 hex digits each and nothing else, as a zstd frame of this
// package's shape. It reports false, with dst unchanged, for any other page.
func Append(dst, page []byte) ([]byte, bool) {
	n := len(page) / recordLen
	if len(page)%recordLen != 0 || n < MinValues || uint64(len(page)) > 1<<32-1 {
		return dst, false
	}
	for r := 0; r < len(page); r += recordLen {
		if binary.LittleEndian.Uint32(page[r:]) != valueLen {
			return dst, false
		}
		for d := r + 4; d < r+recordLen; d += 8 {
			if !allHex(binary.LittleEndian.Uint64(page[d:])) {
				return dst, false
			}
		}
	}
	out := AppendFrameHeader(dst, len(page))
	out = AppendBlockHeader(out, false, BlockRaw, 4)
	out = append(out, page[:4]...)
	// Value i's digits are literals of sequence i, whose match copies the
	// prefix of value i+1; the last value's digits are literals after the
	// last sequence.
	for v := 0; v < n; {
		// A block decompresses to at most maxBlock bytes: k records
		// (digits, next prefix), and in the last block the last digits.
		k, lits, last := perBlock, perBlock, false
		if r := n - 1 - v; recordLen*r+valueLen <= maxBlock {
			k, lits, last = r, r+1, true
		}
		out = appendBlock(out, page[v*recordLen:(v+lits)*recordLen], lits, k, last)
		v += lits
	}
	return out, true
}

// appendBlock appends one compressed block of the records (lits of them) and
// k sequences.
func appendBlock(out, records []byte, lits, k int, last bool) []byte {
	regen := lits * valueLen
	seg := (regen + 3) / 4 // symbols in streams 1 to 3; stream 4 has the rest
	var sizes [4]int
	for i := range sizes {
		s := min(seg, regen-i*seg)
		sizes[i] = streamLen(s)
	}
	streams := 6 + sizes[0] + sizes[1] + sizes[2] + sizes[3]
	comp := len(tree) + streams
	lhSize := LiteralsHeaderSize(comp, regen)
	seqs := seqHeaderLen(k)
	if k > 0 {
		seqs += 4 + seqBitsLen(k)
	}
	out = AppendBlockHeader(out, last, BlockCompressed, lhSize+comp+seqs)
	out = AppendLiteralsHeader(out, comp, regen)
	out = append(out, tree...)
	out = binary.LittleEndian.AppendUint16(out, uint16(sizes[0]))
	out = binary.LittleEndian.AppendUint16(out, uint16(sizes[1]))
	out = binary.LittleEndian.AppendUint16(out, uint16(sizes[2]))
	// The digits of the block, as one string of regen symbols cut into
	// four segments; symbol j is digit j%64 of record j/64.
	for i := range 4 {
		from, to := i*seg, min((i+1)*seg, regen)
		out = appendStream(out, records, from, to)
	}
	out = appendSeqHeader(out, k)
	if k > 0 {
		out = append(out, rleModes, llCode, ofCode, mlCode)
		out = appendSeqBits(out, k)
	}
	return out
}

// streamLen is the size of a Huffman stream of s 4-bit codes and its
// end-mark bit.
func streamLen(s int) int { return s/2 + 1 }

// appendStream appends the Huffman stream of digits from to to (symbol
// indices into the block's digits: symbol j is digit j%64 of record j/64).
// The stream is read backwards from its end mark, 4 bits per symbol, the
// first symbol just below the mark: the last symbol's code is the lowest
// nibble of the first byte. Append's segments have a multiple of 16
// symbols, so that 8 digits at a time come from one record.
func appendStream(out, records []byte, from, to int) []byte {
	for q := to; q > from; q -= 8 {
		j := q - 8
		x := binary.LittleEndian.Uint64(records[j/valueLen*recordLen+4+j%valueLen:])
		out = binary.LittleEndian.AppendUint32(out, unhex8(x))
	}
	return append(out, 1) // the mark
}

// unhex8 returns the codes of the 8 hex digits of x (little endian), last
// first, two per byte, the later digit in the low nibble.
func unhex8(x uint64) uint32 {
	const ones = 0x0101010101010101
	v := x&(15*ones) + (x>>6&ones)*9 // digit values: 'a' is 0x61
	r := bits.ReverseBytes64(v)      // last digit first
	p := r&0x00ff00ff00ff00ff | (r>>8&0x00ff00ff00ff00ff)<<4
	p = (p | p>>8) & 0x0000ffff0000ffff
	return uint32(p | p>>16)
}

// allHex reports whether the 8 bytes of x are all lower-case hex digits.
func allHex(x uint64) bool {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	// For bytes below 0x80, x+(0x80-lo) has its high bit set from lo on,
	// x+(0x7f-hi) beyond hi.
	in := func(lo, hi uint64) uint64 { return (x + (0x80-lo)*ones) &^ (x + (0x7f-hi)*ones) & high }
	return x&high == 0 && in('0', '9')|in('a', 'f') == high
}

// seqBitsLen is the size of the sequence bitstream of k sequences: 12 bits
// each (6 of offset, 0 of match length, 6 of literals length) and the mark.
func seqBitsLen(k int) int { return 12*k/8 + 1 }

// appendSeqBits appends the sequence bitstream of k identical sequences.
// Written from the last sequence to the first, each as its literals
// length's extra bits (0) and then its offset's (7), the 12-bit unit 7<<6
// repeats: two units are the bytes c0 01 1c.
func appendSeqBits(out []byte, k int) []byte {
	for range k / 2 {
		out = append(out, 0xc0, 0x01, 0x1c)
	}
	if k%2 == 1 {
		return append(out, 0xc0, 0x11) // a unit and the mark at bit 12
	}
	return append(out, 1)
}

// seqHeaderLen is the size of Number_of_Sequences for k sequences: one
// byte below 128, else two (k is at most perBlock, below 0x7f00).
func seqHeaderLen(k int) int {
	if k < 128 {
		return 1
	}
	return 2
}

// appendSeqHeader appends Number_of_Sequences.
func appendSeqHeader(out []byte, k int) []byte {
	if k < 128 {
		return append(out, byte(k))
	}
	return append(out, byte(k>>8)+128, byte(k))
}

// AppendFrameHeader appends the header of a single-segment zstd frame of
// size bytes (below 4 GiB): magic number, Frame_Header_Descriptor
// (Frame_Content_Size_Flag 2, Single_Segment_Flag set, so no
// Window_Descriptor; no checksum, no dictionary) and the 4-byte content
// size.
func AppendFrameHeader(dst []byte, size int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, magic)
	dst = append(dst, descriptor)
	return binary.LittleEndian.AppendUint32(dst, uint32(size))
}

// Block_Type values.
const (
	BlockRaw        = 0
	BlockRLE        = 1
	BlockCompressed = 2
)

// AppendBlockHeader appends a zstd Block_Header: Last_Block, Block_Type and
// Block_Size in 3 bytes, little endian.
func AppendBlockHeader(dst []byte, last bool, typ, size int) []byte {
	h := uint32(size)<<3 | uint32(typ)<<1
	if last {
		h |= 1
	}
	return append(dst, byte(h), byte(h>>8), byte(h>>16))
}

// AppendLiteralsHeader appends the Literals_Section_Header of compressed
// 4-stream Huffman literals: Size_Format 1, 2 or 3 for 10, 14 or 18 bits of
// regenerated and compressed sizes, the smallest that fits.
func AppendLiteralsHeader(dst []byte, compressed, regenerated int) []byte {
	h, size := literalsHeader(compressed, regenerated)
	for i := range size {
		dst = append(dst, byte(h>>(8*i)))
	}
	return dst
}

// LiteralsHeaderSize is the size of AppendLiteralsHeader's header.
func LiteralsHeaderSize(compressed, regenerated int) int {
	_, size := literalsHeader(compressed, regenerated)
	return size
}

func literalsHeader(compressed, regenerated int) (h uint64, size int) {
	const compressedType = 2
	h = compressedType
	switch {
	case compressed < 1<<10 && regenerated < 1<<10:
		return h | 1<<2 | uint64(regenerated)<<4 | uint64(compressed)<<14, 3
	case compressed < 1<<14 && regenerated < 1<<14:
		return h | 2<<2 | uint64(regenerated)<<4 | uint64(compressed)<<18, 4
	default: // both below 1<<18: blocks are at most 128 KiB
		return h | 3<<2 | uint64(regenerated)<<4 | uint64(compressed)<<22, 5
	}
}

// seqPattern is the sequence bitstream of a full block without its last
// bytes: appendSeqBits's repeated triple.
var seqPattern = func() []byte {
	var p []byte
	for range perBlock / 2 {
		p = append(p, 0xc0, 0x01, 0x1c)
	}
	return p
}()

// Decode appends to dst the content of src, a zstd frame, if src is a
// frame of exactly the shape Append writes (whatever its digits) and its
// content is at most limit bytes. It reports false, with dst unchanged,
// for anything else: a general zstd decoder must then be asked, and its
// verdict stands. What Decode accepts, a general decoder decodes to the
// same bytes.
func Decode(dst, src []byte, limit int) ([]byte, bool) {
	if len(src) < headerSize+3+4 || binary.LittleEndian.Uint32(src) != magic || src[4] != descriptor {
		return dst, false
	}
	size := int(binary.LittleEndian.Uint32(src[5:]))
	if size > limit || u24(src[headerSize:]) != 4<<3|BlockRaw<<1 {
		return dst, false
	}
	out := dst
	if cap(out)-len(out) < size {
		out = append(make([]byte, 0, len(dst)+size), dst...)
	}
	base := len(out)
	out = append(out, src[headerSize+3:headerSize+7]...)
	src = src[headerSize+7:]
	for {
		if len(src) < 3 {
			return dst, false
		}
		h := u24(src)
		last, typ, bsize := h&1 == 1, h>>1&3, int(h>>3)
		if typ != BlockCompressed || bsize > maxBlock || bsize > len(src)-3 {
			return dst, false
		}
		blk := src[3 : 3+bsize]
		src = src[3+bsize:]
		regen, lit, seqs, ok := literals(blk)
		if !ok {
			return dst, false
		}
		k, ok := sequences(seqs)
		if !ok || valueLen*k > regen {
			return dst, false
		}
		// The block's content: k times (64 literals, a 4-byte match), then
		// the rest of the literals.
		p := len(out)
		end := p + recordLen*k + regen - valueLen*k
		if end-base > size || end-p > maxBlock {
			return dst, false
		}
		// The literals are decoded into the end of the block's room and
		// moved forward: a record never overwrites literals not yet moved.
		out = out[:end]
		l := end - regen
		if !decodeStreams(out[l:end], lit) {
			return dst, false
		}
		for range k {
			copy(out[p:p+valueLen], out[l:l+valueLen])
			// The match copies the 4 bytes 68 back: the frame's raw block
			// or the previous record's prefix.
			copy(out[p+valueLen:p+recordLen], out[p+valueLen-recordLen:])
			p, l = p+recordLen, l+valueLen
		}
		copy(out[p:end], out[l:end])
		if last {
			break
		}
	}
	if len(src) != 0 || len(out)-base != size {
		return dst, false
	}
	return out, true
}

func u24(b []byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 }

// literals parses the Literals_Section of a compressed block: 4-stream
// Huffman literals with the fixed table. It returns their regenerated size,
// their streams (jump table first) and the rest of the block.
func literals(blk []byte) (regen int, streams, rest []byte, ok bool) {
	if len(blk) < 5 || blk[0]&3 != 2 {
		return 0, nil, nil, false
	}
	var comp, hsize int
	switch blk[0] >> 2 & 3 {
	case 1:
		v := u24(blk)
		regen, comp, hsize = int(v>>4&0x3ff), int(v>>14&0x3ff), 3
	case 2:
		v := binary.LittleEndian.Uint32(blk)
		regen, comp, hsize = int(v>>4&0x3fff), int(v>>18), 4
	case 3:
		v := uint64(binary.LittleEndian.Uint32(blk)) | uint64(blk[4])<<32
		regen, comp, hsize = int(v>>4&0x3ffff), int(v>>22&0x3ffff), 5
	default: // one stream
		return 0, nil, nil, false
	}
	// The writer's Size_Format is the smallest that fits.
	if hsize != LiteralsHeaderSize(comp, regen) || comp > len(blk)-hsize {
		return 0, nil, nil, false
	}
	lit := blk[hsize : hsize+comp]
	if len(lit) < len(tree)+6 || string(lit[:len(tree)]) != string(tree) {
		return 0, nil, nil, false
	}
	return regen, lit[len(tree):], blk[hsize+comp:], true
}

// decodeStreams decodes the four streams (jump table first) into dst, all
// of its len(dst) symbols, and reports whether they were exactly that.
func decodeStreams(dst, streams []byte) bool {
	regen := len(dst)
	seg := (regen + 3) / 4
	if regen-3*seg < 1 {
		return false
	}
	sizes := [4]int{
		int(binary.LittleEndian.Uint16(streams)),
		int(binary.LittleEndian.Uint16(streams[2:])),
		int(binary.LittleEndian.Uint16(streams[4:])),
	}
	streams = streams[6:]
	sizes[3] = len(streams) - sizes[0] - sizes[1] - sizes[2]
	for i := range 4 {
		s := min(seg, regen-i*seg)
		if sizes[i] != streamLen(s) {
			return false
		}
		if !decodeStream(dst[i*seg:i*seg+s], streams[:sizes[i]]) {
			return false
		}
		streams = streams[sizes[i]:]
	}
	return true
}

// decodeStream decodes one stream of len(dst) 4-bit codes (see
// appendStream): its bytes, last first, hex-encoded.
func decodeStream(dst, b []byte) bool {
	m := b[len(b)-1]
	b = b[:len(b)-1]
	if len(dst)%2 == 1 {
		if m>>4 != 1 {
			return false
		}
		dst[0] = digits[m&15]
		dst = dst[1:]
	} else if m != 1 {
		return false
	}
	if len(dst) != 2*len(b) {
		return false
	}
	hexRev(dst, b)
	return true
}

// hexRevGeneric writes the hex digits of src, last byte first, into dst
// (2*len(src) bytes): four bytes, eight digits at a time.
func hexRevGeneric(dst, src []byte) {
	i, j := len(src), 0
	for ; i >= 4; i, j = i-4, j+8 {
		w := bits.ReverseBytes32(binary.LittleEndian.Uint32(src[i-4 : i]))
		binary.LittleEndian.PutUint64(dst[j:j+8], hex8(w))
	}
	for ; i > 0; i, j = i-1, j+2 {
		b := src[i-1]
		dst[j], dst[j+1] = digits[b>>4], digits[b&15]
	}
}

// hex8 returns the 8 hex digits of w's bytes, lowest byte first and high
// nibble first, as the bytes of a little-endian word.
func hex8(w uint32) uint64 {
	const lo4 = 0x000f000f000f000f
	z := uint64(w)
	z = (z | z<<16) & 0x0000ffff0000ffff
	z = (z | z<<8) & 0x00ff00ff00ff00ff // byte m of w in byte 2m
	n := z>>4&lo4 | (z&lo4)<<8          // nibbles, high first
	// '0'+n, and 39 more from 10 on ('a' is '0'+49).
	ten := (n + 0x0606060606060606) >> 4 & 0x0101010101010101
	return n + 0x3030303030303030 + ten*39
}

// sequences parses the Sequences_Section of a block: k sequences of the
// writer's shape (RLE modes, its three codes, its bitstream).
func sequences(s []byte) (k int, ok bool) {
	if len(s) == 0 {
		return 0, false
	}
	hl := 1
	switch b0 := int(s[0]); {
	case b0 < 128:
		k = b0
	case b0 < 255 && len(s) >= 2:
		k, hl = (b0-128)<<8+int(s[1]), 2
	default:
		return 0, false
	}
	if k > perBlock || hl != seqHeaderLen(k) {
		return 0, false
	}
	s = s[hl:]
	if k == 0 {
		return 0, len(s) == 0
	}
	if len(s) != 4+seqBitsLen(k) || s[0] != rleModes || s[1] != llCode || s[2] != ofCode || s[3] != mlCode {
		return 0, false
	}
	s = s[4:]
	body := 3 * (k / 2)
	if string(s[:body]) != string(seqPattern[:body]) {
		return 0, false
	}
	if k%2 == 1 {
		return k, s[body] == 0xc0 && s[body+1] == 0x11
	}
	return k, s[body] == 1
}
