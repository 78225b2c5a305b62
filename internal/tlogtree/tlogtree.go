// Package tlogtree keeps one RFC 6962 Merkle tree over the whole of a
// chain, stored as tiles beside the trail, and proves and checks its
// consistency and inclusion proofs (docs/TRANSPARENCY.md, issue 18).
//
// # The tree
//
// Leaf i is entry i of the chain in seq order; its hash is RFC 6962's
// SHA-256(0x00 || entry_hash_i), the entry hash taken as its 32 raw bytes:
// the leaf hash internal/merkle gives the per-batch tree (LeafHash, checked
// by a test). Nodes are SHA-256(0x01 || left || right). The tree of the
// first n entries is the RFC 6962 tree of size n; its hash is the chain's
// root at size n.
//
// # Tiles
//
// The tree's hashes are stored as tiles of height 8 in the layout of
// golang.org/x/mod/sumdb/tlog (Go's checksum database; C2SP tlog-tiles
// with the height in the path): a tile of level L holds up to 256
// consecutive hashes of the tree's level 8L, the leaf hashes at L = 0. The
// key of tile t of chain c is store.TileKey(c, t),
// "tiles/<c>/tile/<L>/<N>[.p/<W>]" (C2SP tlog-tiles). A full tile is written once; a
// partial tile of width W is an object of its own, written once, and never
// rewritten: the next width is the next object. A proof reads O(log n)
// tiles, never the entries.
//
// # Standard parts, and the glue between them
//
// The tree code is transparency-dev/merkle's and x/mod/sumdb/tlog's; this
// package only joins them:
//
//   - Writer: a transparency-dev compact.Range appends the leaves and
//     reports every node it completes; the glue keeps those of levels 8L,
//     which are exactly the tiles' hashes, in one buffer per tile level.
//     tlog.NewTiles names the tiles an extension publishes, and tlog.TreeHash
//     computes the root from the partial tiles being returned (a HashReader
//     over them, glue, whose hashes tlog.HashFromTile computes), so a root
//     the tiles do not support cannot be returned; the compact range's own
//     root must agree.
//   - ResumeWriter: compact.RangeNodes names the perfect subtrees of the
//     tree (glue: their ids as tlog stored-hash indexes); tlog.TileHashReader
//     reads them from the stored tiles and checks them against the expected
//     root, and hands back, through SaveTiles, the authenticated partial
//     tiles the Writer continues from.
//   - Reader: tlog.ProveTree and tlog.ProveRecord through
//     tlog.TileHashReader, which checks every tile read against the root
//     given. Reader.Root, which has no root to check against, reads each
//     hash from the tile that holds it at the size asked (glue: tlog's
//     tileParent, which widens a tile to the tree's size, is unexported).
//     Sizes tlog refuses (a consistency proof from size 0, or between equal
//     sizes) get the empty proof RFC 9162 gives them.
//   - CheckConsistency and CheckInclusion use transparency-dev/merkle's
//     proof.VerifyConsistency and proof.VerifyInclusion rather than
//     tlog.CheckTree and tlog.CheckRecord: the same verifier internal/merkle
//     and tlog-witness implementations (transparency-dev/witness) use, with
//     errors that say what failed (a proof.RootMismatchError with the
//     computed and expected roots, a wrong proof length) where tlog says
//     only "invalid transparency proof", and RFC 9162's answers for size 0
//     and equal sizes, which tlog.CheckTree refuses. The tests check that
//     tlog's checks accept the same proofs.
//
// Proofs travel as text, one base64 hash per line, as C2SP tlog-witness
// sends consistency proofs (MarshalProof, ParseProof).
package tlogtree // import "github.com/agentaudit/agentaudit/internal/tlogtree"

import (
	"errors"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Height is the height of the tiles: each holds up to 1<<Height hashes.
const Height = store.TileHeight

// tileHashes is the number of hashes in a full tile; tileBytes, its size.
const (
	tileHashes = 1 << Height
	tileBytes  = tileHashes * tlog.HashSize
)

// Errors. Check with errors.Is; they come back wrapped with the facts.
var (
	// ErrTilesMismatch: the stored tiles do not support the root they
	// were checked against: a tile was altered, or the root is another
	// tree's (a forked or rewritten chain).
	ErrTilesMismatch = errors.New("tlogtree: stored tiles do not support the root")
	// ErrProofFailed: a consistency or inclusion proof does not hold for
	// the sizes and roots it was checked with. The error also wraps the
	// verifier's, a proof.RootMismatchError when a root differs.
	ErrProofFailed = errors.New("tlogtree: proof failed")
)

// ReadFunc returns the bytes stored under key, or an error (wrapping
// store.ErrNotFound for a missing object, as store.Reader.Get does).
type ReadFunc func(key string) ([]byte, error)

// Tile is one tile to store: its coordinates (embedded: L, N, W), its key
// (store.TileKey) and its data, W hashes of 32 bytes. Data is shared with
// the Writer and later tiles: store it, do not modify it.
type Tile struct {
	tlog.Tile
	Key  string
	Data []byte
}

// LeafHash returns the hash of the leaf of an entry:
// SHA-256(0x00 || entryHash), tlog.RecordHash of the raw entry hash.
func LeafHash(entryHash [32]byte) tlog.Hash { return tlog.RecordHash(entryHash[:]) }

// EmptyRoot is the root of the tree of no entries: SHA-256 of nothing.
func EmptyRoot() tlog.Hash {
	h, _ := tlog.TreeHash(0, nil) // reads nothing for n = 0
	return h
}
