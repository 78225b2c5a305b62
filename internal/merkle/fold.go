package merkle

import (
	"crypto/sha256"
	"slices"

	"github.com/agentaudit/agentaudit/internal/sha2x"
)

// Fold computes RFC 6962 Merkle tree hashes fast, for the writer (RootHex)
// and the verifier: it hashes level by level, pairing neighbours and moving
// an odd last node up unchanged, which gives RFC 6962's tree (split at the
// largest power of two below the size). The hashes of a level are
// independent, so they are computed two at a time (sha2x.Sum2Padded). A
// Fold reuses its buffers: after the first tree of a size, no allocation.
// The zero Fold is ready to use; it is not safe for concurrent use.
type Fold struct {
	level [][32]byte
	// Padded SHA-256 inputs: two leaves (0x00 || entry hash), two nodes
	// (0x01 || left || right).
	leaf [2][64]byte
	node [2][128]byte
}

// Root returns the Merkle tree hash of n entry hashes. entryHash(i, dst)
// writes entry hash i (32 bytes) into dst, or returns an error, which Root
// returns as it is, for the first such i. The root of no entries is
// SHA-256 of the empty string.
func (f *Fold) Root(n int, entryHash func(i int, dst *[32]byte) error) ([32]byte, error) {
	if n == 0 {
		return sha256.Sum256(nil), nil
	}
	// Pad in place (the arrays have the room); only the hashes between the
	// prefix byte and the padding change below.
	for k := range 2 {
		f.leaf[k] = [64]byte{}
		sha2x.AppendPadding(f.leaf[k][:1+32])
		f.node[k] = [128]byte{0: 0x01}
		sha2x.AppendPadding(f.node[k][:1+64])
	}
	f.level = slices.Grow(f.level[:0], n)[:n]
	lv := f.level
	for i := 0; i < n; i += 2 {
		for k := 0; k < 2 && i+k < n; k++ {
			if err := entryHash(i+k, (*[32]byte)(f.leaf[k][1:33])); err != nil {
				return [32]byte{}, err
			}
		}
		if i+1 < n {
			lv[i], lv[i+1] = sha2x.Sum2Padded(f.leaf[0][:], 33, f.leaf[1][:], 33)
		} else {
			lv[i] = sha2x.SumPadded(f.leaf[0][:], 33)
		}
	}
	for n > 1 {
		half := n / 2
		for j := 0; j < half; j += 2 {
			copy(f.node[0][1:33], lv[2*j][:])
			copy(f.node[0][33:65], lv[2*j+1][:])
			if j+1 < half {
				copy(f.node[1][1:33], lv[2*j+2][:])
				copy(f.node[1][33:65], lv[2*j+3][:])
				lv[j], lv[j+1] = sha2x.Sum2Padded(f.node[0][:], 65, f.node[1][:], 65)
			} else {
				lv[j] = sha2x.SumPadded(f.node[0][:], 65)
			}
		}
		if n%2 == 1 {
			lv[half] = lv[n-1]
		}
		n = half + n%2
	}
	return lv[0], nil
}
