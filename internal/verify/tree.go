package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The chain's tree (docs/FORMAT.md, "The chain's tree"): one RFC 6962 tree
// over all the entries of a chain, leaf i the entry of seq i, whose root a
// checkpoint of format 2 signs. Verify computes it while it reads the
// files, without reading any twice: each file gives the compact range of
// its leaves (at most 64 hashes, the perfect subtrees of the chain's tree
// that [first seq, last seq + 1) covers), and the files' ranges, merged in
// seq order, give the root at every file's end.

// chainRanges makes the compact ranges that are merged across files: one
// factory, as compact.Range.AppendRange requires.
var chainRanges = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// cloneRange copies r, whose hashes a later Append may overwrite.
func cloneRange(r *compact.Range) *compact.Range {
	c, _ := chainRanges.NewRange(r.Begin(), r.End(), slices.Clone(r.Hashes())) // r's own hashes: no error
	return c
}

// treeFold computes the compact range of a file's leaves, as merkle.Fold
// computes the batch root: hashes in an arena it reuses, no allocation per
// entry. One per worker; not safe for concurrent use.
type treeFold struct {
	rf    *compact.RangeFactory
	arena []byte
	msg   [1 + 2*sha256.Size]byte
}

// rangeOf returns the compact range of the chain's tree that the entries
// recs cover, or nil when they do not form one: seqs not consecutive (a
// gap, a duplicate), or an entry_hash that is not 64 hex digits. The leaves
// are the stored entry hashes, as the collector's tree has them: a row
// whose entry_hash was changed changes the tree.
func (f *treeFold) rangeOf(recs []rec) *compact.Range {
	if len(recs) == 0 || recs[0].seq < 0 {
		return nil
	}
	if f.rf == nil {
		f.rf = &compact.RangeFactory{Hash: f.hashChildren}
	}
	if need := 2 * len(recs) * sha256.Size; cap(f.arena) < need {
		f.arena = make([]byte, 0, need)
	}
	f.arena = f.arena[:0]
	first := recs[0].seq
	r := f.rf.NewEmptyRange(uint64(first))
	for i := range recs {
		x := &recs[i]
		if x.seq != first+int64(i) {
			return nil
		}
		f.msg[0] = rfc6962.RFC6962LeafHashPrefix
		leaf := (*[32]byte)(f.msg[1:33])
		switch {
		case x.rawOK:
			*leaf = x.raw
		case len(x.eh) != 64:
			return nil
		default:
			if _, err := hex.Decode(leaf[:], x.eh); err != nil {
				return nil
			}
		}
		// Append fails only on a corrupt range, which this is not.
		_ = r.Append(f.sum(f.msg[:1+sha256.Size]), nil)
	}
	// Out of the arena, into the factory the merge uses.
	hashes := make([][]byte, len(r.Hashes()))
	for i, h := range r.Hashes() {
		hashes[i] = slices.Clone(h)
	}
	out, _ := chainRanges.NewRange(r.Begin(), r.End(), hashes) // a valid range's hashes: no error
	return out
}

// hashChildren is the RFC 6962 node hash, SHA-256(0x01 || l || r).
func (f *treeFold) hashChildren(l, r []byte) []byte {
	f.msg[0] = rfc6962.RFC6962NodeHashPrefix
	copy(f.msg[1:33], l)
	copy(f.msg[33:65], r)
	return f.sum(f.msg[:])
}

// sum returns SHA-256 of m in the arena's next slot.
func (f *treeFold) sum(m []byte) []byte {
	s := sha256.Sum256(m)
	if len(f.arena)+sha256.Size > cap(f.arena) {
		f.arena = make([]byte, 0, 2*cap(f.arena)+sha256.Size)
	}
	n := len(f.arena)
	f.arena = append(f.arena, s[:]...)
	return f.arena[n : n+sha256.Size : n+sha256.Size]
}
