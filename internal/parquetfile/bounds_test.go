package parquetfile

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/zstdtest"
)

// TestDecodeZstdBounded: decodeZstd gives klauspost's output for frames
// that fit the declared size, and ErrBomb, without growing its buffer, for
// frames that do not.
func TestDecodeZstdBounded(t *testing.T) {
	d := newZstdDecoder()
	ref, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(3, 4))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	require.NoError(t, err)
	for i := range 300 {
		n := rng.IntN(1 << uint(1+i%19))
		raw := make([]byte, n)
		for j := range raw {
			raw[j] = byte('a' + rng.IntN(1+i%16))
		}
		var frame []byte
		switch i % 3 {
		case 0:
			frame = enc.EncodeAll(raw, nil)
		case 1:
			frame = zstdtest.RLEFrame(int64(n), -1)
			raw = bytes.Repeat([]byte{'a'}, n)
		default:
			frame = zstdtest.RLEFrame(int64(n), int64(n))
			raw = bytes.Repeat([]byte{'a'}, n)
		}
		want, err := ref.DecodeAll(frame, nil)
		require.NoError(t, err, "case %d, %d bytes", i, n)
		require.Equal(t, raw, want)
		dst := make([]byte, 0, n+zstdSlack)
		got, err := decodeZstd(d, dst, frame, n)
		require.NoError(t, err)
		require.Equal(t, raw, got)
		if n > 0 {
			short := make([]byte, 0, n-1+zstdSlack)
			_, err = decodeZstd(d, short, frame, n-1)
			require.ErrorIs(t, err, ErrBomb, "%d bytes declared %d", n, n-1)
		}
		// Damaged frames: an error or klauspost's output, never more.
		for range 5 {
			bad := slices.Clone(frame)
			bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
			got, err := decodeZstd(d, make([]byte, 0, n+zstdSlack), bad, n)
			if err == nil {
				// Bounded by n, as decodeZstd found: safe to decode.
				want, werr := ref.DecodeAll(bad, nil)
				require.NoError(t, werr)
				require.Equal(t, want, got)
			}
		}
	}
}

// TestCheckDecompressCodecs: for every codec parquet-go decompresses, a
// page that decodes to more than it declares is refused, and one that
// decodes to what it declares is not.
func TestCheckDecompressCodecs(t *testing.T) {
	d := newZstdDecoder()
	raw := bytes.Repeat([]byte("agentaudit "), 100_000)
	for _, c := range []compress.Codec{&parquet.Zstd, &parquet.Snappy, &parquet.Gzip, &parquet.Brotli, &parquet.Lz4Raw} {
		codec := c.CompressionCodec()
		t.Run(codec.String(), func(t *testing.T) {
			body, err := c.Encode(nil, raw)
			require.NoError(t, err)
			scratch := make([]byte, 0, len(raw)+zstdSlack)
			out, err := checkDecompress(d, codec, scratch, body, len(raw))
			require.NoError(t, err)
			require.Equal(t, raw, out)
			require.NoError(t, checkDeclared(codec, int32(len(raw)), len(body)))
			_, err = checkDecompress(d, codec, scratch[:0:len(raw)/2+zstdSlack], body, len(raw)/2)
			require.Error(t, err)
			if codec != format.Lz4Raw { // lz4 only says the block does not fit
				require.ErrorIs(t, err, ErrBomb)
			}
			if codec != format.Snappy { // snappy's size is its header's: parquet-go finds the rest
				_, err = checkDecompress(d, codec, scratch, body[:len(body)/2], len(raw))
				require.Error(t, err, "half a body")
			}
		})
	}
}

// TestZstdBound: the bound of klauspost's frames is at least what they
// decompress to (their content size, which they declare), frames without
// a content size are bounded by their blocks, and frames that declare or
// make more than the page declares are refused without being decoded.
func TestZstdBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	require.NoError(t, err)
	withSize := 0
	for i := range 200 {
		n := rng.IntN(1 << uint(1+i%20))
		raw := make([]byte, n)
		for j := range raw {
			raw[j] = byte('a' + rng.IntN(1+i%16))
		}
		frame := enc.EncodeAll(raw, nil)
		bound, sized, err := zstdBound(frame, int64(n))
		require.NoError(t, err, "%d bytes", n)
		assert.GreaterOrEqual(t, bound, int64(n), "%d bytes", n)
		// Two frames, and a skippable one between.
		skip := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x184D2A53), 3)
		two := slices.Concat(frame, skip, []byte{1, 2, 3}, frame)
		bound2, sized2, err := zstdBound(two, int64(2*n))
		require.NoError(t, err)
		assert.Equal(t, 2*bound, bound2)
		assert.Equal(t, sized, sized2)
		_, sized3, err := zstdBound(append(slices.Clone(frame), 0), int64(n+1))
		require.NoError(t, err)
		assert.False(t, sized3, "a byte after the frame")
		if fhd := frame[4]; fhd>>6 != 0 || fhd&0x20 != 0 {
			withSize++
			assert.Equal(t, int64(n), bound, "a frame with its content size is bounded by it")
			assert.True(t, sized, "a frame with its content size is sized")
			_, _, err = zstdBound(frame, int64(n-1))
			require.ErrorIs(t, err, ErrBomb, "%d bytes declared %d", n, n-1)
		}
	}
	assert.Positive(t, withSize, "frames with a content size")
	// Without a content size: raw and RLE blocks are exact.
	bound, sized, err := zstdBound(zstdtest.RLEFrame(300<<10, -1), 300<<10)
	require.NoError(t, err)
	assert.Equal(t, int64(300<<10), bound)
	assert.False(t, sized, "a frame without its content size")
	_, _, err = zstdBound(zstdtest.RLEFrame(1<<30, -1), 1<<20)
	require.ErrorIs(t, err, ErrBomb)
	_, _, err = zstdBound(zstdtest.RLEFrame(100, 4<<30), 100)
	require.ErrorIs(t, err, ErrBomb)
	// A compressed block counts as Block_Maximum_Size: 128 KiB, or the
	// window when smaller.
	block := func(window byte) []byte {
		f := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
		f = append(f, 0, window)
		for range 3 {
			f = append(f, 2<<1|5<<3, 0, 0, 1, 2, 3, 4, 5) // compressed, 5 bytes
		}
		f[len(f)-8] |= 1 // the last
		return f
	}
	bound, _, err = zstdBound(block(7<<3), 100) // window 128 KiB
	require.NoError(t, err)
	assert.Equal(t, int64(3*128<<10), bound)
	bound, _, err = zstdBound(block(0), 100) // window 1 KiB
	require.NoError(t, err)
	assert.Equal(t, int64(3<<10), bound)
}

// TestBudget: a budget takes what fits and refuses the rest, negative
// amounts included.
func TestBudget(t *testing.T) {
	var b Budget
	b.Reset(1000)
	require.NoError(t, b.Take(BudgetFloor, "a"))
	require.NoError(t, b.Take(BudgetRatio*1000, "b"))
	require.ErrorIs(t, b.Take(1, "c"), ErrBomb)
	b.Reset(0)
	require.ErrorIs(t, b.Take(-1, "d"), ErrBomb)
	require.NoError(t, b.Take(1, "e"))
}

// TestPlainByteArrays: byte arrays that fit the page pass, one whose
// length runs past the page's end is refused, wherever it is.
func TestPlainByteArrays(t *testing.T) {
	var page []byte
	for i := range 20 {
		page = binary.LittleEndian.AppendUint32(page, uint32(i))
		page = append(page, bytes.Repeat([]byte{'x'}, i)...)
	}
	require.NoError(t, plainByteArrays(page))
	require.NoError(t, plainByteArrays(nil))
	for cut := 1; cut <= 19; cut++ {
		err := plainByteArrays(page[:len(page)-cut])
		require.ErrorIs(t, err, ErrValuesCut, "%d bytes cut", cut)
	}
}
