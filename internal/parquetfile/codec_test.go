package parquetfile

import (
	"bytes"
	"encoding/binary"
	"github.com/parquet-go/parquet-go"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLiteralsCodecRoundTrip decodes literalsCodec's literal-only frames
// with the klauspost decoder, for sizes around the block and Huffman
// thresholds, for data that Huffman cannot shrink (raw blocks) and for one
// byte repeated (RLE blocks).
func TestLiteralsCodecRoundTrip(t *testing.T) {
	c := hexCodec
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
		dst, err = c.encodeLiterals(dst, p)
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
		if len(p) >= zstdMinHuffman && p[0] == 'a' && p[1] == 'a' {
			assert.Less(t, len(dst), 100, "RLE blocks for %d equal bytes", len(p))
		}
	}
}

// TestLiteralsCodecReferenceDecoder decodes literalsCodec's literal-only
// frames (compressed, raw and RLE blocks) with the
// reference zstd implementation (the zstd command, libzstd as in DuckDB and
// Athena), when it is installed; under CI=true it must be.
func TestLiteralsCodecReferenceDecoder(t *testing.T) {
	zstdCmd, err := exec.LookPath("zstd")
	if err != nil {
		// CI installs it (.ci/run): there the check must run.
		if os.Getenv("CI") == "true" {
			t.Fatalf("the reference zstd command is needed under CI=true: %v", err)
		}
		t.Skip("no zstd command")
	}
	c := hexCodec
	rng := rand.New(rand.NewPCG(5, 6))
	dir := t.TempDir()
	for _, n := range []int{0, 5, 1024, 5000, 20000, zstdMaxBlock, zstdMaxBlock + 1, 300000, 1 << 20} {
		for _, kind := range []string{"hex", "random", "constant"} {
			b := make([]byte, n)
			for i := range b {
				switch kind {
				case "hex":
					b[i] = "0123456789abcdef"[rng.IntN(16)]
				case "random":
					b[i] = byte(rng.UintN(256))
				default:
					b[i] = 'x'
				}
			}
			frame, err := c.encodeLiterals(nil, b)
			require.NoError(t, err)
			f := filepath.Join(dir, "page.zst")
			require.NoError(t, os.WriteFile(f, frame, 0o600))
			got, err := exec.Command(zstdCmd, "-d", "-c", f).Output()
			require.NoError(t, err, "%d %s bytes", n, kind)
			assert.True(t, bytes.Equal(b, got), "%d %s bytes", n, kind)
		}
	}
}

// TestLiteralsCodecFallback: pages that Huffman coding shrinks far more
// than it shrinks random hex, such as a PLAIN page of empty strings, go to
// the fallback codec; random hex does not. (A page of one repeated hex value
// does not: literalsCodec is only for columns whose values never repeat.)
func TestLiteralsCodecFallback(t *testing.T) {
	c := hexCodec
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	plain := func(vals ...string) []byte {
		var b []byte
		for i := 0; len(b) < 200_000; i++ {
			v := vals[i%len(vals)]
			b = append(b, byte(len(v)), 0, 0, 0)
			b = append(b, v...)
		}
		return b
	}
	rng := rand.New(rand.NewPCG(7, 8))
	randomHex := make([]string, 5000)
	for i := range randomHex {
		b := make([]byte, 16)
		for j := range b {
			b[j] = "0123456789abcdef"[rng.IntN(16)]
		}
		randomHex[i] = string(b)
	}
	for name, tc := range map[string]struct {
		page     []byte
		maxRatio float64
	}{
		"empty strings": {plain(""), 0.01},
		"one byte":      {plain("a"), 0.01},
		"random hex":    {plain(randomHex...), 0.6},
	} {
		frame, err := c.Encode(nil, tc.page)
		require.NoError(t, err, name)
		got, err := dec.DecodeAll(frame, nil)
		require.NoError(t, err, name)
		assert.True(t, bytes.Equal(tc.page, got), name)
		assert.Less(t, float64(len(frame)), tc.maxRatio*float64(len(tc.page)), name)
	}
}

// TestTimeCodecIsParquetZstd: timeCodec writes what parquet-go's ZSTD codec
// writes, byte for byte, on the time_unix_nano pages of a batch and on
// other data, before and after its encoders are reused.
func TestTimeCodecIsParquetZstd(t *testing.T) {
	es := realistic(10_000)
	page := make([]byte, 0, 8*len(es))
	for i := range es {
		page = binary.LittleEndian.AppendUint64(page, uint64(es[i].TimeUnixNano))
	}
	text := []byte(strings.Repeat("the agent proposed to change the email of contact 48291; ", 2000))
	for round := range 2 {
		for _, src := range [][]byte{page, text, nil, {1}} {
			want, err := parquet.Zstd.Encode(nil, src)
			require.NoError(t, err)
			got, err := timeCodec.Encode(nil, src)
			require.NoError(t, err)
			require.Equal(t, want, got, "round %d, %d bytes", round, len(src))
		}
	}
}
