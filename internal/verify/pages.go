package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// The direct page reader: column chunks in exactly the shape
// internal/parquetfile writes (data pages v1, PLAIN or dictionary-encoded
// values, RLE definition levels, zstd, no encryption) are decoded here, into
// reused buffers, without parquet-go's per-page machinery. Anything else,
// and anything in that shape that is not perfectly well formed, makes
// readChunk report false: the chunk is then read through parquet-go
// (column.read), whose verdict stands. So the verdicts are parquet-go's on
// every file; this reader only accepts chunks that parquet-go decodes
// without error into the same values.

// pageArena holds the decompressed pages of the file being read: the values
// of its rows point into them until the file is done.
type pageArena struct {
	bufs [][]byte
	n    int
}

// maxKept is the largest page buffer kept for the next file: larger ones
// (the writer's pages are about 256 KiB) are left to the garbage collector.
const maxKept = 8 << 20

func (a *pageArena) reset() {
	for i, b := range a.bufs[:a.n] {
		if cap(b) > maxKept {
			a.bufs[i] = nil
		}
	}
	a.n = 0
}

// zstdSlack is spare capacity past a page: with it, the zstd decoder uses
// its faster copies, which may write up to 16 bytes past the output.
const zstdSlack = 64

// get returns a buffer of capacity at least size (and zstdSlack more),
// valid until reset.
func (a *pageArena) get(size int) []byte {
	if a.n == len(a.bufs) {
		a.bufs = append(a.bufs, nil)
	}
	b := a.bufs[a.n]
	if cap(b) < size+zstdSlack {
		b = make([]byte, 0, size+zstdSlack)
		a.bufs[a.n] = b
	}
	a.n++
	return b[:0]
}

// keep records that the last buffer from get grew to b.
func (a *pageArena) keep(b []byte) { a.bufs[a.n-1] = b }

// slowPages makes new file readers read every column chunk through
// parquet-go: for tests comparing the two readers.
var slowPages = false

// zstdCodec is parquet-go's codec, for tests.
var zstdCodec = parquet.LookupCompressionCodec(format.Zstd)

var compact thrift.CompactProtocol

// pageReader is the state of the direct reader, one per fileReader.
type pageReader struct {
	arena  pageArena
	header format.PageHeader
	dict   [][]byte
	levels []byte
	idx    []uint32
	tr     thrift.BytesReader
	dec    *thrift.Decoder
	// zdec decodes zstd into buffers it never grows; budget is what is
	// left of the file's memory budget (bounds.go); scratch is for pages
	// decompressed only to be checked.
	zdec    *zstd.Decoder
	budget  budget
	scratch []byte
}

// resetThrift makes p.dec read b.
func (p *pageReader) resetThrift(b []byte) {
	if p.tr == nil {
		p.tr = compact.NewReaderFromBytes(b)
		p.dec = thrift.NewDecoder(p.tr)
		return
	}
	p.tr.ResetBytes(b)
}

func (p *pageReader) zstd() *zstd.Decoder {
	if p.zdec == nil {
		p.zdec = newZstdDecoder()
	}
	return p.zdec
}

// chunkFast reports whether the direct reader may try column chunk cc of
// row group 0..: the writer's codec and no encryption. codec0 is the codec
// of the column's chunk in the first row group, which parquet-go decodes
// every row group's chunk with.
func chunkFast(meta *format.FileMetaData, cc *format.ColumnChunk, codec0 format.CompressionCodec) bool {
	return codec0 == format.Zstd && cc.MetaData.Codec == format.Zstd &&
		cc.FilePath == "" && cc.CryptoMetadata.Value == nil && len(cc.EncryptedColumnMetadata) == 0 &&
		meta.EncryptionAlgorithm.Value == nil
}

// errOtherShape: the chunk is not in the writer's shape, or has a fault
// that parquet-go reports as an error of its own: read it with parquet-go.
var errOtherShape = errors.New("not in the writer's shape")

// readChunk decodes column chunk cc of the file data into c, as column.read
// does. It returns errOtherShape for a chunk to read with parquet-go, and
// another error for a page in the writer's shape whose values do not add
// up (values cut short or left over, levels or dictionary indices out of
// range): parquet-go v0.32.0 reads such pages past their end, into stale
// pooled memory, so they are reported here as undecodable, never handed on.
func (p *pageReader) readChunk(c *column, data []byte, cc *format.ColumnChunk, isInt bool) error {
	c.ints, c.strs, c.null = c.ints[:0], c.strs[:0], c.null[:0]
	md := &cc.MetaData
	start := md.DataPageOffset
	if md.DictionaryPageOffset != 0 {
		start = md.DictionaryPageOffset
	}
	size := md.TotalCompressedSize
	if start < 0 || size < 0 || start > int64(len(data)) || size > int64(len(data))-start {
		return errOtherShape
	}
	chunk := data[start : start+size]
	wantDict := md.DictionaryPageOffset != 0
	p.dict = p.dict[:0]
	haveDict := false
	maxDef := c.leaf.MaxDefinitionLevel
	// off is where the page being read starts in data: parquet-go reads
	// the data pages from md.DataPageOffset on, not from the end of the
	// dictionary, so the first must start there (or parquet-go reads
	// another stream of pages, or none).
	off, sawData := start, false
	for page := 0; len(chunk) > 0; page++ {
		pageStart := off
		h := &p.header
		*h = format.PageHeader{}
		p.resetThrift(chunk)
		if err := p.dec.Decode(h); err != nil {
			return errOtherShape
		}
		hl := p.tr.BytesRead()
		if hl <= 0 || hl > len(chunk) || h.CompressedPageSize < 0 || h.UncompressedPageSize < 0 ||
			int(h.CompressedPageSize) > len(chunk)-hl {
			return errOtherShape
		}
		body := chunk[hl : hl+int(h.CompressedPageSize)]
		chunk = chunk[hl+int(h.CompressedPageSize):]
		off += int64(hl) + int64(h.CompressedPageSize)
		if h.CRC != 0 && uint32(h.CRC) != crc32.ChecksumIEEE(body) {
			return errOtherShape
		}
		// Before anything is allocated for it: a page that cannot be what
		// it declares, or more than the file may take, is refused here,
		// never handed to parquet-go.
		if err := p.checkPage(format.Zstd, h.UncompressedPageSize, len(body)); err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		var err error
		switch {
		case h.Type == format.DictionaryPage && h.DictionaryPageHeader.Valid && !h.DataPageHeader.Valid &&
			!h.DataPageHeaderV2.Valid && !h.IndexPageHeader.Valid:
			// Only as the first page, where the column metadata says.
			if page > 0 || !wantDict || isInt {
				return errOtherShape
			}
			dh := &h.DictionaryPageHeader.V
			// PLAIN_DICTIONARY is deprecated, but parquet-go reads it as
			// PLAIN, and so must this reader.
			//lint:ignore SA1019 read as parquet-go reads it
			if dh.NumValues < 0 || (dh.Encoding != format.Plain && dh.Encoding != format.PlainDictionary) {
				return errOtherShape
			}
			if err := p.budget.take(valueCost*int64(dh.NumValues), "its values"); err != nil {
				return fmt.Errorf("page %d: %w", page, err)
			}
			var vals []byte
			if vals, err = p.decompress(body, h.UncompressedPageSize); err != nil {
				break
			}
			var ok bool
			p.dict, ok = appendPlainByteArrays(p.dict, vals)
			if !ok || len(p.dict) != int(dh.NumValues) {
				err = fmt.Errorf("dictionary of %d values does not hold %d PLAIN values", len(p.dict), dh.NumValues)
			}
			haveDict = true
		case h.Type == format.DataPage && h.DataPageHeader.Valid && !h.DictionaryPageHeader.Valid &&
			!h.DataPageHeaderV2.Valid && !h.IndexPageHeader.Valid:
			if (page == 0 && wantDict) || (!sawData && pageStart != md.DataPageOffset) {
				return errOtherShape
			}
			sawData = true
			err = p.dataPage(c, &h.DataPageHeader.V, body, h.UncompressedPageSize, maxDef, isInt, haveDict)
		default:
			return errOtherShape
		}
		if err == errOtherShape {
			return err
		}
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
	}
	return nil
}

// decompress decompresses one page body into the arena, to at most size
// bytes (the header's uncompressed size, charged by checkPage). A body that
// does not decode is errOtherShape: parquet-go's reading (scanChunk first)
// reports it.
func (p *pageReader) decompress(body []byte, size int32) ([]byte, error) {
	dst := p.arena.get(int(size))
	out, err := decodeZstd(p.zstd(), dst, body, int(size))
	if err != nil {
		if errors.Is(err, errBomb) {
			return nil, err
		}
		return nil, errOtherShape
	}
	p.arena.keep(out)
	return out, nil
}

var (
	errLevels  = errors.New("malformed definition levels")
	errIndices = errors.New("malformed dictionary indices")
	errValues  = errors.New("the values do not match the definition levels")
)

// dataPage decodes one data page v1 into c.
func (p *pageReader) dataPage(c *column, dh *format.DataPageHeader, body []byte, size int32, maxDef int, isInt, haveDict bool) error {
	n := int(dh.NumValues)
	if n < 0 {
		return errOtherShape
	}
	var dictEnc bool
	switch dh.Encoding {
	case format.Plain:
	//lint:ignore SA1019 legacy files: parquet-go reads it as RLE_DICTIONARY
	case format.PlainDictionary, format.RLEDictionary:
		if !haveDict || isInt {
			return errOtherShape
		}
		dictEnc = true
	default:
		return errOtherShape
	}
	if maxDef == 1 && dh.DefinitionLevelEncoding != format.RLE || maxDef > 1 {
		return errOtherShape
	}
	// Before the value slices grow: the header's count is not bounded by
	// the page (a run of NULLs takes a few bytes).
	if err := p.budget.take(valueCost*int64(n), "its values"); err != nil {
		return err
	}
	page, err := p.decompress(body, size)
	if err != nil {
		return err
	}
	var ok bool
	// Every value of the page is written below: no clearing.
	base := len(c.null)
	c.null = slices.Grow(c.null, n)[:base+n]
	null := c.null[base:]
	nonNull := n
	if maxDef == 0 {
		clear(null)
	} else {
		if len(page) < 4 {
			return errLevels
		}
		l := binary.LittleEndian.Uint32(page)
		if uint64(l) > uint64(len(page)-4) {
			return errLevels
		}
		p.levels, ok = decodeLevels(p.levels[:0], page[4:4+l], n)
		if !ok {
			return errLevels
		}
		page = page[4+l:]
		for i, d := range p.levels[:n] {
			null[i] = d == 0
			if d == 0 {
				nonNull--
			}
		}
	}
	if isInt {
		if err := plainInts(nonNull, len(page)); err != nil {
			return err
		}
		if len(page) != 8*nonNull {
			return errValues
		}
		c.ints = slices.Grow(c.ints, n)[:base+n]
		dst := c.ints[base:]
		for i := range dst {
			dst[i] = 0
			if !null[i] {
				dst[i] = int64(binary.LittleEndian.Uint64(page))
				page = page[8:]
			}
		}
		return nil
	}
	c.strs = slices.Grow(c.strs, n)[:base+n]
	dst := c.strs[base:]
	if dictEnc {
		if len(page) == 0 && nonNull == 0 {
			clear(dst)
			return nil // all NULL: no bit width, no indices
		}
		if len(page) < 1 {
			return errIndices
		}
		p.idx, ok = decodeIndices(p.idx[:0], page[1:], uint(page[0]), nonNull, len(p.dict))
		if !ok {
			return errIndices
		}
		j := 0
		for i := range dst {
			dst[i] = nil
			if !null[i] {
				dst[i] = p.dict[p.idx[j]]
				j++
			}
		}
		return nil
	}
	j := 0 // non-null values read
	for i := range dst {
		if null[i] {
			dst[i] = nil
			continue
		}
		l, ok := plainLen(page)
		if !ok {
			return plainCut(page, j, nonNull)
		}
		dst[i] = page[4 : 4+l : 4+l]
		page = page[4+l:]
		j++
	}
	if len(page) != 0 {
		return errValues
	}
	return nil
}

// appendPlainByteArrays appends the PLAIN byte arrays of b (each a 4-byte
// little-endian length and the bytes) to dst; false unless b is exactly a
// sequence of them.
func appendPlainByteArrays(dst [][]byte, b []byte) ([][]byte, bool) {
	for len(b) > 0 {
		l, ok := plainLen(b)
		if !ok {
			return dst, false
		}
		dst = append(dst, b[4:4+l:4+l])
		b = b[4+l:]
	}
	return dst, true
}

// hybridRuns walks the RLE/bit-packed hybrid encoding of b, values of
// width bits, calling run for each run: an RLE run of count copies of
// value, or (packed non-nil) a bit-packed run of count values. It reports
// false for anything but a well-formed sequence of runs that uses all of b.
func hybridRuns(b []byte, width uint, run func(count int, value uint32, packed []byte) bool) bool {
	vbytes := int(width+7) / 8
	for len(b) > 0 {
		u, k := binary.Uvarint(b)
		if k <= 0 || u>>1 > 1<<30 {
			return false
		}
		b = b[k:]
		if u>>1 == 0 {
			// An empty run, which parquet-go's writer puts after no
			// values: nothing follows its header (parquet-go skips it so).
			continue
		}
		if u&1 == 1 {
			count := int(u>>1) * 8
			nb := int(u>>1) * int(width)
			if nb > len(b) {
				return false
			}
			if !run(count, 0, b[:nb]) {
				return false
			}
			b = b[nb:]
			continue
		}
		if vbytes > len(b) {
			return false
		}
		var v uint32
		for i := vbytes - 1; i >= 0; i-- {
			v = v<<8 | uint32(b[i])
		}
		b = b[vbytes:]
		if !run(int(u>>1), v, nil) {
			return false
		}
	}
	return true
}

// unpack returns value i of a bit-packed run of width bits.
func unpack(packed []byte, width uint, i int) uint32 {
	bit := uint(i) * width
	var v uint64
	for k := uint(0); k < (width+7+bit%8)/8; k++ {
		v |= uint64(packed[bit/8+k]) << (8 * k)
	}
	return uint32(v>>(bit%8)) & (1<<width - 1)
}

// decodeLevels decodes n definition levels of a column whose maximum level
// is 1 (bit width 1). Values beyond n are allowed only as the padding of a
// last bit-packed run; every level, padding included, must be 0 or 1.
func decodeLevels(dst []byte, b []byte, n int) ([]byte, bool) {
	ok := hybridRuns(b, 1, func(count int, value uint32, packed []byte) bool {
		if len(dst) >= n {
			return false // values after the n levels
		}
		if packed == nil {
			if value > 1 || count > n-len(dst) {
				return false
			}
			for range count {
				dst = append(dst, byte(value))
			}
			return true
		}
		if count-8 >= n-len(dst) {
			return false // more than the padding of the last group
		}
		for _, x := range packed {
			for k := range 8 {
				dst = append(dst, x>>k&1)
			}
		}
		return true
	})
	if !ok || len(dst) < n {
		return dst, false
	}
	return dst, true
}

// decodeIndices decodes the n dictionary indices of a data page (after the
// bit-width byte). Every index, padding included, must be below dictLen.
func decodeIndices(dst []uint32, b []byte, width uint, n, dictLen int) ([]uint32, bool) {
	if width > 32 {
		return dst, false
	}
	ok := hybridRuns(b, width, func(count int, value uint32, packed []byte) bool {
		if len(dst) >= n {
			return false
		}
		if packed == nil {
			if int64(value) >= int64(dictLen) || count > n-len(dst) {
				return false
			}
			for range count {
				dst = append(dst, value)
			}
			return true
		}
		if count-8 >= n-len(dst) {
			return false
		}
		for i := range count {
			v := uint32(0)
			if width > 0 {
				v = unpack(packed, width, i)
			}
			if int64(v) >= int64(dictLen) {
				return false
			}
			dst = append(dst, v)
		}
		return true
	})
	if !ok || len(dst) < n {
		return dst, false
	}
	return dst, true
}
