package verify

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// rootCheck is a checkpoint of format 2 whose signature verified: its
// root is compared with the tree of the chain's entries (tree.go).
type rootCheck struct {
	c      checkpoint.Checkpoint
	add    addFunc
	stored bool
}

// rootRead is a root check whose size falls inside a file: the file is
// read again for the range of its rows up to size (prefix holds the
// chain's range up to the file's first seq).
type rootRead struct {
	rootCheck
	file   string
	prefix *compact.Range
}

// checkRoots compares each checkpoint's root with the chain's tree at its
// size, computed from the files' ranges merged in seq order (from a
// start's range, in an incremental verification). The range at each
// stored checkpoint whose root matched is offered to rep (TreeRange).
func checkRoots(ctx context.Context, src store.Reader, files chainFiles, checks []rootCheck, starts map[string]*compact.Range, rep *Report) error {
	byChain := map[string][]rootCheck{}
	for _, rc := range checks {
		byChain[rc.c.ChainID] = append(byChain[rc.c.ChainID], rc)
	}
	ids := make([]string, 0, len(byChain))
	for id := range byChain {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		cs := byChain[id]
		slices.SortStableFunc(cs, func(a, b rootCheck) int { return cmp.Compare(a.c.Size, b.c.Size) })
		var start *compact.Range
		if r, ok := starts[id]; ok {
			start = cloneRange(r)
		}
		reads, unchecked, at := walkTree(files[id], cs, start, rep.matched)
		if unchecked > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("chain %s: the tree root of %d checkpoints not checked: the chain's files do not line up after seq %d (see the violations)",
				id, unchecked, at-1))
		}
		for _, rr := range reads {
			r, err := reread(ctx, src, rr.file, rr.c.Size-1)
			if err != nil {
				return err
			}
			if r.pickedTree == nil {
				continue // the file's rows do not line up: violations of their own
			}
			if err := rr.prefix.AppendRange(r.pickedTree, nil); err != nil {
				return fmt.Errorf("verify: chain %s: merging %s into the tree: %w (bug)", id, rr.file, err)
			}
			compareRoot(rr.rootCheck, rr.prefix, rep.matched)
		}
	}
	return nil
}

// walkTree merges the ranges of a chain's files (in seq order), from
// start (nil: the empty tree), and compares the root at each checkpoint
// size that a file ends at, telling matched of each root that matched. A
// size inside a file is returned to be read again. Where the files stop
// lining up (a gap, a duplicate, a file whose rows do not), the tree is
// unknown: unchecked counts the checkpoints past at, the size it reached.
// Sizes beyond the chain's end are left alone: ends_before_checkpoint
// reports them.
func walkTree(files []*fileResult, cs []rootCheck, start *compact.Range, matched func(rootCheck, *compact.Range)) (reads []rootRead, unchecked int, at int64) {
	rng := start
	if rng == nil {
		rng = chainRanges.NewEmptyRange(0)
	}
	i := 0
	for _, f := range files {
		end := int64(rng.End())
		if i == len(cs) {
			break
		}
		if f.tree == nil || f.firstSeq != end {
			return reads, len(cs) - i, end
		}
		for ; i < len(cs) && cs[i].c.Size <= f.lastSeq; i++ {
			reads = append(reads, rootRead{rootCheck: cs[i], file: f.key, prefix: cloneRange(rng)})
		}
		if err := rng.AppendRange(f.tree, nil); err != nil {
			panic(fmt.Sprintf("verify: merging %s into the tree: %v", f.key, err)) // the same factory, adjacent: cannot fail
		}
		for ; i < len(cs) && cs[i].c.Size == f.lastSeq+1; i++ {
			compareRoot(cs[i], rng, matched)
		}
	}
	return reads, 0, int64(rng.End())
}

// compareRoot compares rc's root with the root of rng, the chain's range
// [0, size), and tells matched when they agree.
func compareRoot(rc rootCheck, rng *compact.Range, matched func(rootCheck, *compact.Range)) {
	root, err := rng.GetRootHash(nil)
	if err != nil || int64(rng.End()) != rc.c.Size {
		panic(fmt.Sprintf("verify: the tree at %d for a checkpoint at %d: %v", rng.End(), rc.c.Size, err)) // begins at 0, the size walkTree chose
	}
	if got := hex.EncodeToString(root); got != rc.c.Root {
		rc.add(rc.c.Size-1, 0, CheckpointMismatch, "checkpoint root (the chain's tree at size %d) is %s, the trail's entries give %s: the tree root differs, history rewritten",
			rc.c.Size, rc.c.Root, got)
		return
	}
	matched(rc, rng)
}

// treeAt is the compact range of a chain's tree at the size of a stored
// checkpoint whose root the entries gave.
type treeAt struct {
	size   int64
	hashes [][]byte
}

// matched keeps the range at the largest stored checkpoint of each chain
// whose root matched.
func (rep *Report) matched(rc rootCheck, rng *compact.Range) {
	if !rc.stored || rc.c.Size <= rep.trees[rc.c.ChainID].size {
		return
	}
	if rep.trees == nil {
		rep.trees = map[string]treeAt{}
	}
	hashes := make([][]byte, len(rng.Hashes()))
	for i, h := range rng.Hashes() {
		hashes[i] = slices.Clone(h)
	}
	rep.trees[rc.c.ChainID] = treeAt{size: rc.c.Size, hashes: hashes}
}

// TreeRange returns the compact range of chain chainID's tree (the roots
// of the perfect subtrees of [0, size), left to right) at the largest
// stored checkpoint whose root the entries read gave, and its size; 0 and
// nil when none. An incremental verification continues from it
// (Start.Range).
func (rep *Report) TreeRange(chainID string) (size int64, hashes [][]byte) {
	t := rep.trees[chainID]
	return t.size, t.hashes
}

// checkTiles checks that the tiles stored beside the trail support the
// latest stored checkpoint of format 2 of each chain: the root they give
// at its size is its root. The tiles are what consistency and inclusion
// proofs are read from; altered tiles cannot prove anything.
func checkTiles(ctx context.Context, src store.Reader, latest map[string]rootCheck, rep *Report) error {
	ids := make([]string, 0, len(latest))
	for id := range latest {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		rc := latest[id]
		root, err := TilesRoot(ctx, src, id, rc.c.Size)
		var missing *MissingTilesError
		switch {
		case errors.As(err, &missing) && missing.None:
			rep.Notes = append(rep.Notes, fmt.Sprintf("chain %s has no tiles beside the trail (%s): no consistency or inclusion proof can be read from it", id, store.TilesPrefix+id+"/"))
		case errors.As(err, &missing), errors.Is(err, tlogtree.ErrTilesMismatch):
			rc.add(rc.c.Size-1, 0, CheckpointMismatch, "the stored tiles do not support the latest checkpoint (root %s at size %d): %v", rc.c.Root, rc.c.Size, err)
		case err != nil:
			return err
		case hex.EncodeToString(root[:]) != rc.c.Root:
			rc.add(rc.c.Size-1, 0, CheckpointMismatch, "the stored tiles give root %s at size %d, the latest checkpoint %s: the tiles were altered or are another tree's",
				hex.EncodeToString(root[:]), rc.c.Size, rc.c.Root)
		}
	}
	return nil
}

// MissingTilesError: a tile needed is not stored beside the trail. None:
// the chain has no tiles at all (a trail written before the tree, or
// copied without them).
type MissingTilesError struct {
	ChainID string
	None    bool
	Err     error // the read error, wrapping store.ErrNotFound
}

func (e *MissingTilesError) Error() string {
	if e.None {
		return fmt.Sprintf("chain %s has no tiles under %s", e.ChainID, store.TilesPrefix+e.ChainID+"/")
	}
	return e.Err.Error()
}

func (e *MissingTilesError) Unwrap() error { return e.Err }

// Tiles returns a tlogtree.Reader of chain chainID's tree from the tiles
// stored beside the trail src.
func Tiles(ctx context.Context, src store.Reader, chainID string) (*tlogtree.Reader, error) {
	return tlogtree.NewReader(chainID, func(key string) ([]byte, error) { return src.Get(ctx, key) })
}

// TilesRoot returns the root of chain chainID's tree at size as the tiles
// stored beside src give it. A missing tile gives a *MissingTilesError.
func TilesRoot(ctx context.Context, src store.Reader, chainID string, size int64) ([32]byte, error) {
	tr, err := Tiles(ctx, src, chainID)
	if err != nil {
		return [32]byte{}, err
	}
	root, err := tr.Root(size)
	return [32]byte(root), TilesError(ctx, src, chainID, err)
}

// TilesError turns a tile read error (wrapping store.ErrNotFound) into a
// *MissingTilesError, saying whether the chain has any tile; other errors
// are returned as they are.
func TilesError(ctx context.Context, src store.Reader, chainID string, err error) error {
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	names, lerr := src.List(ctx, store.TilesPrefix+chainID+"/")
	if lerr != nil {
		return lerr
	}
	return &MissingTilesError{ChainID: chainID, None: len(names) == 0, Err: err}
}

// checkKept proves each kept checkpoint of format 2 consistent with the
// latest stored checkpoint of its chain, from the tiles: the trail's tree
// must extend the kept one's (or, for a kept checkpoint newer than the
// latest stored, the kept tree must extend the stored one's). A proof that
// fails is a fork: the trail's history is not the one the auditor kept,
// whatever its files say. Tiles that are missing or do not support the
// root are said in a note (checkTiles reports the latest's own).
func checkKept(ctx context.Context, src store.Reader, kept []rootCheck, latest map[string]rootCheck, rep *Report) error {
	for _, k := range kept {
		l, ok := latest[k.c.ChainID]
		if !ok {
			rep.Notes = append(rep.Notes, fmt.Sprintf("kept checkpoint of chain %s at size %d: no stored checkpoint of format 2 to prove it consistent with", k.c.ChainID, k.c.Size))
			continue
		}
		older, newer := k.c, l.c
		if older.Size > newer.Size {
			older, newer = newer, older
		}
		_, err := ConsistencyProof(ctx, src, older, newer)
		var missing *MissingTilesError
		switch {
		case err == nil:
		case errors.Is(err, tlogtree.ErrProofFailed):
			k.add(k.c.Size-1, 0, CheckpointMismatch, "the trail's latest checkpoint (size %d, root %s) and this one (size %d, root %s) are not of one tree: the consistency proof from the stored tiles fails: history forked or rewritten",
				l.c.Size, l.c.Root, k.c.Size, k.c.Root)
		case errors.Is(err, tlogtree.ErrTilesMismatch) && newer == k.c:
			k.add(k.c.Size-1, 0, CheckpointMismatch, "the stored tiles do not support this checkpoint's root %s at size %d (the trail's latest checkpoint is at size %d): the trail's tree is not the one kept: %v",
				k.c.Root, k.c.Size, l.c.Size, err)
		case errors.As(err, &missing), errors.Is(err, tlogtree.ErrTilesMismatch):
			rep.Notes = append(rep.Notes, fmt.Sprintf("kept checkpoint of chain %s at size %d: not proved consistent with the trail's latest (size %d): %v", k.c.ChainID, k.c.Size, l.c.Size, err))
		default:
			return err
		}
	}
	return nil
}
