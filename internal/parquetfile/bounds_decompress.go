package parquetfile

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
)

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
		return fmt.Errorf("%w: uncompressed size %d", ErrBomb, declared)
	}
	if m := maxExpansion(codec, body); m >= 0 && int64(declared) > m {
		return fmt.Errorf("%w: declares %d uncompressed bytes, more than %d compressed bytes of %s can hold", ErrBomb, declared, body, codec)
	}
	return nil
}

// zstdBound walks the zstd frames of b (RFC 8878) without decompressing
// them and returns the most they can decompress to. klauspost's decoder
// makes at most a frame's content size when the frame declares one (and
// allocates it before it decodes a block); otherwise raw and RLE blocks
// make their size and a compressed block at most Block_Maximum_Size.
// Frames that declare, or whose raw and RLE blocks make, more than
// declared are refused (ErrBomb). Bytes that are not zstd frames end the
// walk: the decoder fails on them. sized reports whether every frame
// declares its content size and b holds nothing else: then the bound is
// what b decompresses to (klauspost's decoder fails on a frame that makes
// other than it declares).
func zstdBound(b []byte, declared int64) (bound int64, sized bool, err error) {
	var sure int64 // what the frames make at least, or declare
	sized = true
	for len(b) >= 8 {
		magic := binary.LittleEndian.Uint32(b)
		if magic&0xFFFFFFF0 == 0x184D2A50 { // a skippable frame
			n := int64(binary.LittleEndian.Uint32(b[4:]))
			if n > int64(len(b)-8) {
				sized = false
				break
			}
			b = b[8+n:]
			continue
		}
		if magic != 0xFD2FB528 {
			sized = false
			break
		}
		fhd := b[4]
		single := fhd&0x20 != 0
		hl := 5
		window := int64(0)
		if !single {
			wd := b[hl]
			hl++
			wlog := 10 + uint(wd>>3)
			window = int64(1)<<wlog + (int64(1)<<wlog)/8*int64(wd&7)
		}
		hl += [4]int{0, 1, 2, 4}[fhd&3] // dictionary id
		fcsSize := [4]int{0, 2, 4, 8}[fhd>>6]
		if fhd>>6 == 0 && single {
			fcsSize = 1
		}
		if hl+fcsSize > len(b) {
			sized = false
			break
		}
		fcs := int64(-1)
		switch fcsSize {
		case 1:
			fcs = int64(b[hl])
		case 2:
			fcs = int64(binary.LittleEndian.Uint16(b[hl:])) + 256
		case 4:
			fcs = int64(binary.LittleEndian.Uint32(b[hl:]))
		case 8:
			fcs = int64(min(binary.LittleEndian.Uint64(b[hl:]), 1<<62))
		}
		if fcs > declared-sure {
			return 0, false, fmt.Errorf("%w: a zstd frame declares %d bytes, more than the %d its page declares", ErrBomb, fcs, declared)
		}
		if single {
			window = max(fcs, 1<<10)
		}
		blockMax := min(window, zstdMaxBlock)
		b = b[hl+fcsSize:]
		var exact, blocks int64
		for last := false; !last; {
			if len(b) < 3 {
				return bound + max(fcs, blocks), false, nil
			}
			h := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
			b = b[3:]
			last = h&1 == 1
			size := int64(h >> 3)
			switch h >> 1 & 3 {
			case 0: // raw
				if size > int64(len(b)) {
					return bound + max(fcs, blocks), false, nil
				}
				b = b[size:]
				exact += size
				blocks += size
			case 1: // RLE
				if len(b) < 1 {
					return bound + max(fcs, blocks), false, nil
				}
				b = b[1:]
				exact += size
				blocks += size
			case 2: // compressed
				if size > int64(len(b)) {
					return bound + max(fcs, blocks), false, nil
				}
				b = b[size:]
				blocks += blockMax
			default: // reserved: the decoder fails
				return bound + max(fcs, blocks), false, nil
			}
			if sure+exact > declared {
				return 0, false, fmt.Errorf("%w: decompresses to more than the %d bytes its header declares", ErrBomb, declared)
			}
		}
		if fcs >= 0 {
			// The decoder stops at the content size.
			sure += fcs
			bound += fcs
		} else {
			sure += exact
			bound += blocks
			sized = false
		}
		if fhd&4 != 0 { // content checksum
			if len(b) < 4 {
				sized = false
				break
			}
			b = b[4:]
		}
	}
	return bound, sized && len(b) == 0, nil
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
// (or a frame that says it holds more) is ErrBomb.
func decodeZstd(d *zstd.Decoder, dst, body []byte, declared int) ([]byte, error) {
	out, err := d.DecodeAll(body, dst[:0])
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded) || err == nil && len(out) > declared:
		return nil, fmt.Errorf("%w: decompresses to more than the %d bytes its header declares", ErrBomb, declared)
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
			return nil, fmt.Errorf("%w: decompresses to %d bytes, more than the %d its header declares", ErrBomb, n, declared)
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
	if err != nil && !errors.Is(err, ErrBomb) {
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
			return nil, fmt.Errorf("%w: decompresses to more than the %d bytes its header declares", ErrBomb, n)
		case err == io.EOF:
			return buf[:got], nil
		case err != nil:
			return nil, err
		}
	}
}

// growCap returns b[:0] with a capacity of at least n.
func growCap(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, 0, n)
	}
	return b[:0]
}
