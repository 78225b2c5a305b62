package verify

import (
	"crypto/sha256"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/merkle"
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

// treeFold computes the compact range of a file's leaves with merkle.Fold,
// which keeps the hashes in an arena it reuses. One per worker; not safe
// for concurrent use.
type treeFold struct {
	fold merkle.Fold
}

// rangeOf returns the compact range of the chain's tree that the entries
// recs cover, or nil when they do not form one: seqs not consecutive (a
// gap, a duplicate), or an entry_hash that is not 64 hex digits. The leaves
// are the stored entry hashes, as the collector's tree has them: a row
// whose entry_hash was changed changes the tree.
func (f *treeFold) rangeOf(recs []rec) *compact.Range {
	leaves, err := f.fold.LeafHashes(nil, len(recs), entryHashOf(recs))
	if err != nil {
		return nil
	}
	return f.rangeOfLeaves(recs, leaves)
}

// rangeOfLeaves is rangeOf for entries whose leaf hashes (32 bytes each,
// merkleFold.leaves) are already computed.
func (f *treeFold) rangeOfLeaves(recs []rec, leaves []byte) *compact.Range {
	if len(recs) == 0 || recs[0].seq < 0 {
		return nil
	}
	first := recs[0].seq
	for i := range recs {
		if recs[i].seq != first+int64(i) {
			return nil
		}
	}
	hashes := f.fold.RangeOfLeaves(uint64(first), leaves[:len(recs)*sha256.Size])
	out, _ := chainRanges.NewRange(uint64(first), uint64(first)+uint64(len(recs)), hashes) // a valid range's hashes: no error
	return out
}
