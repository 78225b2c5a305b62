package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// Consistency proofs between two checkpoints of format 2 of one chain
// (docs/FORMAT.md, "Consistency proofs"): the RFC 6962 proof that the
// chain's tree at the newer size extends the tree at the older one, read
// from the tiles beside the trail, and its check, which needs only the two
// checkpoints.

// ErrIncomparable: two checkpoints that no consistency proof can relate:
// of different chains, one of format 1 (no tree root), or the older one
// larger. It is a mistake in what was asked, not a finding about the
// trail.
var ErrIncomparable = errors.New("verify: no consistency proof between these checkpoints")

// ConsistencyProof returns the proof that newer's tree extends older's, read
// from the tiles of their chain stored beside src, and checked against
// both roots before it is returned. Errors: ErrIncomparable; a
// *MissingTilesError; tlogtree.ErrTilesMismatch (the tiles do not support
// newer's root); tlogtree.ErrProofFailed (the tiles support newer's root but
// the tree does not extend old's: a fork); else src's.
func ConsistencyProof(ctx context.Context, src store.Reader, older, newer checkpoint.Checkpoint) ([]tlog.Hash, error) {
	oldRoot, newRoot, err := comparable(older, newer)
	if err != nil {
		return nil, err
	}
	tr, err := Tiles(ctx, src, newer.ChainID)
	if err != nil {
		return nil, err
	}
	p, err := tr.ConsistencyProof(older.Size, newer.Size, newRoot)
	if err != nil {
		return nil, TilesError(ctx, src, newer.ChainID, err)
	}
	if err := tlogtree.CheckConsistency(older.Size, oldRoot, newer.Size, newRoot, p); err != nil {
		return nil, err
	}
	return p, nil
}

// CheckConsistency checks that p proves newer's tree extends older's, with
// the two checkpoints alone (tlogtree.CheckConsistency). Errors:
// ErrIncomparable, or one wrapping tlogtree.ErrProofFailed.
func CheckConsistency(older, newer checkpoint.Checkpoint, p []tlog.Hash) error {
	oldRoot, newRoot, err := comparable(older, newer)
	if err != nil {
		return err
	}
	return tlogtree.CheckConsistency(older.Size, oldRoot, newer.Size, newRoot, p)
}

const noTree = "is of format 1, without a tree root: only checkpoints of format 2 can be proved consistent"

// comparable checks that a consistency proof can relate old and new, and
// returns their roots.
func comparable(older, newer checkpoint.Checkpoint) (oldRoot, newRoot tlog.Hash, err error) {
	switch {
	case older.ChainID != newer.ChainID:
		return oldRoot, newRoot, fmt.Errorf("%w: the older is of chain %q, the newer of chain %q", ErrIncomparable, older.ChainID, newer.ChainID)
	case older.Format() != 2:
		return oldRoot, newRoot, fmt.Errorf("%w: the older checkpoint (chain %s at size %d) %s", ErrIncomparable, older.ChainID, older.Size, noTree)
	case newer.Format() != 2:
		return oldRoot, newRoot, fmt.Errorf("%w: the newer checkpoint (chain %s at size %d) %s", ErrIncomparable, newer.ChainID, newer.Size, noTree)
	case older.Size > newer.Size:
		return oldRoot, newRoot, fmt.Errorf("%w: the older checkpoint (size %d) is larger than the newer (size %d): give them the other way round",
			ErrIncomparable, older.Size, newer.Size)
	}
	if oldRoot, err = TreeRoot(older); err == nil {
		newRoot, err = TreeRoot(newer)
	}
	return oldRoot, newRoot, err
}

// TreeRoot returns the root of a checkpoint of format 2 as a tlog.Hash.
func TreeRoot(c checkpoint.Checkpoint) (tlog.Hash, error) {
	b, err := hex.DecodeString(c.Root)
	if err != nil || len(b) != tlog.HashSize {
		return tlog.Hash{}, fmt.Errorf("%w: chain %s at size %d: root %q is not a tree root", ErrIncomparable, c.ChainID, c.Size, c.Root)
	}
	return tlog.Hash(b), nil
}
