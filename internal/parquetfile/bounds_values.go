package parquetfile

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/rle"
	"github.com/parquet-go/parquet-go/format"
)

// isDelta reports whether enc is one of the delta encodings, whose values
// start with a DELTA_BINARY_PACKED header.
func isDelta(enc format.Encoding) bool {
	return enc == format.DeltaBinaryPacked || enc == format.DeltaLengthByteArray || enc == format.DeltaByteArray
}

// checkValues checks the values of a data page as parquet-go will decode
// them: vals is the page decompressed (v1, levels first) or its values
// (v2). INT64 values must not run short of those parquet-go takes the page
// to hold (it reads the missing ones from its buffer's spare capacity),
// and a delta header may not declare more values than its page (parquet-go
// allocates them all before decoding one).
func (c *ChunkChecker) checkValues(h *format.PageHeader, enc format.Encoding, vals []byte, maxDef int) error {
	var n int // the values parquet-go takes the page to hold
	switch h.Type {
	case format.DataPage:
		n = int(h.DataPageHeader.V.NumValues)
		if maxDef > 0 {
			// The levels, as parquet-go reads them; pages whose levels
			// do not decode are refused by parquet-go.
			if len(vals) < 4 || uint64(binary.LittleEndian.Uint32(vals)) > uint64(len(vals)-4) {
				return nil
			}
			l := binary.LittleEndian.Uint32(vals)
			if c.int64 {
				e := rle.Encoding{BitWidth: bits.Len8(uint8(maxDef))}
				lv, err := e.DecodeLevels(c.levels[:0], vals[4:4+l])
				c.levels = lv
				if err != nil || len(lv) < n {
					return nil
				}
				for _, d := range lv[:n] {
					if int(d) != maxDef {
						n--
					}
				}
			}
			vals = vals[4+l:]
		}
	case format.DataPageV2:
		n = int(h.DataPageHeaderV2.V.NumValues) - int(h.DataPageHeaderV2.V.NumNulls)
	case format.DictionaryPage:
		n = int(h.DictionaryPageHeader.V.NumValues)
	default:
		return nil
	}
	if !c.int64 && enc == format.Plain {
		return plainByteArrays(vals)
	}
	if isDelta(enc) {
		total, ok := deltaTotal(vals)
		if !ok {
			return nil // parquet-go refuses it
		}
		if m := pageValues(h); total > uint64(m) {
			return fmt.Errorf("%w: a %s header declares %d values in a page of %d", ErrBomb, enc, total, m)
		}
		if c.int64 && enc == format.DeltaBinaryPacked && (n < 0 || total < uint64(n)) {
			return fmt.Errorf("%s %w: %d INT64 values for %d", enc, ErrValuesCut, total, n)
		}
		return nil
	}
	if c.int64 && (enc == format.Plain || enc == format.ByteStreamSplit) && (n < 0 || len(vals) < 8*n) {
		return fmt.Errorf("%s %w: %d INT64 values in %d bytes", enc, ErrValuesCut, n, len(vals))
	}
	return nil
}

// plainByteArrays refuses PLAIN byte arrays (each a 4-byte little-endian
// length and the bytes) that run past the end of vals: parquet-go's PLAIN
// decoder (v0.32) bounds a length by the whole page rather than by what is
// left of it, and copies the bytes past the page's end from its buffer's
// spare capacity. It decodes every value the page holds, whatever its
// header says, so every one is checked.
func plainByteArrays(vals []byte) error {
	for i := 0; len(vals) > 0; i++ {
		if len(vals) < 4 {
			return nil // parquet-go refuses it
		}
		if l := uint64(binary.LittleEndian.Uint32(vals)); l > uint64(len(vals)-4) {
			return fmt.Errorf("PLAIN %w: byte array %d, %d bytes long, past the page's end", ErrValuesCut, i, l)
		}
		vals = vals[4+binary.LittleEndian.Uint32(vals):]
	}
	return nil
}

// pageValues is the value count of a data page's header.
func pageValues(h *format.PageHeader) int32 {
	if h.Type == format.DataPageV2 {
		return h.DataPageHeaderV2.V.NumValues
	}
	return h.DataPageHeader.V.NumValues
}

// deltaTotal reads the total value count of a DELTA_BINARY_PACKED header
// (block size, miniblocks per block, total count, each a ULEB128).
func deltaTotal(b []byte) (uint64, bool) {
	var v uint64
	for range 3 {
		var k int
		if v, k = binary.Uvarint(b); k <= 0 {
			return 0, false
		}
		b = b[k:]
	}
	return v, true
}

// CheckPage checks page i (counting data pages from 0) of column j's chunk
// in the image, as parquet-go decoded it, before its values are used: it
// must hold a value for each row its definition levels (at maxDef) say is
// not NULL, and a dictionary-encoded page's indices must lie in its
// dictionary. parquet-go returns a page of strings with the values it
// found, which may be fewer (ErrValuesCut).
func (c *ChunkChecker) CheckPage(j, i int, p parquet.Page, maxDef int) error {
	if j < 0 || j >= len(c.facts) || i >= len(c.facts[j]) {
		return fmt.Errorf("page %d: not in the chunk checked", i)
	}
	f := c.facts[j][i]
	want := int(f.values) // values not NULL
	if def := p.DefinitionLevels(); maxDef > 0 {
		if len(def) != int(f.values) {
			return fmt.Errorf("page %d: %d definition levels for %d values", i, len(def), f.values)
		}
		for _, d := range def {
			if int(d) != maxDef {
				want--
			}
		}
	}
	vals := p.Data()
	if dict := p.Dictionary(); dict != nil {
		idx := vals.Int32()
		if len(idx) < want {
			return fmt.Errorf("page %d: %w: %d dictionary indices for %d values", i, ErrValuesCut, len(idx), want)
		}
		n := int32(dict.Len())
		for _, k := range idx[:want] {
			if k < 0 || k >= n {
				return fmt.Errorf("page %d: dictionary index %d past the dictionary's %d values", i, k, n)
			}
		}
		return nil
	}
	var have int
	switch p.Type().Kind() {
	case parquet.ByteArray:
		_, off := vals.ByteArray()
		have = max(len(off)-1, 0)
	case parquet.Int64:
		have = len(vals.Int64())
	default:
		return nil
	}
	if have < want {
		return fmt.Errorf("page %d: %s %w: %d values for %d rows not NULL", i, f.enc, ErrValuesCut, have, want)
	}
	return nil
}
