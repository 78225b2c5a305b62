package parquetfile

import (
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
)

// Columns holds the entries of one batch file column by column, the way
// the file stores them: each entry's values are appended to one buffer per
// column as the entry is chained, and Encode hands the buffers' values to
// parquet-go's column writers, one column after the other, without rows in
// between. The buffers hold no pointers (nothing for the garbage collector
// to scan) and keep their room across Reset, so a writer that reuses one
// Columns batch after batch allocates nothing once warm.
//
// The seq, timestamp and chain_id columns are not buffered: seq is the
// first seq plus the row's index, timestamp is time_unix_nano in
// milliseconds, and chain_id is the batch's one chain id.
//
// The zero Columns is empty and ready to use; it is not safe for
// concurrent use.
type Columns struct {
	chainID  string
	firstSeq int64
	n        int
	// err is the first entry that breaks the batch rules (a *BatchError),
	// which Encode returns.
	err     error
	times   []int64
	ends    []int64 // end_time_unix_nano, 0 where NULL
	endDefs []byte  // definition levels of end_time_unix_nano: 1 set, 0 NULL
	strs    [numStringColumns]bytesColumn
	// digests are the raw entry hashes, 32 bytes each, for the Merkle root:
	// the chain's own sums, or decoded from entry_hash by Append.
	digests []byte
	// leaves are the RFC 6962 leaf hashes of digests, 32 bytes each, as
	// the last Encode computed them for the Merkle root (LeafHashes); empty
	// after Reset and Truncate, short of n after an Append.
	leaves []byte
}

// The buffered string columns, in file order.
const (
	colExecutionID = iota
	colTraceID
	colSpanID
	colParentSpanID
	colAgentID
	colAgentName
	colServiceName
	colPrincipal
	colSender
	colActionType
	colTargetSystem
	colTargetResource
	colProposedValue
	colPreviousValue
	colReasoning
	colApprover
	colResult
	colStatusCode
	colAttributes
	colValidation
	colPrevHash
	colEntryHash
	numStringColumns
)

// stringColumnNames name the buffered string columns, by their constants.
var stringColumnNames = [numStringColumns]string{
	"execution_id", "trace_id", "span_id", "parent_span_id", "agent_id", "agent_name",
	"service_name", "principal", "sender", "action_type", "target_system", "target_resource",
	"proposed_value", "previous_value", "reasoning", "approver", "result", "status_code",
	"attributes", "validation", "prev_hash", "entry_hash",
}

// columnIndexes are the leaf indexes in schema of the columns Encode writes,
// found by name so that the schema (row) stays the one place that orders
// them.
var columnIndexes = func() (ix struct {
	timestamp, time, end, chainID, seq int
	strs                               [numStringColumns]int
}) {
	at := func(name string) int {
		leaf, ok := schema.Lookup(name)
		if !ok {
			panic("parquetfile: no column " + name)
		}
		return leaf.ColumnIndex
	}
	ix.timestamp, ix.time, ix.end = at("timestamp"), at("time_unix_nano"), at("end_time_unix_nano")
	ix.chainID, ix.seq = at("chain_id"), at("seq")
	for i, name := range stringColumnNames {
		ix.strs[i] = at(name)
	}
	return ix
}()

// stringOptional says which buffered string columns are OPTIONAL.
var stringOptional = func() (opt [numStringColumns]bool) {
	for i, name := range stringColumnNames {
		leaf, _ := schema.Lookup(name)
		opt[i] = leaf.Node.Optional()
	}
	return opt
}()

// bytesColumn is a string column: its values back to back, where each
// ends, and for an optional column each row's definition level.
type bytesColumn struct {
	data []byte
	ends []uint32
	defs []byte // optional columns only: 1 set, 0 NULL
}

// maxColumnBytes bounds a column's buffer so that its ends fit in 32 bits.
const maxColumnBytes = math.MaxUint32

func (c *bytesColumn) add(s string) {
	c.data = append(c.data, s...)
	c.ends = append(c.ends, uint32(len(c.data)))
}

func (c *bytesColumn) addOptional(s *string) {
	if s == nil {
		c.defs = append(c.defs, 0)
		c.ends = append(c.ends, uint32(len(c.data)))
		return
	}
	c.defs = append(c.defs, 1)
	c.add(*s)
}

// value returns row i's value.
func (c *bytesColumn) value(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = c.ends[i-1]
	}
	return c.data[start:c.ends[i]]
}

func (c *bytesColumn) truncate(n int) {
	end := uint32(0)
	if n > 0 {
		end = c.ends[n-1]
	}
	c.data, c.ends = c.data[:end], c.ends[:n]
	if c.defs != nil {
		c.defs = c.defs[:n]
	}
}

func (c *bytesColumn) reset() { c.data, c.ends, c.defs = c.data[:0], c.ends[:0], c.defs[:0] }

// Len returns the number of entries.
func (c *Columns) Len() int { return c.n }

// FirstSeq returns the seq of the first entry.
func (c *Columns) FirstSeq() int64 { return c.firstSeq }

// Reset empties c, keeping its buffers' room.
func (c *Columns) Reset() {
	c.chainID, c.firstSeq, c.n, c.err = "", 0, 0, nil
	c.times, c.ends, c.endDefs, c.digests = c.times[:0], c.ends[:0], c.endDefs[:0], c.digests[:0]
	c.leaves = c.leaves[:0]
	for i := range c.strs {
		c.strs[i].reset()
	}
}

// Truncate keeps the first n entries.
func (c *Columns) Truncate(n int) {
	if n >= c.n {
		return
	}
	c.n = n
	c.times, c.ends, c.endDefs, c.digests = c.times[:n], c.ends[:n], c.endDefs[:n], c.digests[:n*32]
	c.leaves = c.leaves[:0]
	for i := range c.strs {
		c.strs[i].truncate(n)
	}
	if c.err != nil {
		if be, ok := c.err.(*BatchError); ok && be.Index >= n {
			c.err = nil
		}
	}
}

// LeafHashes returns the RFC 6962 leaf hashes of the rows' entry hashes,
// SHA-256(0x00 || entry hash), 32 bytes each, in seq order, as the last
// Encode computed them for the file's Merkle root: the leaves of the
// chain's tree too (tlogtree.Writer.AppendLeaves), which need not be
// hashed again. It returns nil unless Encode computed them for the rows c
// holds now (not before an Encode, nor after an Append, Truncate or Reset
// since). The bytes are c's: valid until c changes.
func (c *Columns) LeafHashes() []byte {
	if c.n == 0 || len(c.leaves) != c.n*32 {
		return nil
	}
	return c.leaves
}

// EntryHashes appends the raw entry hashes of the rows, in seq order, to
// dst and returns it: the leaves of the chain's tree (internal/tlogtree).
func (c *Columns) EntryHashes(dst [][32]byte) [][32]byte {
	for i := range c.n {
		dst = append(dst, [32]byte(c.digests[i*32:(i+1)*32]))
	}
	return dst
}

// Append appends e, whose entry hash (e.EntryHash, hex) Append decodes for
// the batch's Merkle root. The entries of one Columns must be one run of
// one chain, as Encode documents; Append notes the first that is not, and
// Encode returns it.
func (c *Columns) Append(e *entry.Entry) {
	var sum [32]byte
	if len(e.EntryHash) != 64 {
		c.fail(&BatchError{Index: c.n, Field: "entry_hash", Got: strconv.Quote(e.EntryHash), Want: "64 lower-case hex digits"})
	} else if _, err := hex.Decode(sum[:], []byte(e.EntryHash)); err != nil {
		c.fail(&BatchError{Index: c.n, Field: "entry_hash", Got: strconv.Quote(e.EntryHash), Want: "64 lower-case hex digits"})
	}
	c.AppendHashed(e, &sum)
}

// AppendHashed appends e, whose entry hash is sum: the SHA-256 of its
// canonical encoding, which the chain computed (e.EntryHash is its hex).
// Like Append, it notes an entry that breaks the batch rules.
func (c *Columns) AppendHashed(e *entry.Entry, sum *[32]byte) {
	if c.n == 0 {
		c.chainID, c.firstSeq = e.ChainID, e.Seq
	} else if c.err == nil {
		switch {
		case e.ChainID != c.chainID:
			c.fail(&BatchError{Index: c.n, Field: "chain_id", Got: strconv.Quote(e.ChainID), Want: strconv.Quote(c.chainID)})
		case e.Seq != c.firstSeq+int64(c.n):
			c.fail(&BatchError{Index: c.n, Field: "seq", Got: strconv.FormatInt(e.Seq, 10), Want: strconv.FormatInt(c.firstSeq+int64(c.n), 10)})
		}
	}
	if e.EndTimeUnixNano == nil && e.Sender != nil {
		// Stored but not hashed, and reported by every verifier.
		c.fail(&BatchError{Index: c.n, Field: "sender", Got: strconv.Quote(*e.Sender), Want: "NULL in an entry without an end time (version 1)"})
	}
	c.times = append(c.times, e.TimeUnixNano)
	if e.EndTimeUnixNano != nil {
		c.ends = append(c.ends, *e.EndTimeUnixNano)
		c.endDefs = append(c.endDefs, 1)
	} else {
		c.ends = append(c.ends, 0)
		c.endDefs = append(c.endDefs, 0)
	}
	s := &c.strs
	s[colExecutionID].add(e.ExecutionID)
	s[colTraceID].add(e.TraceID)
	s[colSpanID].add(e.SpanID)
	s[colParentSpanID].addOptional(e.ParentSpanID)
	s[colAgentID].addOptional(e.AgentID)
	s[colAgentName].addOptional(e.AgentName)
	s[colServiceName].addOptional(e.ServiceName)
	s[colPrincipal].addOptional(e.Principal)
	s[colSender].addOptional(e.Sender)
	s[colActionType].add(e.ActionType)
	s[colTargetSystem].add(e.TargetSystem)
	s[colTargetResource].add(e.TargetResource)
	s[colProposedValue].addOptional(e.ProposedValue)
	s[colPreviousValue].addOptional(e.PreviousValue)
	s[colReasoning].addOptional(e.Reasoning)
	s[colApprover].addOptional(e.Approver)
	s[colResult].add(e.Result)
	s[colStatusCode].add(e.StatusCode)
	s[colAttributes].add(e.Attributes)
	s[colValidation].addOptional(e.Validation)
	s[colPrevHash].add(e.PrevHash)
	s[colEntryHash].add(e.EntryHash)
	c.digests = append(c.digests, sum[:]...)
	c.n++
	for i := range s {
		if len(s[i].data) > maxColumnBytes {
			c.fail(fmt.Errorf("%w: column %q holds more than %d bytes", ErrInvalidBatch, stringColumnNames[i], maxColumnBytes))
		}
	}
}

func (c *Columns) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// footer checks c, as Encode documents, and returns the footer of its
// batch file.
func (c *Columns) footer(fold *merkle.Fold) (Footer, error) {
	if c.n == 0 {
		return Footer{}, ErrEmptyBatch
	}
	prev := string(c.strs[colPrevHash].value(0))
	last := string(c.strs[colEntryHash].value(c.n - 1))
	// What ReadFooter checks, so that no file is written that it refuses.
	switch {
	case c.chainID == "":
		return Footer{}, &BatchError{Index: 0, Field: "chain_id", Got: `""`, Want: "a chain id"}
	case c.firstSeq < 0:
		return Footer{}, &BatchError{Index: 0, Field: "seq", Got: strconv.FormatInt(c.firstSeq, 10), Want: "a seq >= 0"}
	case !isHexHash(prev):
		return Footer{}, &BatchError{Index: 0, Field: "prev_hash", Got: strconv.Quote(prev), Want: "64 lower-case hex digits"}
	case !isHexHash(last):
		return Footer{}, &BatchError{Index: c.n - 1, Field: "entry_hash", Got: strconv.Quote(last), Want: "64 lower-case hex digits"}
	case c.err != nil:
		return Footer{}, c.err
	}
	// The leaves are kept for the chain's tree (LeafHashes).
	c.leaves, _ = fold.LeafHashes(c.leaves[:0], c.n, func(i int, dst *[32]byte) error {
		copy(dst[:], c.digests[i*32:])
		return nil
	})
	root := fold.RootOfLeaves(c.leaves)
	return Footer{
		FormatVersion: FormatVersion,
		ChainID:       c.chainID,
		FirstSeq:      c.firstSeq,
		LastSeq:       c.firstSeq + int64(c.n) - 1,
		EntryCount:    int64(c.n),
		PrevHash:      prev,
		LastHash:      last,
		MerkleRoot:    hex.EncodeToString(root[:]),
	}, nil
}

// Encode writes the columns as one Parquet file into w and returns the
// footer it wrote, with the checks and errors of the package's Encode. It
// leaves c as it is.
func (c *Columns) Encode(w io.Writer) (Footer, error) {
	enc, ok := encoders.get()
	if !ok {
		enc = new(encoder)
	}
	f, err := c.footer(&enc.fold)
	if err != nil {
		encoders.put(enc)
		return Footer{}, err
	}
	if err := enc.encode(w, c, f); err != nil {
		// A writer that failed half way is not reused.
		return Footer{}, err
	}
	encoders.put(enc)
	return f, nil
}

// encoder is what one batch file's encoding needs besides parquet-go's
// writer, kept from one file to the next: the values handed to a column
// writer at a time, and a Merkle fold.
type encoder struct {
	vals []parquet.Value
	fold merkle.Fold
}

// encoders are idle encoders: one per batch encoded at once is enough.
var encoders freeList[*encoder]

// valueChunk is how many values of a column are handed to its writer at a
// time: what parquet-go's row writer hands it (it cuts every write into
// runs of 64 rows), so that pages end where that writer ends them and the
// files are the same, byte for byte.
const valueChunk = 64

func (enc *encoder) encode(w io.Writer, c *Columns, f Footer) error {
	// A new writer for each file: parquet-go v0.32's Reset leaves a writer
	// that writes other column metadata for the next file.
	pw := parquet.NewGenericWriter[any](w, append(writerOptions(f), schema)...)
	if enc.vals == nil {
		enc.vals = make([]parquet.Value, valueChunk)
	}
	err := enc.writeColumns(pw.ColumnWriters(), c)
	clear(enc.vals) // no reference to c's buffers stays behind
	if err != nil {
		return err
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("parquetfile: close writer: %w", err)
	}
	return nil
}

// writeColumns hands each column's values to its writer, valueChunk rows at
// a time. Each kind of column has its own loop, written out: a fill
// function called per value cost about a third of sealing's CPU (the call,
// the Value it returns, Value.Level), more than parquet-go's buffering of
// the values.
func (enc *encoder) writeColumns(cols []*parquet.ColumnWriter, c *Columns) error {
	ix := &columnIndexes
	n := c.n
	// int64s writes a required INT64 column: row i's value is src[i], in
	// milliseconds when millis is set, or firstSeq+i when src is nil.
	int64s := func(at int, src []int64, millis bool) error {
		for start := 0; start < n; start += valueChunk {
			vals := enc.vals[:min(valueChunk, n-start)]
			for i := range vals {
				var v int64
				switch {
				case src == nil:
					v = c.firstSeq + int64(start+i)
				case millis:
					v = unixMilli(src[start+i])
				default:
					v = src[start+i]
				}
				vals[i] = parquet.Int64Value(v)
				vals[i].SetColumnIndex(at)
			}
			if err := writeChunk(cols[at], at, vals); err != nil {
				return err
			}
		}
		return nil
	}
	err := int64s(ix.timestamp, c.times, true)
	if err == nil {
		err = int64s(ix.time, c.times, false)
	}
	for start := 0; err == nil && start < n; start += valueChunk {
		at := ix.end
		vals := enc.vals[:min(valueChunk, n-start)]
		for i := range vals {
			if c.endDefs[start+i] == 0 {
				vals[i] = parquet.NullValue()
			} else {
				vals[i] = parquet.Int64Value(c.ends[start+i])
				vals[i].SetDefinitionLevel(1)
			}
			vals[i].SetColumnIndex(at)
		}
		err = writeChunk(cols[at], at, vals)
	}
	chainID := []byte(c.chainID)
	for start := 0; err == nil && start < n; start += valueChunk {
		at := ix.chainID
		vals := enc.vals[:min(valueChunk, n-start)]
		for i := range vals {
			vals[i] = parquet.ByteArrayValue(chainID)
			vals[i].SetColumnIndex(at)
		}
		err = writeChunk(cols[at], at, vals)
	}
	if err == nil {
		err = int64s(ix.seq, nil, false)
	}
	for k := range c.strs {
		if err != nil {
			return err
		}
		col, at, optional := &c.strs[k], ix.strs[k], stringOptional[k]
		for start := 0; err == nil && start < n; start += valueChunk {
			vals := enc.vals[:min(valueChunk, n-start)]
			begin := uint32(0)
			if start > 0 {
				begin = col.ends[start-1]
			}
			for i := range vals {
				end := col.ends[start+i]
				switch {
				case !optional:
					vals[i] = parquet.ByteArrayValue(col.data[begin:end])
				case col.defs[start+i] == 0:
					vals[i] = parquet.NullValue()
				default:
					vals[i] = parquet.ByteArrayValue(col.data[begin:end])
					vals[i].SetDefinitionLevel(1)
				}
				vals[i].SetColumnIndex(at)
				begin = end
			}
			err = writeChunk(cols[at], at, vals)
		}
	}
	return err
}

func writeChunk(w *parquet.ColumnWriter, col int, vals []parquet.Value) error {
	if _, err := w.WriteRowValues(vals); err != nil {
		return fmt.Errorf("parquetfile: write column %d: %w", col, err)
	}
	return nil
}
