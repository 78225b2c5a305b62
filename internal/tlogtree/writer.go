package tlogtree

import (
	"bytes"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Writer extends a chain's tree, the collector's side: each Append returns
// the tiles to store and the new root. Its state is the tree's size, the
// compact range of the tree (at most 64 hashes) and each level's partial
// tile (fewer than 256 hashes a level): its memory does not grow with the
// chain. A Writer is not safe for concurrent use.
type Writer struct {
	chainID string
	rng     *compact.Range
	// part[L] is level L's partial tile: the hashes of tree level 8L
	// since the last full tile of the level, fewer than 256. A buffer
	// is only appended to, then handed out whole as a full tile and
	// replaced: the bytes of a partial tile returned earlier never change.
	part [][]byte
	root tlog.Hash
	// done lists the full tiles completed by the Append under way.
	done map[tlog.Tile][]byte
	// err, once set, is returned by every Append: the state may be
	// half-advanced.
	err error
}

var rangeFactory = &compact.RangeFactory{Hash: nodeHash}

// nodeHash is the RFC 6962 node hash, SHA-256(0x01 || left || right), for
// the compact range: tlog's, so that tiles and ranges hash alike.
func nodeHash(left, right []byte) []byte {
	h := tlog.NodeHash(tlog.Hash(left), tlog.Hash(right))
	return h[:]
}

// NewWriter returns a Writer of the empty tree of chain chainID, which
// must satisfy store.ValidChainID.
func NewWriter(chainID string) (*Writer, error) {
	if !store.ValidChainID(chainID) {
		return nil, fmt.Errorf("tlogtree: invalid chain id %q", chainID)
	}
	return &Writer{chainID: chainID, rng: rangeFactory.NewEmptyRange(0), root: EmptyRoot()}, nil
}

// ResumeWriter returns a Writer of chain chainID's tree at size, read from
// the tiles stored under its keys: the partial tiles of width size gives
// at each level, which a Writer stored when an Append ended at size. The
// tiles must support root, the chain's root at size (from its latest
// checkpoint); if not, the error wraps ErrTilesMismatch. A tile that
// cannot be read gives an error wrapping read's.
//
// A Writer resumed at size returns, from then on, the same tiles and roots
// byte for byte as one that reached size without stopping.
func ResumeWriter(chainID string, size int64, root tlog.Hash, read ReadFunc) (*Writer, error) {
	w, err := NewWriter(chainID)
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("tlogtree: negative size %d", size)
	}
	if size == 0 {
		if root != w.root {
			return nil, fmt.Errorf("%w: the empty tree's root is %v, not %v", ErrTilesMismatch, w.root, root)
		}
		return w, nil
	}
	// The compact range of [0, size) is the list of its perfect subtrees'
	// roots, which are what tlog reads to compute the tree's hash: the
	// tiles that hold them are each level's partial tile.
	ids := compact.RangeNodes(0, uint64(size), nil)
	indexes := make([]int64, len(ids))
	for i, id := range ids {
		indexes[i] = tlog.StoredHashIndex(int(id.Level), int64(id.Index))
	}
	tr := &tileReader{chainID: chainID, read: read}
	hashes, err := readHashes(tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tr), tr, indexes)
	if err != nil {
		return nil, fmt.Errorf("tlogtree: resuming chain %s at size %d: %w", chainID, size, err)
	}
	rh := make([][]byte, len(hashes))
	for i := range hashes {
		rh[i] = hashes[i][:]
	}
	if w.rng, err = rangeFactory.NewRange(0, uint64(size), rh); err != nil {
		return nil, fmt.Errorf("tlogtree: resuming chain %s at size %d: %w", chainID, size, err)
	}
	// The tiles TileHashReader authenticated are exactly the partial
	// tiles: one per level whose width at size is not 0.
	for i, t := range tr.saved {
		if t.W == tileHashes {
			return nil, fmt.Errorf("tlogtree: resuming chain %s at size %d: read full tile %s for the tree's hash (bug)", chainID, size, t.Path())
		}
		for len(w.part) <= t.L {
			w.part = append(w.part, nil)
		}
		w.part[t.L] = append(make([]byte, 0, tileBytes), tr.savedData[i]...)
	}
	w.root = root
	if err := w.check(size); err != nil {
		return nil, fmt.Errorf("tlogtree: resuming chain %s at size %d: %w", chainID, size, err)
	}
	return w, nil
}

// Size returns the number of entries in the tree.
func (w *Writer) Size() int64 { return int64(w.rng.End()) }

// Root returns the tree's root at Size.
func (w *Writer) Root() tlog.Hash { return w.root }

// Append adds the entries with the given entry hashes, in seq order, as
// the next leaves, and returns the tiles the extension completes or
// extends and the new root. The tiles are those tlog.NewTiles names for
// the old and new sizes, levels in increasing order and each level's in
// increasing N: full tiles, each returned once in the tree's life, and at
// most one partial tile per level, a new key for each width. Appending no
// entries returns no tiles and the same root.
//
// The Writer has advanced when Append returns: store every tile (retrying
// as needed) before publishing the root. A Writer that cannot is resumed
// from the stored tiles at the last size published (ResumeWriter). After an
// error, which only a bug can cause, every Append returns it.
func (w *Writer) Append(entryHashes [][32]byte) ([]Tile, tlog.Hash, error) {
	return w.appendN(len(entryHashes), func(i int) tlog.Hash { return LeafHash(entryHashes[i]) })
}

// AppendLeaves is Append for the leaf hashes of the entries (LeafHash of
// each entry hash, 32 bytes each, in seq order), for a caller that has
// them already: the sealer, whose batch computed them for its own Merkle
// root (parquetfile.Columns.LeafHashes). A length that is not a multiple
// of 32 is an error, and the Writer does not advance.
func (w *Writer) AppendLeaves(leaves []byte) ([]Tile, tlog.Hash, error) {
	if len(leaves)%tlog.HashSize != 0 {
		return nil, tlog.Hash{}, fmt.Errorf("tlogtree: %d bytes of leaf hashes, not a multiple of %d", len(leaves), tlog.HashSize)
	}
	return w.appendN(len(leaves)/tlog.HashSize, func(i int) tlog.Hash {
		return tlog.Hash(leaves[i*tlog.HashSize : (i+1)*tlog.HashSize])
	})
}

// appendN appends the n leaves leaf gives (Append).
func (w *Writer) appendN(n int, leaf func(i int) tlog.Hash) ([]Tile, tlog.Hash, error) {
	if w.err != nil {
		return nil, tlog.Hash{}, w.err
	}
	old := w.Size()
	if n == 0 {
		return nil, w.root, nil
	}
	tiles, root, err := w.append(old, n, leaf)
	if err != nil {
		w.err = fmt.Errorf("tlogtree: chain %s after size %d: %w", w.chainID, old, err)
		return nil, tlog.Hash{}, w.err
	}
	return tiles, root, nil
}

func (w *Writer) append(old int64, n int, leaf func(i int) tlog.Hash) ([]Tile, tlog.Hash, error) {
	clear(w.done)
	var verr error
	visit := func(id compact.NodeID, hash []byte) {
		if id.Level%Height != 0 || verr != nil {
			return
		}
		verr = w.keep(int(id.Level/Height), int64(id.Index), hash)
	}
	for i := range n {
		h := leaf(i)
		if err := w.rng.Append(h[:], visit); err != nil {
			return nil, tlog.Hash{}, err
		}
		if verr != nil {
			return nil, tlog.Hash{}, verr
		}
	}
	size := w.Size()
	coords := tlog.NewTiles(Height, old, size)
	tiles := make([]Tile, len(coords))
	for i, t := range coords {
		var data []byte
		if t.W == tileHashes {
			data = w.done[t]
			delete(w.done, t)
		} else if t.L < len(w.part) && len(w.part[t.L]) == t.W*tlog.HashSize {
			p := w.part[t.L]
			data = p[:len(p):len(p)]
		}
		if data == nil {
			return nil, tlog.Hash{}, fmt.Errorf("no data for tile %s (bug)", t.Path())
		}
		tiles[i] = Tile{Tile: t, Key: store.TileKey(w.chainID, t), Data: data}
	}
	if len(w.done) != 0 {
		return nil, tlog.Hash{}, fmt.Errorf("%d full tiles not among the new tiles (bug)", len(w.done))
	}
	if err := w.check(size); err != nil {
		return nil, tlog.Hash{}, err
	}
	return tiles, w.root, nil
}

// keep adds hash, node index of tree level 8L, to level L's partial tile,
// and moves the tile to done when it is full.
func (w *Writer) keep(L int, index int64, hash []byte) error {
	for len(w.part) <= L {
		w.part = append(w.part, make([]byte, 0, tileBytes))
	}
	p := w.part[L]
	if got, want := int64(len(p)/tlog.HashSize), index%tileHashes; got != want {
		return fmt.Errorf("level %d node %d lands at %d in its tile (bug)", L*Height, index, got)
	}
	p = append(p, hash...)
	if len(p) < tileBytes {
		w.part[L] = p
		return nil
	}
	if w.done == nil {
		w.done = make(map[tlog.Tile][]byte)
	}
	w.done[tlog.Tile{H: Height, L: L, N: index / tileHashes, W: tileHashes}] = p
	w.part[L] = make([]byte, 0, tileBytes)
	return nil
}

// check sets the root at size from the partial tiles, with tlog.TreeHash,
// and checks it against the compact range's.
func (w *Writer) check(size int64) error {
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return w.partialHashes(size, indexes)
	}))
	if err != nil {
		return err
	}
	want, err := w.rng.GetRootHash(nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(root[:], want) {
		return fmt.Errorf("%w: the tiles give root %v at size %d, the compact range %x", ErrTilesMismatch, root, size, want)
	}
	w.root = root
	return nil
}

// partialHashes is a tlog.HashReader over the partial tiles at size: the
// hashes tlog.TreeHash reads at size are all in them.
func (w *Writer) partialHashes(size int64, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		t := tlog.TileForIndex(Height, x)
		if t.L >= len(w.part) {
			return nil, fmt.Errorf("hash %d is in level %d, above the tiles (bug)", x, t.L)
		}
		p := w.part[t.L]
		cur := tlog.Tile{H: Height, L: t.L, N: size >> (Height * (t.L + 1)), W: len(p) / tlog.HashSize}
		h, err := tlog.HashFromTile(cur, p, x)
		if err != nil {
			return nil, fmt.Errorf("hash %d at size %d: %w (bug)", x, size, err)
		}
		out[i] = h
	}
	return out, nil
}

// Partial returns the partial tiles of the tree at Size, one per level
// whose width is not 0, levels in increasing order: what ResumeWriter
// reads to continue the tree, so that a collector can keep them locally
// and resume while the store is out of reach. Data is shared with the
// Writer: store it, do not modify it.
func (w *Writer) Partial() []Tile {
	size := w.Size()
	var tiles []Tile
	for L, p := range w.part {
		if len(p) == 0 {
			continue
		}
		t := tlog.Tile{H: Height, L: L, N: size >> (Height * (L + 1)), W: len(p) / tlog.HashSize}
		tiles = append(tiles, Tile{Tile: t, Key: store.TileKey(w.chainID, t), Data: p[:len(p):len(p)]})
	}
	return tiles
}
