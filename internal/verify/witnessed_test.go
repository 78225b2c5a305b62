package verify

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
	"github.com/agentaudit/agentaudit/internal/witness"
)

// testWitness is a witness (internal/witness's Server, no HTTP) of the
// chains of a treeTrail.
type testWitness struct {
	name string
	vkey string
	srv  *witness.Server
}

func newWitnessOf(t *testing.T, tt *treeTrail, name string) *testWitness {
	t.Helper()
	skey, vkey, err := witness.GenerateKey("witness.test/"+name, false)
	require.NoError(t, err)
	signer, err := witness.NewSigner(skey)
	require.NoError(t, err)
	var logs []witness.Log
	for _, id := range chainIDs {
		v, err := note.NewVerifier(tt.vkeys[id])
		require.NoError(t, err)
		logs = append(logs, witness.Log{Origin: "agentaudit/" + id, Verifiers: []note.Verifier{v}})
	}
	srv, err := witness.NewServer(witness.Config{StateDir: t.TempDir(), Signers: []note.Signer{signer}, Logs: logs})
	require.NoError(t, err)
	return &testWitness{name: name, vkey: vkey, srv: srv}
}

// cosign submits the stored checkpoint of chain id at size with a proof
// from the size the witness has, read from the trail's tiles, and stores
// the cosignature beside it as the collector does.
func (w *testWitness) cosign(t *testing.T, tt *treeTrail, id string, size int64) error {
	t.Helper()
	key := store.CheckpointKey(id, size)
	cp, err := os.ReadFile(tt.path(key))
	require.NoError(t, err)
	had, _ := w.srv.Size("agentaudit/" + id)
	var proof [][]byte
	if had > 0 {
		r, err := tlogtree.NewReader(id, func(k string) ([]byte, error) { return store.Dir(tt.dir).Get(context.Background(), k) })
		require.NoError(t, err)
		p, err := r.ConsistencyProof(int64(had), size, tt.roots[id][size])
		require.NoError(t, err)
		for _, h := range p {
			proof = append(proof, h[:])
		}
	}
	cosigs, err := w.srv.AddCheckpoint(had, proof, cp)
	if err != nil {
		return err
	}
	writeFile(t, tt.dir, store.CosignatureKey(id, size, w.name), cosigs)
	return nil
}

func TestCosignaturesRequired(t *testing.T) {
	tt := newTreeTrail(t)
	w1, w2 := newWitnessOf(t, tt, "w1"), newWitnessOf(t, tt, "w2")
	for _, size := range []int64{20, chainLen} {
		require.NoError(t, w1.cosign(t, tt, "replica-0", size))
		require.NoError(t, w1.cosign(t, tt, "replica-1", size))
	}
	require.NoError(t, w2.cosign(t, tt, "replica-0", chainLen))

	rep := verifyWith(t, tt.dir, Options{Witnesses: []string{w1.vkey}, Cosignatures: 1})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	rep = verifyWith(t, tt.dir, Options{Witnesses: []string{w1.vkey, w2.vkey}}) // 0 means 1
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))

	// Two of two: replica-1's latest has w1's only.
	rep = verifyWith(t, tt.dir, Options{Witnesses: []string{w1.vkey, w2.vkey}, Cosignatures: 2})
	assert.Equal(t, []string{"replica-1/49/missing_cosignature"}, violationKeys(rep.Violations))
	assert.Contains(t, rep.Violations[0].Detail, "valid cosignatures of 1 of the given witness keys, 2 required")
	assert.Equal(t, store.CheckpointKey("replica-1", chainLen), rep.Violations[0].File)

	// A newer checkpoint no witness saw yet (a running collector): the
	// newest cosigned one vouches for the chain up to its size, the rest
	// is a note, not a missing cosignature.
	writeFile(t, tt.dir, store.CheckpointKey("replica-1", chainLen+1), []byte("not even a checkpoint"))
	rep = verifyWith(t, tt.dir, Options{Witnesses: []string{w1.vkey}})
	assert.NotContains(t, violationKeys(rep.Violations), "replica-1/50/missing_cosignature")
	assert.Contains(t, rep.Notes, "chain replica-1: cosigned by 1 witness(es) up to size 50; the checkpoints after it, up to size 51, are not cosigned yet (seq 50 to 50 witnessed by no one)")
	require.NoError(t, os.Remove(tt.path(store.CheckpointKey("replica-1", chainLen+1))))

	// An older checkpoint of replica-1 cosigned by both: two of two hold
	// up to it, the rest is a note.
	require.NoError(t, w2.cosign(t, tt, "replica-1", 20))
	rep = verifyWith(t, tt.dir, Options{Witnesses: []string{w1.vkey, w2.vkey}, Cosignatures: 2})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Notes, "chain replica-1: cosigned by 2 witness(es) up to size 20; the checkpoints after it, up to size 50, are not cosigned yet (seq 20 to 49 witnessed by no one)")

	// A cosignature that does not verify (altered): not counted, named.
	key := store.CosignatureKey("replica-0", chainLen, "w2")
	lines, err := os.ReadFile(tt.path(key))
	require.NoError(t, err)
	name, sig, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(string(lines), "— "), "\n"), " ")
	raw, err := base64.StdEncoding.DecodeString(sig)
	require.NoError(t, err)
	raw[len(raw)-1] ^= 1
	writeFile(t, tt.dir, key, []byte("— "+name+" "+base64.StdEncoding.EncodeToString(raw)+"\n"))
	rep = verifyWith(t, tt.dir, Options{Witnesses: []string{w1.vkey, w2.vkey}, Cosignatures: 2})
	assert.Contains(t, violationKeys(rep.Violations), "replica-0/49/missing_cosignature")
	assert.Contains(t, joinLines(rep.Violations), key+": "+witness.ErrBadCosignature.Error())
}

// TestCosignaturesCatchARewrite: the operator rewrites the whole chain,
// its tiles and its checkpoints, re-signed with its own key. The trail
// verifies on its own; the witness refuses to cosign the rewritten
// checkpoint (it does not extend the one it holds), and verify requiring a
// cosignature reports the latest checkpoint: the cosignature left beside
// it is the old checkpoint's.
func TestCosignaturesCatchARewrite(t *testing.T) {
	tt := newTreeTrail(t)
	w := newWitnessOf(t, tt, "w1")
	require.NoError(t, w.cosign(t, tt, "replica-0", 30))
	require.NoError(t, w.cosign(t, tt, "replica-0", chainLen))
	require.NoError(t, w.cosign(t, tt, "replica-1", chainLen))

	tt.rewriteTree(t, "replica-0", 0)

	// The witness holds size 50 of the old tree: no proof from there
	// leads to the new root.
	require.ErrorIs(t, w.cosign(t, tt, "replica-0", chainLen), witness.ErrBadProof)

	// Each rewritten checkpoint that was cosigned (30 and 50) keeps a
	// cosignature of other bytes beside it: each is reported.
	rep := verifyWith(t, tt.dir, Options{Witnesses: []string{w.vkey}, Cosignatures: 1})
	assert.Equal(t, []string{"replica-0/29/missing_cosignature", "replica-0/49/missing_cosignature"}, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	for _, v := range rep.Violations {
		assert.Contains(t, v.Detail, "valid cosignatures of 0 of the given witness keys, 1 required")
		assert.Contains(t, v.Detail, witness.ErrBadCosignature.Error())
	}

	// Only the tail rewritten, after a checkpoint still cosigned (30): the
	// cosignature of other bytes beside the rewritten 50 is still caught,
	// not taken for a witness's lag.
	tt2 := newTreeTrail(t)
	w2 := newWitnessOf(t, tt2, "w1")
	require.NoError(t, w2.cosign(t, tt2, "replica-0", 30))
	require.NoError(t, w2.cosign(t, tt2, "replica-0", chainLen))
	require.NoError(t, w2.cosign(t, tt2, "replica-1", chainLen))
	tt2.rewriteTree(t, "replica-0", 35)
	rep = verifyWith(t, tt2.dir, Options{Witnesses: []string{w2.vkey}})
	assert.Equal(t, []string{"replica-0/49/missing_cosignature"}, violationKeys(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
}

func TestCosignatureOptions(t *testing.T) {
	tt := newTreeTrail(t)
	w := newWitnessOf(t, tt, "w1")
	for _, opts := range []Options{
		{Cosignatures: 1},
		{Witnesses: []string{w.vkey}, Cosignatures: 2},
		{Witnesses: []string{w.vkey}, Cosignatures: -1},
		{Witnesses: []string{"not a key"}},
	} {
		_, err := Verify(context.Background(), store.Dir(tt.dir), opts)
		require.ErrorIs(t, err, ErrWitnesses, "%+v", opts)
	}
	// A chain with no stored checkpoint has no cosignature either.
	require.NoError(t, os.RemoveAll(filepath.Join(tt.dir, "checkpoints", "replica-1")))
	rep := verifyWith(t, tt.dir, Options{Witnesses: []string{w.vkey}})
	assert.Contains(t, violationKeys(rep.Violations), "replica-1/-1/missing_cosignature")
}
