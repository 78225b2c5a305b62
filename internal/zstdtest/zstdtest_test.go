package zstdtest

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// TestRLEFrame: the frames decode, with klauspost's decoder, to exactly the
// bytes they claim; a frame whose content size lies is refused.
func TestRLEFrame(t *testing.T) {
	d, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer d.Close()
	for _, n := range []int64{0, 1, 128 << 10, 128<<10 + 1, 1 << 20} {
		for _, fcs := range []int64{-1, n} {
			got, err := d.DecodeAll(RLEFrame(n, fcs), nil)
			require.NoError(t, err, "n=%d fcs=%d", n, fcs)
			require.True(t, bytes.Equal(got, bytes.Repeat([]byte{'a'}, int(n))), "n=%d fcs=%d", n, fcs)
		}
	}
	_, err = d.DecodeAll(RLEFrame(1<<20, 10), nil)
	require.Error(t, err, "a frame whose content size is smaller than its blocks")
	require.Less(t, len(RLEFrame(1<<30, -1)), 33<<10, "1 GiB in about 32 KiB")
}
