// Package merkle computes the per-batch Merkle tree of entry hashes, RFC 6962
// style (github.com/transparency-dev/merkle), so that one entry's inclusion
// in a batch can be proved to a third party without the rest of the trail.
//
// The leaves are the batch's entry hashes in seq order, as raw 32-byte
// values: leaf hash = SHA-256(0x00 || entry_hash), node hash =
// SHA-256(0x01 || left || right), as RFC 6962 section 2.1 defines them.
package merkle // import "github.com/agentaudit/agentaudit/internal/merkle"

import (
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

var hasher = rfc6962.DefaultHasher

// LeafHash returns the RFC 6962 leaf hash of an entry hash:
// SHA-256(0x00 || entryHash).
func LeafHash(entryHash []byte) []byte { return hasher.HashLeaf(entryHash) }

// Root returns the RFC 6962 Merkle tree hash of the entry hashes, in order.
// The root of no entries is SHA-256 of the empty string.
func Root(entryHashes [][]byte) []byte {
	if len(entryHashes) == 0 {
		return hasher.EmptyRoot()
	}
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, h := range entryHashes {
		// Append only fails for hashes of the wrong shape, which a tree
		// built from leaf hashes never has.
		_ = r.Append(LeafHash(h), nil)
	}
	root, _ := r.GetRootHash(nil)
	return root
}

// RootHex is Root over hex-encoded entry hashes, returning hex. It fails on a
// string that is not 32 bytes of hex. It is the writer's hot path (one call
// per sealed batch): it runs a Fold, taken from a pool so that a writer
// sealing batch after batch allocates no tree.
func RootHex(entryHashes []string) (string, error) {
	f := folds.Get().(*Fold)
	defer folds.Put(f)
	root, err := f.Root(len(entryHashes), func(i int, dst *[32]byte) error {
		s := entryHashes[i]
		if len(s) != 64 {
			return fmt.Errorf("merkle: entry hash %d is not 32 bytes of hex: %q", i, s)
		}
		if _, err := hex.Decode(dst[:], []byte(s)); err != nil {
			return fmt.Errorf("merkle: entry hash %d is not 32 bytes of hex: %q", i, s)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(root[:]), nil
}

var folds = sync.Pool{New: func() any { return new(Fold) }}

// InclusionProof returns the audit path of leaf index in the tree of
// entryHashes (RFC 6962 section 2.1.1, PATH), from the leaf upwards.
func InclusionProof(entryHashes [][]byte, index int) ([][]byte, error) {
	if index < 0 || index >= len(entryHashes) {
		return nil, fmt.Errorf("merkle: index %d out of range for %d leaves", index, len(entryHashes))
	}
	leaves := make([][]byte, len(entryHashes))
	for i, h := range entryHashes {
		leaves[i] = LeafHash(h)
	}
	return path(index, leaves), nil
}

// VerifyInclusion checks that entryHash is leaf index of the tree of size
// leaves whose root is root. It returns nil or an error saying why not (a
// proof.RootMismatchError when the computed root differs).
func VerifyInclusion(entryHash []byte, index, size uint64, auditPath [][]byte, root []byte) error {
	return proof.VerifyInclusion(hasher, index, size, LeafHash(entryHash), auditPath, root)
}

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

// subtree is MTH over leaf hashes.
func subtree(leaves [][]byte) []byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := splitPoint(len(leaves))
	return hasher.HashChildren(subtree(leaves[:k]), subtree(leaves[k:]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

func decodeAll(hexes []string) ([][]byte, error) {
	out := make([][]byte, len(hexes))
	for i, s := range hexes {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("merkle: entry hash %d is not 32 bytes of hex: %q", i, s)
		}
		out[i] = b
	}
	return out, nil
}

// DecodeHashes decodes hex entry hashes into raw 32-byte values.
func DecodeHashes(hexes []string) ([][]byte, error) { return decodeAll(hexes) }
