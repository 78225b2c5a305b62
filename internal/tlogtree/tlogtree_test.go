package tlogtree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/store"
)

// entryHashes returns n distinct entry hashes of a chain named by seed:
// SHA-256(seed || i).
func entryHashes(seed string, n int) [][32]byte {
	out := make([][32]byte, n)
	buf := make([]byte, len(seed)+8)
	copy(buf, seed)
	for i := range out {
		binary.BigEndian.PutUint64(buf[len(seed):], uint64(i))
		out[i] = sha256.Sum256(buf)
	}
	return out
}

func raw(hs [][32]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// merkleRoot is internal/merkle's root over the entry hashes, the
// per-batch tree's code.
func merkleRoot(hs [][32]byte) tlog.Hash { return tlog.Hash(merkle.Root(raw(hs))) }

// tiles is a write-once store of tiles in memory: a key is put once, ever
// (a Writer never returns a key twice, so even an identical second put is
// a failure here), and it counts reads.
type tiles struct {
	t     testing.TB
	m     map[string][]byte
	reads int
	bytes int
}

func newTiles(t testing.TB) *tiles { return &tiles{t: t, m: make(map[string][]byte)} }

func (s *tiles) put(ts []Tile) {
	s.t.Helper()
	for _, t := range ts {
		if old, ok := s.m[t.Key]; ok {
			s.t.Fatalf("tile %s returned twice (same bytes: %v)", t.Key, bytes.Equal(old, t.Data))
		}
		require.Equal(s.t, store.TileKey("c", t.Tile), t.Key)
		require.Len(s.t, t.Data, t.W*tlog.HashSize, t.Key)
		require.NoError(s.t, store.ValidKey(t.Key))
		s.m[t.Key] = t.Data
	}
}

func (s *tiles) read(key string) ([]byte, error) {
	b, ok := s.m[key]
	if !ok {
		return nil, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	s.reads++
	s.bytes += len(b)
	return b, nil
}

func (s *tiles) clone() *tiles {
	c := newTiles(s.t)
	for k, v := range s.m {
		c.m[k] = v
	}
	return c
}

func newWriter(t testing.TB) *Writer {
	w, err := NewWriter("c")
	require.NoError(t, err)
	return w
}

func newReader(t testing.TB, s *tiles) *Reader {
	r, err := NewReader("c", s.read)
	require.NoError(t, err)
	return r
}

// grow appends hs to a fresh writer one at a time and returns the roots
// at each size, from 0.
func grow(t *testing.T, s *tiles, hs [][32]byte) []tlog.Hash {
	w := newWriter(t)
	roots := []tlog.Hash{w.Root()}
	for i := range hs {
		ts, root, err := w.Append(hs[i : i+1])
		require.NoError(t, err)
		s.put(ts)
		roots = append(roots, root)
	}
	return roots
}

func TestLeafHashIsMerkles(t *testing.T) {
	for _, e := range entryHashes("leaf", 5) {
		leaf := LeafHash(e)
		assert.Equal(t, merkle.LeafHash(e[:]), leaf[:])
	}
	empty := EmptyRoot()
	assert.Equal(t, merkle.Root(nil), empty[:])
	// echo -n | sha256sum
	assert.Equal(t, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", EmptyRoot().String())
}

func TestAllPairs(t *testing.T) {
	const max = 70
	hs := entryHashes("pairs", max)
	s := newTiles(t)
	roots := grow(t, s, hs)
	r := newReader(t, s)
	for n := 0; n <= max; n++ {
		require.Equal(t, merkleRoot(hs[:n]), roots[n], "root at %d", n)
		got, err := r.Root(int64(n))
		require.NoError(t, err)
		require.Equal(t, roots[n], got, "Reader.Root(%d)", n)
	}
	for n := 0; n <= max; n++ {
		for m := 0; m <= n; m++ {
			p, err := r.ConsistencyProof(int64(m), int64(n), roots[n])
			require.NoError(t, err, "%d..%d", m, n)
			require.NoError(t, proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), byteSlices(p), roots[m][:], roots[n][:]), "%d..%d", m, n)
			require.NoError(t, CheckConsistency(int64(m), roots[m], int64(n), roots[n], p))
			if m > 0 {
				require.NoError(t, tlog.CheckTree(p, int64(n), roots[n], int64(m), roots[m]), "tlog agrees %d..%d", m, n)
			}
			text := MarshalProof(p)
			require.Equal(t, len(p), bytes.Count(text, []byte("\n")))
			back, err := ParseProof(text)
			require.NoError(t, err)
			require.Equal(t, p, back)
			if m < n && m > 0 {
				// Another old root, or another new one, fails.
				require.ErrorIs(t, CheckConsistency(int64(m), roots[m-1], int64(n), roots[n], p), ErrProofFailed)
				require.ErrorIs(t, CheckConsistency(int64(m), roots[m], int64(n), roots[n-1], p), ErrProofFailed)
			}
		}
		for i := 0; i < n; i++ {
			p, err := r.InclusionProof(int64(i), int64(n), roots[n])
			require.NoError(t, err)
			want, err := merkle.InclusionProof(raw(hs[:n]), i)
			require.NoError(t, err)
			require.Equal(t, want, byteSlices(p), "internal/merkle's path for %d at %d", i, n)
			leaf := LeafHash(hs[i])
			require.NoError(t, proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(n), leaf[:], byteSlices(p), roots[n][:]))
			require.NoError(t, CheckInclusion(hs[i], int64(i), int64(n), roots[n], p))
			require.NoError(t, tlog.CheckRecord(p, int64(n), roots[n], int64(i), leaf))
			if n > 1 {
				require.ErrorIs(t, CheckInclusion(hs[(i+1)%n], int64(i), int64(n), roots[n], p), ErrProofFailed, "another entry")
			}
		}
	}
}

// TestChunksGiveTheSameTiles: however the entries are grouped into Appends,
// the tiles that two Writers both return are identical and the roots
// agree.
func TestChunksGiveTheSameTiles(t *testing.T) {
	hs := entryHashes("chunks", 1200)
	one := newTiles(t)
	roots := grow(t, one, hs)
	// Each partial tile is the start of every wider one of its place.
	for k, d := range one.m {
		_, tl, err := store.ParseTileKey(k)
		require.NoError(t, err)
		for w := tl.W + 1; w <= 256; w++ {
			wider, ok := one.m[store.TileKey("c", tlog.Tile{H: 8, L: tl.L, N: tl.N, W: w})]
			if ok {
				require.Equal(t, d, wider[:len(d)], "%s in width %d", k, w)
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		s := newTiles(t)
		w := newWriter(t)
		for w.Size() < int64(len(hs)) {
			k := min(int64(len(hs))-w.Size(), rnd.Int64N(600))
			ts, root, err := w.Append(hs[w.Size() : w.Size()+k])
			require.NoError(t, err)
			require.Equal(t, roots[w.Size()], root)
			s.put(ts)
			for _, tl := range ts {
				require.Equal(t, one.m[tl.Key], tl.Data, tl.Key)
			}
		}
	}
}

// TestAppendLeaves: a tree grown from the leaf hashes, in chunks of any
// size, gives the tiles and roots of the same tree grown from the entry
// hashes; leaf hashes cut short are refused and the Writer stays where it
// was.
func TestAppendLeaves(t *testing.T) {
	hs := entryHashes("leaves", 1200)
	one := newTiles(t)
	roots := grow(t, one, hs)
	leaves := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		l := LeafHash(h)
		leaves = append(leaves, l[:]...)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	w := newWriter(t)
	for w.Size() < int64(len(hs)) {
		k := min(int64(len(hs))-w.Size(), rnd.Int64N(600))
		at := w.Size() * tlog.HashSize
		ts, root, err := w.AppendLeaves(leaves[at : at+k*tlog.HashSize])
		require.NoError(t, err)
		require.Equal(t, roots[w.Size()], root)
		for _, tl := range ts {
			require.Equal(t, one.m[tl.Key], tl.Data, tl.Key)
		}
	}

	w = newWriter(t)
	_, _, err := w.AppendLeaves(leaves[:2*tlog.HashSize+5])
	require.ErrorContains(t, err, "69 bytes of leaf hashes")
	assert.Equal(t, int64(0), w.Size())
	_, root, err := w.AppendLeaves(leaves[:2*tlog.HashSize])
	require.NoError(t, err, "a refused AppendLeaves does not break the Writer")
	assert.Equal(t, roots[2], root)
}

func TestEmptyAppend(t *testing.T) {
	w := newWriter(t)
	ts, root, err := w.Append(nil)
	require.NoError(t, err)
	assert.Empty(t, ts)
	assert.Equal(t, EmptyRoot(), root)
	_, _, err = w.Append(entryHashes("e", 3))
	require.NoError(t, err)
	r3 := w.Root()
	ts, root, err = w.Append([][32]byte{})
	require.NoError(t, err)
	assert.Empty(t, ts)
	assert.Equal(t, r3, root)
}

// TestForkedTree: a chain rewritten from entry k on (truncated at k, then
// grown again with other entries) cannot prove it extends a tree that
// held an original entry at or after k.
func TestForkedTree(t *testing.T) {
	const max = 40
	orig := entryHashes("orig", max)
	s := newTiles(t)
	roots := grow(t, s, orig)
	for k := 0; k < max; k += 3 {
		forked := append(append([][32]byte(nil), orig[:k]...), entryHashes(fmt.Sprint("fork", k), max-k)...)
		fs := newTiles(t)
		froots := grow(t, fs, forked)
		fr := newReader(t, fs)
		for n := 1; n <= max; n++ {
			for m := 1; m <= n; m++ {
				p, err := fr.ConsistencyProof(int64(m), int64(n), froots[n])
				require.NoError(t, err)
				err = CheckConsistency(int64(m), roots[m], int64(n), froots[n], p)
				if m <= k {
					require.NoError(t, err, "the fork at %d does extend the original at %d", k, m)
					continue
				}
				require.ErrorIs(t, err, ErrProofFailed, "fork at %d, %d..%d", k, m, n)
				var rm proof.RootMismatchError
				if m < n {
					require.ErrorAs(t, err, &rm)
				}
			}
			if n > k {
				// The original's tiles do not support the fork's root
				// (nor the fork's the original's).
				// (A proof of no hashes, from size 1 to 1, reads no
				// tile.)
				if n > 1 {
					_, err := newReader(t, s).ConsistencyProof(1, int64(n), froots[n])
					require.ErrorIs(t, err, ErrTilesMismatch, "n=%d k=%d", n, k)
					_, err = fr.InclusionProof(0, int64(n), roots[n])
					require.ErrorIs(t, err, ErrTilesMismatch)
				}
			}
		}
	}
	// A truncated tree: a newer checkpoint of fewer entries is no
	// extension, and its tiles hold nothing past its size.
	require.ErrorIs(t, CheckConsistency(30, roots[30], 20, roots[20], nil), ErrProofFailed)
	ts := newTiles(t)
	troots := grow(t, ts, orig[:20])
	require.Equal(t, roots[20], troots[20])
	_, err := newReader(t, ts).ConsistencyProof(20, 30, roots[30])
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = newReader(t, ts).Root(30)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// boundarySizes end Appends in TestTileBoundaries.
var boundarySizes = []int64{1, 2, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, 65538}

// TestTileBoundaries checks proofs and resumption around full tiles of
// levels 0 and 1, on a tree of 65,538 entries grown in Appends of about a
// thousand that end at each boundary size. The roots are checked against
// internal/merkle at the boundary sizes only (the cheaper check), and the
// proofs for the pairs of boundary sizes and a few entries.
func TestTileBoundaries(t *testing.T) {
	hs := entryHashes("boundaries", int(boundarySizes[len(boundarySizes)-1]))
	s := newTiles(t)
	w := newWriter(t)
	roots := map[int64]tlog.Hash{0: w.Root()}
	var stops []int64
	last := int64(0)
	for _, b := range boundarySizes {
		for next := last + 1000; next < b; next += 1000 {
			stops = append(stops, next)
		}
		stops = append(stops, b)
		last = b
	}
	type step struct {
		tiles []Tile
		root  tlog.Hash
	}
	steps := map[int64]step{} // by the size before
	for _, stop := range stops {
		before := w.Size()
		ts, root, err := w.Append(hs[before:stop])
		require.NoError(t, err)
		s.put(ts)
		roots[stop] = root
		steps[before] = step{ts, root}
	}
	for _, b := range boundarySizes {
		require.Equal(t, merkleRoot(hs[:b]), roots[b], "root at %d", b)
	}
	r := newReader(t, s)
	levels := 3 // tiles of levels 0, 1 and 2 at 65,538 entries
	for _, n := range boundarySizes {
		for _, m := range boundarySizes {
			if m > n {
				continue
			}
			s.reads = 0
			p, err := r.ConsistencyProof(m, n, roots[n])
			require.NoError(t, err)
			rm, rn := roots[m], roots[n]
			require.NoError(t, proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), byteSlices(p), rm[:], rn[:]), "%d..%d", m, n)
			require.LessOrEqual(t, s.reads, 2*levels, "tiles read for %d..%d", m, n)
		}
		for _, i := range []int64{0, 254, 255, 256, 65535, 65536, n - 1} {
			if i >= n {
				continue
			}
			p, err := r.InclusionProof(i, n, roots[n])
			require.NoError(t, err)
			require.NoError(t, CheckInclusion(hs[i], i, n, roots[n], p))
		}
	}

	// Resumed at any size an Append ended at, a Writer returns what the
	// one that never stopped returned next, byte for byte.
	for _, at := range append([]int64{0}, boundarySizes[:len(boundarySizes)-1]...) {
		rw, err := ResumeWriter("c", at, roots[at], s.read)
		require.NoError(t, err, "resume at %d", at)
		require.Equal(t, at, rw.Size())
		next := steps[at]
		ts, root, err := rw.Append(hs[at : int(at)+countLeaves(next.tiles, at)])
		require.NoError(t, err)
		require.Equal(t, next.root, root, "root after resuming at %d", at)
		require.Equal(t, next.tiles, ts, "tiles after resuming at %d", at)
	}

	// A tampered full tile is caught by the proofs that read it.
	bad := s.clone()
	k := store.TileKey("c", tlog.Tile{H: 8, L: 0, N: 1, W: 256})
	bad.m[k] = flip(bad.m[k], 7)
	_, err := newReader(t, bad).InclusionProof(300, 65538, roots[65538])
	require.ErrorIs(t, err, ErrTilesMismatch)
	_, err = newReader(t, bad).InclusionProof(3, 65538, roots[65538])
	require.NoError(t, err, "a proof that does not read the tile")
}

// countLeaves returns how many entries the Append that returned ts added
// to a tree of size before: the level 0 tiles' end.
func countLeaves(ts []Tile, before int64) int {
	end := before
	for _, t := range ts {
		if t.L == 0 {
			end = max(end, t.N*256+int64(t.W))
		}
	}
	return int(end - before)
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestResume(t *testing.T) {
	hs := entryHashes("resume", 1500)
	plan := []int64{1, 2, 3, 7, 200, 255, 256, 257, 300, 511, 512, 700, 1024, 1100, 1500}
	ref := newTiles(t)
	w := newWriter(t)
	type out struct {
		tiles []Tile
		root  tlog.Hash
	}
	var outs []out
	for _, stop := range plan {
		ts, root, err := w.Append(hs[w.Size():stop])
		require.NoError(t, err)
		ref.put(ts)
		outs = append(outs, out{ts, root})
	}
	for i, at := range plan[:len(plan)-1] {
		// The store as it was when the Writer stopped at size at.
		s := newTiles(t)
		for _, o := range outs[:i+1] {
			s.put(o.tiles)
		}
		rw, err := ResumeWriter("c", at, outs[i].root, s.read)
		require.NoError(t, err, "resume at %d", at)
		for j := i + 1; j < len(plan); j++ {
			ts, root, err := rw.Append(hs[rw.Size():plan[j]])
			require.NoError(t, err)
			require.Equal(t, outs[j].tiles, ts, "resumed at %d, Append to %d", at, plan[j])
			require.Equal(t, outs[j].root, root)
			s.put(ts)
		}
		require.Equal(t, len(ref.m), len(s.m))
	}

	// Refusals: another root, a missing, altered or short tile.
	at, root := plan[9], outs[9].root // 511: level 0 partial of 255
	_, err := ResumeWriter("c", at, outs[8].root, ref.read)
	require.ErrorIs(t, err, ErrTilesMismatch)
	key := store.TileKey("c", tlog.Tile{H: 8, L: 0, N: 1, W: 255})
	for name, change := range map[string]func(m map[string][]byte){
		"missing": func(m map[string][]byte) { delete(m, key) },
		"altered": func(m map[string][]byte) { m[key] = flip(m[key], 100) },
		"short":   func(m map[string][]byte) { m[key] = m[key][:len(m[key])-32] },
	} {
		bad := ref.clone()
		change(bad.m)
		_, err := ResumeWriter("c", at, root, bad.read)
		if name == "missing" {
			require.ErrorIs(t, err, store.ErrNotFound, name)
		} else {
			require.ErrorIs(t, err, ErrTilesMismatch, name)
		}
	}
	_, err = ResumeWriter("c", 0, root, ref.read)
	require.ErrorIs(t, err, ErrTilesMismatch, "the empty tree's root")
	_, err = ResumeWriter("c", -1, root, ref.read)
	require.Error(t, err)
	_, err = ResumeWriter("../c", at, root, ref.read)
	require.Error(t, err)
}

// TestWriterMemory: the Writer holds one partial tile a level and a
// compact range, however long the chain.
func TestWriterMemory(t *testing.T) {
	w := newWriter(t)
	hs := entryHashes("mem", 70_000)
	for i := 0; i < len(hs); i += 7_000 {
		_, _, err := w.Append(hs[i : i+7_000])
		require.NoError(t, err)
	}
	assert.Len(t, w.part, 3)
	for _, p := range w.part {
		assert.LessOrEqual(t, cap(p), tileBytes)
	}
	assert.LessOrEqual(t, len(w.rng.Hashes()), 64)
	assert.Empty(t, w.done)
}

func TestProofText(t *testing.T) {
	p := []tlog.Hash{LeafHash([32]byte{1}), LeafHash([32]byte{2})}
	text := MarshalProof(p)
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	require.Len(t, lines, 2)
	for i, l := range lines {
		assert.Equal(t, p[i].String(), l)
		assert.Len(t, l, 44)
	}
	got, err := ParseProof(bytes.TrimSuffix(text, []byte("\n")))
	require.NoError(t, err, "no final newline")
	assert.Equal(t, p, got)
	got, err = ParseProof(nil)
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Empty(t, MarshalProof(nil))

	h := p[0].String()
	for _, bad := range []string{
		"\n",
		h + "\n\n",
		"\n" + h + "\n",
		h + "\r\n",
		" " + h + "\n",
		h[:43] + "\n",
		"AAAA\n",
		strings.Repeat(h+"\n", 65),
	} {
		_, err := ParseProof([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
	_, err = ParseProof([]byte(strings.Repeat(h+"\n", 64)))
	assert.NoError(t, err)
}

func TestProofArguments(t *testing.T) {
	s := newTiles(t)
	roots := grow(t, s, entryHashes("args", 5))
	r := newReader(t, s)
	for _, c := range [][2]int64{{-1, 3}, {4, 3}} {
		_, err := r.ConsistencyProof(c[0], c[1], roots[3])
		assert.Error(t, err, "%v", c)
	}
	for _, c := range [][2]int64{{-1, 3}, {3, 3}, {0, 0}} {
		_, err := r.InclusionProof(c[0], c[1], roots[3])
		assert.Error(t, err, "%v", c)
	}
	_, err := r.Root(-1)
	assert.Error(t, err)
	assert.ErrorIs(t, CheckConsistency(-1, roots[0], 3, roots[3], nil), ErrProofFailed)
	assert.ErrorIs(t, CheckConsistency(0, roots[0], 3, roots[3], []tlog.Hash{roots[1]}), ErrProofFailed, "from 0 the proof is empty")
	assert.NoError(t, CheckConsistency(0, roots[0], 3, roots[3], nil))
	assert.NoError(t, CheckConsistency(3, roots[3], 3, roots[3], nil))
	assert.ErrorIs(t, CheckConsistency(3, roots[2], 3, roots[3], nil), ErrProofFailed)
	_, err = NewReader("", s.read)
	assert.Error(t, err)
	_, err = NewWriter("a/b")
	assert.Error(t, err)
	assert.False(t, errors.Is(CheckConsistency(1, roots[1], 1, roots[1], nil), ErrProofFailed))
}

// TestPartialResumes checks that the partial tiles a Writer reports are
// exactly what ResumeWriter needs: a Writer resumed from them alone
// continues with the same tiles and roots as one that never stopped.
func TestPartialResumes(t *testing.T) {
	hs := entryHashes("partial", 70_000)
	for _, size := range []int{1, 255, 256, 257, 65_535, 65_536, 65_537, 69_999} {
		w := newWriter(t)
		_, root, err := w.Append(hs[:size])
		require.NoError(t, err)
		only := map[string][]byte{}
		for _, p := range w.Partial() {
			assert.Less(t, p.W, 256, "size %d: a partial tile is not full", size)
			only[p.Key] = p.Data
		}
		r, err := ResumeWriter("c", int64(size), root, func(key string) ([]byte, error) {
			if d, ok := only[key]; ok {
				return d, nil
			}
			return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
		})
		require.NoError(t, err, "size %d", size)
		wantTiles, wantRoot, err := w.Append(hs[size:])
		require.NoError(t, err)
		gotTiles, gotRoot, err := r.Append(hs[size:])
		require.NoError(t, err)
		assert.Equal(t, wantRoot, gotRoot, "size %d", size)
		assert.Equal(t, wantTiles, gotTiles, "size %d", size)
	}
}
