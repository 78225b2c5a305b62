package parquetfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// FormatVersion is the version of the batch file layout (columns, types and
// footer keys) this package writes, version 2: the columns of version 1,
// end_time_unix_nano and sender. It is stored under KeyFormatVersion; a
// reader refuses versions it does not know.
const FormatVersion = "2"

// FormatVersion1 is the layout of files written before end times and
// senders were recorded: the columns of version 2 but end_time_unix_nano
// and sender. ReadFooter and ReadEntries read it; Encode never writes it.
// Its entries have no end time (entry.Entry.EndTimeUnixNano nil) nor
// sender, and are hashed as version 1.
const FormatVersion1 = "1"

// Footer metadata keys: key-value metadata in the Parquet footer of every
// batch file. Part of the on-disk format: never rename them.
const (
	KeyFormatVersion = "agentaudit.format_version"
	KeyChainID       = "agentaudit.chain_id"
	KeyFirstSeq      = "agentaudit.first_seq"
	KeyLastSeq       = "agentaudit.last_seq"
	KeyEntryCount    = "agentaudit.entry_count"
	KeyPrevHash      = "agentaudit.prev_hash" // prev_hash of the first entry
	KeyLastHash      = "agentaudit.last_hash" // entry_hash of the last entry
	// KeyMerkleRoot is the RFC 6962 Merkle tree hash (hex) of the batch's
	// entry hashes in seq order (internal/merkle), the root an inclusion
	// proof of one entry leads to.
	KeyMerkleRoot = "agentaudit.merkle_root"
)

// Errors. Check with errors.Is; they come back wrapped with the facts.
var (
	// ErrEmptyBatch: Encode was given no entries. A batch file is never empty.
	ErrEmptyBatch = errors.New("parquetfile: empty batch")
	// ErrInvalidBatch: the entries given to Encode are not one run of
	// consecutive entries of one chain. The error is a *BatchError.
	ErrInvalidBatch = errors.New("parquetfile: invalid batch")
	// ErrCorrupt: the bytes are not a well-formed Parquet file (truncated,
	// garbage, or undecodable rows).
	ErrCorrupt = errors.New("parquetfile: not a well-formed parquet file")
	// ErrNotAuditFile: a readable Parquet file that is not an audit batch: a
	// footer key is missing or malformed, or the columns differ.
	ErrNotAuditFile = errors.New("parquetfile: not an agentaudit batch file")
	// ErrUnsupportedVersion: an audit batch file of a format version this
	// build does not read.
	ErrUnsupportedVersion = errors.New("parquetfile: unsupported format version")
	// ErrTimestampMismatch: a row's timestamp column is not its
	// time_unix_nano truncated to milliseconds. The timestamp column is not
	// covered by the entry hash, so ReadEntries checks it.
	ErrTimestampMismatch = errors.New("parquetfile: timestamp disagrees with time_unix_nano")
)

// BatchError says which entry of a batch breaks the one-chain,
// consecutive-seq rule, or lacks what the footer records. It wraps
// ErrInvalidBatch.
type BatchError struct {
	Index int    // position of the offending entry in the slice
	Field string // "chain_id", "seq", "prev_hash", "entry_hash" or "sender"
	Got   string
	Want  string
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("parquetfile: invalid batch: entry %d: %s = %s, want %s", e.Index, e.Field, e.Got, e.Want)
}

// Unwrap returns ErrInvalidBatch.
func (e *BatchError) Unwrap() error { return ErrInvalidBatch }

// Footer is the audit metadata of one batch file.
type Footer struct {
	FormatVersion string
	ChainID       string
	FirstSeq      int64 // seq of the first row
	LastSeq       int64 // seq of the last row
	EntryCount    int64 // number of rows, LastSeq-FirstSeq+1
	PrevHash      string
	LastHash      string
	MerkleRoot    string
}

// row is the Parquet schema of format version 2. Column order is field
// order. Strings get the STRING logical type by default; pointer fields are
// OPTIONAL. Every column is ZSTD-compressed, with the codec columnCodecs
// gives it. (Not an embedded struct of the columns the versions share:
// parquet-go v0.32 reads a NULL into an embedded struct's pointer field as a
// pointer to the zero value.)
type row struct {
	Timestamp       int64   `parquet:"timestamp,timestamp(millisecond:utc)"`
	TimeUnixNano    int64   `parquet:"time_unix_nano"`
	EndTimeUnixNano *int64  `parquet:"end_time_unix_nano"`
	ChainID         string  `parquet:"chain_id,dict"`
	Seq             int64   `parquet:"seq"`
	ExecutionID     string  `parquet:"execution_id,dict"`
	TraceID         string  `parquet:"trace_id"`
	SpanID          string  `parquet:"span_id"`
	ParentSpanID    *string `parquet:"parent_span_id"`
	AgentID         *string `parquet:"agent_id,dict"`
	AgentName       *string `parquet:"agent_name,dict"`
	ServiceName     *string `parquet:"service_name,dict"`
	Principal       *string `parquet:"principal,dict"`
	Sender          *string `parquet:"sender,dict"`
	ActionType      string  `parquet:"action_type,dict"`
	TargetSystem    string  `parquet:"target_system,dict"`
	TargetResource  string  `parquet:"target_resource"`
	ProposedValue   *string `parquet:"proposed_value"`
	PreviousValue   *string `parquet:"previous_value"`
	Reasoning       *string `parquet:"reasoning"`
	Approver        *string `parquet:"approver,dict"`
	Result          string  `parquet:"result,dict"`
	StatusCode      string  `parquet:"status_code,dict"`
	Attributes      string  `parquet:"attributes"`
	Validation      *string `parquet:"validation"`
	PrevHash        string  `parquet:"prev_hash"`
	EntryHash       string  `parquet:"entry_hash"`
}

// rowV1 is the Parquet schema of format version 1, read but never written:
// row without end_time_unix_nano and sender.
type rowV1 struct {
	Timestamp      int64   `parquet:"timestamp,timestamp(millisecond:utc)"`
	TimeUnixNano   int64   `parquet:"time_unix_nano"`
	ChainID        string  `parquet:"chain_id,dict"`
	Seq            int64   `parquet:"seq"`
	ExecutionID    string  `parquet:"execution_id,dict"`
	TraceID        string  `parquet:"trace_id"`
	SpanID         string  `parquet:"span_id"`
	ParentSpanID   *string `parquet:"parent_span_id"`
	AgentID        *string `parquet:"agent_id,dict"`
	AgentName      *string `parquet:"agent_name,dict"`
	ServiceName    *string `parquet:"service_name,dict"`
	Principal      *string `parquet:"principal,dict"`
	ActionType     string  `parquet:"action_type,dict"`
	TargetSystem   string  `parquet:"target_system,dict"`
	TargetResource string  `parquet:"target_resource"`
	ProposedValue  *string `parquet:"proposed_value"`
	PreviousValue  *string `parquet:"previous_value"`
	Reasoning      *string `parquet:"reasoning"`
	Approver       *string `parquet:"approver,dict"`
	Result         string  `parquet:"result,dict"`
	StatusCode     string  `parquet:"status_code,dict"`
	Attributes     string  `parquet:"attributes"`
	Validation     *string `parquet:"validation"`
	PrevHash       string  `parquet:"prev_hash"`
	EntryHash      string  `parquet:"entry_hash"`
}

// schema is the Parquet schema of a batch file; schemaV1 that of a file
// of format version 1.
var (
	schema   = withCodecs(parquet.SchemaOf(row{}), columnCodecs, pageCodec)
	schemaV1 = withCodecs(parquet.SchemaOf(rowV1{}), columnCodecs, pageCodec)
)

// bloomBitsPerValue sizes the execution_id bloom filter: 20 bits per
// distinct value gives well under 0.1% false positives, so that a
// reviewer's lookup of one run among a thousand files reads the files that
// hold it and hardly ever one more (at 10 bits, about 1%: ten more), for
// about 0.05% of the file's size (docs/PERFORMANCE.md, "Reviewing runs").
const bloomBitsPerValue = 20

// blobColumns hold free text up to max_value_bytes (entry.DefaultMaxValueBytes
// by default). Their page index bounds are kept like every column's: readers
// that prune pages by it (Trino and Athena engine 3, Spark) would skip the
// pages of a filter such as proposed_value = '...' if the bounds were empty.
// parquet-go cuts those bounds to 16 bytes but keeps whole values in the
// column chunk's statistics: at most two values per column per file.
var blobColumns = []string{"proposed_value", "previous_value", "reasoning", "attributes", "validation"}

// noPageStatistics are the columns whose data page headers carry no
// statistics: the blobs, whose min and max would be whole values, and the
// uniformly spread hex ids and hashes, whose min and max exclude nothing.
// Page header statistics are an older, optional place for what the page
// index (kept for every column) already holds; leaving them out of these
// columns saves one pass over each page's values at sealing.
var noPageStatistics = append([]string{"trace_id", "span_id", "parent_span_id", "prev_hash", "entry_hash"}, blobColumns...)

// footerKV is the footer's key-value metadata, in the order of the Key*
// constants.
func footerKV(f Footer) [8][2]string {
	return [8][2]string{
		{KeyFormatVersion, f.FormatVersion},
		{KeyChainID, f.ChainID},
		{KeyFirstSeq, strconv.FormatInt(f.FirstSeq, 10)},
		{KeyLastSeq, strconv.FormatInt(f.LastSeq, 10)},
		{KeyEntryCount, strconv.FormatInt(f.EntryCount, 10)},
		{KeyPrevHash, f.PrevHash},
		{KeyLastHash, f.LastHash},
		{KeyMerkleRoot, f.MerkleRoot},
	}
}

func writerOptions(f Footer) []parquet.WriterOption {
	opts := []parquet.WriterOption{
		parquet.Compression(pageCodec), // the schema's columns have their codecs; see columnCodecs
		// Version 1 data pages are what every reader (Athena engine 2 and 3,
		// Spark, DuckDB, pyarrow) handles.
		parquet.DataPageVersion(1),
		// PLAIN rather than parquet-go's DELTA_LENGTH_BYTE_ARRAY for strings
		// without a dictionary: older readers (Athena engine 2, Spark before
		// 3.3) lack the delta encodings, and zstd recovers the difference.
		parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.Plain),
		parquet.DataPageStatistics(true),
		parquet.BloomFilters(parquet.SplitBlockFilter(bloomBitsPerValue, "execution_id")),
	}
	for _, kv := range footerKV(f) {
		opts = append(opts, parquet.KeyValueMetadata(kv[0], kv[1]))
	}
	for _, c := range noPageStatistics {
		opts = append(opts, parquet.SkipPageStatistics(c))
	}
	return opts
}

// Encode writes entries as one Parquet file into w and returns the footer it
// wrote. The entries must be one run of one chain: same non-empty ChainID,
// seq starting at 0 or more and increasing by one, already hashed. Encode
// checks the form of the first prev_hash and the last entry_hash, which go
// into the footer, and that every entry_hash is 64 hex digits (the Merkle
// root is built of them), but not the hashes themselves, so that tests can
// write tampered files. An entry without an end time (version 1) must have
// no sender: version 1 does not hash one. It returns an error wrapping
// ErrEmptyBatch for no entries, a *BatchError (ErrInvalidBatch) when the
// entries break these rules, in both cases before writing anything, or the
// error of w. It is Columns.Encode of the entries appended one by one.
func Encode(w io.Writer, entries []entry.Entry) (Footer, error) {
	var c Columns
	for i := range entries {
		c.Append(&entries[i])
	}
	return c.Encode(w)
}

// unixMilli is nanoseconds since the epoch truncated to milliseconds,
// rounding towards negative infinity like time.Time.UnixMilli.
func unixMilli(nanos int64) int64 {
	ms := nanos / 1e6
	if nanos%1e6 < 0 {
		ms--
	}
	return ms
}

// fromRow sets e from r and returns r's timestamp and time_unix_nano.
func fromRow(e *entry.Entry, r *row) (ts, tun int64) {
	*e = entry.Entry{
		TimeUnixNano:    r.TimeUnixNano,
		EndTimeUnixNano: r.EndTimeUnixNano,
		ChainID:         r.ChainID,
		Seq:             r.Seq,
		ExecutionID:     r.ExecutionID,
		TraceID:         r.TraceID,
		SpanID:          r.SpanID,
		ParentSpanID:    r.ParentSpanID,
		AgentID:         r.AgentID,
		AgentName:       r.AgentName,
		ServiceName:     r.ServiceName,
		Principal:       r.Principal,
		Sender:          r.Sender,
		ActionType:      r.ActionType,
		TargetSystem:    r.TargetSystem,
		TargetResource:  r.TargetResource,
		ProposedValue:   r.ProposedValue,
		PreviousValue:   r.PreviousValue,
		Reasoning:       r.Reasoning,
		Approver:        r.Approver,
		Result:          r.Result,
		StatusCode:      r.StatusCode,
		Attributes:      r.Attributes,
		Validation:      r.Validation,
		PrevHash:        r.PrevHash,
		EntryHash:       r.EntryHash,
	}
	return r.Timestamp, r.TimeUnixNano
}

// fromRowV1 is fromRow for a row of format version 1: no end time, no
// sender.
func fromRowV1(e *entry.Entry, r *rowV1) (ts, tun int64) {
	*e = entry.Entry{
		TimeUnixNano:   r.TimeUnixNano,
		ChainID:        r.ChainID,
		Seq:            r.Seq,
		ExecutionID:    r.ExecutionID,
		TraceID:        r.TraceID,
		SpanID:         r.SpanID,
		ParentSpanID:   r.ParentSpanID,
		AgentID:        r.AgentID,
		AgentName:      r.AgentName,
		ServiceName:    r.ServiceName,
		Principal:      r.Principal,
		ActionType:     r.ActionType,
		TargetSystem:   r.TargetSystem,
		TargetResource: r.TargetResource,
		ProposedValue:  r.ProposedValue,
		PreviousValue:  r.PreviousValue,
		Reasoning:      r.Reasoning,
		Approver:       r.Approver,
		Result:         r.Result,
		StatusCode:     r.StatusCode,
		Attributes:     r.Attributes,
		Validation:     r.Validation,
		PrevHash:       r.PrevHash,
		EntryHash:      r.EntryHash,
	}
	return r.Timestamp, r.TimeUnixNano
}

// fixedOverhead approximates the per-row bytes beside string contents: four
// int64 columns, a length prefix per string, definition levels.
const fixedOverhead = 4*8 + 23*4 + 11

// EstimatedSize returns the approximate number of bytes e adds to a batch
// before compression: the lengths of its strings plus a fixed overhead. It is
// meant for batching by size, not for exact accounting.
func EstimatedSize(e *entry.Entry) int {
	n := fixedOverhead +
		len(e.ChainID) + len(e.ExecutionID) + len(e.TraceID) + len(e.SpanID) +
		len(e.ActionType) + len(e.TargetSystem) + len(e.TargetResource) +
		len(e.Result) + len(e.StatusCode) + len(e.Attributes) +
		len(e.PrevHash) + len(e.EntryHash)
	for _, p := range [...]*string{e.ParentSpanID, e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.Sender,
		e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Validation} {
		if p != nil {
			n += len(*p)
		}
	}
	return n
}

// footerTail is the last 8 bytes of a Parquet file: the footer length
// (uint32, little endian) and the magic "PAR1".
const footerTail = 8

var magic = []byte("PAR1")

// ReadFooter reads the audit metadata from the footer of the Parquet file r
// of the given size, without reading any row. It returns an error wrapping
// ErrCorrupt when the bytes are not a Parquet file (truncated, garbage),
// ErrNotAuditFile naming the key when a footer key is missing or malformed,
// ErrUnsupportedVersion for an unknown format version, or the read error of r.
func ReadFooter(r io.ReaderAt, size int64) (Footer, error) {
	f, _, err := ReadMetadata(r, size)
	return f, err
}

// ReadMetadata is ReadFooter that also returns the file's whole Parquet
// metadata (row groups, statistics, bloom filter offsets), decoded once.
func ReadMetadata(r io.ReaderAt, size int64) (f Footer, md *format.FileMetaData, err error) {
	if size < int64(len(magic))+footerTail {
		return Footer{}, nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, size)
	}
	var head [4]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return Footer{}, nil, fmt.Errorf("parquetfile: read header: %w", err)
	}
	if !bytes.Equal(head[:], magic) {
		return Footer{}, nil, fmt.Errorf("%w: header magic %q, want %q", ErrCorrupt, head[:], magic)
	}
	return ReadTailMetadata(r, size)
}

// ReadTailMetadata is ReadMetadata without reading the magic number a
// Parquet file starts with: it reads only the footer at the end of r, so
// that a reader over the network fetches one range. It makes the same
// checks of the footer and returns the same errors. Use it to select
// files, not to verify them: bytes before the footer are not looked at.
func ReadTailMetadata(r io.ReaderAt, size int64) (f Footer, md *format.FileMetaData, err error) {
	if size < int64(len(magic))+footerTail {
		return Footer{}, nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, size)
	}
	var tail [footerTail]byte
	if _, err := r.ReadAt(tail[:], size-footerTail); err != nil {
		return Footer{}, nil, fmt.Errorf("parquetfile: read footer length: %w", err)
	}
	if !bytes.Equal(tail[4:], magic) {
		return Footer{}, nil, fmt.Errorf("%w: footer magic %q, want %q (truncated file?)", ErrCorrupt, tail[4:], magic)
	}
	// Checked before allocating: a garbage length must not cost 4 GiB.
	footerLen := int64(binary.LittleEndian.Uint32(tail[:4]))
	if footerLen > size-int64(len(magic))-footerTail {
		return Footer{}, nil, fmt.Errorf("%w: footer length %d exceeds file size %d", ErrCorrupt, footerLen, size)
	}
	data := make([]byte, footerLen)
	if _, err := r.ReadAt(data, size-footerTail-footerLen); err != nil {
		return Footer{}, nil, fmt.Errorf("parquetfile: read footer: %w", err)
	}

	defer func() {
		// parquet-go is pre-v1 and these bytes are untrusted: a decoder
		// panic is a corrupt file, not a crash.
		if p := recover(); p != nil {
			f, md, err = Footer{}, nil, fmt.Errorf("%w: decoding footer: %v", ErrCorrupt, p)
		}
	}()
	// Before parquet-go decodes it: a footer may declare lists it does not
	// hold (FooterCost).
	cost, err := FooterCost(data)
	if err != nil {
		return Footer{}, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if cost > maxFooterCost {
		return Footer{}, nil, fmt.Errorf("%w: %w: decoding it would take %d bytes, more than %d", ErrCorrupt, errFooter, cost, maxFooterCost)
	}
	var dec format.FooterDecoder
	md, _, err = dec.Decode(data)
	if err != nil {
		return Footer{}, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	f, err = footerFromKV(md.KeyValueMetadata)
	if err != nil {
		return Footer{}, nil, err
	}
	return f, md, nil
}

// footerFromKV parses and checks the audit keys. The strings it keeps are
// copies: kv may alias a decoder's buffer.
func footerFromKV(kv []format.KeyValue) (Footer, error) {
	get := func(key string) (string, error) {
		for i := len(kv) - 1; i >= 0; i-- {
			if kv[i].Key == key {
				return string([]byte(kv[i].Value)), nil
			}
		}
		return "", fmt.Errorf("%w: footer key %q missing", ErrNotAuditFile, key)
	}
	getInt := func(key string) (int64, error) {
		s, err := get(key)
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: footer key %q: %q is not an integer", ErrNotAuditFile, key, s)
		}
		return v, nil
	}
	getHash := func(key string) (string, error) {
		s, err := get(key)
		if err != nil {
			return "", err
		}
		if !isHexHash(s) {
			return "", fmt.Errorf("%w: footer key %q: %q is not 64 lower-case hex digits", ErrNotAuditFile, key, s)
		}
		return s, nil
	}

	var f Footer
	var err error
	if f.FormatVersion, err = get(KeyFormatVersion); err != nil {
		return Footer{}, err
	}
	if f.FormatVersion != FormatVersion && f.FormatVersion != FormatVersion1 {
		return Footer{}, fmt.Errorf("%w: %q, this build reads %q and %q", ErrUnsupportedVersion, f.FormatVersion, FormatVersion, FormatVersion1)
	}
	if f.ChainID, err = get(KeyChainID); err != nil {
		return Footer{}, err
	}
	if f.ChainID == "" {
		return Footer{}, fmt.Errorf("%w: footer key %q is empty", ErrNotAuditFile, KeyChainID)
	}
	if f.FirstSeq, err = getInt(KeyFirstSeq); err != nil {
		return Footer{}, err
	}
	if f.LastSeq, err = getInt(KeyLastSeq); err != nil {
		return Footer{}, err
	}
	if f.EntryCount, err = getInt(KeyEntryCount); err != nil {
		return Footer{}, err
	}
	if f.PrevHash, err = getHash(KeyPrevHash); err != nil {
		return Footer{}, err
	}
	if f.LastHash, err = getHash(KeyLastHash); err != nil {
		return Footer{}, err
	}
	if f.MerkleRoot, err = getHash(KeyMerkleRoot); err != nil {
		return Footer{}, err
	}
	if f.FirstSeq < 0 || f.EntryCount < 1 || f.LastSeq != f.FirstSeq+f.EntryCount-1 {
		return Footer{}, fmt.Errorf("%w: footer seq range first=%d last=%d count=%d is inconsistent",
			ErrNotAuditFile, f.FirstSeq, f.LastSeq, f.EntryCount)
	}
	return f, nil
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readChunk is how many rows ReadEntries decodes at a time; maxPrealloc caps
// the entries allocated before any row is read.
const (
	readChunk   = 512
	maxPrealloc = 1 << 16
)

// ReadEntries decodes every row of the batch file r of the given size, of
// format version 2 or 1, and returns the entries in file order with the
// footer. Optional columns come back nil for NULL and non-nil for "" exactly
// as written; the entries of a file of version 1 have no end time. Besides
// the errors of ReadFooter it returns ErrNotAuditFile when the columns are
// not this package's schema of the footer's version and ErrTimestampMismatch
// when a row's timestamp column disagrees with its time_unix_nano. It does
// not check that the rows agree with the footer or that the hashes link:
// that is the verifier's job.
func ReadEntries(r io.ReaderAt, size int64) (entries []entry.Entry, f Footer, err error) {
	if f, err = ReadFooter(r, size); err != nil {
		return nil, Footer{}, err
	}
	defer func() {
		if p := recover(); p != nil {
			entries, f, err = nil, Footer{}, fmt.Errorf("%w: decoding rows: %v", ErrCorrupt, p)
		}
	}()
	pf, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, Footer{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	want := schema
	if f.FormatVersion == FormatVersion1 {
		want = schemaV1
	}
	if err := checkSchema(pf.Schema(), want); err != nil {
		return nil, Footer{}, err
	}
	if f.FormatVersion == FormatVersion1 {
		entries, err = readRows(pf, f, fromRowV1)
	} else {
		entries, err = readRows(pf, f, fromRow)
	}
	if err != nil {
		return nil, Footer{}, err
	}
	return entries, f, nil
}

// readRows decodes the rows of pf, of type R, into entries with set, which
// returns the row's timestamp and time_unix_nano columns, checked here.
func readRows[R any](pf *parquet.File, f Footer, set func(*entry.Entry, *R) (ts, tun int64)) ([]entry.Entry, error) {
	pr := parquet.NewGenericReader[R](pf)
	defer pr.Close()
	// Row counts come from untrusted bytes: bound the up-front allocation
	// and let append grow past it.
	entries := make([]entry.Entry, 0, min(pr.NumRows(), f.EntryCount, maxPrealloc))
	buf := make([]R, readChunk)
	var zero R
	for {
		k, err := pr.Read(buf)
		for i := range buf[:k] {
			entries = append(entries, entry.Entry{})
			e := &entries[len(entries)-1]
			if ts, tun := set(e, &buf[i]); ts != unixMilli(tun) {
				return nil, fmt.Errorf("%w: seq %d: timestamp %d ms, time_unix_nano %d gives %d ms",
					ErrTimestampMismatch, e.Seq, ts, tun, unixMilli(tun))
			}
			// The reader may reuse the pointers of a row it decodes into;
			// the entry now owns them.
			buf[i] = zero
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: decoding rows: %w", ErrCorrupt, err)
		}
	}
	return entries, nil
}

// checkSchema returns an error wrapping ErrNotAuditFile unless got has the
// columns of schema, in order, with the same types and repetition.
func checkSchema(got, schema *parquet.Schema) error {
	want := schema.Fields()
	have := got.Fields()
	if len(have) != len(want) {
		return fmt.Errorf("%w: %d columns, want %d", ErrNotAuditFile, len(have), len(want))
	}
	for i := range want {
		w, h := want[i], have[i]
		if h.Name() != w.Name() {
			return fmt.Errorf("%w: column %d is %q, want %q", ErrNotAuditFile, i, h.Name(), w.Name())
		}
		if h.Optional() != w.Optional() || h.Repeated() != w.Repeated() || !h.Leaf() ||
			h.Type().Kind() != w.Type().Kind() {
			return fmt.Errorf("%w: column %q has type %s, want %s", ErrNotAuditFile, w.Name(), h.Type(), w.Type())
		}
	}
	return nil
}
