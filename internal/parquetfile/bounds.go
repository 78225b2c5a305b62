package parquetfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Reading a file an attacker may have written. parquet-go (v0.32) trusts
// what a file declares: it allocates a footer's lists at their declared
// length, a page's buffer at its declared size, and a zstd frame's content
// size up front; its decoders do not bound what a page decompresses to; and
// a page whose values run short is filled from its pooled buffers, so that
// what it returns depends on what was read before. A verifier must neither
// crash nor give a verdict that depends on such memory. So parquet-go
// decompresses nothing here: CheckFooter checks the footer before
// parquet-go decodes it, ChunkChecker.Check checks each page of a column
// chunk and decompresses it once, bounded, into an image of the row group
// (a Parquet file in memory whose pages are stored uncompressed), and
// parquet-go decodes the rows from that image, exactly the bytes checked;
// ChunkChecker.CheckPage checks each page it decodes before its values are
// used:
//
//   - a footer may not declare more than it holds, nor cost more than the
//     file's budget (FooterCost);
//   - a page header likewise (it is thrift too), and its body must lie in
//     its column chunk (and match its CRC, when it has one);
//   - a page's declared uncompressed size may not exceed what its
//     compressed bytes can hold in its codec (maxExpansion), and what it
//     decompresses to may not exceed its declared size: zstd frames are
//     walked block by block first (a frame's content size, raw and RLE
//     blocks are exact), and every decoder writes into a buffer of the
//     declared size that it may not grow;
//   - INT64 values cut short (PLAIN, BYTE_STREAM_SPLIT, DELTA_BINARY_PACKED)
//     and PLAIN strings that run past their page are refused; a page of
//     strings must hold a value for each non-NULL row (CheckPage);
//   - what a file's pages declare (sizes, values) must fit its budget:
//     BudgetFloor plus BudgetRatio times the file's size.
//
// Each refusal wraps ErrBomb or ErrValuesCut. Rows are never decoded here:
// parquet-go decodes them, and the checks only bound what it is handed.
// The checks of values are in bounds_values.go, the decompression bounds
// in bounds_decompress.go.

const (
	// BudgetFloor and BudgetRatio give the memory reading a file may take:
	// BudgetFloor plus BudgetRatio times its size. The writer's files take
	// about four times their size (batches are bounded by max_bytes, 16 MiB
	// by default); a file that needs more than 64 times is refused.
	BudgetFloor = 256 << 20
	BudgetRatio = 64
	// ValueCost is what a reader holds per value of a page: the column's
	// value (24 bytes), its null flag, level and dictionary index, and
	// parquet-go's copies.
	ValueCost = 48
	// zstdSlack is spare capacity past a page: with it, the zstd decoder
	// uses its faster copies, which may write up to 16 bytes past the
	// output.
	zstdSlack = 64
	// zstdMaxBlock is the most a zstd block decompresses to (RFC 8878,
	// Block_Maximum_Size).
	zstdMaxBlock = 128 << 10
)

var (
	// ErrBomb wraps every refusal of a file that declares, or decompresses
	// to, more than it may. Check with errors.Is.
	ErrBomb = errors.New("decompression bound exceeded")
	// ErrValuesCut wraps the refusal of a page whose values run short of
	// what its header and levels promise. Check with errors.Is.
	ErrValuesCut = errors.New("values cut short")
)

// Budget is what is left of a file's memory budget.
type Budget struct{ left, total int64 }

// Reset gives the budget of a file of size bytes.
func (b *Budget) Reset(size int) {
	b.total = BudgetFloor + BudgetRatio*int64(size)
	b.left = b.total
}

// Take charges n bytes for what, or fails (ErrBomb) when they do not fit.
func (b *Budget) Take(n int64, what string) error {
	if n < 0 || n > b.left {
		return fmt.Errorf("%w: %s need %d bytes, past the file's budget of %d", ErrBomb, what, n, b.total)
	}
	b.left -= n
	return nil
}

// CheckFooter refuses, before parquet-go decodes it, the footer of the
// Parquet file data when it declares more than it holds or costs more than
// the file's budget (FooterCost): a 24-byte file could otherwise make
// parquet-go allocate 190 GB. A file too short to have a footer, or whose
// footer length is past its start, is left to parquet.OpenFile to report.
func CheckFooter(data []byte) error {
	n := len(data)
	if n < 12 {
		return nil
	}
	fl := int64(binary.LittleEndian.Uint32(data[n-8:]))
	if fl > int64(n-12) {
		return nil
	}
	cost, err := FooterCost(data[n-8-int(fl) : n-8])
	if err != nil {
		return err
	}
	if limit := BudgetFloor + BudgetRatio*int64(n); cost > limit {
		return fmt.Errorf("%w: decoding the footer would take %d bytes, past the file's budget of %d", ErrBomb, cost, limit)
	}
	return nil
}

// ChunkChecker checks the column chunks of one file and unpacks them: each
// page parquet-go would read is checked, decompressed once (bounded), and
// written uncompressed into an image of the row group, a Parquet file in
// memory whose footer says UNCOMPRESSED (see Begin). parquet-go reads the
// rows from the image (RowGroup): it decodes exactly the bytes the checks
// saw, and decompresses nothing. Use one per goroutine: it keeps its
// buffers from file to file.
type ChunkChecker struct {
	budget  Budget
	zdec    *zstd.Decoder
	scratch []byte
	levels  []byte
	header  format.PageHeader
	tr      thrift.BytesReader
	dec     *thrift.Decoder
	int64   bool
	// facts[j] are the data pages of column j of the row group, in the
	// order parquet-go returns them.
	facts [][]pageFacts
	// The image of the row group: its bytes (w.b), the footer being built
	// (md), what writes page headers and the footer into it, and what
	// parquet-go reads it through.
	w      appender
	enc    *thrift.Encoder
	md     format.FileMetaData
	out    format.PageHeader
	reader bytes.Reader
	data   []byte
	src    *format.FileMetaData
	rg     int
}

// pageFacts is what CheckPage needs of a data page's header.
type pageFacts struct {
	values int32
	enc    format.Encoding
}

// appender is an io.Writer that appends to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

var compact thrift.CompactProtocol

// Reset starts a file of size bytes: its budget is whole again.
func (c *ChunkChecker) Reset(size int) {
	c.budget.Reset(size)
	if cap(c.scratch) > maxKeptScratch {
		c.scratch = nil
	}
	if cap(c.w.b) > maxKeptImage {
		c.w.b = nil
	}
}

// maxKeptScratch and maxKeptImage are the largest buffers kept for the
// next file.
const (
	maxKeptScratch = 8 << 20
	maxKeptImage   = 64 << 20
)

// Begin starts the image of row group rg of the Parquet file data, whose
// footer is md: a file of the same schema whose only row group holds the
// chunks Check unpacks, uncompressed, and no pages of other columns.
func (c *ChunkChecker) Begin(data []byte, md *format.FileMetaData, rg int) error {
	if rg < 0 || rg >= len(md.RowGroups) {
		return fmt.Errorf("no row group %d", rg)
	}
	c.data, c.src, c.rg = data, md, rg
	c.w.b = append(c.w.b[:0], "PAR1"...)
	cols := md.RowGroups[rg].Columns
	if c.md.RowGroups == nil {
		c.md.RowGroups = make([]format.RowGroup, 1)
	}
	img := &c.md.RowGroups[0]
	img.Columns = slices.Grow(img.Columns[:0], len(cols))[:len(cols)]
	for j := range cols {
		// A chunk not unpacked is empty: parquet-go reads no page of it.
		img.Columns[j] = format.ColumnChunk{MetaData: format.ColumnMetaData{
			Type:           cols[j].MetaData.Type,
			PathInSchema:   cols[j].MetaData.PathInSchema,
			Codec:          format.Uncompressed,
			DataPageOffset: 4, // after "PAR1"
		}}
	}
	c.facts = slices.Grow(c.facts[:0], len(cols))[:len(cols)]
	for j := range c.facts {
		c.facts[j] = c.facts[j][:0]
	}
	return nil
}

// Check checks column chunk leaf.ColumnIndex of the row group begun, before
// parquet-go reads it: every page parquet-go would read of it (the
// dictionary page at the chunk's dictionary offset, then the pages from its
// data page offset to its end), each decompressed with the chunk's codec,
// and writes them into the image, in that order, uncompressed. It returns
// an error wrapping ErrBomb or ErrValuesCut for a chunk that must not be
// read, and others for pages that cannot be read (a codec not known, a
// checksum that does not match).
func (c *ChunkChecker) Check(leaf parquet.LeafColumn) error {
	data, rg, j := c.data, c.src.RowGroups[c.rg], leaf.ColumnIndex
	if j < 0 || j >= len(rg.Columns) {
		return fmt.Errorf("no column chunk %d in row group %d", j, c.rg)
	}
	meta := &rg.Columns[j].MetaData
	img := &c.md.RowGroups[0].Columns[j].MetaData
	img.Encoding, img.NumValues = meta.Encoding, meta.NumValues
	start := int64(len(c.w.b))
	img.DataPageOffset = start
	defer func() {
		img.TotalCompressedSize = int64(len(c.w.b)) - start
		img.TotalUncompressedSize = img.TotalCompressedSize
	}()
	c.int64 = leaf.Node.Type().Kind() == parquet.Int64
	maxDef := leaf.MaxDefinitionLevel
	base := meta.DataPageOffset
	if meta.DictionaryPageOffset != 0 {
		base = meta.DictionaryPageOffset
	}
	if base < 0 || base >= int64(len(data)) || meta.TotalCompressedSize <= 0 {
		return nil // parquet-go reads no page of it
	}
	section := data[base:min(int64(len(data)), base+min(meta.TotalCompressedSize, int64(len(data))))]
	if meta.DictionaryPageOffset != 0 && meta.DictionaryPageOffset != meta.DataPageOffset {
		// parquet-go reads this page alone, as the dictionary. The image
		// has it first, where parquet-go reads it as the dictionary too.
		if _, err := c.page(section, 0, meta.Codec, maxDef, j, true); err != nil {
			return fmt.Errorf("dictionary page: %w", err)
		}
	}
	off := meta.DataPageOffset - base
	if off < 0 || off > int64(len(section)) {
		return fmt.Errorf("data page offset %d outside the column chunk", meta.DataPageOffset)
	}
	for page := 0; off < int64(len(section)); page++ {
		n, err := c.page(section, int(off), meta.Codec, maxDef, j, false)
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		off += int64(n)
	}
	return nil
}

// RowGroup returns the image's row group, with the chunks Check unpacked,
// for parquet-go to read. Its pages hold the bytes the checks saw; the
// image is valid until the next Begin.
func (c *ChunkChecker) RowGroup() (parquet.RowGroup, error) {
	src := c.src
	c.md.Version, c.md.Schema, c.md.ColumnOrders = src.Version, src.Schema, src.ColumnOrders
	c.md.NumRows = src.RowGroups[c.rg].NumRows
	c.md.RowGroups[0].NumRows = c.md.NumRows
	n := len(c.w.b)
	if err := c.encode(&c.md); err != nil {
		return nil, err
	}
	c.w.b = binary.LittleEndian.AppendUint32(c.w.b, uint32(len(c.w.b)-n))
	c.w.b = append(c.w.b, "PAR1"...)
	c.reader.Reset(c.w.b)
	f, err := parquet.OpenFile(&c.reader, int64(len(c.w.b)), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	return f.RowGroups()[0], nil
}

// encode appends v, thrift-encoded, to the image.
func (c *ChunkChecker) encode(v any) error {
	if c.enc == nil {
		c.enc = thrift.NewEncoder(compact.NewWriter(&c.w))
	}
	return c.enc.Encode(v)
}

// page checks the page at off in section (the bytes parquet-go reads of
// column j's chunk), writes it into the image, and returns its length,
// header included. asDict: the page is read as the chunk's dictionary.
func (c *ChunkChecker) page(section []byte, off int, codec format.CompressionCodec, maxDef, j int, asDict bool) (int, error) {
	rest := section[off:]
	// The header is thrift: it may declare strings (statistics) it does
	// not hold, which parquet-go would allocate before reading them.
	cost, err := FooterCost(rest)
	if err != nil {
		return 0, fmt.Errorf("%w: page header: %w", ErrBomb, err)
	}
	if err := c.budget.Take(cost, "its page header"); err != nil {
		return 0, err
	}
	h := &c.header
	*h = format.PageHeader{}
	if c.dec == nil {
		c.tr = compact.NewReaderFromBytes(rest)
		c.dec = thrift.NewDecoder(c.tr)
	} else {
		c.tr.ResetBytes(rest)
	}
	if err := c.dec.Decode(h); err != nil {
		return 0, fmt.Errorf("%w: unreadable page header: %w", ErrBomb, err)
	}
	hl := c.tr.BytesRead()
	if hl <= 0 || hl > len(rest) || h.CompressedPageSize < 0 || int(h.CompressedPageSize) > len(rest)-hl {
		// parquet-go allocates the body before it finds it missing.
		return 0, fmt.Errorf("%w: a body of %d bytes past the chunk's end", ErrBomb, h.CompressedPageSize)
	}
	if h.UncompressedPageSize < 0 {
		return 0, fmt.Errorf("%w: uncompressed size %d", ErrBomb, h.UncompressedPageSize)
	}
	body := rest[hl : hl+int(h.CompressedPageSize)]
	if h.CRC != 0 && crc32.ChecksumIEEE(body) != uint32(h.CRC) {
		// What parquet-go checks of a page it reads (the image's pages
		// have none).
		return 0, fmt.Errorf("crc32 checksum mismatch: want 0x%08X, got 0x%08X", uint32(h.CRC), crc32.ChecksumIEEE(body))
	}
	// The image's header: the page's type and the header of that type
	// alone (without statistics), sizes those of the unpacked body.
	out := &c.out
	*out = format.PageHeader{Type: h.Type}
	var values int32
	var enc format.Encoding
	var levels []byte // v2's levels, stored uncompressed
	region := body    // what is decompressed
	switch {
	case (asDict || h.Type == format.DictionaryPage) && h.DictionaryPageHeader.Valid:
		// PLAIN_DICTIONARY is deprecated, but parquet-go reads it as
		// PLAIN, and so must this check.
		values, enc = h.DictionaryPageHeader.V.NumValues, format.Plain
		out.Type, out.DictionaryPageHeader = format.DictionaryPage, h.DictionaryPageHeader
	case asDict:
		// Not a dictionary: parquet-go fails on it when a data page needs
		// the dictionary, and so on the image, which has none.
		return hl + len(body), nil
	case h.Type == format.DataPage && h.DataPageHeader.Valid:
		values, enc = h.DataPageHeader.V.NumValues, h.DataPageHeader.V.Encoding
		c.facts[j] = append(c.facts[j], pageFacts{values: values, enc: enc})
		out.DataPageHeader = h.DataPageHeader
		out.DataPageHeader.V.Statistics = format.Statistics{}
	case h.Type == format.DataPageV2 && h.DataPageHeaderV2.Valid:
		v := &h.DataPageHeaderV2.V
		values, enc = v.NumValues, v.Encoding
		c.facts[j] = append(c.facts[j], pageFacts{values: v.NumValues, enc: enc})
		ll := int64(v.RepetitionLevelsByteLength) + int64(v.DefinitionLevelsByteLength)
		if v.RepetitionLevelsByteLength < 0 || v.DefinitionLevelsByteLength < 0 || ll > int64(len(body)) {
			return 0, fmt.Errorf("%w: levels past the page's end", ErrBomb)
		}
		levels, region = body[:ll], body[ll:]
		if v.IsCompressed.Valid && !v.IsCompressed.V {
			codec = format.Uncompressed
		}
		out.DataPageHeaderV2 = h.DataPageHeaderV2
		out.DataPageHeaderV2.V.Statistics = format.Statistics{}
		out.DataPageHeaderV2.V.IsCompressed = thrift.Null[bool]{}
	default:
		// parquet-go reads no values of it: it skips a dictionary page it
		// has, and fails on any other. The image keeps its type alone.
		return hl + len(body), c.encode(out)
	}
	if values < 0 {
		return 0, fmt.Errorf("%w: %d values", ErrBomb, values)
	}
	if err := c.budget.Take(ValueCost*int64(values), "its values"); err != nil {
		return 0, err
	}
	vals, err := c.unpack(codec, levels, region, h.UncompressedPageSize)
	if err != nil {
		return 0, err
	}
	// The values are looked at but where they are dictionary indices
	// (RLE_DICTIONARY, or PLAIN_DICTIONARY in a data page, which
	// parquet-go reads so): PLAIN values, which parquet-go reads past the
	// end of when they run short, and the headers of the delta encodings,
	// which declare how many values parquet-go allocates.
	//lint:ignore SA1019 read as parquet-go reads it
	if out.Type == format.DictionaryPage || enc != format.RLEDictionary && enc != format.PlainDictionary {
		if err := c.checkValues(out, enc, vals, maxDef); err != nil {
			return 0, err
		}
	}
	return hl + len(body), nil
}

// unpack writes the page whose header is c.out into the image: the header,
// with the page's unpacked size, then levels (v2's, nil for others), then
// what region, compressed with codec, decompresses to: at most declared
// bytes, or ErrBomb. It returns the decompressed bytes, in the image. When
// their size is known before they are decompressed (uncompressed pages,
// zstd frames that declare their content size, snappy), they are
// decompressed into the image; others into c.scratch first.
func (c *ChunkChecker) unpack(codec format.CompressionCodec, levels, region []byte, declared int32) ([]byte, error) {
	size := -1
	switch codec {
	case format.Uncompressed:
		size = len(region)
	case format.Snappy, format.Gzip, format.Brotli, format.Zstd, format.Lz4Raw:
		if err := checkDeclared(codec, declared, len(region)); err != nil {
			return nil, err
		}
		if err := c.budget.Take(int64(declared)+zstdSlack, "its decompressed pages"); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unsupported compression codec: %s", codec)
	}
	switch codec {
	case format.Zstd:
		// Frames that declare more are refused before they are decoded.
		bound, sized, err := zstdBound(region, int64(declared))
		if err != nil {
			return nil, err
		}
		if sized {
			size = int(bound)
		}
		if c.zdec == nil {
			c.zdec = newZstdDecoder()
		}
	case format.Snappy:
		n, err := snappy.DecodedLen(region)
		if err != nil {
			return nil, fmt.Errorf("undecodable SNAPPY: %w", err)
		}
		if n > int(declared) {
			return nil, fmt.Errorf("%w: decompresses to %d bytes, more than the %d its header declares", ErrBomb, n, declared)
		}
		size = n
	}
	var vals []byte
	if size < 0 {
		c.scratch = growCap(c.scratch, int(declared)+zstdSlack)
		out, err := checkDecompress(c.zdec, codec, c.scratch, region, int(declared))
		if err != nil {
			return nil, err
		}
		size, vals = len(out), out
	}
	n := int32(len(levels) + size)
	c.out.CompressedPageSize, c.out.UncompressedPageSize = n, n
	if err := c.encode(&c.out); err != nil {
		return nil, err
	}
	c.w.b = append(c.w.b, levels...)
	p := len(c.w.b)
	switch {
	case vals != nil:
		c.w.b = append(c.w.b, vals...)
	case codec == format.Uncompressed:
		c.w.b = append(c.w.b, region...)
	default:
		c.w.b = slices.Grow(c.w.b, size+zstdSlack)
		out, err := checkDecompress(c.zdec, codec, c.w.b[p:p:p+size+zstdSlack], region, size)
		if err != nil {
			return nil, err
		}
		if len(out) != size || size > 0 && &out[0] != &c.w.b[p : p+1][0] {
			return nil, fmt.Errorf("undecodable %s: %d bytes, %d declared", codec, len(out), size)
		}
		c.w.b = c.w.b[:p+size]
	}
	return c.w.b[p:], nil
}
