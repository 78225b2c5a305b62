package parquetfile

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec is a ZSTD compress.Codec for the writer with encoder options
// parquet-go's own codec does not expose. Its pages are klauspost's
// encoder's frames as they come: standard zstd that any decoder reads.
type zstdCodec struct {
	opts     []zstd.EOption
	encoders freeList[*zstd.Encoder]
	decoders freeList[*zstd.Decoder]
}

// keepIdle is how many idle encoders (or decoders) a codec keeps: one per
// batch encoded at once is enough.
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
// in columnCodecs. zstd's fastest level costs about half the CPU of its
// default level on these pages for about the same size, provided that
// blocks in which it finds no match still get their literals Huffman-coded:
// the hex hash and span id columns are such blocks, and stored raw they
// would double in size. A 1 MiB window is more than a page needs (pages are
// about 256 KiB unless a value is larger) and keeps each pooled encoder's
// history at 2 MiB instead of the 16 MiB of the default 8 MiB window.
//
// The SHA-256 hex columns (entry_hash and prev_hash, 70 of a realistic
// entry's 112 bytes) take it too: on their pages it writes about 278 bits
// per value, the default level 279 and the better level 274.5, at about a
// third and a sixth of their CPU.
var pageCodec = newZstdCodec(zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithAllLitEntropyCompression(true), zstd.WithWindowSize(1<<20))

// columnCodecs are the codecs of the columns that pageCodec does not suit:
// time_unix_nano's and end_time_unix_nano's nanosecond increments need the
// default level's match finder to compress at all.
var columnCodecs = map[string]compress.Codec{
	"time_unix_nano":     timeCodec,
	"end_time_unix_nano": timeCodec,
}

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
