package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// The columns of docs/FORMAT.md: the 25 of format version 1 in column
// order, then end_time_unix_nano (version 2's column 3) and sender (its
// column 14), which a file of version 1 lacks.
const (
	colTimestamp = iota
	colTimeUnixNano
	colChainID
	colSeq
	colExecutionID // first of the columns 4..23 hashed in column order (sender, in version 2, after principal)
	_
	_
	_
	_
	_
	_
	colPrincipal
	colActionType
	_
	_
	_
	_
	colReasoning
	colApprover
	colResult
	_
	_
	_
	colPrevHash
	colEntryHash
	colEndTimeUnixNano
	colSender
	numColumns
)

var columnNames = [numColumns]string{
	"timestamp", "time_unix_nano", "chain_id", "seq", "execution_id", "trace_id", "span_id",
	"parent_span_id", "agent_id", "agent_name", "service_name", "principal", "action_type",
	"target_system", "target_resource", "proposed_value", "previous_value", "reasoning",
	"approver", "result", "status_code", "attributes", "validation", "prev_hash", "entry_hash",
	"end_time_unix_nano", "sender",
}

func isIntColumn(c int) bool {
	return c == colTimestamp || c == colTimeUnixNano || c == colSeq || c == colEndTimeUnixNano
}

// tagV1 and tagV2 are the encoded format tags, the first field of every
// canonical encoding: a row with an end time is hashed as version 2, a row
// without (NULL, or a file of version 1) as version 1.
var tagV1, tagV2 = tagField(chain.FormatTagV1), tagField(chain.FormatTagV2)

func tagField(tag string) []byte {
	return append(strconv.AppendInt(nil, int64(len(tag)), 10), append([]byte{':'}, tag...)...)
}

// hash64 is a stored hash column value, nil for NULL. Only 64 bytes can
// match; the bytes of rows point into the pages of the file being read.
type hash64 []byte

func (h hash64) eq(o hash64) bool { return len(h) == 64 && bytes.Equal(h, o) }

// same reports whether h and o are the same value, NULL included.
func (h hash64) same(o hash64) bool { return (h == nil) == (o == nil) && bytes.Equal(h, o) }

func (h hash64) String() string {
	switch {
	case h == nil:
		return "NULL"
	case len(h) != 64:
		return strconv.Quote(string(h)) + " (not 64 characters)"
	}
	return string(h)
}

func containsHash(hs []hash64, h hash64) bool {
	for _, x := range hs {
		if x.eq(h) {
			return true
		}
	}
	return false
}

func appendDistinct(hs []hash64, h hash64) []hash64 {
	for _, x := range hs {
		if x.same(h) {
			return hs
		}
	}
	return append(hs, h)
}

// cloneHashes copies hashes out of the pages, to outlive them.
func cloneHashes(hs []hash64) []hash64 {
	out := make([]hash64, len(hs))
	for i, h := range hs {
		if h != nil {
			out[i] = append(hash64{}, h...)
		}
	}
	return out
}

// rec is what the cross-row checks need of one row.
type rec struct {
	seq      int64
	tun      int64
	prev, eh hash64
	// raw is eh as 32 bytes when it matched the recomputed hash (then the
	// Merkle leaf needs no hex decoding).
	raw   [32]byte
	rawOK bool
}

// fileResult is what one file contributes to the report.
type fileResult struct {
	key        string
	ok         bool // an audit batch with rows of chainID
	chainID    string
	rows       int64 // all rows
	chainRows  int64 // rows of chainID
	firstSeq   int64
	lastSeq    int64
	firstPrevs []hash64 // distinct prev_hash at firstSeq
	lastHashes []hash64 // distinct entry_hash at lastSeq
	firstTime  int64
	lastTime   int64
	hashBad    bool   // some row's entry_hash is wrong
	merkleRoot string // recomputed from the rows' entry_hash, hex
	violations []Violation
}

func (f *fileResult) add(seq int64, kind Kind, format string, args ...any) {
	f.violations = append(f.violations, Violation{File: f.key, ChainID: f.chainID, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// column holds one column of a row group, one value per row.
type column struct {
	leaf   parquet.LeafColumn
	ints   []int64
	strs   [][]byte
	null   []bool
	perMs  int64 // timestamp: units per millisecond
	pages  []parquet.Page
	chunks []parquet.Pages
}

// fileReader reads files one at a time, reusing its buffers: one per worker.
type fileReader struct {
	cols [numColumns]column
	// hasEnd: the file has the column end_time_unix_nano (format version
	// 2); without it, every row is hashed as version 1. hasSender: the
	// file has the column sender (version 2); without it, every sender is
	// NULL, as DuckDB's union_by_name reads it.
	hasEnd, hasSender bool
	// block holds the canonical encodings of rowBlock rows, long that of
	// a longer row.
	block *[rowBlock * rowSlot]byte
	long  []byte
	recs  []rec
	file  []byte // the bytes of the last local file read
	tree  merkleFold
	// pickSeq, when not NoSeq, asks read to copy the entry_hash of that
	// seq into picked (for a checkpoint head inside a file).
	pickSeq int64
	picked  hash64
	// check bounds what each column chunk may make parquet-go allocate,
	// before parquet-go reads it, and checks the pages it decodes.
	check parquetfile.ChunkChecker
}

func newFileReader() *fileReader {
	return &fileReader{pickSeq: NoSeq}
}

// readers keeps file readers, with their buffers, between verifications.
var readers sync.Pool

// getFileReader is newFileReader, reusing a reader put back before.
func getFileReader() *fileReader {
	r, ok := readers.Get().(*fileReader)
	if !ok {
		return newFileReader()
	}
	r.pickSeq, r.picked = NoSeq, nil
	return r
}

// putFileReader makes r available to getFileReader.
func putFileReader(r *fileReader) { readers.Put(r) }

// read checks one file. Problems with its contents are violations in the
// result.
func (r *fileReader) read(key string, data []byte) (res *fileResult) {
	res = &fileResult{key: key}
	if chainID, _, err := ParseFileKey(key); err == nil {
		res.chainID = chainID // until the rows say otherwise
	}
	defer func() {
		// parquet-go is pre-v1 and the bytes are untrusted: a decoder panic
		// is a file that is not a batch, not a crash.
		if p := recover(); p != nil {
			res.ok = false
			res.add(NoSeq, NotAuditFile, "undecodable: %v", p)
		}
		r.release()
	}()
	if err := parquetfile.CheckFooter(data); err != nil {
		res.add(NoSeq, NotAuditFile, "undecodable footer: %v", err)
		return res
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)),
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		res.add(NoSeq, NotAuditFile, "not a readable Parquet file: %v", err)
		return res
	}
	if err := r.bind(pf.Schema()); err != nil {
		res.add(NoSeq, NotAuditFile, "%v", err)
		return res
	}
	r.recs = r.recs[:0]
	r.check.Reset(len(data))
	meta := pf.Metadata()
	var foreign int64
	var foreignFirst string
	foreignSeq := NoSeq
	for i := range meta.RowGroups {
		n, err := r.readRowGroup(data, meta, i)
		if err != nil {
			res.add(NoSeq, NotAuditFile, "undecodable rows: %v", err)
			return res
		}
		if n > 0 && res.rows == 0 {
			res.chainID = string(r.cols[colChainID].value(0))
		}
		f, first, seq := r.hashRows(res, n)
		if f > 0 && foreign == 0 {
			foreignFirst, foreignSeq = first, seq
		}
		foreign += f
		res.rows += int64(n)
		// The pages stay until the file is done: r.recs points into them.
	}
	if res.rows == 0 {
		res.add(NoSeq, NotAuditFile, "no rows")
		return res
	}
	if foreign > 0 {
		res.add(foreignSeq, ForeignFile, "%d rows of another chain (the first of chain %q) in a file of chain %q", foreign, foreignFirst, res.chainID)
	}
	res.ok = len(r.recs) > 0
	res.chainRows = int64(len(r.recs))
	r.checkRows(res)
	merkleRoot := "(not computable: an entry_hash is not 64 hex digits)"
	if root, ok := r.tree.root(r.recs); ok {
		merkleRoot = string(root[:])
		res.merkleRoot = merkleRoot
	}
	if r.pickSeq != NoSeq {
		for _, x := range r.recs {
			if x.seq == r.pickSeq {
				r.picked = cloneHashes([]hash64{x.eh})[0]
			}
		}
	}
	version := parquetfile.FormatVersion1
	if r.hasEnd {
		version = parquetfile.FormatVersion
	}
	checkFooter(res, pf.Metadata().KeyValueMetadata, version, merkleRoot)
	checkName(res)
	return res
}

// textOf is a column value as verify.sql shows it: NULL for NULL.
func textOf(v []byte) string {
	if v == nil {
		return "NULL"
	}
	return string(v)
}

// value returns row i of a string column (nil for NULL).
func (c *column) value(i int) []byte {
	if c.null[i] {
		return nil
	}
	return c.strs[i]
}

// bind finds the columns and checks their types: the 25 of format version
// 1, and end_time_unix_nano and sender when the file has them (version 2).
// Columns are found by name, so that files rewritten by other tools (all
// columns OPTIONAL, timestamps in microseconds) are read as well as they
// can be.
func (r *fileReader) bind(s *parquet.Schema) error {
	r.hasEnd, r.hasSender = false, false
	for i, name := range columnNames {
		leaf, ok := s.Lookup(name)
		if !ok && (i == colEndTimeUnixNano || i == colSender) {
			continue
		}
		if !ok {
			return fmt.Errorf("no column %q: not an agentaudit batch", name)
		}
		r.hasEnd = r.hasEnd || i == colEndTimeUnixNano
		r.hasSender = r.hasSender || i == colSender
		if leaf.MaxRepetitionLevel != 0 || leaf.MaxDefinitionLevel > 1 {
			return fmt.Errorf("column %q is repeated or nested", name)
		}
		c := &r.cols[i]
		c.leaf = leaf
		kind := leaf.Node.Type().Kind()
		switch {
		case i == colTimestamp:
			if kind != parquet.Int64 {
				return fmt.Errorf("column %q has type %s, want a TIMESTAMP in INT64", name, leaf.Node.Type())
			}
			c.perMs = 1
			if lt := leaf.Node.Type().LogicalType(); lt != nil {
				if t, ok := lt.Value.(*format.TimestampType); ok && t.Unit.Value != nil {
					c.perMs = int64(time.Millisecond / t.Unit.Value.Duration())
				}
			}
		case isIntColumn(i):
			if kind != parquet.Int64 {
				return fmt.Errorf("column %q has type %s, want INT64", name, leaf.Node.Type())
			}
		default:
			if kind != parquet.ByteArray {
				return fmt.Errorf("column %q has type %s, want a string (BYTE_ARRAY)", name, leaf.Node.Type())
			}
		}
	}
	return nil
}

// has reports whether the file has column c: every column but the two of
// version 2 only.
func (r *fileReader) has(c int) bool {
	switch c {
	case colEndTimeUnixNano:
		return r.hasEnd
	case colSender:
		return r.hasSender
	}
	return true
}

// release returns the pages of the last row group to parquet-go's pools.
func (r *fileReader) release() {
	defer func() {
		// Pages of a file that made the decoder panic may be in any state:
		// forget them rather than crash or reuse them.
		if recover() != nil {
			for i := range r.cols {
				r.cols[i].chunks, r.cols[i].pages = nil, nil
			}
		}
	}()
	for i := range r.cols {
		c := &r.cols[i]
		for _, p := range c.chunks {
			p.Close()
		}
		for _, p := range c.pages {
			parquet.Release(p)
		}
		clear(c.chunks)
		clear(c.pages)
		c.chunks, c.pages = c.chunks[:0], c.pages[:0]
	}
}

// readRowGroup decodes every column of row group g of the file data with
// metadata meta into r.cols: each column chunk is checked and unpacked
// (parquetfile.ChunkChecker), then read by parquet-go from the unpacked
// image.
func (r *fileReader) readRowGroup(data []byte, meta *format.FileMetaData, g int) (int, error) {
	if err := r.check.Begin(data, meta, g); err != nil {
		return 0, err
	}
	for i := range r.cols {
		if !r.has(i) {
			continue
		}
		if err := r.check.Check(r.cols[i].leaf); err != nil {
			return 0, fmt.Errorf("column %q: %w", columnNames[i], err)
		}
	}
	rg, err := r.check.RowGroup()
	if err != nil {
		return 0, err
	}
	chunks := rg.ColumnChunks()
	n := int(meta.RowGroups[g].NumRows)
	for i := range r.cols {
		if !r.has(i) {
			continue
		}
		c := &r.cols[i]
		if err := c.read(chunks[c.leaf.ColumnIndex], isIntColumn(i), &r.check); err != nil {
			return 0, fmt.Errorf("column %q: %w", columnNames[i], err)
		}
		if len(c.null) != n {
			return 0, fmt.Errorf("column %q has %d values in a row group of %d rows", columnNames[i], len(c.null), n)
		}
	}
	return n, nil
}

// read decodes all pages of one column chunk, which check has just
// checked, and checks each page before its values are used. The pages stay
// alive (and the strings point into them) until release.
func (c *column) read(cc parquet.ColumnChunk, isInt bool, check *parquetfile.ChunkChecker) error {
	c.ints, c.strs, c.null = c.ints[:0], c.strs[:0], c.null[:0]
	pages := cc.Pages()
	c.chunks = append(c.chunks, pages)
	// Where a row reader starts (parquet-go's, and ReadEntries): at the
	// chunk's data page offset, the dictionary read apart. Reading on from
	// the dictionary page instead would accept a data page offset that
	// every row reader fails on, or that leads it to other pages.
	if err := pages.SeekToRow(0); err != nil {
		return err
	}
	maxDef := byte(c.leaf.MaxDefinitionLevel)
	for page := 0; ; page++ {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		c.pages = append(c.pages, p)
		if err := check.CheckPage(c.leaf.ColumnIndex, page, p, int(maxDef)); err != nil {
			return err
		}
		n := int(p.NumValues())
		def := p.DefinitionLevels()
		if def != nil && len(def) != n {
			return fmt.Errorf("page has %d definition levels for %d values", len(def), n)
		}
		vals := p.Data()
		var idx []int32
		dict := p.Dictionary()
		if dict != nil {
			idx = vals.Int32()
			vals = dict.Page().Data()
		}
		base := len(c.null)
		c.null = slices.Grow(c.null, n)[:base+n]
		null := c.null[base:]
		if def == nil {
			clear(null)
		} else {
			for i, d := range def {
				null[i] = d < maxDef
			}
		}
		if isInt {
			c.ints = slices.Grow(c.ints, n)[:base+n]
			dst, src := c.ints[base:], vals.Int64()
			j := 0
			for i := range dst {
				if null[i] {
					dst[i] = 0
					continue
				}
				if idx != nil {
					dst[i] = src[idx[j]]
				} else {
					dst[i] = src[j]
				}
				j++
			}
			continue
		}
		c.strs = slices.Grow(c.strs, n)[:base+n]
		dst := c.strs[base:]
		data, off := vals.ByteArray()
		if data == nil {
			data = nonNil // so that empty strings are not nil, which is NULL
		}
		switch {
		case idx == nil && def == nil:
			for i := range dst {
				dst[i] = data[off[i]:off[i+1]:off[i+1]]
			}
		default:
			j := 0
			for i := range dst {
				if null[i] {
					dst[i] = nil
					continue
				}
				k := j
				if idx != nil {
					k = int(idx[j])
				}
				j++
				dst[i] = data[off[k]:off[k+1]:off[k+1]]
			}
		}
	}
}

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

// checkRow checks row i, whose canonical encoding hashes to sum, and
// records it when it is of res.chainID; otherwise it returns foreign true
// with its chain and seq.
func (r *fileReader) checkRow(res *fileResult, i int, sum *[32]byte) (foreign bool, chainID string, seq int64) {
	cols := &r.cols
	ts, tun, cid, sq := &cols[colTimestamp], &cols[colTimeUnixNano], &cols[colChainID], &cols[colSeq]
	prev, eh := &cols[colPrevHash], &cols[colEntryHash]
	var hx [64]byte
	hexEncode(&hx, sum)
	s := sq.ints[i]
	ok := !eh.null[i] && bytes.Equal(eh.strs[i], hx[:])
	// Version 1 has no sender field: a sender on a row without an end
	// time is a value no hash covers.
	unhashed := !r.isV2(i) && r.sender(i) != nil
	if !ok || unhashed {
		res.hashBad = true
		got := "NULL"
		if !eh.null[i] {
			got = string(eh.strs[i])
		}
		if unhashed {
			res.add(s, HashMismatch, "got entry_hash %s, want %s and no sender: sender %q on a row without end_time_unix_nano (version 1), which no hash covers", got, string(hx[:]), r.sender(i))
		} else {
			res.add(s, HashMismatch, "got entry_hash %s, want %s", got, string(hx[:]))
		}
		ok = false
	}
	if wantMs := floorMilli(tun.ints[i]); ts.null[i] || tun.null[i] || !ts.isMilli(ts.ints[i], wantMs) {
		got := "NULL"
		if !ts.null[i] {
			got = strconv.FormatInt(ts.ints[i], 10)
		}
		res.add(s, TimestampMismatch, "got timestamp %s (%d per ms), want %d ms (time_unix_nano %d rounded down to ms)", got, ts.perMs, wantMs, tun.ints[i])
	}
	if at := &cols[colActionType]; !at.null[i] && string(at.strs[i]) == entry.ActionLoss {
		res.add(s, RecordedLoss, "%s (accepted by %s: %s)",
			textOf(cols[colResult].value(i)), textOf(cols[colApprover].value(i)), textOf(cols[colReasoning].value(i)))
	}
	if cid.null[i] || string(cid.strs[i]) != res.chainID {
		return true, string(cid.value(i)), s
	}
	r.recs = append(r.recs, rec{seq: s, tun: tun.ints[i], prev: prev.strs[i], eh: eh.strs[i], raw: *sum, rawOK: ok})
	return false, "", 0
}

// checkRows makes the checks between rows of the file, in seq order, with
// the meaning of docs/verify.sql: gaps, duplicates and links inside the
// file. Links into and out of the file are checked by merge.
func (r *fileReader) checkRows(res *fileResult) {
	recs := r.recs
	// The common case, in one pass: consecutive seqs, each linked to the
	// row before.
	clean := true
	for i := 1; i < len(recs) && clean; i++ {
		clean = recs[i].seq == recs[i-1].seq+1 && recs[i].prev.eq(recs[i-1].eh)
	}
	if clean {
		first, last := &recs[0], &recs[len(recs)-1]
		res.firstSeq, res.firstTime, res.firstPrevs = first.seq, first.tun, cloneHashes([]hash64{first.prev})
		res.lastSeq, res.lastTime, res.lastHashes = last.seq, last.tun, cloneHashes([]hash64{last.eh})
		return
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].seq < recs[i-1].seq {
			res.add(recs[i].seq, Reordering, "row %d has seq %d after seq %d: rows are not in ascending seq", i, recs[i].seq, recs[i-1].seq)
			slices.SortStableFunc(recs, func(a, b rec) int {
				switch {
				case a.seq < b.seq:
					return -1
				case a.seq > b.seq:
					return 1
				}
				return 0
			})
			break
		}
	}
	var prevHashes, hashes []hash64
	prevSeq := int64(0)
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].seq == recs[i].seq {
			j++
		}
		g, s := recs[i:j], recs[i].seq
		hashes = hashes[:0]
		for _, x := range g {
			hashes = appendDistinct(hashes, x.eh)
		}
		if len(g) > 1 {
			res.add(s, Duplicate, "%d rows, %d distinct entry_hash", len(g), len(hashes))
		}
		if i == 0 {
			res.firstSeq, res.firstTime = s, g[0].tun
			for _, x := range g {
				res.firstPrevs = appendDistinct(res.firstPrevs, x.prev)
			}
		} else {
			switch {
			case s == prevSeq+2:
				res.add(s, Gap, "seq %d missing", prevSeq+1)
			case s > prevSeq+2:
				res.add(s, Gap, "seq %d to %d missing", prevSeq+1, s-1)
			}
			var seen []hash64
			for _, x := range g {
				if !containsHash(prevHashes, x.prev) && !slices.ContainsFunc(seen, x.prev.same) {
					seen = append(seen, x.prev)
					res.add(s, BrokenLink, "got prev_hash %s, want %s (entry_hash of seq %d)", x.prev, joinHashes(prevHashes), prevSeq)
				}
			}
		}
		prevHashes, hashes = hashes, prevHashes
		prevSeq = s
		i = j
	}
	res.lastSeq, res.lastTime = prevSeq, recs[len(recs)-1].tun
	res.lastHashes = cloneHashes(prevHashes)
	res.firstPrevs = cloneHashes(res.firstPrevs)
}

func joinHashes(hs []hash64) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	return strings.Join(s, " or ")
}

// checkFooter compares the footer metadata with the rows. version is the
// format version of the file's columns, merkleRoot the root of the rows'
// entry hashes in seq order.
func checkFooter(res *fileResult, kv []format.KeyValue, version, merkleRoot string) {
	get := func(key string) (string, bool) {
		for i := len(kv) - 1; i >= 0; i-- {
			if kv[i].Key == key {
				return kv[i].Value, true
			}
		}
		return "", false
	}
	want := []struct {
		key, value string
		seq        int64
	}{
		{parquetfile.KeyFormatVersion, version, res.firstSeq},
		{parquetfile.KeyChainID, res.chainID, res.firstSeq},
		{parquetfile.KeyFirstSeq, strconv.FormatInt(res.firstSeq, 10), res.firstSeq},
		{parquetfile.KeyLastSeq, strconv.FormatInt(res.lastSeq, 10), res.lastSeq},
		{parquetfile.KeyEntryCount, strconv.FormatInt(res.rows, 10), res.firstSeq},
		{parquetfile.KeyPrevHash, res.firstPrevs[0].String(), res.firstSeq},
		{parquetfile.KeyLastHash, res.lastHashes[0].String(), res.lastSeq},
		{parquetfile.KeyMerkleRoot, merkleRoot, res.firstSeq},
	}
	for _, w := range want {
		got, ok := get(w.key)
		switch {
		case !ok:
			res.add(w.seq, FooterMissing, "footer key %q missing", w.key)
		case got == w.value:
		case w.key == parquetfile.KeyChainID:
			res.add(w.seq, ForeignFile, "footer key %q = %q, but the rows are chain %q", w.key, got, w.value)
		default:
			res.add(w.seq, FooterMismatch, "footer key %q = %q, want %q (from the rows)", w.key, got, w.value)
		}
	}
}

// ParseFileKey parses the last two segments of a file's key as a batch
// file name (dt=YYYY-MM-DD/<chain_id>-<first seq, 20 digits>.parquet).
func ParseFileKey(key string) (chainID string, firstSeq int64, err error) {
	chainID, firstSeq, _, err = store.ParseBatchName(key)
	return chainID, firstSeq, err
}

// checkName compares the file name with the rows.
func checkName(res *fileResult) {
	name, seq, err := ParseFileKey(res.key)
	switch {
	case err != nil:
		res.add(res.firstSeq, FileNameMismatch, "not a batch file name (dt=YYYY-MM-DD/<chain_id>-<first seq, 20 digits>.parquet)")
	case name != res.chainID:
		res.add(res.firstSeq, ForeignFile, "file name says chain %q, the rows are chain %q", name, res.chainID)
	case seq != res.firstSeq:
		res.add(res.firstSeq, FileNameMismatch, "file name says first seq %d, the first row is seq %d", seq, res.firstSeq)
	}
}
