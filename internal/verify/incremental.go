package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/transparency-dev/merkle/compact"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
)

// Incremental verification (Options.From, auditctl watch): a chain is
// verified from a checkpoint of format 2 verified before, its start, on.
// Only the chain's batch files from the start's size on are read; the
// first must start at that size and link to the start's head; the stored
// checkpoints after it are checked as Verify checks every checkpoint, their
// roots computed from the start's compact range extended by the new
// files'. What lies before the start is the caller's to have checked (a
// verification of the whole trail, then consistency proofs from the start
// to each newer checkpoint).

// Start is where the incremental verification of one chain starts.
type Start struct {
	// Checkpoint is the checkpoint verified before, of format 2.
	Checkpoint checkpoint.Checkpoint
	// Range is the compact range of the chain's tree at Checkpoint.Size:
	// the roots of the perfect subtrees of [0, size), left to right, as
	// Report.TreeRange returned them.
	Range [][]byte
}

// NoApprovalsNote is the note of an incremental verification.
const NoApprovalsNote = "incremental verification: the approval checks, which need the whole trail, were not made (auditctl verify makes them)"

// checkStarts checks opts.From and returns the starts' ranges by chain.
func checkStarts(from map[string]Start) (map[string]*compact.Range, error) {
	ranges := make(map[string]*compact.Range, len(from))
	for id, s := range from {
		c := s.Checkpoint
		if c.ChainID != id || c.Format() != 2 {
			return nil, fmt.Errorf("verify: the start of chain %s is not a checkpoint of format 2 of it (chain %q, format %d)", id, c.ChainID, c.Format())
		}
		r, err := chainRanges.NewRange(0, uint64(c.Size), slices.Clone(s.Range))
		if err != nil {
			return nil, fmt.Errorf("verify: the start of chain %s: a range at size %d: %w", id, c.Size, err)
		}
		root, err := r.GetRootHash(nil)
		if err != nil || fmt.Sprintf("%x", root) != c.Root {
			return nil, fmt.Errorf("verify: the start of chain %s: its range gives root %x at size %d, the checkpoint %s", id, root, c.Size, c.Root)
		}
		ranges[id] = r
	}
	return ranges, nil
}

// linkStart checks how f, the first file of a chain since start, follows
// it: at start's size, linked to its head.
func linkStart(f *fileResult, start *Start, add func(f *fileResult, seq, through int64, kind Kind, detail string)) {
	size, head := start.Checkpoint.Size, start.Checkpoint.Head
	switch {
	case f.firstSeq > size:
		add(f, f.firstSeq, 0, MissingFile, fmt.Sprintf("seq %d to %d missing: the chain's first file after the checkpoint at size %d starts at seq %d", size, f.firstSeq-1, size, f.firstSeq))
	case f.firstSeq < size:
		add(f, f.firstSeq, min(f.lastSeq, size-1), Duplicate, fmt.Sprintf("seq %d to %d are before the checkpoint at size %d: the trail was re-batched there", f.firstSeq, min(f.lastSeq, size-1), size))
	default:
		for _, p := range f.firstPrevs {
			if !p.eq(hash64(head)) {
				add(f, f.firstSeq, 0, BrokenLink, fmt.Sprintf("got prev_hash %s, want %s (entry_hash of seq %d, the head of the checkpoint at size %d)", p, head, size-1, size))
			}
		}
	}
}

// since is the trail as an incremental verification sees it: the batch
// files and the objects beside the checkpoints of each chain with a start
// from the start's size on (a batch file starting at it, a checkpoint
// after it); everything else as it is.
type since struct {
	store.Reader
	from map[string]Start
}

// before reports whether chain id at size lies before its start.
func (s since) before(id string, size int64, orAt bool) bool {
	st, ok := s.from[id]
	return ok && (size < st.Checkpoint.Size || orAt && size == st.Checkpoint.Size)
}

func (s since) Batches(ctx context.Context) ([]string, error) {
	names, err := s.Reader.Batches(ctx)
	return slices.DeleteFunc(names, func(n string) bool {
		id, first, _, err := store.ParseBatchName(n)
		return err == nil && s.before(id, first, false)
	}), err
}

func (s since) List(ctx context.Context, prefix string) ([]string, error) {
	names, err := s.Reader.List(ctx, prefix)
	if !strings.HasPrefix(prefix, store.CheckpointsPrefix) && !strings.HasPrefix(store.CheckpointsPrefix, prefix) {
		return names, err
	}
	return slices.DeleteFunc(names, func(n string) bool {
		id, size, ok := besideCheckpoint(n)
		return ok && s.before(id, size, true)
	}), err
}
