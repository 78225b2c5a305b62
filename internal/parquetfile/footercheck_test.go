package parquetfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// footerOf returns the footer bytes of a Parquet file.
func footerOf(data []byte) []byte {
	n := len(data)
	fl := int(binary.LittleEndian.Uint32(data[n-8:]))
	return data[n-8-fl : n-8]
}

// TestFooterCostOfWriterFiles: the writer's footers pass, at a cost far
// below the limit, and every cut of one fails (the top-level struct's end
// is its last byte).
func TestFooterCostOfWriterFiles(t *testing.T) {
	for _, n := range []int{1, 100, 10_000} {
		data, _ := encode(t, realistic(n))
		footer := footerOf(data)
		cost, err := FooterCost(footer)
		require.NoError(t, err, "%d entries", n)
		assert.Greater(t, cost, int64(len(footer)), "%d entries", n)
		assert.Less(t, cost, int64(1<<20), "%d entries", n)
		if n != 100 {
			continue
		}
		for cut := range len(footer) {
			_, err := FooterCost(footer[:cut])
			require.ErrorIs(t, err, errFooter, "cut at %d", cut)
		}
	}
}

// TestFooterCostRefusesBombs: declared lists, maps and strings that cannot
// be in the bytes, and deep nesting, are refused without allocating, and
// ReadFooter reports them as ErrCorrupt.
func TestFooterCostRefusesBombs(t *testing.T) {
	long := func(prefix []byte, n uint64, suffix ...byte) []byte {
		return append(binary.AppendUvarint(bytes.Clone(prefix), n), suffix...)
	}
	bombs := map[string][]byte{
		"list of structs": long([]byte{0x15, 0x02, 0x19, 0xfc}, 2_000_000_000),
		"list of i32":     long([]byte{0x19, 0xf5}, 1_000_000),
		"set":             long([]byte{0x1a, 0xfc}, 1_000_000),
		"map":             long([]byte{0x1b}, 1_000_000, 0x88),
		"string":          long([]byte{0x18}, 1_000_000),
		"nested structs":  bytes.Repeat([]byte{0x1c}, 100_000),
		"nested lists":    bytes.Repeat([]byte{0x19, 0x19}, 100_000),
		"unknown type":    {0x1e, 0x00},
		"long varint":     bytes.Repeat([]byte{0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1),
		"cut":             {0x15},
	}
	for name, footer := range bombs {
		var err error
		n := allocs(func() { _, err = FooterCost(footer) })
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, errFooter), name)
		assert.Less(t, n, uint64(1<<20), "%s: bytes allocated", name)

		data := append([]byte("PAR1"), footer...)
		data = binary.LittleEndian.AppendUint32(data, uint32(len(footer)))
		data = append(data, "PAR1"...)
		n = allocs(func() { _, err = ReadFooter(bytes.NewReader(data), int64(len(data))) })
		assert.ErrorIs(t, err, ErrCorrupt, name)
		assert.Less(t, n, uint64(1<<20)+uint64(len(data)), "%s: ReadFooter's bytes allocated", name)
	}
	// Within the bytes but too costly for ReadFooter: 100,000 empty
	// key-value structs, 100 MB in parquet-go.
	many := append(long([]byte{0x15, 0x02, 0x49, 0xfc}, 100_000), make([]byte, 100_000+1)...)
	cost, err := FooterCost(many)
	require.NoError(t, err)
	assert.Greater(t, cost, int64(maxFooterCost))
	data := append(append([]byte("PAR1"), many...), binary.LittleEndian.AppendUint32(nil, uint32(len(many)))...)
	data = append(data, "PAR1"...)
	_, err = ReadFooter(bytes.NewReader(data), int64(len(data)))
	assert.ErrorIs(t, err, ErrCorrupt)
	assert.ErrorContains(t, err, "would take")
}

// allocs returns the bytes f allocates.
func allocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
