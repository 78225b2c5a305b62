package verify

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// treeTrail is a trail as the collector writes it since issue 18: the
// chain's tiles and a checkpoint of format 2 after each batch, and a
// witness's cosignature and a timestamp token beside some checkpoints.
type treeTrail struct {
	*signedTrail
	roots map[string]map[int64]tlog.Hash // per chain, the root at each size
}

func newTreeTrail(t testing.TB) *treeTrail {
	t.Helper()
	st := &signedTrail{trail: writeTrail(t, t.TempDir(), chainIDs, chainLen, perFile), skeys: map[string]string{}, vkeys: map[string]string{}}
	tt := &treeTrail{signedTrail: st, roots: map[string]map[int64]tlog.Hash{}}
	for _, id := range chainIDs {
		skey, vkey, err := checkpoint.GenerateKey(id)
		require.NoError(t, err)
		st.skeys[id], st.vkeys[id] = skey, vkey
		writeFile(t, st.dir, store.VerifierKeyKey(id, vkey), []byte(vkey+"\n"))
		tt.roots[id] = tt.grow(t, id, st.chains[id], perFile)
		for i := range st.keys[id] {
			size := int64((i + 1) * perFile)
			writeFile(t, st.dir, store.CheckpointKey(id, size), tt.sign(t, id, st.file(id, i)))
		}
		// What the witness and timestamp clients store beside them.
		writeFile(t, st.dir, store.CosignatureKey(id, 20, "w1"), []byte("— w1 c2lnbmF0dXJl\n"))
		writeFile(t, st.dir, store.TimestampKey(id, 20), []byte("not parsed by verify"))
	}
	return tt
}

// grow builds the tree of es with tlogtree.Writer, per entries at a time,
// stores its tiles in the trail and returns the root at each size.
func (tt *treeTrail) grow(t testing.TB, id string, es []entry.Entry, per int) map[int64]tlog.Hash {
	t.Helper()
	w, err := tlogtree.NewWriter(id)
	require.NoError(t, err)
	roots := map[int64]tlog.Hash{0: w.Root()}
	for start := 0; start < len(es); start += per {
		ts, root, err := w.Append(entryHashes(t, es[start:min(start+per, len(es))]))
		require.NoError(t, err)
		for _, tl := range ts {
			writeFile(t, tt.dir, tl.Key, tl.Data)
		}
		roots[w.Size()] = root
	}
	return roots
}

func entryHashes(t testing.TB, es []entry.Entry) [][32]byte {
	hs := make([][32]byte, len(es))
	for i := range es {
		b, err := hex.DecodeString(es[i].EntryHash)
		require.NoError(t, err)
		hs[i] = [32]byte(b)
	}
	return hs
}

// sign returns the checkpoint of format 2 the collector writes after the
// batch es of chain id.
func (tt *treeTrail) sign(t testing.TB, id string, es []entry.Entry) []byte {
	t.Helper()
	last := es[len(es)-1]
	root, ok := tt.roots[id][last.Seq+1]
	require.True(t, ok, "no root at %d", last.Seq+1)
	return signTree(t, tt.skeys[id], es, root)
}

// signTree signs the checkpoint of the batch es with the chain's root.
func signTree(t testing.TB, skey string, es []entry.Entry, root tlog.Hash) []byte {
	t.Helper()
	return signCheckpoint(t, skey, es, hex.EncodeToString(root[:]))
}

func TestTreeCleanTrail(t *testing.T) {
	tt := newTreeTrail(t)
	rep := verifyWith(t, tt.dir, Options{})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, 10, rep.StoredCheckpoints, "cosignatures and timestamps are not checkpoints")
	for _, n := range rep.Notes {
		assert.NotContains(t, n, "tiles")
		assert.NotContains(t, n, "tree root")
	}
	for _, c := range rep.Chains {
		assert.Equal(t, int64(chainLen), c.CheckpointSize)
	}
}

// TestTreeRootChecked: a checkpoint whose head and batch agree with the
// trail but whose root is another tree's is a checkpoint_mismatch at its
// head seq, saying the tree root differs; at a size inside a file (a kept
// checkpoint, or a re-batched trail) as well as at a file's end.
func TestTreeRootChecked(t *testing.T) {
	tt := newTreeTrail(t)
	es := tt.chains["replica-0"]
	other := tt.roots["replica-1"]
	writeFile(t, tt.dir, store.CheckpointKey("replica-0", 30), signTree(t, tt.skeys["replica-0"], es[20:30], other[30]))
	rep := verifyWith(t, tt.dir, Options{})
	assert.Equal(t, []string{"replica-0/29/checkpoint_mismatch"}, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Violations[0].Detail, "the tree root differs")
	assert.Equal(t, store.CheckpointKey("replica-0", 30), rep.Violations[0].File)

	// Kept checkpoints at sizes inside files: the file is read again.
	tt = newTreeTrail(t)
	r := tt.grow(t, "replica-0", tt.chains["replica-0"], 7) // roots at 7, 14, 21, ...
	good := KeptCheckpoint{Name: "good", Note: signTree(t, tt.skeys["replica-0"], es[21:28], r[28])}
	bad := KeptCheckpoint{Name: "bad", Note: signTree(t, tt.skeys["replica-0"], es[14:21], r[14])}
	rep = verifyWith(t, tt.dir, Options{Checkpoints: []KeptCheckpoint{good, bad}})
	// The kept checkpoints seal batches no file holds: mismatches of their
	// own, but only bad's root differs.
	var rootViolations []Violation
	for _, v := range rep.Violations {
		if v.Kind == CheckpointMismatch && strings.Contains(v.Detail, "tree root differs") {
			rootViolations = append(rootViolations, v)
		}
	}
	require.Len(t, rootViolations, 1, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, "bad", rootViolations[0].File)
	assert.Equal(t, int64(20), rootViolations[0].Seq)
}

// TestTreeTiles: the tiles must support the latest checkpoint's root.
func TestTreeTiles(t *testing.T) {
	latest := store.CheckpointKey("replica-0", chainLen)
	// An altered partial tile of level 0 at size 50 (the one Root reads).
	tt := newTreeTrail(t)
	key := store.TileKey("replica-0", tlog.Tile{H: 8, L: 0, N: 0, W: 50})
	p := tt.path(key)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	data[3] ^= 1
	require.NoError(t, os.WriteFile(p, data, 0o644))
	rep := verifyWith(t, tt.dir, Options{})
	assert.Equal(t, []string{"replica-0/49/checkpoint_mismatch"}, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, latest, rep.Violations[0].File)
	assert.Contains(t, rep.Violations[0].Detail, "the stored tiles give root")

	// The tile missing.
	require.NoError(t, os.Remove(p))
	rep = verifyWith(t, tt.dir, Options{})
	assert.Equal(t, []string{"replica-0/49/checkpoint_mismatch"}, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Violations[0].Detail, "the stored tiles do not support the latest checkpoint")

	// No tiles at all: said, not a violation.
	require.NoError(t, os.RemoveAll(filepath.Join(tt.dir, "tiles", "replica-0")))
	rep = verifyWith(t, tt.dir, Options{})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Notes, "chain replica-0 has no tiles beside the trail (tiles/replica-0/): no consistency or inclusion proof can be read from it")
}

// TestTreeRewrite: history rewritten from seq 25 and every checkpoint
// re-signed with the operator's key over the new tree verifies on its own;
// a kept checkpoint of the old tree catches it, root included.
func TestTreeRewrite(t *testing.T) {
	tt := newTreeTrail(t)
	kept := KeptCheckpoint{Name: "kept", Note: tt.sign(t, "replica-0", tt.file("replica-0", 4))}
	tt.rewriteTree(t, "replica-0", 25)

	rep := verifyWith(t, tt.dir, Options{Checkpoints: []KeptCheckpoint{kept}})
	// The batch, the head, the root, and the consistency with the latest.
	assert.Equal(t, []string{"replica-0/40/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch"},
		violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
}

// TestTreeKeptConsistency: a kept checkpoint of format 2 is proved
// consistent with the trail's latest stored checkpoint from the tiles.
func TestTreeKeptConsistency(t *testing.T) {
	tt := newTreeTrail(t)
	kept30 := KeptCheckpoint{Name: "kept30", Note: tt.sign(t, "replica-0", tt.file("replica-0", 2))}
	kept50 := KeptCheckpoint{Name: "kept50", Note: tt.sign(t, "replica-0", tt.file("replica-0", 4))}
	rep := verifyWith(t, tt.dir, Options{Checkpoints: []KeptCheckpoint{kept30}})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	for _, n := range rep.Notes {
		assert.NotContains(t, n, "kept checkpoint")
	}

	// Newer than the latest stored checkpoint (those after 30 removed):
	// the kept tree must extend the stored one's, from the tiles.
	for _, size := range []int64{40, 50} {
		require.NoError(t, os.Remove(tt.path(store.CheckpointKey("replica-0", size))))
	}
	rep = verifyWith(t, tt.dir, Options{Checkpoints: []KeptCheckpoint{kept50}})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))

	// The operator rewrites history from seq 25, rebuilds the tree and
	// re-signs every checkpoint: the trail verifies on its own, the kept
	// checkpoints of the old tree are not of the new one.
	tt = newTreeTrail(t)
	kept20 := KeptCheckpoint{Name: "kept20", Note: tt.sign(t, "replica-0", tt.file("replica-0", 1))}
	kept30 = KeptCheckpoint{Name: "kept30", Note: tt.sign(t, "replica-0", tt.file("replica-0", 2))}
	tt.rewriteTree(t, "replica-0", 25)
	rep = verifyWith(t, tt.dir, Options{Checkpoints: []KeptCheckpoint{kept20, kept30}})
	var fork []Violation
	for _, v := range rep.Violations {
		if strings.Contains(v.Detail, "not of one tree") {
			fork = append(fork, v)
		}
	}
	require.Len(t, fork, 1, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, "kept30", fork[0].File, "before seq 25 the trees agree")
	assert.Equal(t, int64(29), fork[0].Seq)
	assert.Equal(t, CheckpointMismatch, fork[0].Kind)
	assert.Contains(t, fork[0].Detail, "the consistency proof from the stored tiles fails: history forked or rewritten")
}

// rewriteTree is the operator's rewrite of chain id from seq on, with its
// own key: entries re-hashed, the tree's tiles written anew and every
// checkpoint re-signed. The trail verifies on its own (checked).
func (tt *treeTrail) rewriteTree(t *testing.T, id string, seq int64) {
	t.Helper()
	es := tt.rewriteFrom(t, id, seq)
	require.NoError(t, os.RemoveAll(filepath.Join(tt.dir, "tiles", id)))
	tt.roots[id] = tt.grow(t, id, es, perFile)
	for i := range tt.keys[id] {
		writeFile(t, tt.dir, store.CheckpointKey(id, int64((i+1)*perFile)), tt.sign(t, id, es[i*perFile:(i+1)*perFile]))
	}
	rep := verifyWith(t, tt.dir, Options{})
	require.True(t, rep.Intact, "the rewrite verifies on its own:\n%s", joinLines(rep.Violations))
}
