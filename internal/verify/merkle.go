package verify

import (
	"encoding/hex"
	"errors"

	"github.com/agentaudit/agentaudit/internal/merkle"
)

// merkleFold recomputes a file's RFC 6962 Merkle root, the footer's
// agentaudit.merkle_root (see docs/FORMAT.md), with internal/merkle's Fold,
// the writer's own: leaves are the rows' entry hashes, in seq order. One per
// worker: it reuses its buffers, no allocation per entry.
type merkleFold struct{ merkle.Fold }

// errNotHex: an entry_hash is not 64 hex digits (its row has a
// hash_mismatch of its own).
var errNotHex = errors.New("entry_hash is not 64 hex digits")

// leaves appends to dst the RFC 6962 leaf hashes of the entry hashes in
// recs, for the file's root and the chain's tree alike, or returns ok
// false when one is not 64 hex digits.
func (m *merkleFold) leaves(dst []byte, recs []rec) ([]byte, bool) {
	leaves, err := m.LeafHashes(dst, len(recs), entryHashOf(recs))
	return leaves, err == nil
}

// entryHashOf is merkle.Fold's entryHash for recs: each row's entry hash,
// raw where it was just recomputed (no hex decoding), else its stored hex
// decoded; errNotHex when that is not 64 hex digits.
func entryHashOf(recs []rec) func(i int, dst *[32]byte) error {
	return func(i int, dst *[32]byte) error {
		r := &recs[i]
		switch {
		case r.rawOK:
			*dst = r.raw
		case len(r.eh) != 64:
			return errNotHex
		default:
			if _, err := hex.Decode(dst[:], r.eh); err != nil {
				return errNotHex
			}
		}
		return nil
	}
}

// rootOfLeaves returns the hex root of the leaf hashes leaves returned.
func (m *merkleFold) rootOfLeaves(leaves []byte) (root [64]byte) {
	sum := m.RootOfLeaves(leaves)
	hex.Encode(root[:], sum[:])
	return root
}
