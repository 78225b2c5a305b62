package verify

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/transparency-dev/merkle/compact"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
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
	// tree is the compact range of the chain's tree that the file's rows
	// cover (tree.go), nil when they do not form one.
	tree       *compact.Range
	violations []Violation
	ap         *fileApprovals // the approval rows, when collected
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
	block  *[rowBlock * rowSlot]byte
	long   []byte
	recs   []rec
	file   []byte // the bytes of the last local file read
	tree   merkleFold
	chain  treeFold
	leaves []byte // the leaf hashes of recs, for tree and chain
	// pickSeq, when not NoSeq, asks read to copy the entry_hash of that
	// seq into picked (for a checkpoint head inside a file), and the
	// compact range of the file's rows up to it into pickedTree (for a
	// checkpoint's root).
	pickSeq    int64
	picked     hash64
	pickedTree *compact.Range
	// check bounds what each column chunk may make parquet-go allocate,
	// before parquet-go reads it, and checks the pages it decodes.
	check parquetfile.ChunkChecker
	// apc, when set, has read keep each file's approval rows (approvals.go);
	// apKnown, when set, has it check every write without approval id
	// against these policies, per chain, and keep nothing.
	apc     *approvalCollector
	apKnown map[string][]policyAt
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
	r.pickSeq, r.picked, r.pickedTree = NoSeq, nil, nil
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
	// The file's root and the chain's tree share the leaf hashes.
	merkleRoot := "(not computable: an entry_hash is not 64 hex digits)"
	leaves, ok := r.tree.leaves(r.leaves[:0], r.recs)
	if ok {
		r.leaves = leaves
		root := r.tree.rootOfLeaves(leaves)
		merkleRoot = string(root[:])
		res.merkleRoot = merkleRoot
		res.tree = r.chain.rangeOfLeaves(r.recs, leaves)
	}
	if r.pickSeq != NoSeq {
		for i, x := range r.recs {
			if x.seq == r.pickSeq {
				r.picked = cloneHashes([]hash64{x.eh})[0]
				if ok {
					r.pickedTree = r.chain.rangeOfLeaves(r.recs[:i+1], leaves)
				} else { // the hashes up to it may still make a range
					r.pickedTree = r.chain.rangeOf(r.recs[:i+1])
				}
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
