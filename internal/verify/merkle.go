package verify

import (
	"crypto/sha256"
	"encoding/hex"
)

// merkleFold computes the RFC 6962 Merkle tree hash of a batch's entry
// hashes in seq order, the footer's agentaudit.merkle_root (see
// docs/FORMAT.md and internal/merkle, whose RootHex it must equal): leaf =
// SHA-256(0x00 || entry_hash as 32 raw bytes), node = SHA-256(0x01 || left
// || right). It folds perfect subtrees on a stack, reusing its buffers: no
// allocation per entry.
type merkleFold struct {
	stack []merkleNode
	leaf  [33]byte
	pair  [65]byte
}

type merkleNode struct {
	hash [32]byte
	size uint64
}

// root returns the hex root of the hashes in recs, or ok false when one is
// not 64 hex digits (its row has a hash_mismatch of its own).
func (m *merkleFold) root(recs []rec) (root [64]byte, ok bool) {
	m.stack = m.stack[:0]
	m.pair[0] = 0x01
	for i := range recs {
		r := &recs[i]
		switch {
		case r.rawOK:
			copy(m.leaf[1:], r.raw[:])
		case len(r.eh) != 64:
			return root, false
		default:
			if _, err := hex.Decode(m.leaf[1:], r.eh); err != nil {
				return root, false
			}
		}
		n := merkleNode{hash: sha256.Sum256(m.leaf[:]), size: 1}
		for len(m.stack) > 0 && m.stack[len(m.stack)-1].size == n.size {
			top := m.stack[len(m.stack)-1]
			m.stack = m.stack[:len(m.stack)-1]
			copy(m.pair[1:33], top.hash[:])
			copy(m.pair[33:], n.hash[:])
			n = merkleNode{hash: sha256.Sum256(m.pair[:]), size: 2 * n.size}
		}
		m.stack = append(m.stack, n)
	}
	var h [32]byte
	if len(m.stack) == 0 {
		h = sha256.Sum256(nil)
	} else {
		h = m.stack[len(m.stack)-1].hash
		for i := len(m.stack) - 2; i >= 0; i-- {
			copy(m.pair[1:33], m.stack[i].hash[:])
			copy(m.pair[33:], h[:])
			h = sha256.Sum256(m.pair[:])
		}
	}
	hex.Encode(root[:], h[:])
	return root, true
}
