package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSumPaddedMatchesSHA256: the package's SHA-256 (two messages at a
// time, or one) equals crypto/sha256 for every length up to 300 bytes and
// random ones up to 5000, and large ones up to 1 MiB, each paired with
// messages of other lengths.
func TestSumPaddedMatchesSHA256(t *testing.T) {
	t.Logf("SHA-NI: %v", useSHANI)
	rng := rand.New(rand.NewPCG(3, 4))
	msg := func(n int) []byte {
		b := make([]byte, n, n+72)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	check := func(na, nb int) {
		a, b := msg(na), msg(nb)
		pa, pb := appendPadding(a), appendPadding(b)
		require.Zero(t, len(pa)%64)
		require.Less(t, len(pa)-na, 64+9)
		da, db := sumPadded2(pa, na, pb, nb)
		require.Equal(t, sha256.Sum256(a), da, "%d bytes (with %d)", na, nb)
		require.Equal(t, sha256.Sum256(b), db, "%d bytes (with %d)", nb, na)
		require.Equal(t, sha256.Sum256(a), sumPadded(pa, na), "%d bytes", na)
	}
	for n := 0; n <= 300; n++ {
		check(n, n)
		check(n, rng.IntN(300))
		check(rng.IntN(300), n)
	}
	for range 300 {
		check(rng.IntN(5000), rng.IntN(5000))
	}
	// Entries up to the value limit (64 KiB per value, several values) and
	// beyond: pairs of very different lengths.
	for _, n := range []int{64 << 10, 64<<10 + 1, 300 << 10, 1<<20 + 13} {
		check(n, rng.IntN(5000))
		check(rng.IntN(5000), n)
		check(n, n-64)
	}
}

// TestHexEncode: hexEncode is hex.EncodeToString for random hashes and
// every byte value.
func TestHexEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 300 {
		var sum [32]byte
		for i := range sum {
			sum[i] = byte(rng.Uint32())
			if n < 256/32*8 {
				sum[i] = byte(n*32 + i)
			}
		}
		var hx [64]byte
		hexEncode(&hx, &sum)
		require.Equal(t, hex.EncodeToString(sum[:]), string(hx[:]))
	}
}
