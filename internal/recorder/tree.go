package recorder

// The chain's tree (issue 18, docs/TRANSPARENCY.md): the entries of every
// batch are appended to one RFC 6962 tree per chain (internal/tlogtree),
// whose tiles are written where the batch goes, after the batch and before
// the checkpoint that states the tree's root.
//
// At start the tree resumes at the durable head (what the stores hold)
// from the local record of its partial tiles, <spool.directory>/tree-<chain_id>,
// written durably after each batch, so that a collector restarted while
// the S3 bucket is unreachable continues its tree too. When
// the record is missing or behind (a crash between a batch and the record,
// or a chain begun before the tree existed), the tree is rebuilt from the
// entry hashes of the batch files, and the tiles it makes are written again
// (a store takes identical bytes twice).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

const treeRecordTag = "agentaudit-tree v1"

// treeRecord is where one chain's tree record for one store is kept.
type treeRecord struct {
	spoolDir, chainID, storeID string
}

func (t treeRecord) path() string { return filepath.Join(t.spoolDir, "tree-"+t.chainID) }

// treeAt is what the record holds: the tree's size, its root, the entry
// hash of its last leaf, and its partial tiles by key.
type treeAt struct {
	size  int64
	root  tlog.Hash
	head  string
	tiles map[string][]byte
}

// write records w, whose last leaf's entry hash is head.
func (t treeRecord) write(w *tlogtree.Writer, head string) error {
	var b strings.Builder
	root := w.Root()
	fmt.Fprintf(&b, "%s\n%s\n%s\n%d\n%s\n%s\n", treeRecordTag, t.chainID, t.storeID, w.Size(), hex.EncodeToString(root[:]), head)
	for _, p := range w.Partial() {
		fmt.Fprintf(&b, "%s %s\n", p.Key, base64.StdEncoding.EncodeToString(p.Data))
	}
	// Durable like the head marker: an offline start after a power loss
	// needs it (the batch files may be in the bucket only). It is checked
	// when read (its tiles must give its root, its head must be the
	// chain's), and a tree it cannot resume is rebuilt from the batch files.
	if err := atomicfile.WriteFile(t.path(), []byte(b.String()), 0o640); err != nil {
		return fmt.Errorf("writing the chain's tree record %s: %w", t.path(), err)
	}
	return nil
}

// read returns the record for the store, or ok false when there is none
// (or one of another store).
func (t treeRecord) read() (at treeAt, ok bool, err error) {
	b, err := os.ReadFile(t.path())
	if errors.Is(err, fs.ErrNotExist) {
		return treeAt{}, false, nil
	}
	if err != nil {
		return treeAt{}, false, fmt.Errorf("reading the chain's tree record: %w", err)
	}
	bad := fmt.Errorf("the chain's tree record %s is malformed", t.path())
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 6 || lines[0] != treeRecordTag || lines[1] != t.chainID {
		return treeAt{}, false, bad
	}
	if lines[2] != t.storeID {
		return treeAt{}, false, nil
	}
	at.size, err = strconv.ParseInt(lines[3], 10, 64)
	root, herr := hex.DecodeString(lines[4])
	if err != nil || at.size < 0 || herr != nil || len(root) != tlog.HashSize {
		return treeAt{}, false, bad
	}
	at.root, at.head = tlog.Hash(root), lines[5]
	at.tiles = make(map[string][]byte, len(lines)-6)
	for _, l := range lines[6:] {
		key, data, found := strings.Cut(l, " ")
		d, derr := base64.StdEncoding.DecodeString(data)
		if !found || derr != nil {
			return treeAt{}, false, bad
		}
		at.tiles[key] = d
	}
	return at, true, nil
}

// resumeTree returns the chain's tree at the durable head, and the tiles a
// rebuild wrote to tiles' store (with a spool, to be uploaded after what
// the spool held). Without a way to reach the head it refuses to start:
// a tree that does not cover the chain from its first entry would give
// checkpoints no witness could accept.
func resumeTree(ctx context.Context, cfg Config, st Stores, durable chain.Head, logger *zap.Logger, now time.Time) (*tlogtree.Writer, []spooled, error) {
	rec := treeRecord{cfg.SpoolDir, cfg.ChainID, cfg.StoreID}
	at, ok, err := rec.read()
	if err != nil {
		logger.Warn("Cannot read the chain's tree record; rebuilding the tree from the batch files", zap.Error(err))
		ok = false
	}
	w, err := tlogtree.NewWriter(cfg.ChainID)
	if err != nil {
		return nil, nil, err
	}
	if durable.Size == 0 {
		return w, nil, nil
	}
	from := chain.Genesis().Hash
	if ok && at.size <= durable.Size && at.size > 0 {
		read := func(key string) ([]byte, error) {
			if d, ok := at.tiles[key]; ok {
				return d, nil
			}
			return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
		}
		if r, err := tlogtree.ResumeWriter(cfg.ChainID, at.size, at.root, read); err != nil {
			logger.Warn("The chain's tree record does not resume the tree; rebuilding it from the batch files", zap.Error(err))
		} else {
			w, from = r, at.head
		}
	}
	if w.Size() == durable.Size {
		if from != durable.Hash {
			logger.Warn("The chain's tree record ends at another entry than the chain; rebuilding the tree from the batch files",
				zap.Int64("size", durable.Size))
			w, _ = tlogtree.NewWriter(cfg.ChainID)
			from = chain.Genesis().Hash
		} else {
			return w, nil, nil
		}
	}
	logger.Info("Rebuilding the chain's tree from the batch files", zap.Int64("from", w.Size()), zap.Int64("to", durable.Size))
	out := st.Trail
	if st.Spool != nil {
		out = st.Spool
	}
	b := treeBuild{chainID: cfg.ChainID, w: w, prev: from, out: out, spool: st.Spool != nil, now: now}
	if err := b.fill(ctx, st, durable); err != nil {
		return nil, nil, fmt.Errorf("rebuilding the tree of chain %q up to seq %d: %w; refusing to start rather than sign checkpoints of a tree that does not cover the chain",
			cfg.ChainID, durable.Size-1, err)
	}
	if err := rec.write(w, durable.Hash); err != nil {
		logger.Warn("Cannot record the chain's tree locally", zap.Error(err))
	}
	return w, b.written, nil
}

// treeBuild appends the entry hashes of batch files to a tree.
type treeBuild struct {
	chainID string
	w       *tlogtree.Writer
	prev    string // entry hash of the tree's last leaf
	out     store.Store
	spool   bool
	now     time.Time // when the rebuild began, for the spool's age
	written []spooled
}

// fill appends the entries from the tree's size up to durable, read from
// the batch files of the spool and, when reachable, the trail's store,
// checking that they link up and end at durable's hash.
func (b *treeBuild) fill(ctx context.Context, st Stores, durable chain.Head) error {
	files, err := batchFiles(ctx, st, b.chainID, b.w.Size(), durable.Size)
	if err != nil {
		return err
	}
	for _, f := range files {
		if b.w.Size() >= durable.Size {
			break
		}
		if err := b.appendFile(ctx, f, durable.Size); err != nil {
			return err
		}
	}
	switch {
	case b.w.Size() < durable.Size:
		why := "no batch file holds it"
		if st.Offline != nil {
			why = fmt.Sprintf("the store is unavailable (%v)", st.Offline)
		}
		return fmt.Errorf("seq %d: %s", b.w.Size(), why)
	case b.prev != durable.Hash:
		return fmt.Errorf("the batch files end at entry_hash %s, the chain's head is %s", b.prev, durable.Hash)
	}
	return nil
}

// appendFile appends the entries of one batch file from the tree's size
// to at most end, and writes the tiles.
func (b *treeBuild) appendFile(ctx context.Context, f batchFile, end int64) error {
	data, err := f.st.Get(ctx, f.key)
	if err != nil {
		return err
	}
	entries, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("%s: %w", f.key, err)
	}
	hashes := make([][32]byte, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		switch {
		case e.Seq < b.w.Size()+int64(len(hashes)):
			continue
		case e.Seq >= end:
			continue
		case e.Seq != b.w.Size()+int64(len(hashes)):
			return fmt.Errorf("%s: seq %d follows seq %d", f.key, e.Seq, b.w.Size()+int64(len(hashes))-1)
		case e.PrevHash != b.prev:
			return fmt.Errorf("%s: seq %d does not link to entry_hash %s", f.key, e.Seq, b.prev)
		}
		h, err := hex.DecodeString(e.EntryHash)
		if err != nil || len(h) != 32 {
			return fmt.Errorf("%s: seq %d: entry_hash %q", f.key, e.Seq, e.EntryHash)
		}
		hashes = append(hashes, [32]byte(h))
		b.prev = e.EntryHash
	}
	tiles, _, err := b.w.Append(hashes)
	if err != nil {
		return err
	}
	if err := store.PutAll(ctx, b.out, tileObjects(tiles)); err != nil {
		return err
	}
	if b.spool {
		for _, t := range tiles {
			b.written = append(b.written, spooled{key: t.Key, size: int64(len(t.Data)), since: b.now})
		}
	}
	return nil
}

// batchFile is a batch file of the chain and the store that holds it.
type batchFile struct {
	key   string
	first int64
	st    store.Store
}

// batchFiles lists chain chainID's batch files that may hold seqs in
// [from, to), in seq order, the spool's when both hold one.
func batchFiles(ctx context.Context, st Stores, chainID string, from, to int64) ([]batchFile, error) {
	seen := map[int64]bool{}
	var files []batchFile
	for _, s := range st.readable() {
		keys, err := s.List(ctx, store.BatchesPrefix)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			cid, first, _, err := store.ParseBatchKey(k)
			if err != nil || cid != chainID || seen[first] || first >= to {
				continue
			}
			seen[first] = true
			files = append(files, batchFile{key: k, first: first, st: s})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].first < files[j].first })
	// Files that end before from are not needed: keep from the last one
	// that starts at or before it.
	start := 0
	for i, f := range files {
		if f.first <= from {
			start = i
		}
	}
	return files[start:], nil
}
