package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/store"
)

// signedTrail is a trail with the checkpoints and keys the exporter writes
// beside it: one checkpoint per batch, the verifier key published.
type signedTrail struct {
	*trail
	skeys, vkeys map[string]string // per chain
}

func newSignedTrail(t *testing.T) *signedTrail {
	t.Helper()
	st := &signedTrail{trail: newTrail(t), skeys: map[string]string{}, vkeys: map[string]string{}}
	for _, id := range chainIDs {
		skey, vkey, err := checkpoint.GenerateKey(id)
		require.NoError(t, err)
		st.skeys[id], st.vkeys[id] = skey, vkey
		writeFile(t, st.dir, store.VerifierKeyKey(id, vkey), []byte(vkey+"\n"))
		for i := range st.keys[id] {
			writeFile(t, st.dir, store.CheckpointKey(id, int64((i+1)*perFile)), st.sign(t, id, st.file(id, i)))
		}
	}
	return st
}

// sign returns the checkpoint the exporter writes after the batch es.
func (st *signedTrail) sign(t *testing.T, id string, es []entry.Entry) []byte {
	t.Helper()
	return signBatch(t, st.skeys[id], es)
}

func signBatch(t *testing.T, skey string, es []entry.Entry) []byte {
	t.Helper()
	return signCheckpoint(t, skey, es, "")
}

// signCheckpoint signs the checkpoint of the batch es: of format 2 with
// the chain's root (hex), of format 1 without.
func signCheckpoint(t testing.TB, skey string, es []entry.Entry, root string) []byte {
	t.Helper()
	hashes := make([]string, len(es))
	for i := range es {
		hashes[i] = es[i].EntryHash
	}
	broot, err := merkle.RootHex(hashes)
	require.NoError(t, err)
	last := es[len(es)-1]
	s, err := note.NewSigner(skey)
	require.NoError(t, err)
	msg, err := checkpoint.Sign(checkpoint.Checkpoint{
		ChainID: last.ChainID, Size: last.Seq + 1, Root: root, Head: last.EntryHash,
		BatchFirst: es[0].Seq, BatchLast: last.Seq, BatchRoot: broot,
	}, s)
	require.NoError(t, err)
	return msg
}

func verifyWith(t *testing.T, dir string, opts Options) *Report {
	t.Helper()
	opts.Workers = 3
	rep, err := Verify(context.Background(), store.Dir(dir), opts)
	require.NoError(t, err)
	return rep
}

// rewriteFrom changes the entry at seq of chain id, recomputes every later
// hash and re-encodes the files from there on, as someone with write access
// and no signing key would: the trail verifies on its own.
func (st *signedTrail) rewriteFrom(t *testing.T, id string, seq int64) []entry.Entry {
	t.Helper()
	es := append([]entry.Entry(nil), st.chains[id]...)
	es[seq].Result = "403 Forbidden"
	c := chain.New(id, chain.Head{Size: seq, Hash: es[seq].PrevHash})
	for i := seq; i < int64(len(es)); i++ {
		c.Append(&es[i])
	}
	for i := int(seq) / perFile; i < len(st.keys[id]); i++ {
		data, err := encode(es[i*perFile : min((i+1)*perFile, len(es))])
		require.NoError(t, err)
		writeFile(t, st.dir, st.keys[id][i], data)
	}
	return es
}

func TestCheckpointsCleanTrail(t *testing.T) {
	st := newSignedTrail(t)
	rep := verifyWith(t, st.dir, Options{})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, 10, rep.StoredCheckpoints)
	assert.False(t, rep.Checkpoint)
	assert.Equal(t, []string{checkpoint.KeyID(st.vkeys["replica-0"]), checkpoint.KeyID(st.vkeys["replica-1"])}, rep.TrustedOnFirstUse)
	assert.Equal(t, []string{checkpoint.TOFUNote(st.vkeys["replica-0"]), checkpoint.TOFUNote(st.vkeys["replica-1"]), NoCheckpointNote}, rep.Notes)
	assert.Contains(t, rep.Notes[0], "trusting the published key agentaudit-replica-0+")
	for _, c := range rep.Chains {
		assert.Equal(t, int64(chainLen), c.CheckpointSize)
	}

	// The keys given: nothing trusted on first use.
	rep = verifyWith(t, st.dir, Options{Keys: []string{st.vkeys["replica-0"], st.vkeys["replica-1"]}})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Empty(t, rep.TrustedOnFirstUse)
	assert.Equal(t, []string{NoCheckpointNote}, rep.Notes)

	// A kept checkpoint of the whole chain.
	kept := KeptCheckpoint{Name: "kept.checkpoint", Note: st.sign(t, "replica-0", st.file("replica-0", 4))}
	rep = verifyWith(t, st.dir, Options{Checkpoints: []KeptCheckpoint{kept}})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.True(t, rep.Checkpoint)
	assert.NotContains(t, rep.Notes, NoCheckpointNote)
}

// TestCheckpointTamperMatrix: each change is caught with exactly these
// violations.
func TestCheckpointTamperMatrix(t *testing.T) {
	last0 := store.CheckpointKey("replica-0", chainLen)
	tests := []struct {
		name   string
		tamper func(t *testing.T, st *signedTrail) Options
		want   []string // chain/seq/kind
		file   string   // File of the first violation
	}{
		{
			name: "signature byte changed",
			tamper: func(t *testing.T, st *signedTrail) Options {
				p := st.path(store.CheckpointKey("replica-0", 20))
				msg, err := os.ReadFile(p)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(p, flipSignature(t, msg), 0o644))
				return Options{}
			},
			want: []string{"replica-0/-1/bad_signature"},
			file: store.CheckpointKey("replica-0", 20),
		},
		{
			name: "checkpoint signed with another key",
			tamper: func(t *testing.T, st *signedTrail) Options {
				other, _, err := checkpoint.GenerateKey("replica-1")
				require.NoError(t, err)
				writeFile(t, st.dir, store.CheckpointKey("replica-1", 30), signBatch(t, other, st.file("replica-1", 2)))
				return Options{}
			},
			want: []string{"replica-1/-1/bad_signature"},
			file: store.CheckpointKey("replica-1", 30),
		},
		{
			name: "checkpoint signed with another chain's published key",
			tamper: func(t *testing.T, st *signedTrail) Options {
				writeFile(t, st.dir, store.CheckpointKey("replica-1", 30), signBatch(t, st.skeys["replica-0"], st.file("replica-1", 2)))
				return Options{}
			},
			want: []string{"replica-1/-1/bad_signature"},
			file: store.CheckpointKey("replica-1", 30),
		},
		{
			name: "tail truncated, stored checkpoints kept",
			tamper: func(t *testing.T, st *signedTrail) Options {
				require.NoError(t, os.Remove(st.path(st.keys["replica-0"][4])))
				return Options{}
			},
			want: []string{"replica-0/49/ends_before_checkpoint"},
			file: last0,
		},
		{
			name: "tail truncated and its checkpoint removed, kept checkpoint given",
			tamper: func(t *testing.T, st *signedTrail) Options {
				kept := st.sign(t, "replica-0", st.file("replica-0", 4))
				require.NoError(t, os.Remove(st.path(st.keys["replica-0"][4])))
				require.NoError(t, os.Remove(st.path(last0)))
				return Options{Checkpoints: []KeptCheckpoint{{Name: "kept", Note: kept}}}
			},
			want: []string{"replica-0/49/ends_before_checkpoint"},
			file: "kept",
		},
		{
			name: "whole chain removed",
			tamper: func(t *testing.T, st *signedTrail) Options {
				for _, k := range st.keys["replica-1"] {
					require.NoError(t, os.Remove(st.path(k)))
				}
				return Options{}
			},
			want: []string{
				"replica-1/9/ends_before_checkpoint", "replica-1/19/ends_before_checkpoint", "replica-1/29/ends_before_checkpoint",
				"replica-1/39/ends_before_checkpoint", "replica-1/49/ends_before_checkpoint",
			},
			file: store.CheckpointKey("replica-1", 10),
		},
		{
			name: "history rewritten, stored checkpoints kept",
			tamper: func(t *testing.T, st *signedTrail) Options {
				st.rewriteFrom(t, "replica-0", 25)
				return Options{}
			},
			want: []string{
				"replica-0/20/checkpoint_mismatch", "replica-0/29/checkpoint_mismatch",
				"replica-0/30/checkpoint_mismatch", "replica-0/39/checkpoint_mismatch",
				"replica-0/40/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch",
			},
			file: store.CheckpointKey("replica-0", 30),
		},
		{
			name: "history rewritten, stored checkpoints removed, kept checkpoint given",
			tamper: func(t *testing.T, st *signedTrail) Options {
				kept := st.sign(t, "replica-0", st.file("replica-0", 4))
				st.rewriteFrom(t, "replica-0", 25)
				require.NoError(t, os.RemoveAll(filepath.Join(st.dir, "checkpoints", "replica-0")))
				return Options{Checkpoints: []KeptCheckpoint{{Name: "kept", Note: kept}}}
			},
			want: []string{"replica-0/40/checkpoint_mismatch", "replica-0/49/checkpoint_mismatch"},
			file: "kept",
		},
		{
			name: "kept checkpoint with a bad signature",
			tamper: func(t *testing.T, st *signedTrail) Options {
				kept := flipSignature(t, st.sign(t, "replica-0", st.file("replica-0", 4)))
				return Options{Checkpoints: []KeptCheckpoint{{Name: "kept", Note: kept}}}
			},
			want: []string{"replica-0/-1/bad_signature"},
			file: "kept",
		},
		{
			name: "kept file not a checkpoint",
			tamper: func(t *testing.T, st *signedTrail) Options {
				return Options{Checkpoints: []KeptCheckpoint{{Name: "kept", Note: []byte("hello\n\n— someone c2lnbmF0dXJl\n")}}}
			},
			want: []string{"/-1/bad_signature"},
			file: "kept",
		},
		{
			name: "stored checkpoint renamed",
			tamper: func(t *testing.T, st *signedTrail) Options {
				require.NoError(t, os.Rename(st.path(store.CheckpointKey("replica-0", 20)), st.path(store.CheckpointKey("replica-0", 21))))
				return Options{}
			},
			want: []string{"replica-0/19/checkpoint_mismatch"},
			file: store.CheckpointKey("replica-0", 21),
		},
		{
			name: "trail re-batched: head inside a file",
			tamper: func(t *testing.T, st *signedTrail) Options {
				// Files 3 and 4 merged into one, rows untouched: the
				// checkpoint at 40 finds its head inside the merged file
				// (read again), neither finds its batch.
				require.NoError(t, os.Remove(st.path(st.keys["replica-0"][4])))
				data, err := encode(st.chains["replica-0"][30:50])
				require.NoError(t, err)
				writeFile(t, st.dir, st.keys["replica-0"][3], data)
				return Options{}
			},
			want: []string{"replica-0/30/checkpoint_mismatch", "replica-0/40/checkpoint_mismatch"},
			file: store.CheckpointKey("replica-0", 40),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSignedTrail(t)
			rep := verifyWith(t, st.dir, tc.tamper(t, st))
			assert.Equal(t, tc.want, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
			if len(rep.Violations) > 0 {
				assert.Equal(t, tc.file, rep.Violations[0].File)
			}
			assert.False(t, rep.Intact)
		})
	}
}

// flipSignature changes one byte of the signature of a signed note.
func flipSignature(t *testing.T, msg []byte) []byte {
	t.Helper()
	text, sigs, ok := bytes.Cut(msg, []byte("\n\n"))
	require.True(t, ok)
	fields := strings.Fields(string(sigs)) // "—", name, base64
	raw, err := base64.StdEncoding.DecodeString(fields[2])
	require.NoError(t, err)
	raw[10] ^= 1
	return []byte(string(text) + "\n\n— " + fields[1] + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
}

func TestCheckpointKeys(t *testing.T) {
	st := newSignedTrail(t)
	require.NoError(t, os.RemoveAll(filepath.Join(st.dir, "keys")))

	// No key: the stored checkpoints cannot be checked, which is said.
	rep := verifyWith(t, st.dir, Options{})
	assert.True(t, rep.Intact)
	assert.Contains(t, rep.Notes, "10 stored checkpoints not checked: no verifier key given or published")

	// A kept checkpoint and no key: an error, not a pass.
	kept := KeptCheckpoint{Name: "kept", Note: st.sign(t, "replica-0", st.file("replica-0", 4))}
	_, err := Verify(context.Background(), store.Dir(st.dir), Options{Checkpoints: []KeptCheckpoint{kept}})
	require.ErrorIs(t, err, ErrNoKey)

	// A bad key given: an error.
	_, err = Verify(context.Background(), store.Dir(st.dir), Options{Keys: []string{"not a key"}})
	require.ErrorIs(t, err, checkpoint.ErrBadKey)

	// The keys given: all checked.
	rep = verifyWith(t, st.dir, Options{Keys: []string{st.vkeys["replica-0"], st.vkeys["replica-1"]}, Checkpoints: []KeptCheckpoint{kept}})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.True(t, rep.Checkpoint)
	assert.Equal(t, []string{}, append([]string{}, rep.TrustedOnFirstUse...))
}

// growingTrail is a trail the collector writes while it is verified: its
// newest batch is written just after the batch files are listed, and its
// checkpoint right after that.
type growingTrail struct {
	store.Reader
	batch, cp string
	written   atomic.Bool
}

func (g *growingTrail) Batches(ctx context.Context) ([]string, error) {
	names, err := g.Reader.Batches(ctx)
	if !g.written.Swap(true) {
		names = slices.DeleteFunc(names, func(n string) bool { return n == g.batch })
	}
	return names, err
}

func (g *growingTrail) List(ctx context.Context, prefix string) ([]string, error) {
	names, err := g.Reader.List(ctx, prefix)
	if !g.written.Load() {
		names = slices.DeleteFunc(names, func(n string) bool { return n == g.cp })
	}
	return names, err
}

// TestVerifyWhileWritten: a checkpoint written while the files are read is
// not held against the files listed before it (it is the next run's), so
// an honest trail being written verifies intact.
func TestVerifyWhileWritten(t *testing.T) {
	st := newSignedTrail(t)
	g := &growingTrail{Reader: store.Dir(st.dir), batch: st.keys["replica-0"][4], cp: store.CheckpointKey("replica-0", chainLen)}
	rep, err := Verify(context.Background(), g, Options{Workers: 3})
	require.NoError(t, err)
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, 9, rep.StoredCheckpoints, "the checkpoints listed before the files")
}

// TestVerifyUpTo: with UpTo, a chain's checkpoints past the size given are
// left out, as a monitor wants (the newest it listed), and the trail is
// intact.
func TestVerifyUpTo(t *testing.T) {
	st := newSignedTrail(t)
	rep := verifyWith(t, st.dir, Options{UpTo: map[string]int64{"replica-0": 2 * perFile}})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, 10-3, rep.StoredCheckpoints, "replica-0's checkpoints at 30, 40 and 50 left out")
	for _, c := range rep.Chains {
		want := int64(chainLen)
		if c.ChainID == "replica-0" {
			want = 2 * perFile
		}
		assert.Equal(t, want, c.CheckpointSize, c.ChainID)
	}
}
