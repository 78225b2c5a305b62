// Package witnesstest is a transparency log for tests of witnesses and
// their clients: an RFC 6962 tree over random leaves built with
// github.com/transparency-dev/merkle's compact ranges, consistency proofs
// from its proof package, and checkpoints signed with a note key
// (golang.org/x/mod/sumdb/note). Its leaves are its own: a rewritten log
// is another Log with the same origin and key.
package witnesstest // import "github.com/agentaudit/agentaudit/internal/witness/witnesstest"

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

// Log is a log under test. Not safe for concurrent use.
type Log struct {
	t      testing.TB
	Origin string
	Signer note.Signer
	VKey   string // the verifier key of Signer
	rng    *compact.Range
	nodes  map[compact.NodeID][]byte
	roots  map[uint64][]byte
}

var factory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// New is an empty log with a new Ed25519 key named origin.
func New(t testing.TB, origin string) *Log {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	return NewWithKey(t, origin, signer, vkey)
}

// NewWithKey is an empty log signing with a given key: an operator
// rewriting its log keeps its key.
func NewWithKey(t testing.TB, origin string, signer note.Signer, vkey string) *Log {
	return &Log{t: t, Origin: origin, Signer: signer, VKey: vkey, rng: factory.NewEmptyRange(0),
		nodes: map[compact.NodeID][]byte{}, roots: map[uint64][]byte{0: rfc6962.DefaultHasher.EmptyRoot()}}
}

// Verifier is the verifier of the log's key.
func (l *Log) Verifier() note.Verifier {
	v, err := note.NewVerifier(l.VKey)
	require.NoError(l.t, err)
	return v
}

// Size is the number of leaves.
func (l *Log) Size() uint64 { return l.rng.End() }

// Root is the root hash of the tree at size (not larger than Size).
func (l *Log) Root(size uint64) []byte {
	root, ok := l.roots[size]
	require.True(l.t, ok, "no tree of size %d", size)
	return root
}

// Grow appends n random leaves.
func (l *Log) Grow(n int) *Log {
	for range n {
		leaf := make([]byte, 32)
		_, _ = rand.Read(leaf)
		require.NoError(l.t, l.rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), func(id compact.NodeID, h []byte) {
			l.nodes[id] = h
		}))
		root, err := l.rng.GetRootHash(nil)
		require.NoError(l.t, err)
		l.roots[l.Size()] = root
	}
	return l
}

// Checkpoint is the signed C2SP tlog-checkpoint at size, with an
// extension line as agentaudit's carry.
func (l *Log) Checkpoint(size uint64) []byte {
	return l.SignText(fmt.Sprintf("%s\n%d\n%s\nagentaudit-head test\n", l.Origin, size, base64.StdEncoding.EncodeToString(l.Root(size))))
}

// SignText signs any note text with the log's key.
func (l *Log) SignText(text string) []byte {
	msg, err := note.Sign(&note.Note{Text: text}, l.Signer)
	require.NoError(l.t, err)
	return msg
}

// Proof is the RFC 6962 consistency proof from size1 to size2, built from
// the stored node hashes as a log serving tiles would, and checked with
// the proof package's verifier.
func (l *Log) Proof(size1, size2 uint64) [][]byte {
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
	require.NoError(l.t, proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, p, l.Root(size1), l.Root(size2)))
	return p
}
