package trailcache

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/parquet-go/parquet-go/bloom"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

// Columns whose statistics Select and File use, looked up by name: format
// versions may insert columns.
const (
	colExecutionID = "execution_id"
	colTime        = "time_unix_nano"
	colEndTime     = "end_time_unix_nano" // format v2; v1 files lack it
)

// bloomHeaderBytes is enough for a bloom filter's thrift header (about 15
// bytes), fetched with the filter.
const bloomHeaderBytes = 64

// maxBloomBytes bounds the bloom filter bits read per row group; a larger
// filter excludes nothing. The writer's filters take 20 bits per distinct
// execution id: 8 MiB is 3.3 million ids in one row group.
const maxBloomBytes = 8 << 20

// bloomJoinGap: bloom filters closer than this to each other or to the
// footer are fetched in one request; a request costs more than the bytes.
const bloomJoinGap = 64 << 10

// idGroup is what a row group says about execution_id.
type idGroup struct {
	hasStats bool
	min, max string
	bloom    bloom.SplitBlockFilter // nil: none usable
}

// index is what a batch file says about which execution ids it can hold.
type index struct {
	// idKnown is false when the file has no usable execution_id column: it
	// cannot be excluded by id.
	idKnown bool
	groups  []idGroup // one per row group with rows
}

// mayHoldID reports whether a row of the file may have the execution id.
func (x *index) mayHoldID(id string) bool {
	if !x.idKnown {
		return true
	}
	for i := range x.groups {
		g := &x.groups[i]
		if g.hasStats && (id < g.min || id > g.max) {
			continue
		}
		// A BYTE_ARRAY value's hash is the XXH64 of its bytes (Parquet's
		// BloomFilter spec), as parquet-go's Value.hash computes it.
		if g.bloom != nil && !g.bloom.Check(bloom.XXH64{}.Sum64([]byte(id))) {
			continue
		}
		return true
	}
	return false
}

// analyze reads the facts of f and the index of its rows from r, which
// serves the object's bytes. A file that does not parse gets f.Problem and
// a nil index; only a failure to fetch bytes is returned as an error.
func analyze(r *sparseReader, f *File) (_ *index, err error) {
	defer func() {
		if err == nil {
			return
		}
		if fe, ok := errors.AsType[*fetchError](err); ok {
			err = fe.err
			return
		}
		f.Problem, err = err.Error(), nil
	}()
	ft, md, err := parquetfile.ReadTailMetadata(r, r.size)
	if err != nil {
		return nil, err
	}
	f.ChainID, f.FirstSeq, f.LastSeq, f.Rows = ft.ChainID, ft.FirstSeq, ft.LastSeq, md.NumRows

	f.MinTime, f.MaxTime, f.HasTimeStats = int64Bounds(md, colTime)
	f.MinEnd, f.MaxEnd, f.HasEndStats = int64Bounds(md, colEndTime)

	x := &index{}
	col := leafColumn(md, colExecutionID, format.ByteArray)
	if col < 0 {
		return x, nil
	}
	x.idKnown = true
	var want []extent
	for i := range md.RowGroups {
		if m := &md.RowGroups[i].Columns[col].MetaData; m.BloomFilterOffset > 0 {
			off := m.BloomFilterOffset
			n := min(max(int64(m.BloomFilterLength), bloomHeaderBytes), bloomHeaderBytes+maxBloomBytes)
			want = append(want, extent{off, off + n})
		}
	}
	if err := r.prefetch(want, bloomJoinGap); err != nil {
		return nil, err
	}
	for i := range md.RowGroups {
		rg := &md.RowGroups[i]
		if rg.NumRows == 0 {
			continue
		}
		g := idGroup{}
		if lo, hi, ok := bounds(md, rg, col); ok {
			g.hasStats, g.min, g.max = true, string(lo), string(hi)
		}
		if off := rg.Columns[col].MetaData.BloomFilterOffset; off > 0 {
			if g.bloom, err = readBloom(r, off); err != nil {
				return nil, err
			}
		}
		x.groups = append(x.groups, g)
	}
	return x, nil
}

// readBloom reads the bloom filter at off: a thrift BloomFilterHeader, then
// NumBytes of bits. It returns nil, excluding nothing, for a filter that is
// malformed or not the one kind Parquet defines and parquet-go writes
// (SPLIT_BLOCK, XXHASH, UNCOMPRESSED); an error only for a fetch failure.
func readBloom(r *sparseReader, off int64) (_ bloom.SplitBlockFilter, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = nil
		}
	}()
	if off >= r.size {
		return nil, nil
	}
	head := make([]byte, min(bloomHeaderBytes, r.size-off))
	if _, err := r.ReadAt(head, off); err != nil {
		if _, ok := errors.AsType[*fetchError](err); ok {
			return nil, err
		}
		return nil, nil
	}
	var h format.BloomFilterHeader
	dec := new(thrift.CompactProtocol).NewReaderFromBytes(head)
	if err := thrift.NewDecoder(dec).Decode(&h); err != nil {
		return nil, nil
	}
	_, splitBlock := h.Algorithm.Value.(*format.SplitBlockAlgorithm)
	_, xxHash := h.Hash.Value.(*format.XxHash)
	_, uncompressed := h.Compression.Value.(*format.BloomFilterUncompressed)
	bitsOff := off + int64(dec.BytesRead())
	if !splitBlock || !xxHash || !uncompressed ||
		h.NumBytes <= 0 || h.NumBytes > maxBloomBytes || h.NumBytes%bloom.BlockSize != 0 || int64(h.NumBytes) > r.size-bitsOff {
		return nil, nil
	}
	bits := make([]byte, h.NumBytes)
	if _, err := r.ReadAt(bits, bitsOff); err != nil {
		if _, ok := errors.AsType[*fetchError](err); ok {
			return nil, err
		}
		return nil, nil
	}
	return bloom.MakeSplitBlockFilter(bits), nil
}

// leafColumn returns the index of the top-level leaf column name of
// physical type typ in the row groups, or -1.
func leafColumn(md *format.FileMetaData, name string, typ format.Type) int {
	if len(md.RowGroups) == 0 {
		return -1
	}
	col := -1
	for j, c := range md.RowGroups[0].Columns {
		if p := c.MetaData.PathInSchema; len(p) == 1 && p[0] == name {
			col = j
			break
		}
	}
	if col < 0 {
		return -1
	}
	for i := range md.RowGroups {
		cs := md.RowGroups[i].Columns
		if col >= len(cs) || cs[col].MetaData.Type != typ {
			return -1
		}
		if p := cs[col].MetaData.PathInSchema; len(p) != 1 || p[0] != name {
			return -1
		}
	}
	return col
}

// bounds returns the min and max statistics of column col in row group rg,
// when present in the order Parquet defines for the type (the only one
// parquet-go writes).
func bounds(md *format.FileMetaData, rg *format.RowGroup, col int) (lo, hi []byte, ok bool) {
	if col < len(md.ColumnOrders) {
		if _, typeDefined := md.ColumnOrders[col].Value.(*format.TypeDefinedOrder); !typeDefined {
			return nil, nil, false
		}
	}
	st := &rg.Columns[col].MetaData.Statistics
	if st.MinValue == nil || st.MaxValue == nil {
		return nil, nil, false
	}
	return st.MinValue, st.MaxValue, true
}

// int64Bounds returns the min and max of the INT64 column name over the
// file's rows, ok false unless every row group with non-null values has
// statistics and some row group has.
func int64Bounds(md *format.FileMetaData, name string) (lo, hi int64, ok bool) {
	col := leafColumn(md, name, format.Int64)
	if col < 0 {
		return 0, 0, false
	}
	lo, hi = math.MaxInt64, math.MinInt64
	for i := range md.RowGroups {
		rg := &md.RowGroups[i]
		if rg.NumRows == 0 {
			continue
		}
		l, h, has := bounds(md, rg, col)
		if !has {
			st := &rg.Columns[col].MetaData.Statistics
			if st.NullCount == rg.NumRows {
				continue // all NULL: nothing to bound
			}
			return 0, 0, false
		}
		if len(l) != 8 || len(h) != 8 {
			return 0, 0, false
		}
		lo = min(lo, int64(binary.LittleEndian.Uint64(l)))
		hi = max(hi, int64(binary.LittleEndian.Uint64(h)))
		ok = true
	}
	if !ok {
		return 0, 0, false
	}
	return lo, hi, true
}
