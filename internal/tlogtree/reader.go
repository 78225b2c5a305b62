package tlogtree

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Reader reads a chain's tree from its stored tiles, the auditor's side:
// roots and proofs. Each call reads the O(log n) tiles it needs through
// the ReadFunc, no cache in between; a Reader is safe for concurrent use
// if the ReadFunc is.
type Reader struct {
	chainID string
	read    ReadFunc
}

// NewReader returns a Reader of chain chainID's tree, whose tiles read
// returns by key (store.TileKey).
func NewReader(chainID string, read ReadFunc) (*Reader, error) {
	if !store.ValidChainID(chainID) {
		return nil, fmt.Errorf("tlogtree: invalid chain id %q", chainID)
	}
	return &Reader{chainID: chainID, read: read}, nil
}

// Root returns the root of the tree at size as the stored tiles give it:
// it reads each level's partial tile at size, at most one a level. Nothing
// is checked: compare the root with a checkpoint's. A missing tile gives an
// error wrapping read's (store.ErrNotFound).
func (r *Reader) Root(size int64) (tlog.Hash, error) {
	if size < 0 {
		return tlog.Hash{}, fmt.Errorf("tlogtree: negative size %d", size)
	}
	tr := &tileReader{chainID: r.chainID, read: r.read}
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		// TreeHash asks for the roots of the perfect subtrees of
		// [0, size), which lie in each level's tile at size, that is
		// as wide as size makes it (tlog's unexported tileParent(t, 0,
		// size)); TileForIndex gives the narrowest tile holding each.
		var tiles []tlog.Tile
		in := make([]int, len(indexes)) // indexes[i] is in tiles[in[i]]
		for i, x := range indexes {
			t := tlog.TileForIndex(Height, x)
			t.W = int(min(tileHashes, size>>(Height*t.L)-t.N<<Height))
			if j := len(tiles) - 1; j >= 0 && tiles[j] == t {
				in[i] = j // the indexes come left to right: a tile's are adjacent
				continue
			}
			in[i] = len(tiles)
			tiles = append(tiles, t)
		}
		data, err := tr.ReadTiles(tiles)
		if err != nil {
			return nil, err
		}
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if out[i], err = tlog.HashFromTile(tiles[in[i]], data[in[i]], x); err != nil {
				return nil, err
			}
		}
		return out, nil
	}))
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("tlogtree: root of chain %s at size %d: %w", r.chainID, size, err)
	}
	return root, nil
}

// ConsistencyProof returns the RFC 6962 consistency proof that the tree
// at newSize, whose root is newRoot, extends the tree at oldSize
// (tlog.ProveTree): O(log n) hashes, read from O(log n) tiles, each
// checked against newRoot (tlog.TileHashReader). Tiles that do not support
// newRoot give an error wrapping ErrTilesMismatch; a missing tile, one
// wrapping read's. From size 0, and between equal sizes, the proof is
// empty and reads nothing. Requires 0 <= oldSize <= newSize.
func (r *Reader) ConsistencyProof(oldSize, newSize int64, newRoot tlog.Hash) ([]tlog.Hash, error) {
	if oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("tlogtree: no consistency proof from size %d to %d", oldSize, newSize)
	}
	if oldSize == 0 || oldSize == newSize {
		return []tlog.Hash{}, nil
	}
	p, err := tlog.ProveTree(newSize, oldSize, r.checked(newSize, newRoot))
	if err != nil {
		return nil, fmt.Errorf("tlogtree: consistency proof of chain %s from size %d to %d: %w", r.chainID, oldSize, newSize, err)
	}
	return p, nil
}

// InclusionProof returns the RFC 6962 inclusion proof (audit path) of
// entry index in the tree at size, whose root is root (tlog.ProveRecord),
// read from O(log n) tiles each checked against root. Errors as
// ConsistencyProof's. Requires 0 <= index < size.
func (r *Reader) InclusionProof(index, size int64, root tlog.Hash) ([]tlog.Hash, error) {
	if index < 0 || index >= size {
		return nil, fmt.Errorf("tlogtree: no entry %d in a tree of size %d", index, size)
	}
	p, err := tlog.ProveRecord(size, index, r.checked(size, root))
	if err != nil {
		return nil, fmt.Errorf("tlogtree: inclusion proof of chain %s entry %d at size %d: %w", r.chainID, index, size, err)
	}
	return p, nil
}

// checked returns a tlog.HashReader of the tree at size whose tiles are
// checked against root, with errors that say which failure it was.
func (r *Reader) checked(size int64, root tlog.Hash) tlog.HashReader {
	tr := &tileReader{chainID: r.chainID, read: r.read}
	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tr)
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return readHashes(hr, tr, indexes)
	})
}

// readHashes reads hashes through hr, a tlog.TileHashReader over tr, and
// tells apart a tile that could not be read (tr's error) from tiles that
// do not support the tree's root (tlog's unexported errors).
func readHashes(hr tlog.HashReader, tr *tileReader, indexes []int64) ([]tlog.Hash, error) {
	hashes, err := hr.ReadHashes(indexes)
	if err != nil {
		if tr.err != nil {
			return nil, tr.err
		}
		return nil, fmt.Errorf("%w: %v", ErrTilesMismatch, err)
	}
	return hashes, nil
}

// tileReader is a tlog.TileReader over the stored tiles of one chain. It
// keeps the tiles tlog has authenticated (SaveTiles) for ResumeWriter.
type tileReader struct {
	chainID string
	read    ReadFunc
	err     error // the last ReadTiles error
	// saved and savedData are the tiles SaveTiles was given.
	saved     []tlog.Tile
	savedData [][]byte
}

func (tr *tileReader) Height() int { return Height }

func (tr *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		key := store.TileKey(tr.chainID, t)
		b, err := tr.read(key)
		if err != nil {
			tr.err = fmt.Errorf("reading tile %s: %w", key, err)
			return nil, tr.err
		}
		if len(b) != t.W*tlog.HashSize {
			tr.err = fmt.Errorf("%w: tile %s holds %d bytes, want %d", ErrTilesMismatch, key, len(b), t.W*tlog.HashSize)
			return nil, tr.err
		}
		data[i] = b
	}
	return data, nil
}

func (tr *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	tr.saved = append(tr.saved, tiles...)
	tr.savedData = append(tr.savedData, data...)
}
