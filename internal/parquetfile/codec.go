package parquetfile

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec is a ZSTD compress.Codec for the writer with encoder options
// parquet-go's own codec does not expose. It writes standard zstd frames
// that any zstd decoder reads.
type zstdCodec struct {
	opts     []zstd.EOption
	encoders sync.Pool // *zstd.Encoder
	decoders sync.Pool // *zstd.Decoder
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
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		if e, err = zstd.NewWriter(nil, c.opts...); err != nil {
			return dst[:0], err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.decoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return dst[:0], err
		}
	}
	defer c.decoders.Put(d)
	return d.DecodeAll(src, dst[:0])
}

// pageCodec compresses the pages of every column but those tagged otherwise
// in row. zstd's fastest level costs about half the CPU of its default level
// on these pages for about the same size, provided that blocks in which it
// finds no match still get their literals Huffman-coded: the hex hash and
// span id columns are such blocks, and stored raw they would double in size.
var pageCodec = newZstdCodec(zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithAllLitEntropyCompression(true))
