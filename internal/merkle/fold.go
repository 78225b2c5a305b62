package merkle

import (
	"crypto/sha256"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Fold computes RFC 6962 Merkle tree hashes for the writer (RootHex), the
// verifier and review's proofs, and the compact ranges of a file's leaves
// that verify merges into the chain's tree (RangeOfLeaves):
// transparency-dev/merkle's compact range builds the tree, leaf by leaf,
// and crypto/sha256 hashes each leaf and node from a buffer the Fold
// keeps. The hashes live in an arena the Fold reuses,
// not in a slice per node as rfc6962.Hasher returns them: after the first
// tree of a size, no allocation. The zero Fold is ready to use; it is not
// safe for concurrent use.
type Fold struct {
	self *Fold // the Fold whose arena empty hashes into; nil or another after a copy
	// empty is an empty range whose hashes' backing array has room for 64,
	// one per level: r starts as a copy of it, for each tree from 0.
	empty, r *compact.Range
	rf       *compact.RangeFactory // hashes with hashChildren
	// arena holds the tree's node hashes, 32 bytes each, every one in its
	// own slot: the range may keep any of them until Root returns.
	arena []byte
	// leaves holds Root's leaf hashes (LeafHashes), for the same reason.
	leaves []byte
	// msg is one hash's input: 0x00 || entry hash, or 0x01 || left || right.
	msg [1 + 2*sha256.Size]byte
}

// Root returns the Merkle tree hash of n entry hashes. entryHash(i, dst)
// writes entry hash i (32 bytes) into dst, or returns an error, which Root
// returns as it is, for the first such i. The root of no entries is
// SHA-256 of the empty string.
func (f *Fold) Root(n int, entryHash func(i int, dst *[32]byte) error) ([32]byte, error) {
	leaves, err := f.LeafHashes(f.leaves[:0], n, entryHash)
	if err != nil {
		return [32]byte{}, err
	}
	f.leaves = leaves
	return f.RootOfLeaves(leaves), nil
}

// LeafHashes appends to dst the RFC 6962 leaf hash, SHA-256(0x00 || entry
// hash), of each of n entry hashes, as entryHash writes them, and returns
// it: for a caller that builds two trees over the same leaves (verify: a
// file's root and the chain's tree) with RootOfLeaves and RangeOfLeaves.
// Errors as Root's.
func (f *Fold) LeafHashes(dst []byte, n int, entryHash func(i int, dst *[32]byte) error) ([]byte, error) {
	dst = slices.Grow(dst, n*sha256.Size)
	for i := range n {
		f.msg[0] = rfc6962.RFC6962LeafHashPrefix
		if err := entryHash(i, (*[32]byte)(f.msg[1:33])); err != nil {
			return nil, err
		}
		s := sha256.Sum256(f.msg[:1+sha256.Size])
		dst = append(dst, s[:]...)
	}
	return dst, nil
}

// RootOfLeaves is Root for the leaf hashes LeafHashes returned (32 bytes
// each).
func (f *Fold) RootOfLeaves(leaves []byte) [32]byte {
	n := len(leaves) / sha256.Size
	if n == 0 {
		return sha256.Sum256(nil)
	}
	root, _ := f.fold(0, leaves).GetRootHash(nil) // begins at 0: no error
	return [32]byte(root)
}

// RangeOfLeaves returns the compact range (transparency-dev/merkle's
// compact.Range hashes, at most 64, in its order) of leaves [begin,
// begin+n) of a larger tree whose leaf begin+i is leaf hash i of leaves
// (LeafHashes): the perfect subtrees those leaves make, which ranges of
// the leaves before and after extend to the tree's root. The hashes are
// the caller's.
func (f *Fold) RangeOfLeaves(begin uint64, leaves []byte) [][]byte {
	return cloneHashes(f.fold(begin, leaves).Hashes())
}

// cloneHashes copies a range's hashes out of the arena.
func cloneHashes(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = append([]byte(nil), h...)
	}
	return out
}

// fold builds the compact range from begin of the leaf hashes in leaves
// (32 bytes each), which must stay as they are until the range is done
// with, its node hashes in the arena.
func (f *Fold) fold(begin uint64, leaves []byte) *compact.Range {
	n := len(leaves) / sha256.Size
	if f.self != f {
		f.self = f
		f.rf = &compact.RangeFactory{Hash: f.hashChildren}
		// NewRange of no hashes cannot fail.
		f.empty, _ = f.rf.NewRange(0, 0, make([][]byte, 0, 64))
		f.r = new(compact.Range)
	}
	// A tree of n leaves has n-1 node hashes; a range that does not begin
	// at 0 may merge into fewer.
	if need := n * sha256.Size; cap(f.arena) < need {
		f.arena = make([]byte, 0, need)
	}
	f.arena = f.arena[:0]
	r := f.r
	if begin == 0 {
		*r = *f.empty
	} else {
		r = f.rf.NewEmptyRange(begin)
	}
	for i := range n {
		// Append fails only on a corrupt range, which one built leaf by
		// leaf from empty is not.
		_ = r.Append(leaves[i*sha256.Size:(i+1)*sha256.Size:(i+1)*sha256.Size], nil)
	}
	return r
}

// hashChildren is the RFC 6962 node hash, SHA-256(0x01 || l || r), for the
// compact range.
func (f *Fold) hashChildren(l, r []byte) []byte {
	f.msg[0] = rfc6962.RFC6962NodeHashPrefix
	copy(f.msg[1:33], l)
	copy(f.msg[33:65], r)
	return f.sum(f.msg[:])
}

// sum returns SHA-256 of m in the arena's next slot.
func (f *Fold) sum(m []byte) []byte {
	s := sha256.Sum256(m)
	if len(f.arena)+sha256.Size > cap(f.arena) {
		// More hashes than a tree has: a new arena, the old one's hashes
		// stay where the range holds them.
		f.arena = make([]byte, 0, 2*cap(f.arena)+sha256.Size)
	}
	n := len(f.arena)
	f.arena = append(f.arena, s[:]...)
	return f.arena[n : n+sha256.Size : n+sha256.Size]
}
