package verify

import (
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The SHA-256 of rows, two at a time, is internal/sha2x's (tested there);
// this file tests what verify does with the sums.

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
