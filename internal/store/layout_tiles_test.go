package store

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"
)

func TestTileKey(t *testing.T) {
	for _, c := range []struct {
		tile tlog.Tile
		key  string
	}{
		{tlog.Tile{H: 8, L: 0, N: 0, W: 256}, "tiles/c-1/tile/0/000"},
		{tlog.Tile{H: 8, L: 0, N: 0, W: 5}, "tiles/c-1/tile/0/000.p/5"},
		{tlog.Tile{H: 8, L: 2, N: 1234067, W: 256}, "tiles/c-1/tile/2/x001/x234/067"},
		{tlog.Tile{H: 8, L: 1, N: 1234, W: 255}, "tiles/c-1/tile/1/x001/234.p/255"},
	} {
		k := TileKey("c-1", c.tile)
		assert.Equal(t, c.key, k)
		require.NoError(t, ValidKey(k), "a tile key is a store key")
		id, got, err := ParseTileKey(k)
		require.NoError(t, err, k)
		assert.Equal(t, "c-1", id)
		assert.Equal(t, c.tile, got)
	}
}

func TestTileKeyRoundTrip(t *testing.T) {
	for _, id := range []string{"a", "a-b-c", "x.y_z", "A9"} {
		for _, n := range []int64{0, 1, 999, 1000, 1 << 40} {
			for _, w := range []int{1, 128, 255, 256} {
				for l := range 4 {
					tile := tlog.Tile{H: TileHeight, L: l, N: n, W: w}
					gotID, got, err := ParseTileKey(TileKey(id, tile))
					require.NoError(t, err)
					assert.Equal(t, id, gotID)
					assert.Equal(t, tile, got)
				}
			}
		}
	}
}

func TestTileKeyOrderWithinLevel(t *testing.T) {
	// A listing finds a level's tiles in order as long as N has the same
	// number of three-digit groups; the partial tiles of N follow its full
	// tile's key.
	var keys []string
	for _, n := range []int64{0, 1, 2, 999} {
		keys = append(keys, TileKey("c", tlog.Tile{H: 8, N: n, W: 256}), TileKey("c", tlog.Tile{H: 8, N: n, W: 3}))
	}
	assert.True(t, slices.IsSorted(keys), "%v", keys)
}

func TestParseTileKeyForeign(t *testing.T) {
	for _, k := range []string{
		"",
		"tiles/",
		"tiles/c",
		"tiles/c/",
		"tile/0/000",               // no prefix
		"tiles/.c/tile/0/000",      // invalid chain id
		"tiles/c/tile/8/0/000",     // a height in the path (tlog's layout, not C2SP's)
		"tiles/c/tile/data/000",    // a data tile
		"tiles/c/tile/0/000.p/256", // a partial tile as wide as a full one
		"tiles/c/tile/0/000.p/0",   // no width
		"tiles/c/tile/0/1000",      // N not in groups of three digits
		"tiles/c/tile/0/001/002",   // groups without 'x'
		"tiles/c/tile/-1/000",      // negative level
		"tiles/c/x/tile/0/000",     // deeper
		"checkpoints/c/00000000000000000001.checkpoint",
	} {
		_, _, err := ParseTileKey(k)
		assert.True(t, errors.Is(err, ErrNotTileKey), "%q: %v", k, err)
	}
}
