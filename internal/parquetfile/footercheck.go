package parquetfile

import (
	"errors"
	"fmt"
)

// Footer bombs. parquet-go decodes a footer (thrift compact protocol) by
// allocating every list at its declared size before reading an element, and
// recursing into every nested struct: a 24-byte file whose footer declares
// a list of two billion schema elements makes it allocate 190 GB (a fatal
// out-of-memory error, not a panic), and deep enough nesting overflows the
// stack. FooterCost walks the bytes first, without allocating.

const (
	// maxFooterDepth: FileMetaData nests about eight deep (row group,
	// column chunk, metadata, statistics, logical type...).
	maxFooterDepth = 32
	// footerElemCost bounds what parquet-go allocates per declared element
	// of a list, set or map: its largest element, format.ColumnChunk, is
	// 560 bytes, and OpenFile keeps more per column chunk.
	footerElemCost = 1024
	// maxFooterCost is what ReadFooter lets a footer cost. The writer's
	// footers cost about 300 KB.
	maxFooterCost = 64 << 20
)

// errFooter wraps every refusal of FooterCost.
var errFooter = errors.New("malformed footer")

// FooterCost walks footer, the thrift compact encoding of a FileMetaData,
// and returns a bound on the bytes decoding it allocates: footerElemCost
// per element its lists, sets and maps declare, and its byte strings. It
// fails, before anything is allocated, for a length that runs past the end
// (every element takes at least one byte), nesting deeper than
// maxFooterDepth, or an unknown type: parquet-go must not decode such a
// footer. Bytes after the struct are allowed, as parquet-go allows them.
func FooterCost(footer []byte) (int64, error) {
	w := footerWalker{b: footer}
	if err := w.structure(0); err != nil {
		return 0, fmt.Errorf("%w: %w", errFooter, err)
	}
	return w.cost, nil
}

type footerWalker struct {
	b    []byte
	i    int
	cost int64
}

// thrift compact protocol types.
const (
	tStop = iota
	tTrue
	tFalse
	tI8
	tI16
	tI32
	tI64
	tDouble
	tBinary
	tList
	tSet
	tMap
	tStruct
	tUUID
)

func (w *footerWalker) left() int { return len(w.b) - w.i }

func (w *footerWalker) next() (byte, error) {
	if w.i >= len(w.b) {
		return 0, errors.New("ends inside a value")
	}
	w.i++
	return w.b[w.i-1], nil
}

func (w *footerWalker) skip(n int) error {
	if n < 0 || n > w.left() {
		return fmt.Errorf("a value of %d bytes at offset %d runs past the end", n, w.i)
	}
	w.i += n
	return nil
}

func (w *footerWalker) uvarint() (uint64, error) {
	var v uint64
	for s := 0; s < 64; s += 7 {
		c, err := w.next()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << s
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("varint too long at offset %d", w.i)
}

// elements walks the n elements of a list, set or map (each the values of
// types, in turn) at depth, after checking that they can be in what is
// left (each takes at least a byte) and charging them.
func (w *footerWalker) elements(n uint64, depth int, types ...byte) error {
	if n > uint64(w.left()) {
		return fmt.Errorf("%d elements declared at offset %d, %d bytes left", n, w.i, w.left())
	}
	if depth > maxFooterDepth {
		return fmt.Errorf("nested deeper than %d at offset %d", maxFooterDepth, w.i)
	}
	w.cost += int64(n) * footerElemCost
	for range n {
		for _, t := range types {
			if err := w.value(t, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *footerWalker) structure(depth int) error {
	if depth > maxFooterDepth {
		return fmt.Errorf("nested deeper than %d at offset %d", maxFooterDepth, w.i)
	}
	for {
		h, err := w.next()
		if err != nil {
			return err
		}
		if h == tStop {
			return nil
		}
		if h>>4 == 0 { // a long-form field id (zigzag i16) follows
			if _, err := w.uvarint(); err != nil {
				return err
			}
		}
		switch t := h & 15; t {
		case tTrue, tFalse: // a field's bool is in its type
		default:
			if err := w.value(t, depth); err != nil {
				return err
			}
		}
	}
}

// value skips one value of type t, as a list element or a field.
func (w *footerWalker) value(t byte, depth int) error {
	switch t {
	case tTrue, tFalse, tI8:
		return w.skip(1)
	case tI16, tI32, tI64:
		_, err := w.uvarint()
		return err
	case tDouble:
		return w.skip(8)
	case tUUID:
		return w.skip(16)
	case tBinary:
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(w.left()) {
			return fmt.Errorf("a string of %d bytes at offset %d runs past the end", n, w.i)
		}
		w.cost += int64(n)
		return w.skip(int(n))
	case tList, tSet:
		h, err := w.next()
		if err != nil {
			return err
		}
		n := uint64(h >> 4)
		if n == 15 {
			if n, err = w.uvarint(); err != nil {
				return err
			}
		}
		return w.elements(n, depth+1, h&15)
	case tMap:
		n, err := w.uvarint()
		if err != nil || n == 0 {
			return err
		}
		kv, err := w.next()
		if err != nil {
			return err
		}
		return w.elements(n, depth+1, kv>>4, kv&15)
	case tStruct:
		return w.structure(depth + 1)
	}
	return fmt.Errorf("unknown type %d at offset %d", t, w.i)
}
