// Package merkle computes the per-batch Merkle tree of entry hashes, RFC 6962
// style (github.com/transparency-dev/merkle), so that one entry's inclusion
// in a batch can be proved to a third party without the rest of the trail.
//
// The leaves are the batch's entry hashes in seq order, as raw 32-byte
// values: leaf hash = SHA-256(0x00 || entry_hash), node hash =
// SHA-256(0x01 || left || right), as RFC 6962 section 2.1 defines them.
//
// The tree is transparency-dev/merkle's: its compact ranges compute roots
// and proof nodes, its proof package lists and checks audit paths. SHA-256
// is crypto/sha256. Fold, the roots' hot path (one per sealed batch, one
// per verified file), hashes with crypto/sha256 into buffers it reuses
// rather than with rfc6962.Hasher, which allocates three times per hash:
// for 10,000 entries, 60,000 allocations (3.8 MiB) and 2.3 to 2.9 times
// the time (BenchmarkRoot10k, the Hasher, against BenchmarkRootHex10k, a
// Fold, in one run).
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
	nodes, err := proof.Inclusion(uint64(index), uint64(len(entryHashes)))
	if err != nil {
		return nil, fmt.Errorf("merkle: %w", err)
	}
	// The nodes are roots of perfect subtrees inside the tree: each is the
	// one hash of the compact range of its leaves.
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		begin, end := id.Coverage()
		r := rf.NewEmptyRange(begin)
		for _, h := range entryHashes[begin:end] {
			_ = r.Append(LeafHash(h), nil)
		}
		hashes[i] = r.Hashes()[0]
	}
	// Rehash folds the nodes along the right edge of an unbalanced tree
	// into the one node the path holds there (RFC 6962's subtree of the
	// last leaves); it fails only when the counts differ, which they do
	// not.
	path, err := nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("merkle: %w", err)
	}
	return path, nil
}

// VerifyInclusion checks that entryHash is leaf index of the tree of size
// leaves whose root is root. It returns nil or an error saying why not (a
// proof.RootMismatchError when the computed root differs).
func VerifyInclusion(entryHash []byte, index, size uint64, auditPath [][]byte, root []byte) error {
	return proof.VerifyInclusion(hasher, index, size, LeafHash(entryHash), auditPath, root)
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
