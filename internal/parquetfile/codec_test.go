package parquetfile

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLiteralsCodecRoundTrip decodes literalsCodec's frames with the
// reference-compatible klauspost decoder, for sizes around the block and
// Huffman thresholds and for data that Huffman cannot shrink.
func TestLiteralsCodecRoundTrip(t *testing.T) {
	c := &literalsCodec{decoder: pageCodec}
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	hexPage := func(n int) []byte {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return b
	}
	randomPage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	var pages [][]byte
	isHex := map[int]bool{} // index in pages
	for _, n := range []int{0, 1, 7, 1023, 1024, 1025, 16383, 16384, 70000, zstdMaxBlock - 1, zstdMaxBlock, zstdMaxBlock + 1, 3*zstdMaxBlock + 12345, 1 << 20} {
		isHex[len(pages)] = true
		pages = append(pages, hexPage(n), randomPage(n), bytes.Repeat([]byte{'a'}, n))
	}
	pages = append(pages, []byte(strings.Repeat("ab", 5000)+string(randomPage(100000))))
	var dst []byte
	for i, p := range pages {
		dst, err = c.Encode(dst, p)
		require.NoError(t, err)
		got, err := dec.DecodeAll(dst, nil)
		require.NoError(t, err, "%d bytes", len(p))
		assert.True(t, bytes.Equal(p, got), "%d bytes", len(p))
		got, err = c.Decode(nil, dst)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(p, got), "%d bytes", len(p))
		if isHex[i] && len(p) >= 1<<16 {
			// Hex compresses to about half.
			assert.Less(t, len(dst), len(p)*6/10, "%d hex bytes", len(p))
		}
	}
}
