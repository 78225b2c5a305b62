package merkle

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// foldSizes are every tree shape up to 300 leaves and some larger ones,
// then smaller ones again, so that one Fold reused meets buffers longer than
// the tree.
var foldSizes = func() []int {
	var ns []int
	for n := range 301 {
		ns = append(ns, n)
	}
	return append(ns, 1000, 4097, 10_000, 3, 1, 0, 257)
}()

// TestFoldMatchesRoot: the level-by-level Fold gives the root Root gives
// (transparency-dev/merkle's compact range) and the RFC 6962 recursion,
// from raw and from hex entry hashes, and RootHex gives it in hex.
func TestFoldMatchesRoot(t *testing.T) {
	all := hashes(10_000)
	var raw, hx Fold
	for _, n := range foldSizes {
		hs := all[:n]
		want := Root(hs)
		if n > 0 && n <= 300 {
			leaves := make([][]byte, n)
			for i, h := range hs {
				leaves[i] = LeafHash(h)
			}
			require.Equal(t, want, subtree(leaves), "n=%d: Root and the recursion", n)
		}
		hexes := make([]string, n)
		for i, h := range hs {
			hexes[i] = hex.EncodeToString(h)
		}

		got, err := raw.Root(n, func(i int, dst *[32]byte) error {
			copy(dst[:], hs[i])
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, want, got[:], "n=%d: raw", n)

		got, err = hx.Root(n, func(i int, dst *[32]byte) error {
			_, err := hex.Decode(dst[:], []byte(hexes[i]))
			return err
		})
		require.NoError(t, err)
		require.Equal(t, want, got[:], "n=%d: hex", n)

		gotHex, err := RootHex(hexes)
		require.NoError(t, err)
		require.Equal(t, hex.EncodeToString(want), gotHex, "n=%d: RootHex", n)
	}
}

// TestRootHexMalformed: RootHex refuses an entry hash that is not 64 hex
// digits, naming the first such (as before it used Fold); upper-case hex
// is hex.
func TestRootHexMalformed(t *testing.T) {
	hexes := make([]string, 5)
	for i, h := range hashes(5) {
		hexes[i] = hex.EncodeToString(h)
	}
	bad := func(i int, s string) []string {
		out := append([]string(nil), hexes...)
		out[i] = s
		return out
	}
	for _, tc := range []struct {
		hexes []string
		err   string
	}{
		{[]string{"abc"}, `merkle: entry hash 0 is not 32 bytes of hex: "abc"`},
		{bad(3, ""), `merkle: entry hash 3 is not 32 bytes of hex: ""`},
		{bad(4, hexes[4]+"00"), `merkle: entry hash 4 is not 32 bytes of hex: "` + hexes[4] + `00"`},
		{bad(2, strings.Repeat("z", 64)), `merkle: entry hash 2 is not 32 bytes of hex: "` + strings.Repeat("z", 64) + `"`},
		{bad(1, hexes[1][:63]+"g"), `merkle: entry hash 1 is not 32 bytes of hex: "` + hexes[1][:63] + `g"`},
	} {
		got, err := RootHex(tc.hexes)
		assert.EqualError(t, err, tc.err)
		assert.Empty(t, got)
	}
	upper := bad(0, strings.ToUpper(hexes[0]))
	got, err := RootHex(upper)
	require.NoError(t, err)
	want, err := RootHex(hexes)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

// TestFoldError: Fold returns the first error of entryHash as it is.
func TestFoldError(t *testing.T) {
	errBad := errors.New("bad entry hash")
	var f Fold
	var asked []int
	_, err := f.Root(9, func(i int, dst *[32]byte) error {
		asked = append(asked, i)
		if i >= 5 {
			return errBad
		}
		return nil
	})
	assert.ErrorIs(t, err, errBad)
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5}, asked)
}

// TestFoldAllocs: a Fold reused for a tree no larger than before allocates
// nothing (the verifier runs one per worker, file after file).
func TestFoldAllocs(t *testing.T) {
	hs := hashes(1000)
	var f Fold
	allocs := testing.AllocsPerRun(10, func() {
		_, _ = f.Root(len(hs), func(i int, dst *[32]byte) error {
			copy(dst[:], hs[i])
			return nil
		})
	})
	assert.Zero(t, allocs)
}

// TestFoldRange: the ranges RangeOfLeaves gives for consecutive runs of
// leaves, merged in order, give the root of all of them, whatever the
// cuts; an error of entryHash comes back from LeafHashes as it is.
func TestFoldRange(t *testing.T) {
	all := hashes(700)
	var f Fold
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	for _, cuts := range [][]int{{700}, {1, 699}, {256, 444}, {3, 250, 7, 440}, {255, 1, 1, 443}} {
		whole := rf.NewEmptyRange(0)
		begin := 0
		for _, n := range cuts {
			leaves, err := f.LeafHashes(nil, n, func(i int, dst *[32]byte) error {
				copy(dst[:], all[begin+i])
				return nil
			})
			require.NoError(t, err)
			r, err := rf.NewRange(uint64(begin), uint64(begin+n), f.RangeOfLeaves(uint64(begin), leaves))
			require.NoError(t, err, "cuts %v: a valid range from %d", cuts, begin)
			require.NoError(t, whole.AppendRange(r, nil))
			begin += n
		}
		root, err := whole.GetRootHash(nil)
		require.NoError(t, err)
		assert.Equal(t, Root(all), root, "cuts %v", cuts)
	}
	stop := errors.New("stop")
	_, err := f.LeafHashes(nil, 3, func(i int, _ *[32]byte) error { return stop })
	assert.ErrorIs(t, err, stop)
}

// TestFoldOfLeaves: leaf hashes computed once give, through RootOfLeaves,
// what Root gives from the entry hashes, and through RangeOfLeaves the
// range transparency-dev/merkle builds over the same leaves with
// rfc6962's hasher, for every tree shape and ranges that begin anywhere;
// LeafHashes returns the first error of entryHash as it is, and a Fold
// reused allocates nothing.
func TestFoldOfLeaves(t *testing.T) {
	all := hashes(10_000)
	var f, g Fold
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	var leaves []byte
	for _, n := range foldSizes {
		entryHash := func(i int, dst *[32]byte) error {
			copy(dst[:], all[i])
			return nil
		}
		var err error
		leaves, err = f.LeafHashes(leaves[:0], n, entryHash)
		require.NoError(t, err)
		require.Len(t, leaves, 32*n)
		for i := range min(n, 3) {
			assert.Equal(t, LeafHash(all[i]), leaves[32*i:32*(i+1)], "n=%d: leaf %d", n, i)
		}
		want, err := g.Root(n, entryHash)
		require.NoError(t, err)
		assert.Equal(t, want, f.RootOfLeaves(leaves), "n=%d", n)
		for _, begin := range []uint64{0, 1, 255, 256, 1000, 4097} {
			want := rf.NewEmptyRange(begin)
			for i := range n {
				require.NoError(t, want.Append(LeafHash(all[i]), nil))
			}
			assert.Equal(t, append([][]byte{}, want.Hashes()...), f.RangeOfLeaves(begin, leaves), "n=%d from %d", n, begin)
		}
	}
	stop := errors.New("stop")
	_, err := f.LeafHashes(nil, 9, func(i int, _ *[32]byte) error {
		if i == 4 {
			return stop
		}
		return nil
	})
	assert.ErrorIs(t, err, stop)

	hs := all[:1000]
	buf := make([]byte, 0, 32*len(hs))
	allocs := testing.AllocsPerRun(10, func() {
		leaves, _ := f.LeafHashes(buf[:0], len(hs), func(i int, dst *[32]byte) error {
			copy(dst[:], hs[i])
			return nil
		})
		_ = f.RootOfLeaves(leaves)
	})
	assert.Zero(t, allocs)
}
