package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// floorTree is the least work issue 18's contract adds to the floor: the
// chain's RFC 6962 tree over the entry hashes, and its tiles stored as
// files (C2SP tlog-tiles: 256 hashes a tile, one tile of level L+1 per 256
// of level L) before the batch's checkpoint. A leaf hash per entry, the
// tree's inner node hashes (one per entry, over a chain's life), and a
// durable file per 256 entries: each completed tile created under its
// final name and written, all of a batch's fsynced, then each directory
// once. It leaves out what any design does once per batch and no more
// (the partial tiles, the root over them), and the atomic rename a store
// that never shows a torn tile needs.
type floorTree struct {
	dir    string
	buf    [1 + 2*sha256.Size]byte
	levels [][]byte    // each level's tile being filled: up to 256 hashes
	done   []floorTile // completed tiles not yet written
	tiles  []int64     // tiles completed, per level
}

type floorTile struct {
	level int
	n     int64
	data  []byte
}

const floorTileHashes = 256

func newFloorTree(b *testing.B) *floorTree {
	b.Helper()
	return &floorTree{dir: filepath.Join(b.TempDir(), "tiles")}
}

// add appends an entry's hash as the next leaf. Callers hold the chain's
// lock, as the entry's place in the tree is its seq.
func (t *floorTree) add(entryHash *[sha256.Size]byte) {
	t.buf[0] = 0
	copy(t.buf[1:], entryHash[:])
	leaf := sha256.Sum256(t.buf[:1+sha256.Size])
	t.push(0, leaf)
}

// push appends a hash to level L's tile; a full tile is completed, and
// the root of its 256 hashes (255 node hashes: the tree's nodes between
// the two levels) goes up to level L+1.
func (t *floorTree) push(level int, h [sha256.Size]byte) {
	for len(t.levels) <= level {
		t.levels = append(t.levels, make([]byte, 0, floorTileHashes*sha256.Size))
		t.tiles = append(t.tiles, 0)
	}
	t.levels[level] = append(t.levels[level], h[:]...)
	full := t.levels[level]
	if len(full) < floorTileHashes*sha256.Size {
		return
	}
	n := t.tiles[level]
	t.tiles[level]++
	t.done = append(t.done, floorTile{level: level, n: n, data: full})
	t.levels[level] = make([]byte, 0, floorTileHashes*sha256.Size)
	t.push(level+1, t.root(full))
}

// root folds a full tile's 256 hashes to the root of their subtree.
func (t *floorTree) root(tile []byte) [sha256.Size]byte {
	var nodes [floorTileHashes][sha256.Size]byte
	for i := range nodes {
		copy(nodes[i][:], tile[i*sha256.Size:])
	}
	t.buf[0] = 1
	for width := floorTileHashes; width > 1; width /= 2 {
		for i := 0; i < width/2; i++ {
			copy(t.buf[1:], nodes[2*i][:])
			copy(t.buf[1+sha256.Size:], nodes[2*i+1][:])
			nodes[i] = sha256.Sum256(t.buf[:])
		}
	}
	return nodes[0]
}

// write stores tiles: each created and written, then every one fsynced,
// then each of their directories. Callers hold no lock: the tiles' batch
// is sealed.
func (t *floorTree) write(tiles []floorTile) error {
	var dirs []string
	files := make([]*os.File, 0, len(tiles))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, tl := range tiles {
		dir := filepath.Join(t.dir, fmt.Sprint(tl.level), fmt.Sprintf("x%03d", tl.n/1000))
		if !slices.Contains(dirs, dir) {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return err
			}
			dirs = append(dirs, dir)
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%03d", tl.n%1000)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
		if err != nil {
			return err
		}
		files = append(files, f)
		if _, err := f.Write(tl.data); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	for _, dir := range dirs {
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
