package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// merkleFold computes the RFC 6962 Merkle tree hash of a batch's entry
// hashes in seq order, the footer's agentaudit.merkle_root (see
// docs/FORMAT.md and internal/merkle, whose RootHex it must equal): leaf =
// SHA-256(0x00 || entry_hash as 32 raw bytes), node = SHA-256(0x01 || left
// || right). It hashes level by level, pairing neighbours and moving an odd
// last node up unchanged, which gives RFC 6962's tree (split at the largest
// power of two below the size); the hashes of a level are independent, so
// they are computed two at a time (sumPadded2). It reuses its buffers: no
// allocation per entry.
type merkleFold struct {
	level [][32]byte
	// Padded SHA-256 inputs: two leaves, two nodes.
	leaf [2][64]byte
	node [2][128]byte
}

func newPadded(dst []byte, n int) {
	dst[n] = 0x80
	binary.BigEndian.PutUint64(dst[len(dst)-8:], uint64(n)<<3)
}

// root returns the hex root of the hashes in recs, or ok false when one is
// not 64 hex digits (its row has a hash_mismatch of its own).
func (m *merkleFold) root(recs []rec) (root [64]byte, ok bool) {
	n := len(recs)
	if n == 0 {
		h := sha256.Sum256(nil)
		hex.Encode(root[:], h[:])
		return root, true
	}
	for k := range 2 {
		m.leaf[k] = [64]byte{}
		newPadded(m.leaf[k][:], 33)
		m.node[k] = [128]byte{0: 0x01}
		newPadded(m.node[k][:], 65)
	}
	m.level = slices.Grow(m.level[:0], n)[:n]
	lv := m.level
	for i := 0; i < n; i += 2 {
		for k := 0; k < 2 && i+k < n; k++ {
			r := &recs[i+k]
			switch {
			case r.rawOK:
				copy(m.leaf[k][1:33], r.raw[:])
			case len(r.eh) != 64:
				return root, false
			default:
				if _, err := hex.Decode(m.leaf[k][1:33], r.eh); err != nil {
					return root, false
				}
			}
		}
		if i+1 < n {
			lv[i], lv[i+1] = sumPadded2(m.leaf[0][:], 33, m.leaf[1][:], 33)
		} else {
			lv[i] = sumPadded(m.leaf[0][:], 33)
		}
	}
	for n > 1 {
		half := n / 2
		for j := 0; j < half; j += 2 {
			copy(m.node[0][1:33], lv[2*j][:])
			copy(m.node[0][33:65], lv[2*j+1][:])
			if j+1 < half {
				copy(m.node[1][1:33], lv[2*j+2][:])
				copy(m.node[1][33:65], lv[2*j+3][:])
				lv[j], lv[j+1] = sumPadded2(m.node[0][:], 65, m.node[1][:], 65)
			} else {
				lv[j] = sumPadded(m.node[0][:], 65)
			}
		}
		if n%2 == 1 {
			lv[half] = lv[n-1]
		}
		n = half + n%2
	}
	hex.Encode(root[:], lv[0][:])
	return root, true
}
