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
