package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// treeChain is a chain's tree beside a trail (its tiles only: the
// consistency verb reads nothing else) and the checkpoints of format 2 of
// its sizes, signed.
type treeChain struct {
	id      string
	dir     string // the trail
	signer  note.Signer
	vkey    string
	keyFile string
	hashes  [][32]byte
	roots   map[int64]tlog.Hash
}

func newTreeChain(t *testing.T, dir, id string) *treeChain {
	t.Helper()
	skey, vkey, err := checkpoint.GenerateKey(id)
	require.NoError(t, err)
	s, err := note.NewSigner(skey)
	require.NoError(t, err)
	tc := &treeChain{id: id, dir: dir, signer: s, vkey: vkey, roots: map[int64]tlog.Hash{}}
	tc.keyFile = filepath.Join(t.TempDir(), "keys.pub")
	require.NoError(t, os.WriteFile(tc.keyFile, []byte(vkey+"\n"), 0o644))
	writeKeyFile(t, dir, store.VerifierKeyKey(id, vkey), vkey+"\n")
	return tc
}

// leaf is the entry hash of leaf i of a chain, varied by salt (a fork).
func leaf(salt string, i int64) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(append([]byte(salt), b[:]...))
}

// grow appends entries to the tree, the Writer's Appends ending at each
// of sizes, writing their tiles into the trail; entry i's hash is
// leaf(salt, i). w nil starts a new tree.
func (tc *treeChain) grow(t *testing.T, w *tlogtree.Writer, salt string, sizes ...int64) *tlogtree.Writer {
	t.Helper()
	if w == nil {
		var err error
		w, err = tlogtree.NewWriter(tc.id)
		require.NoError(t, err)
		tc.hashes = nil
	}
	for _, size := range sizes {
		var hs [][32]byte
		for i := w.Size(); i < size; i++ {
			hs = append(hs, leaf(salt, i))
		}
		tc.hashes = append(tc.hashes[:w.Size()], hs...)
		ts, root, err := w.Append(hs)
		require.NoError(t, err)
		for _, tl := range ts {
			writeKeyFile(t, tc.dir, tl.Key, string(tl.Data))
		}
		tc.roots[size] = root
	}
	return w
}

// checkpointFile writes the signed checkpoint of the tree at size to a
// file and returns its path.
func (tc *treeChain) checkpointFile(t *testing.T, size int64) string {
	t.Helper()
	root, ok := tc.roots[size]
	require.True(t, ok, "no root at %d", size)
	head := hex.EncodeToString(tc.hashes[size-1][:])
	msg, err := checkpoint.Sign(checkpoint.Checkpoint{ChainID: tc.id, Size: size, Root: hex.EncodeToString(root[:]), Head: head,
		BatchFirst: size - 1, BatchLast: size - 1, BatchRoot: head}, tc.signer)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.checkpoint", tc.id, size))
	require.NoError(t, os.WriteFile(p, msg, 0o644))
	return p
}

// runCLI runs auditctl in-process.
func runCLI(args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, false)
	return stdout.String(), stderr.String(), code
}

// TestConsistencyEveryPair: the proof printed for every pair of sizes of
// small trees (one entry a batch, and batches across the tiles'
// boundaries) is transparency-dev/merkle's: its verifier accepts it, and
// so does --check; the same proof for other sizes or roots does not check.
func TestConsistencyEveryPair(t *testing.T) {
	dir := t.TempDir()
	small := newTreeChain(t, dir, "small")
	var sizes []int64
	for n := int64(1); n <= 20; n++ {
		sizes = append(sizes, n)
	}
	small.grow(t, nil, "a", sizes...)
	large := newTreeChain(t, dir, "large")
	large.grow(t, nil, "a", 1, 2, 255, 256, 257, 300, 511, 512, 513, 700, 65537)
	for _, tc := range []*treeChain{small, large} {
		files := map[int64]string{}
		for size := range tc.roots {
			if size > 0 {
				files[size] = tc.checkpointFile(t, size)
			}
		}
		for m, oldFile := range files {
			for n, newFile := range files {
				if m > n {
					continue
				}
				out, errOut, code := runCLI("consistency", "--key", tc.keyFile, oldFile, newFile, dir)
				require.Equal(t, exitIntact, code, "%s %d→%d: %s", tc.id, m, n, errOut)
				p, err := tlogtree.ParseProof([]byte(out))
				require.NoError(t, err)
				oldRoot, newRoot := tc.roots[m], tc.roots[n]
				require.NoError(t, proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), hashBytes(p), oldRoot[:], newRoot[:]),
					"%s %d→%d", tc.id, m, n)
				if tc == small || m == 1 || n == 65537 {
					pf := filepath.Join(t.TempDir(), "proof")
					require.NoError(t, os.WriteFile(pf, []byte(out), 0o644))
					_, errOut, code = runCLI("consistency", "--check", pf, "--key", tc.keyFile, oldFile, newFile)
					require.Equal(t, exitIntact, code, "%s %d→%d: %s", tc.id, m, n, errOut)
				}
			}
		}
	}

	// A proof checked against other sizes, or an altered proof, fails.
	out, _, code := runCLI("consistency", "--key", small.keyFile, small.checkpointFile(t, 3), small.checkpointFile(t, 13), dir)
	require.Equal(t, exitIntact, code)
	pf := filepath.Join(t.TempDir(), "proof")
	require.NoError(t, os.WriteFile(pf, []byte(out), 0o644))
	out, _, code = runCLI("consistency", "--check", pf, "--key", small.keyFile, small.checkpointFile(t, 4), small.checkpointFile(t, 13))
	assert.Equal(t, exitViolations, code)
	assert.True(t, strings.HasPrefix(out, "INVALID: "), out)
	p, err := tlogtree.ParseProof(mustReadBytes(t, pf))
	require.NoError(t, err)
	p[1][0] ^= 1
	require.NoError(t, os.WriteFile(pf, tlogtree.MarshalProof(p), 0o644))
	_, _, code = runCLI("consistency", "--check", pf, "--key", small.keyFile, small.checkpointFile(t, 3), small.checkpointFile(t, 13))
	assert.Equal(t, exitViolations, code)
}

func hashBytes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func mustReadBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// TestConsistencyForkAndTruncation: a trail whose chain was truncated and
// regrown with other entries (a fork) cannot prove that its new tree
// extends a checkpoint of the old one, and a proof made from either does
// not check against the other; a trail whose tiles were truncated cannot
// prove what it no longer holds.
func TestConsistencyForkAndTruncation(t *testing.T) {
	dir := t.TempDir()
	tc := newTreeChain(t, dir, "c")
	tc.grow(t, nil, "a", 10, 20, 300)
	old20, old300 := tc.checkpointFile(t, 20), tc.checkpointFile(t, 300)
	out, _, code := runCLI("consistency", "--key", tc.keyFile, old20, old300, dir)
	require.Equal(t, exitIntact, code)
	honest := filepath.Join(t.TempDir(), "honest")
	require.NoError(t, os.WriteFile(honest, []byte(out), 0o644))

	// Truncated: the tiles past size 20 removed.
	trunc := t.TempDir()
	tt := newTreeChain(t, trunc, "c")
	tt.signer, tt.vkey, tt.keyFile = tc.signer, tc.vkey, tc.keyFile
	tt.grow(t, nil, "a", 10, 20)
	_, errOut, code := runCLI("consistency", "--key", tc.keyFile, old20, old300, trunc)
	assert.Equal(t, exitViolations, code, errOut)
	assert.Contains(t, errOut, "tile")

	// Forked: from seq 15 on, other entries, the operator's key re-signing.
	forked := t.TempDir()
	fc := newTreeChain(t, forked, "c")
	fc.signer, fc.vkey, fc.keyFile = tc.signer, tc.vkey, tc.keyFile
	w := fc.grow(t, nil, "a", 10, 15)
	fc.grow(t, w, "b", 20, 300)
	new300 := fc.checkpointFile(t, 300)
	_, errOut, code = runCLI("consistency", "--key", tc.keyFile, old20, new300, forked)
	assert.Equal(t, exitViolations, code, errOut)
	assert.Contains(t, errOut, "the proof fails: the newer tree does not extend the older")
	// The forked trail proves its own history.
	out, errOut, code = runCLI("consistency", "--key", tc.keyFile, fc.checkpointFile(t, 20), new300, forked)
	require.Equal(t, exitIntact, code, errOut)
	forkProof := filepath.Join(t.TempDir(), "fork")
	require.NoError(t, os.WriteFile(forkProof, []byte(out), 0o644))
	// Neither proof relates the old checkpoint to the forked one.
	for _, p := range []string{honest, forkProof} {
		out, _, code = runCLI("consistency", "--check", p, "--key", tc.keyFile, old20, new300)
		assert.Equal(t, exitViolations, code, p)
		assert.Contains(t, out, "INVALID")
	}
	// The old tree's checkpoint against the old trail: still valid.
	out, _, code = runCLI("consistency", "--check", honest, "--key", tc.keyFile, "--json", old20, old300)
	assert.Equal(t, exitIntact, code)
	assert.Contains(t, out, `"valid": true`)
}

// TestConsistencyUsage: what is not a question about one chain's tree,
// and a bad signature.
func TestConsistencyUsage(t *testing.T) {
	dir := t.TempDir()
	a := newTreeChain(t, dir, "a")
	a.grow(t, nil, "a", 5, 9)
	b := newTreeChain(t, dir, "b")
	b.grow(t, nil, "b", 9)
	keys := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(keys, []byte(a.vkey+"\n"+b.vkey+"\n"), 0o644))
	a5, a9, b9 := a.checkpointFile(t, 5), a.checkpointFile(t, 9), b.checkpointFile(t, 9)

	// Format 1: no tree root.
	s1 := filepath.Join(t.TempDir(), "v1.checkpoint")
	head := hex.EncodeToString(a.hashes[8][:])
	msg, err := checkpoint.Sign(checkpoint.Checkpoint{ChainID: "a", Size: 9, Head: head, BatchFirst: 8, BatchLast: 8, BatchRoot: head}, a.signer)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(s1, msg, 0o644))

	for name, c := range map[string]struct {
		args []string
		code int
		msg  string
	}{
		"other chains":      {[]string{"consistency", "--key", keys, a5, b9, dir}, exitError, `the older is of chain "a", the newer of chain "b"`},
		"format 1":          {[]string{"consistency", "--key", keys, a5, s1, dir}, exitError, "format 1"},
		"the wrong way":     {[]string{"consistency", "--key", keys, a9, a5, dir}, exitError, "the other way round"},
		"missing target":    {[]string{"consistency", "--key", keys, a5, a9}, exitError, "want OLD_CHECKPOINT NEW_CHECKPOINT TARGET"},
		"not a checkpoint":  {[]string{"consistency", "--key", keys, keys, a9, dir}, exitError, "is not a signed checkpoint"},
		"published keys":    {[]string{"consistency", a5, a9, dir}, exitIntact, "trusting the published key"},
		"check without key": {[]string{"consistency", "--check", "-", a5, a9}, exitError, "no verifier key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := runCLI(c.args...)
			assert.Equal(t, c.code, code, errOut)
			assert.Contains(t, errOut, c.msg)
		})
	}

	// A signature that does not verify: 1, as prove's.
	other, _, err := checkpoint.GenerateKey("a")
	require.NoError(t, err)
	os2, err := note.NewSigner(other)
	require.NoError(t, err)
	a.signer = os2
	forged := a.checkpointFile(t, 9)
	_, errOut, code := runCLI("consistency", "--key", keys, a5, forged, dir)
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "bad_signature")

	// --check - reads the proof from standard input; TARGET gives the
	// published keys.
	out, _, code := runCLI("consistency", "--key", keys, a5, a9, dir)
	require.Equal(t, exitIntact, code)
	stdin = strings.NewReader(out)
	defer func() { stdin = os.Stdin }()
	out, errOut, code = runCLI("consistency", "--check", "-", a5, a9, dir)
	assert.Equal(t, exitIntact, code, errOut)
	assert.Contains(t, out, "VALID: chain a at size 9")
	assert.Contains(t, errOut, "trusting the published key")
}
