package sha2x

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSumPaddedMatchesSHA256: Sum2Padded and SumPadded (two messages at a
// time, or one) equal crypto/sha256 for every length up to 300 bytes and
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
		pa, pb := AppendPadding(a), AppendPadding(b)
		require.Zero(t, len(pa)%64)
		require.Same(t, &a[:1][0], &pa[0], "padded in place, within the capacity")
		require.Less(t, len(pa)-na, 64+9)
		da, db := Sum2Padded(pa, na, pb, nb)
		require.Equal(t, sha256.Sum256(a), da, "%d bytes (with %d)", na, nb)
		require.Equal(t, sha256.Sum256(b), db, "%d bytes (with %d)", nb, na)
		require.Equal(t, sha256.Sum256(a), SumPadded(pa, na), "%d bytes", na)
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
