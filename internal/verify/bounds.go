package verify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"

	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

// Decompression bombs. A page's header declares its uncompressed size, and
// its compressed body may decompress to far more (a zstd frame of RLE blocks
// grows 32768 times; its header may declare 64 GiB, which klauspost's
// decoder allocates up front), or declare far more than it holds. Both
// readers bound what a file may make them hold before they allocate it:
//
//   - a page's declared size must not exceed what its compressed bytes can
//     hold in its codec (maxExpansion), and what it decompresses to must not
//     exceed its declared size (the direct reader decodes into a buffer of
//     exactly that capacity, WithDecodeAllCapLimit; pages for parquet-go are
//     decoded so beforehand, scanChunk);
//   - the declared sizes of a file's pages and its values (the readers hold
//     about valueCost bytes per value) must fit the file's budget:
//     budgetFloor and budgetRatio times the file's size.
//
// A page that breaks a bound makes its file a not_audit_file, undecodable.

const (
	// budgetFloor and budgetRatio give the memory a file may take:
	// budgetFloor plus budgetRatio times its size. The writer's files take
	// about four times their size (batches are bounded by max_bytes, 16 MiB
	// by default); a file that needs more than 64 times is refused.
	budgetFloor = 256 << 20
	budgetRatio = 64
	// valueCost is what the readers hold per value of a page: the column's
	// value (24 bytes), its null flag, level and dictionary index, and
	// parquet-go's copies.
	valueCost = 48
)

// checkFooterCost refuses, before parquet-go decodes it, a footer that declares
// more than it holds or than the file's budget (parquetfile.FooterCost): a
// 24-byte file could otherwise make parquet-go allocate 190 GB. A file too
// short to have a footer, or whose footer length is past its start, is
// left to parquet.OpenFile to report.
func checkFooterCost(data []byte) error {
	n := len(data)
	if n < 12 {
		return nil
	}
	fl := int64(binary.LittleEndian.Uint32(data[n-8:]))
	if fl > int64(n-12) {
		return nil
	}
	cost, err := parquetfile.FooterCost(data[n-8-int(fl) : n-8])
	if err != nil {
		return err
	}
	if limit := budgetFloor + budgetRatio*int64(n); cost > limit {
		return fmt.Errorf("%w: decoding the footer would take %d bytes, past the file's budget of %d", errBomb, cost, limit)
	}
	return nil
}

// errBomb wraps every refusal of a page that breaks a bound.
var errBomb = errors.New("decompression bound exceeded")

// budget is what is left of a file's memory budget.
type budget struct{ left, total int64 }

func (b *budget) reset(fileSize int) {
	b.total = budgetFloor + budgetRatio*int64(fileSize)
	b.left = b.total
}

// take charges n bytes, or fails when they do not fit.
func (b *budget) take(n int64, what string) error {
	if n < 0 || n > b.left {
		return fmt.Errorf("%w: %s need %d bytes, past the file's budget of %d", errBomb, what, n, b.total)
	}
	b.left -= n
	return nil
}

// maxExpansion is the most that n compressed bytes can decompress to in
// codec, from the format's densest encoding; -1 when the format has no
// useful bound (brotli).
func maxExpansion(codec format.CompressionCodec, n int) int64 {
	switch codec {
	case format.Zstd:
		// An RLE block: a 3-byte header and a byte make 128 KiB.
		return 32768 * int64(n)
	case format.Snappy:
		// A 3-byte copy makes 64 bytes.
		return 22*int64(n) + 16
	case format.Gzip:
		// Deflate's densest: 258 bytes in 2 bits.
		return 1032*int64(n) + 64
	case format.Lz4Raw:
		// A length byte of 255 makes 255 bytes.
		return 256*int64(n) + 64
	}
	return -1
}

// checkDeclared refuses a page whose declared uncompressed size is negative
// or more than its compressed body can hold.
func checkDeclared(codec format.CompressionCodec, declared int32, body int) error {
	if declared < 0 {
		return fmt.Errorf("%w: uncompressed size %d", errBomb, declared)
	}
	if m := maxExpansion(codec, body); m >= 0 && int64(declared) > m {
		return fmt.Errorf("%w: declares %d uncompressed bytes, more than %d compressed bytes of %s can hold", errBomb, declared, body, codec)
	}
	return nil
}

// newZstdDecoder returns a decoder for DecodeAll whose output never
// exceeds the capacity of the buffer it is given.
func newZstdDecoder() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		panic(err) // only for invalid options
	}
	return d
}

// decodeZstd decompresses body into dst[:0], whose capacity must be
// declared plus zstdSlack: no more is ever allocated. Output beyond declared
// (or a frame that says it holds more) is errBomb.
func decodeZstd(d *zstd.Decoder, dst, body []byte, declared int) ([]byte, error) {
	out, err := d.DecodeAll(body, dst[:0])
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded) || err == nil && len(out) > declared:
		return nil, fmt.Errorf("%w: decompresses to more than the %d bytes its header declares", errBomb, declared)
	case err != nil:
		return nil, err
	}
	return out, nil
}

// checkDecompress decompresses body with codec, as parquet-go is about to,
// into scratch (of capacity at least declared plus zstdSlack), and refuses
// it unless it decodes to at most declared bytes: parquet-go's decoders do
// not bound their output (zstd's up to 64 GiB, gzip's and brotli's not at
// all, and its lz4 loop doubles its buffer on any error). It returns what
// body decompresses to, in scratch.
func checkDecompress(d *zstd.Decoder, codec format.CompressionCodec, scratch, body []byte, declared int) ([]byte, error) {
	var out []byte
	var err error
	switch codec {
	case format.Zstd:
		out, err = decodeZstd(d, scratch, body, declared)
	case format.Snappy:
		var n int
		if n, err = snappy.DecodedLen(body); err == nil && n > declared {
			return nil, fmt.Errorf("%w: decompresses to %d bytes, more than the %d its header declares", errBomb, n, declared)
		}
		if err == nil {
			out, err = snappy.Decode(scratch[:declared], body)
		}
	case format.Gzip:
		var r *gzip.Reader
		if r, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			out, err = readAtMost(r, scratch, declared)
		}
	case format.Brotli:
		out, err = readAtMost(brotli.NewReader(bytes.NewReader(body)), scratch, declared)
	case format.Lz4Raw:
		// parquet-go's buffer holds declared bytes: the block must fit.
		var n int
		n, err = lz4.UncompressBlock(body, scratch[:declared])
		out = scratch[:n]
	}
	if err != nil && !errors.Is(err, errBomb) {
		err = fmt.Errorf("undecodable %s: %w", codec, err)
	}
	return out, err
}

// readAtMost reads r to its end into scratch (of capacity at least n+1),
// refusing more than n bytes.
func readAtMost(r io.Reader, scratch []byte, n int) ([]byte, error) {
	buf := scratch[:n+1]
	got := 0
	for {
		k, err := r.Read(buf[got:])
		got += k
		switch {
		case got > n:
			return nil, fmt.Errorf("%w: decompresses to more than the %d bytes its header declares", errBomb, n)
		case err == io.EOF:
			return buf[:got], nil
		case err != nil:
			return nil, err
		}
	}
}

// scanChunk checks the pages of column chunk cc of the file data before
// parquet-go reads them with codec (its codec for the column), exactly as
// parquet-go will read them: the bytes from the chunk's first page on,
// TotalCompressedSize of them, page after page. Every page must have a
// readable header and body, fit the file's budget with its values and
// declared size, and decompress to at most that size. It is the only guard
// in front of parquet-go's decoders; a page it refuses is never handed on.
func (p *pageReader) scanChunk(data []byte, cc *format.ColumnChunk, codec format.CompressionCodec, col plainColumn) error {
	md := &cc.MetaData
	start := md.DataPageOffset
	if md.DictionaryPageOffset != 0 {
		start = md.DictionaryPageOffset
	}
	if start < 0 || start >= int64(len(data)) || md.TotalCompressedSize <= 0 {
		return nil // parquet-go reads no page of it
	}
	chunk := data[start:min(int64(len(data)), start+min(md.TotalCompressedSize, int64(len(data))))]
	for page := 0; len(chunk) > 0; page++ {
		h := &p.header
		*h = format.PageHeader{}
		p.resetThrift(chunk)
		if err := p.dec.Decode(h); err != nil {
			return fmt.Errorf("page %d: %w: unreadable header", page, errBomb)
		}
		hl := p.tr.BytesRead()
		if hl <= 0 || hl > len(chunk) || h.CompressedPageSize < 0 || int(h.CompressedPageSize) > len(chunk)-hl {
			return fmt.Errorf("page %d: %w: body past the chunk", page, errBomb)
		}
		body := chunk[hl : hl+int(h.CompressedPageSize)]
		chunk = chunk[hl+int(h.CompressedPageSize):]
		var values int32
		// What parquet-go may decompress of the page: its values, and the
		// whole body when the page is also read as the dictionary (a page
		// at the chunk's start whose header has a dictionary header too).
		regions := [2][]byte{body}
		switch {
		case h.Type == format.DataPage && h.DataPageHeader.Valid:
			values = h.DataPageHeader.V.NumValues
		case h.Type == format.DictionaryPage && h.DictionaryPageHeader.Valid:
			values = h.DictionaryPageHeader.V.NumValues
		case h.Type == format.DataPageV2 && h.DataPageHeaderV2.Valid:
			v := &h.DataPageHeaderV2.V
			values = v.NumValues
			levels := int64(v.RepetitionLevelsByteLength) + int64(v.DefinitionLevelsByteLength)
			if v.RepetitionLevelsByteLength < 0 || v.DefinitionLevelsByteLength < 0 || levels > int64(len(body)) {
				return fmt.Errorf("page %d: %w: levels past the page", page, errBomb)
			}
			regions[0] = nil
			if !v.IsCompressed.Valid || v.IsCompressed.V {
				regions[0] = body[levels:]
			}
			if h.DictionaryPageHeader.Valid {
				regions[1] = body
			}
		default:
			return fmt.Errorf("page %d: %w: page type %s", page, errBomb, h.Type)
		}
		if values < 0 {
			return fmt.Errorf("page %d: %w: %d values", page, errBomb, values)
		}
		if err := p.budget.take(valueCost*int64(values), "its values"); err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		raw := body // the page's values as stored: after v2's levels
		if h.Type == format.DataPageV2 && h.DataPageHeaderV2.Valid {
			v := &h.DataPageHeaderV2.V
			raw = body[v.RepetitionLevelsByteLength+v.DefinitionLevelsByteLength:]
		}
		if !decompresses(codec) {
			// parquet-go decompresses nothing (or fails on the codec).
			if codec == format.Uncompressed {
				if err := p.checkPlain(h, body, raw, col); err != nil {
					return fmt.Errorf("page %d: %w", page, err)
				}
			}
			continue
		}
		for r, region := range regions {
			if region == nil {
				continue
			}
			if err := p.checkPage(codec, h.UncompressedPageSize, len(region)); err != nil {
				return fmt.Errorf("page %d: %w", page, err)
			}
			p.scratch = growCap(p.scratch, int(h.UncompressedPageSize)+zstdSlack)
			vals, err := checkDecompress(p.zstd(), codec, p.scratch, region, int(h.UncompressedPageSize))
			if err != nil {
				return fmt.Errorf("page %d: %w", page, err)
			}
			if r == 0 {
				if err := p.checkPlain(h, body, vals, col); err != nil {
					return fmt.Errorf("page %d: %w", page, err)
				}
			}
		}
		if regions[0] == nil { // v2 values stored uncompressed
			if err := p.checkPlain(h, body, raw, col); err != nil {
				return fmt.Errorf("page %d: %w", page, err)
			}
		}
	}
	return nil
}

// plainColumn is what checkPlain needs of a column: its values are INT64
// (else BYTE_ARRAY) and its maximum definition level.
type plainColumn struct {
	isInt  bool
	maxDef int
}

// errPlainCut: parquet-go v0.32 reads a PLAIN page whose values are cut
// short past its end, into stale pooled memory, so that what it returns
// depends on what was read before. checkPlain refuses such pages.
var errPlainCut = errors.New("PLAIN values cut short")

// checkPlain refuses a PLAIN page (data page v1 or v2, or dictionary page)
// whose values run past its end: fewer INT64 than its non-null values, or a
// byte array whose length goes past the page. body is the page as stored,
// vals the page (v1, dictionary) or its values (v2) decompressed. Pages it
// cannot read the levels of, or in other encodings, are left to parquet-go.
func (p *pageReader) checkPlain(h *format.PageHeader, body, vals []byte, col plainColumn) error {
	var n int // values the page holds
	switch {
	case h.Type == format.DictionaryPage && h.DictionaryPageHeader.Valid:
		dh := &h.DictionaryPageHeader.V
		//lint:ignore SA1019 read as parquet-go reads it
		if dh.Encoding != format.Plain && dh.Encoding != format.PlainDictionary {
			return nil
		}
		n = int(dh.NumValues)
	case h.Type == format.DataPage && h.DataPageHeader.Valid:
		dh := &h.DataPageHeader.V
		if dh.Encoding != format.Plain {
			return nil
		}
		n = int(dh.NumValues)
		if col.maxDef > 0 {
			if col.maxDef > 1 || len(vals) < 4 || uint64(binary.LittleEndian.Uint32(vals)) > uint64(len(vals)-4) {
				return nil
			}
			l := binary.LittleEndian.Uint32(vals)
			var ok bool
			if n, ok = p.nonNull(vals[4:4+l], n); !ok {
				return nil
			}
			vals = vals[4+l:]
		}
	case h.Type == format.DataPageV2 && h.DataPageHeaderV2.Valid:
		dh := &h.DataPageHeaderV2.V
		if dh.Encoding != format.Plain {
			return nil
		}
		n = int(dh.NumValues)
		if col.maxDef > 0 {
			rl, dl := int(dh.RepetitionLevelsByteLength), int(dh.DefinitionLevelsByteLength)
			if col.maxDef > 1 || rl != 0 || dl > len(body) {
				return nil
			}
			var ok bool
			if n, ok = p.nonNull(body[:dl], n); !ok {
				return nil
			}
		}
	default:
		return nil
	}
	if col.isInt {
		return plainInts(n, len(vals))
	}
	for i := range n {
		l, ok := plainLen(vals)
		if !ok {
			return plainCut(vals, i, n)
		}
		vals = vals[4+l:]
	}
	return nil
}

// plainInts refuses a PLAIN page of n INT64 values in size bytes that
// cannot hold them.
func plainInts(n, size int) error {
	if n < 0 || size < 8*n {
		return fmt.Errorf("%w: %d INT64 values in %d bytes", errPlainCut, n, size)
	}
	return nil
}

// plainLen returns the length of the PLAIN byte array at the start of
// vals, or false when it runs past the end (plainCut says so). Both
// readers read PLAIN byte arrays with it.
func plainLen(vals []byte) (int, bool) {
	if len(vals) >= 4 {
		if l := uint64(binary.LittleEndian.Uint32(vals)); l <= uint64(len(vals)-4) {
			return int(l), true
		}
	}
	return 0, false
}

// plainCut is the error for the PLAIN byte array at the start of vals,
// value i of the page's n, that plainLen found running past the end.
func plainCut(vals []byte, i, n int) error {
	if len(vals) < 4 {
		return fmt.Errorf("%w: byte array %d of %d past the page's end", errPlainCut, i, n)
	}
	return fmt.Errorf("%w: byte array %d of %d, %d bytes long, past the page's end", errPlainCut, i, n, binary.LittleEndian.Uint32(vals))
}

// nonNull counts the values that are not NULL among the n whose
// definition levels (maximum 1) b holds; false when b does not decode.
func (p *pageReader) nonNull(b []byte, n int) (int, bool) {
	levels, ok := decodeLevels(p.levels[:0], b, n)
	p.levels = levels
	if !ok {
		return 0, false
	}
	count := 0
	for _, l := range levels[:n] {
		count += int(l)
	}
	return count, true
}

// decompresses reports whether parquet-go decompresses pages of codec.
func decompresses(codec format.CompressionCodec) bool {
	switch codec {
	case format.Snappy, format.Gzip, format.Brotli, format.Zstd, format.Lz4Raw:
		return true
	}
	return false
}

// checkPage checks a page's declared size against its body and charges it
// to the file's budget.
func (p *pageReader) checkPage(codec format.CompressionCodec, declared int32, body int) error {
	if err := checkDeclared(codec, declared, body); err != nil {
		return err
	}
	return p.budget.take(int64(declared)+zstdSlack, "its decompressed pages")
}

// growCap returns b[:0] with a capacity of at least n.
func growCap(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, 0, n)
	}
	return b[:0]
}
