package witness

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// testLog is a log for the tests: an RFC 6962 tree over random leaves,
// kept as a compact range with every node hash it visited, and a note
// key that signs its checkpoints.
type testLog struct {
	t      *testing.T
	origin string
	signer note.Signer
	vkey   string
	rng    *compact.Range
	nodes  map[compact.NodeID][]byte
	roots  map[uint64][]byte
}

var rf = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

func newTestLog(t *testing.T, origin string) *testLog {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	return newTestLogWithKey(t, origin, signer, vkey)
}

// newTestLogWithKey is a log signing with a given key: the operator
// rewriting its log keeps its key.
func newTestLogWithKey(t *testing.T, origin string, signer note.Signer, vkey string) *testLog {
	l := &testLog{t: t, origin: origin, signer: signer, vkey: vkey, rng: rf.NewEmptyRange(0),
		nodes: map[compact.NodeID][]byte{}, roots: map[uint64][]byte{0: emptyRoot}}
	return l
}

func (l *testLog) verifier() note.Verifier {
	v, err := note.NewVerifier(l.vkey)
	require.NoError(l.t, err)
	return v
}

func (l *testLog) size() uint64 { return l.rng.End() }

// grow appends n random leaves.
func (l *testLog) grow(n int) *testLog {
	for range n {
		leaf := make([]byte, 32)
		_, _ = rand.Read(leaf)
		require.NoError(l.t, l.rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), func(id compact.NodeID, h []byte) {
			l.nodes[id] = h
		}))
		root, err := l.rng.GetRootHash(nil)
		require.NoError(l.t, err)
		l.roots[l.size()] = root
	}
	return l
}

// checkpoint is the signed checkpoint at size, with an extension line
// as agentaudit's carry.
func (l *testLog) checkpoint(size uint64) []byte {
	root, ok := l.roots[size]
	require.True(l.t, ok, "no root at size %d", size)
	return l.signText(fmt.Sprintf("%s\n%d\n%s\nagentaudit-head test\n", l.origin, size, base64.StdEncoding.EncodeToString(root)))
}

func (l *testLog) signText(text string) []byte {
	msg, err := note.Sign(&note.Note{Text: text}, l.signer)
	require.NoError(l.t, err)
	return msg
}

// proof is the consistency proof from size1 to size2, built from the
// stored node hashes as a log serving tiles would.
func (l *testLog) proof(size1, size2 uint64) [][]byte {
	nodes, err := proof.Consistency(size1, size2)
	require.NoError(l.t, err)
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, ok := l.nodes[id]
		require.True(l.t, ok, "node %+v missing", id)
		hashes[i] = h
	}
	p, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	require.NoError(l.t, err)
	require.NoError(l.t, proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, p, l.roots[size1], l.roots[size2]))
	return p
}
