package merkle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func hashes(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		s := sha256.Sum256([]byte(fmt.Sprintf("entry %d", i)))
		out[i] = s[:]
	}
	return out
}

func sum(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// Known answers from the definition, by hand: a leaf is SHA-256(0x00 || e),
// a node SHA-256(0x01 || l || r).
func TestRootKnownAnswers(t *testing.T) {
	hs := hashes(3)
	l0, l1, l2 := sum([]byte{0}, hs[0]), sum([]byte{0}, hs[1]), sum([]byte{0}, hs[2])
	assert.Equal(t, sum(), Root(nil), "empty tree")
	assert.Equal(t, l0, Root(hs[:1]), "one leaf")
	assert.Equal(t, sum([]byte{1}, l0, l1), Root(hs[:2]))
	assert.Equal(t, sum([]byte{1}, sum([]byte{1}, l0, l1), l2), Root(hs), "an unbalanced tree splits at the largest power of two")

	// A reader can reproduce the one-leaf root of an all-zero entry hash:
	//   printf '\x00' | cat - <(head -c 32 /dev/zero) | sha256sum
	// = 7f9c9e31ac8256ca2f258583df262dbc7d6f68f2a03043d5c99a4ae5a7396ce9
	zero := make([]byte, 32)
	assert.Equal(t, "7f9c9e31ac8256ca2f258583df262dbc7d6f68f2a03043d5c99a4ae5a7396ce9", hex.EncodeToString(Root([][]byte{zero})))
}

func TestInclusionProofsVerify(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 31, 100, 1000} {
		hs := hashes(n)
		root := Root(hs)
		for _, i := range []int{0, n / 2, n - 1} {
			p, err := InclusionProof(hs, i)
			require.NoError(t, err)
			assert.NoError(t, VerifyInclusion(hs[i], uint64(i), uint64(n), p, root), "n=%d i=%d", n, i)
			// Negative: the proof does not fit another leaf, index or root.
			other := sum([]byte("not in the batch"))
			assert.Error(t, VerifyInclusion(other, uint64(i), uint64(n), p, root), "n=%d i=%d: wrong leaf", n, i)
			if n > 1 {
				assert.Error(t, VerifyInclusion(hs[i], uint64((i+1)%n), uint64(n), p, root), "n=%d i=%d: wrong index", n, i)
			}
			assert.Error(t, VerifyInclusion(hs[i], uint64(i), uint64(n), p, sum(root)), "n=%d i=%d: wrong root", n, i)
		}
	}
	_, err := InclusionProof(hashes(3), 3)
	assert.Error(t, err)
}

// TestInclusionProofMatchesPath: the library's proof nodes give RFC 6962's
// PATH (section 2.1.1, path below), node for node, for every leaf of every
// tree up to 70 leaves and some leaves of larger ones.
func TestInclusionProofMatchesPath(t *testing.T) {
	all := hashes(1000)
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 69, 70, 257, 1000} {
		hs := all[:n]
		leaves := make([][]byte, n)
		for i, h := range hs {
			leaves[i] = LeafHash(h)
		}
		for i := range n {
			if n > 70 && i%37 != 0 && i != n-1 {
				continue
			}
			got, err := InclusionProof(hs, i)
			require.NoError(t, err)
			want := path(i, leaves)
			require.Len(t, got, len(want), "n=%d i=%d", n, i)
			for k := range want {
				require.Equal(t, want[k], got[k], "n=%d i=%d node %d", n, i, k)
			}
		}
	}
}

// path is PATH(m, D[n]) of RFC 6962 section 2.1.1 over leaf hashes, from
// the leaf upwards.
func path(m int, leaves [][]byte) [][]byte {
	n := len(leaves)
	if n <= 1 {
		return nil
	}
	k := splitPoint(n)
	if m < k {
		return append(path(m, leaves[:k]), subtree(leaves[k:]))
	}
	return append(path(m-k, leaves[k:]), subtree(leaves[:k]))
}

// subtree is MTH of RFC 6962 section 2.1 over leaf hashes.
func subtree(leaves [][]byte) []byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := splitPoint(len(leaves))
	return sum([]byte{1}, subtree(leaves[:k]), subtree(leaves[k:]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

func TestRootHex(t *testing.T) {
	// The folding RootHex agrees with the library's compact range for every
	// shape of tree.
	for n := range 70 {
		hs := hashes(n)
		hexes := []string{}
		for _, h := range hs {
			hexes = append(hexes, hex.EncodeToString(h))
		}
		got, err := RootHex(hexes)
		require.NoError(t, err)
		assert.Equal(t, hex.EncodeToString(Root(hs)), got, "n=%d", n)
	}
	hs := hashes(5)
	_, err := RootHex([]string{"abc"})
	assert.Error(t, err)
	assert.False(t, bytes.Equal(Root(hs), Root(append(hs[1:], hs[0]))), "order matters")
}

func BenchmarkRootHex10k(b *testing.B) {
	var hexes []string
	for _, h := range hashes(10_000) {
		hexes = append(hexes, hex.EncodeToString(h))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RootHex(hexes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRoot10k(b *testing.B) {
	hs := hashes(10_000)
	b.ReportAllocs()
	for b.Loop() {
		Root(hs)
	}
}
