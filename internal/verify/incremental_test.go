package verify

import (
	"context"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
)

// rangeAt computes, by hand, the compact range of the chain's tree over
// the first size entry hashes of es (rfc6962's hasher, not verify's).
func (tt *treeTrail) rangeAt(t *testing.T, id string, size int64) [][]byte {
	t.Helper()
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, h := range entryHashes(t, tt.chains[id][:size]) {
		require.NoError(t, r.Append(rfc6962.DefaultHasher.HashLeaf(h[:]), nil))
	}
	return r.Hashes()
}

// start is the start of an incremental verification of chain id at size.
func (tt *treeTrail) start(t *testing.T, id string, size int64) Start {
	t.Helper()
	msg, err := os.ReadFile(tt.path(store.CheckpointKey(id, size)))
	require.NoError(t, err)
	c, _, err := checkpoint.Open(msg, tt.vkeys[id])
	require.NoError(t, err)
	return Start{Checkpoint: c, Range: tt.rangeAt(t, id, size)}
}

func TestIncremental(t *testing.T) {
	tt := newTreeTrail(t)
	// A whole verification offers the range at the latest checkpoint.
	rep := verifyWith(t, tt.dir, Options{})
	size, hashes := rep.TreeRange("replica-0")
	assert.Equal(t, int64(chainLen), size)
	assert.Equal(t, tt.rangeAt(t, "replica-0", chainLen), hashes)

	// From seq 30 on: replica-0's last two files and checkpoints only,
	// replica-1 whole.
	from := map[string]Start{"replica-0": tt.start(t, "replica-0", 30)}
	rep = verifyWith(t, tt.dir, Options{From: from})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, 2+5, rep.Files)
	assert.Equal(t, 2+5, rep.StoredCheckpoints)
	assert.Contains(t, rep.Notes, NoApprovalsNote)
	size, hashes = rep.TreeRange("replica-0")
	assert.Equal(t, int64(chainLen), size)
	assert.Equal(t, tt.rangeAt(t, "replica-0", chainLen), hashes)

	// Nothing new: an intact report, not ErrNoFiles.
	from["replica-1"] = tt.start(t, "replica-1", chainLen)
	from["replica-0"] = tt.start(t, "replica-0", chainLen)
	rep = verifyWith(t, tt.dir, Options{From: from})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, 0, rep.Files)
	size, _ = rep.TreeRange("replica-0")
	assert.Equal(t, int64(0), size, "no new checkpoint")
}

// TestIncrementalViolations: what an incremental verification reports.
func TestIncrementalViolations(t *testing.T) {
	t.Run("rewritten after the start", func(t *testing.T) {
		tt := newTreeTrail(t)
		tt.rewriteFrom(t, "replica-0", 35)
		rep := verifyWith(t, tt.dir, Options{From: map[string]Start{"replica-0": tt.start(t, "replica-0", 30)}})
		assert.Equal(t, []string{"replica-0/30/checkpoint_mismatch", "replica-0/39/checkpoint_mismatch", "replica-0/39/checkpoint_mismatch",
			"replica-0/40/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch"},
			violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	})
	t.Run("not linked to the start's head", func(t *testing.T) {
		tt := newTreeTrail(t)
		s := tt.start(t, "replica-1", 30)
		s.Checkpoint.Head = tt.chains["replica-1"][28].EntryHash
		rep := verifyWith(t, tt.dir, Options{From: map[string]Start{"replica-1": s}})
		assert.Equal(t, []string{"replica-1/30/broken_link"}, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
		assert.Contains(t, rep.Violations[0].Detail, "the head of the checkpoint at size 30")
	})
	t.Run("first file after the start removed", func(t *testing.T) {
		tt := newTreeTrail(t)
		require.NoError(t, os.Remove(tt.path(tt.keys["replica-0"][3])))
		rep := verifyWith(t, tt.dir, Options{From: map[string]Start{"replica-0": tt.start(t, "replica-0", 30)}})
		assert.Equal(t, []string{"replica-0/30/checkpoint_mismatch", "replica-0/39/checkpoint_mismatch", "replica-0/40/missing_file"},
			violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	})
	t.Run("a start that is not one", func(t *testing.T) {
		tt := newTreeTrail(t)
		s := tt.start(t, "replica-0", 30)
		s.Range = s.Range[1:]
		_, err := Verify(context.Background(), store.Dir(tt.dir), Options{From: map[string]Start{"replica-0": s}})
		assert.ErrorContains(t, err, "the start of chain replica-0")
		s = tt.start(t, "replica-0", 30)
		s.Checkpoint.Root = hex.EncodeToString(make([]byte, 32))
		_, err = Verify(context.Background(), store.Dir(tt.dir), Options{From: map[string]Start{"replica-0": s}})
		assert.ErrorContains(t, err, "its range gives root")
	})
}
