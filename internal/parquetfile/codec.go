package parquetfile

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"

	"github.com/agentaudit/agentaudit/internal/hexzstd"
)

// zstdCodec is a ZSTD compress.Codec for the writer with encoder options
// parquet-go's own codec does not expose. It writes standard zstd frames
// that any zstd decoder reads.
type zstdCodec struct {
	opts     []zstd.EOption
	encoders freeList[*zstd.Encoder]
	decoders freeList[*zstd.Decoder]
}

// keepIdle is how many idle encoders (or decoders, or scratch spaces) a
// codec keeps: one per batch encoded at once is enough.
const keepIdle = 4

// freeList keeps up to keepIdle idle values between uses. Unlike a
// sync.Pool it is not emptied by garbage collections: under load many run
// between two batches, and an encoder (its 2 MiB history, its tables) would
// be built again for every column of every batch.
type freeList[T any] struct {
	mu   sync.Mutex
	idle []T
}

func (l *freeList[T]) get() (v T, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.idle); n > 0 {
		v, l.idle = l.idle[n-1], l.idle[:n-1]
		return v, true
	}
	return v, false
}

func (l *freeList[T]) put(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.idle) < keepIdle {
		l.idle = append(l.idle, v)
	}
}

func newZstdCodec(opts ...zstd.EOption) *zstdCodec {
	return &zstdCodec{opts: append([]zstd.EOption{
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(false),
	}, opts...)}
}

func (c *zstdCodec) String() string { return "ZSTD" }

func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, ok := c.encoders.get()
	if !ok {
		var err error
		if e, err = zstd.NewWriter(nil, c.opts...); err != nil {
			return dst[:0], err
		}
	}
	defer c.encoders.put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, ok := c.decoders.get()
	if !ok {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return dst[:0], err
		}
	}
	defer c.decoders.put(d)
	return d.DecodeAll(src, dst[:0])
}

// pageCodec compresses the pages of every column but those tagged otherwise
// in row. zstd's fastest level costs about half the CPU of its default level
// on these pages for about the same size, provided that blocks in which it
// finds no match still get their literals Huffman-coded: the hex hash and
// span id columns are such blocks, and stored raw they would double in size.
// A 1 MiB window is more than a page needs (pages are about 256 KiB unless a
// value is larger) and keeps each pooled encoder's history at 2 MiB instead
// of the 16 MiB of the default 8 MiB window.
var pageCodec = newZstdCodec(zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithAllLitEntropyCompression(true), zstd.WithWindowSize(1<<20))

// literalsCodec is a ZSTD compress.Codec for pages in which zstd finds
// almost nothing to match, like PLAIN pages of random hex: it skips the match
// search and writes each block of at most 128 KiB as a compressed block of
// Huffman-coded literals and no sequences (or as an RLE or raw block when
// that is smaller). The frames are standard zstd (RFC 8878) that any decoder
// reads. It suits columns whose values never repeat. A page that Huffman
// coding shrinks to less than fallbackRatio of its size is not random hex
// (empty strings, say, in a tampered or test file): it is compressed by
// fallback instead.
type literalsCodec struct {
	scratch  freeList[*huff0.Scratch]
	fallback *zstdCodec
}

// fallbackRatio: random hex Huffman-codes to about 52% of its size.
const fallbackRatio = 0.4

// zstd frame layout constants (RFC 8878).
const (
	zstdMaxBlock   = 128 << 10
	zstdMinHuffman = 1024
)

func (c *literalsCodec) String() string { return "ZSTD" }

func (c *literalsCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *literalsCodec) Decode(dst, src []byte) ([]byte, error) { return c.fallback.Decode(dst, src) }

func (c *literalsCodec) Encode(dst, src []byte) ([]byte, error) {
	if out, ok := hexzstd.Append(dst[:0], src); ok {
		return out, nil
	}
	dst, err := c.encodeLiterals(dst, src)
	if err == nil && float64(len(dst)) < fallbackRatio*float64(len(src)) {
		return c.fallback.Encode(dst, src)
	}
	return dst, err
}

// encodeLiterals writes src as one zstd frame of literal-only blocks.
func (c *literalsCodec) encodeLiterals(dst, src []byte) ([]byte, error) {
	if uint64(len(src)) > 1<<32-1 {
		return dst[:0], fmt.Errorf("parquetfile: page of %d bytes is too large", len(src))
	}
	s, ok := c.scratch.get()
	if !ok {
		s = &huff0.Scratch{}
	}
	defer c.scratch.put(s)

	dst = hexzstd.AppendFrameHeader(dst[:0], len(src))
	if len(src) == 0 {
		return hexzstd.AppendBlockHeader(dst, true, hexzstd.BlockRaw, 0), nil
	}
	for len(src) > 0 {
		n := min(len(src), zstdMaxBlock)
		block, last := src[:n], n == len(src)
		src = src[n:]
		var out []byte
		var err error
		if n >= zstdMinHuffman {
			// No table reuse across blocks: every block carries its own
			// tree, so no block depends on another.
			s.Reuse = huff0.ReusePolicyNone
			out, _, err = huff0.Compress4X(block, s)
		}
		if err == huff0.ErrUseRLE {
			// One byte value n times.
			dst = hexzstd.AppendBlockHeader(dst, last, hexzstd.BlockRLE, n)
			dst = append(dst, block[0])
			continue
		}
		lhSize := hexzstd.LiteralsHeaderSize(len(out), n)
		if out == nil || err != nil || lhSize+len(out)+1 >= n {
			dst = hexzstd.AppendBlockHeader(dst, last, hexzstd.BlockRaw, n)
			dst = append(dst, block...)
			continue
		}
		dst = hexzstd.AppendBlockHeader(dst, last, hexzstd.BlockCompressed, lhSize+len(out)+1)
		dst = hexzstd.AppendLiteralsHeader(dst, len(out), n)
		dst = append(dst, out...)
		dst = append(dst, 0) // Number_of_Sequences: 0
	}
	return dst, nil
}

// columnCodecs are the codecs of the columns that pageCodec does not suit,
// all ZSTD. entry_hash and prev_hash are SHA-256 hex, never repeated within a
// chain: their pages are all Huffman-coded literals whatever the level, and
// literalsCodec writes them at a third of the CPU of zstd's match search.
// (Span ids are random hex too, but a parent span id is shared by sibling
// spans: those columns keep pageCodec, which finds the repeats.)
// time_unix_nano's and end_time_unix_nano's nanosecond increments need the
// default level's match finder to compress at all.
var columnCodecs = map[string]compress.Codec{
	"time_unix_nano":     timeCodec,
	"end_time_unix_nano": timeCodec,
	"prev_hash":          hexCodec,
	"entry_hash":         hexCodec,
}

var hexCodec = &literalsCodec{fallback: pageCodec}

// timeCodec writes what parquet-go's own ZSTD codec (parquet.Zstd) writes,
// byte for byte (same options), but keeps its encoders across garbage
// collections.
var timeCodec = newZstdCodec(zstd.WithEncoderLevel(zstd.SpeedDefault))

// withCodecs returns s with the top-level columns named in codecs compressed
// by their codec and the others by def. It keeps everything else of s: the
// columns, their order, types, encodings and Go mapping.
func withCodecs(s *parquet.Schema, codecs map[string]compress.Codec, def compress.Codec) *parquet.Schema {
	fields := s.Fields()
	out := make([]parquet.Field, len(fields))
	for i, f := range fields {
		c := codecs[f.Name()]
		if c == nil {
			c = def
		}
		out[i] = &codecField{Field: f, codec: c}
	}
	return parquet.NewSchema(s.Name(), &groupNode{Node: s, fields: out})
}

// groupNode is a group node with the given fields.
type groupNode struct {
	parquet.Node
	fields []parquet.Field
}

func (g *groupNode) Fields() []parquet.Field { return g.fields }

// codecField is a leaf field compressed by codec.
type codecField struct {
	parquet.Field
	codec compress.Codec
}

func (f *codecField) Compression() compress.Codec { return f.codec }
