package recorder

// Recovery at start: what an earlier run left in the local stores, the
// spool and the write-ahead log, and the chain head they reach. Nothing
// here runs after start.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// resumed is what recovery hands on: the head the chain continues from,
// the batches to seal again (in chain order), and the objects an earlier
// run left in the spool, to be uploaded first.
type resumed struct {
	head chain.Head
	// durable is the head of what the stores hold, before the entries of
	// the write-ahead log to seal again: where the chain's tree resumes.
	durable chain.Head
	seal    []pending
	uploads []spooled
}

// recovery reads what an earlier run left in the stores of one chain.
type recovery struct {
	chainID, spoolDir string
	marker            headMarker
	lossEntry         func(seg wal.Segment, acc *wal.Acceptance, result string) entry.Entry
	st                Stores
	mirror            *store.FS // the checkpoint mirror, or nil
	logger            *zap.Logger
	now               func() time.Time

	out resumed
}

// recoverStores resumes the chain and recovers what an earlier run left:
// the chain continues from the newest of the store's head, the head
// marker's, the spool's head and the write-ahead log's last entry. Logged
// entries not yet in a durable batch are to be sealed again, and spooled
// objects to be uploaded first. It refuses rather than fork the chain when
// something does not line up.
func recoverStores(ctx context.Context, cfg Config, st Stores, mirror *store.FS, logger *zap.Logger, now func() time.Time) (resumed, error) {
	rc := &recovery{
		chainID: cfg.ChainID, spoolDir: cfg.SpoolDir,
		marker:    headMarker{cfg.SpoolDir, cfg.ChainID, cfg.StoreID},
		lossEntry: cfg.LossEntry,
		st:        st, mirror: mirror, logger: logger, now: now,
	}
	head, err := rc.recover(ctx)
	if err != nil {
		return resumed{}, err
	}
	rc.out.head = head
	return rc.out, nil
}

// recover returns the head the chain continues from, and fills rc.out.
func (rc *recovery) recover(ctx context.Context) (chain.Head, error) {
	st := rc.st
	rc.removeTemporary()
	head := chain.Genesis()
	if st.Offline == nil {
		var err error
		if head, err = resumeHead(ctx, st.Trail, rc.chainID); err != nil {
			return chain.Head{}, err
		}
	}
	marker, known, err := rc.marker.read()
	if err != nil {
		return chain.Head{}, err
	}
	if known && marker.Size > head.Size {
		head = marker
	}
	if st.Offline != nil {
		if !known {
			// Without the store or a local record, a chain that already
			// has batches would be forked from genesis.
			return chain.Head{}, fmt.Errorf("the store is unavailable and %s holds no record of chain %q: refusing to start rather than fork the chain: %w",
				rc.spoolDir, rc.chainID, st.Offline)
		}
		rc.logger.Warn("The store is unavailable at start; resuming the chain from local state, batches wait in the spool",
			zap.Int64("next_seq", head.Size), zap.Error(st.Offline))
	}
	if st.Spool != nil {
		spoolHead, err := rc.recoverSpool(ctx, st.Spool)
		if err != nil {
			return chain.Head{}, fmt.Errorf("spool %s: %w", st.Spool.Dir(), err)
		}
		if spoolHead.Size > head.Size {
			head = spoolHead
		}
	}
	rc.out.durable = head
	return rc.recoverLog(ctx, head)
}

// removeTemporary removes the temporary files of this chain's objects that
// a crash left in the local stores (readers never see them). A store
// directory may be shared by several collectors: only this chain's keys
// are touched. It is best effort: what is left takes space, nothing else.
func (rc *recovery) removeTemporary() {
	st := rc.st
	id := rc.chainID
	mine := func(key string) bool {
		if cid, _, _, err := store.ParseBatchKey(key); err == nil {
			return cid == id
		}
		if cid, _, err := store.ParseCheckpointKey(key); err == nil {
			return cid == id
		}
		if cid, _, err := store.ParseTileKey(key); err == nil {
			return cid == id
		}
		if cid, _, _, err := store.ParseCosignatureKey(key); err == nil {
			return cid == id
		}
		if cid, _, err := store.ParseTimestampKey(key); err == nil {
			return cid == id
		}
		cid, _, err := store.ParseVerifierKeyKey(key)
		return err == nil && cid == id
	}
	trail, _ := st.Trail.(*store.FS)
	for _, local := range []*store.FS{st.Spool, rc.mirror, trail} {
		if local == nil {
			continue
		}
		n, err := local.RemoveTemporary(mine)
		if err != nil {
			rc.logger.Warn("Cannot remove temporary files a crash left", zap.Error(err))
		}
		if n > 0 {
			rc.logger.Info("Removed temporary files a crash left", zap.Int("files", n), zap.String("directory", local.Dir()))
		}
	}
}

// recoverSpool queues the objects an earlier run left in the spool for
// upload and returns the head they reach for this chain.
func (rc *recovery) recoverSpool(ctx context.Context, spool *store.FS) (chain.Head, error) {
	keys, err := spool.List(ctx, "")
	if err != nil {
		return chain.Head{}, err
	}
	sortUploads(keys)
	for _, k := range keys {
		info, err := os.Stat(filepath.Join(spool.Dir(), filepath.FromSlash(k)))
		if err != nil {
			return chain.Head{}, err
		}
		rc.out.uploads = append(rc.out.uploads, spooled{key: k, size: info.Size(), since: info.ModTime(), batch: store.IsBatchKey(k)})
	}
	if len(keys) > 0 {
		rc.logger.Info("Uploading batches left in the spool", zap.Int("batches", len(keys)), zap.String("spool", spool.Dir()))
	}
	return resumeHead(ctx, spool, rc.chainID)
}

// sortUploads orders spooled keys the way they were written: per chain, the
// verifier keys, then each batch followed by the tiles of the chain's tree
// it completes and its checkpoint. (Lexical order would put every
// checkpoint before the batches it names.) A tile goes after the batch
// that holds its last leaf: its place is that leaf's seq. A witness's
// cosignature and a timestamp go after their checkpoint.
func sortUploads(keys []string) {
	type rank struct {
		chain string
		pos   int64
		kind  int
	}
	of := func(k string) rank {
		if id, first, _, err := store.ParseBatchKey(k); err == nil {
			return rank{id, first, 1}
		}
		if id, t, err := store.ParseTileKey(k); err == nil {
			// Leaves [0, end) are under the tile's W hashes.
			end := (t.N*(1<<store.TileHeight) + int64(t.W)) << (store.TileHeight * t.L)
			return rank{id, end - 1, 2}
		}
		if id, size, err := store.ParseCheckpointKey(k); err == nil {
			// After the batch that ends at size-1 and its tiles, before
			// the next.
			return rank{id, size - 1, 3}
		}
		if id, size, _, err := store.ParseCosignatureKey(k); err == nil {
			return rank{id, size - 1, 4} // after its checkpoint
		}
		if id, size, err := store.ParseTimestampKey(k); err == nil {
			return rank{id, size - 1, 4}
		}
		return rank{"", -1, 0}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := of(keys[i]), of(keys[j])
		if a.chain != b.chain {
			return a.chain < b.chain
		}
		if a.pos != b.pos {
			return a.pos < b.pos
		}
		return a.kind < b.kind
	})
}

// recoverLog reads the write-ahead log of this chain. Entries below head
// should be in a durable batch already: each segment's last such entry is
// compared with the one stored, and the segment is removed when they match.
// The rest must continue the chain exactly at head, and are sealed into
// batches again, one per segment. It returns the head after them. It
// changes nothing on disk before it has checked every segment, and refuses
// to start when something does not line up.
func (rc *recovery) recoverLog(ctx context.Context, head chain.Head) (chain.Head, error) {
	st, dir := rc.st, rc.st.WALDir
	if err := wal.FinishReplace(dir, rc.chainID); err != nil {
		return chain.Head{}, err
	}
	segs, err := wal.Recover(dir, rc.chainID)
	if err != nil {
		return chain.Head{}, err
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%s; nothing was changed on disk: stop, keep a copy of %s, and see the README's \"Recovery\"",
			fmt.Sprintf(format, args...), rc.spoolDir)
	}
	// A corrupt segment followed by one that starts at or below the head
	// holds only entries already in a durable batch (a crash came between
	// storing its batch and removing it): nothing of it is lost. It is
	// checked against the store like any other and then kept under lost/.
	redundant := func(i int) bool { return i+1 < len(segs) && segs[i+1].FirstSeq <= head.Size }
	acc, err := wal.ReadAcceptance(dir, rc.chainID)
	if err != nil {
		return chain.Head{}, err
	}
	// With the operator's acceptance, the first corrupt segment and those
	// after it give way to one of what can still be read (salvage), but
	// only once every check below has passed.
	var replace *salvaged
	k := slices.IndexFunc(segs, func(s wal.Segment) bool { return s.Corrupt != nil })
	if k >= 0 && redundant(k) {
		k = -1
	}
	switch {
	case k >= 0 && acc == nil:
		return chain.Head{}, refuse("%v; to record the loss in the trail and go on, run auditctl wal accept-loss %s", segs[k].Corrupt, rc.spoolDir)
	case k >= 0 && !acc.Covers(segs[k:]):
		return chain.Head{}, refuse("%v; %s accepts a loss in %s at byte offset %d (and %d more), not the damage found now: remove it and accept again",
			segs[k].Corrupt, filepath.Join(dir, wal.AcceptanceName(rc.chainID)), acc.Segment, acc.Offset, len(acc.Also))
	case k >= 0 && segs[k].FirstSeq < head.Size:
		return chain.Head{}, refuse("%v; the segment holds entries the store has (the chain's head is seq %d) and others it may not: restore the segment from a backup, or compare it with the store by hand",
			segs[k].Corrupt, head.Size-1)
	case k >= 0:
		// The chain's head just before the corrupt segment, when known
		// without the store.
		before := chain.Head{Size: -1}
		if k > 0 && len(segs[k-1].Entries) > 0 {
			last := segs[k-1].Entries[len(segs[k-1].Entries)-1]
			before = chain.Head{Size: last.Seq + 1, Hash: last.EntryHash}
		} else if k == 0 {
			before = head
		}
		sv := salvager{dir: dir, chainID: rc.chainID, lossEntry: rc.lossEntry, storedHash: func(seq int64) (string, error) {
			hash, _, err := rc.storedHash(ctx, seq)
			return hash, err
		}}
		s, err := sv.salvage(segs, k, before, acc)
		if err != nil {
			return chain.Head{}, refuse("%v", err)
		}
		replace = &s
		segs = append(segs[:k:k], wal.Segment{Name: segs[k].Name, FirstSeq: segs[k].FirstSeq, Entries: s.entries})
	case acc != nil:
		rc.logger.Warn("An acceptance of a loss matches no corrupt segment; it is kept under the log's lost directory",
			zap.String("acceptance", filepath.Join(dir, wal.AcceptanceName(rc.chainID))), zap.String("segment", acc.Segment), zap.Int64("offset", acc.Offset))
		if err := wal.Retire(dir, wal.AcceptanceName(rc.chainID)); err != nil {
			return chain.Head{}, err
		}
	}

	type plan struct {
		rest   []entry.Entry // entries at or after head
		keep   bool          // the store could not be asked: leave the file
		retire bool          // corrupt, but all in the store: keep it under lost/
	}
	plans := make([]plan, len(segs))
	for i, seg := range segs {
		if seg.Corrupt != nil && !redundant(i) {
			return chain.Head{}, refuse("%v", seg.Corrupt)
		}
		plans[i].retire = seg.Corrupt != nil
		path := filepath.Join(dir, seg.Name)
		p := &plans[i]
		below := 0
		for below < len(seg.Entries) && seg.Entries[below].Seq < head.Size {
			below++
		}
		p.rest = seg.Entries[below:]
		if below > 0 {
			last := seg.Entries[below-1]
			stored, where, err := rc.storedHash(ctx, last.Seq)
			switch {
			case err != nil && st.Offline != nil && len(p.rest) == 0:
				// Checked at the next start, with the store.
				p.keep = true
				rc.logger.Warn("Cannot check write-ahead log entries against the store, which is unavailable; the segment is left in place",
					zap.String("segment", path), zap.Error(err))
			case errors.Is(err, store.ErrNotFound):
				return chain.Head{}, refuse("write-ahead log %s holds seq %d, which the chain's head (seq %d) says is stored, but the store does not hold it: %v",
					path, last.Seq, head.Size-1, err)
			case err != nil:
				return chain.Head{}, fmt.Errorf("checking write-ahead log %s against the store: %w; start again once the store can be read", path, err)
			case stored != last.EntryHash:
				return chain.Head{}, refuse("write-ahead log %s holds seq %d with entry_hash %s, but %s holds entry_hash %s at that seq: another writer stored entries of chain %q (two collectors on one spool directory, or sharing a chain_id?), and the log's entries from seq %d on are not in the trail",
					path, last.Seq, last.EntryHash, where, stored, rc.chainID, seg.Entries[0].Seq)
			}
		}
		for _, en := range p.rest {
			switch {
			case en.Seq > head.Size:
				return chain.Head{}, refuse("write-ahead log %s begins at seq %d, but the chain reaches only seq %d: entries %d to %d are missing (a segment was removed or cut short)",
					path, en.Seq, head.Size-1, head.Size, en.Seq-1)
			case en.PrevHash != head.Hash:
				return chain.Head{}, refuse("write-ahead log %s: seq %d does not link to the chain's entry_hash %s at seq %d; refusing to fork the chain",
					path, en.Seq, head.Hash, head.Size-1)
			}
			head = chain.Head{Size: en.Seq + 1, Hash: en.EntryHash}
		}
	}
	if replace != nil {
		if err := wal.Replace(dir, rc.chainID, segs[k].FirstSeq, acc, replace.entries, replace.retire); err != nil {
			return chain.Head{}, err
		}
		rc.logger.Warn("Recorded the loss the operator accepted in the write-ahead log; the damaged segments are kept under its lost directory",
			zap.String("segment", filepath.Join(dir, segs[k].Name)), zap.Int64("offset", acc.Offset),
			zap.String("accepted_by", acc.By), zap.String("wal", dir))
	}
	recovered := 0
	for i, seg := range segs {
		path := filepath.Join(dir, seg.Name)
		p := plans[i]
		if p.keep {
			continue
		}
		if seg.Torn {
			// The tail of a write that a crash interrupted: it was never
			// acknowledged. Cut it so that nothing follows garbage.
			rc.logger.Warn("Dropping the torn tail of a write-ahead log segment",
				zap.String("segment", path), zap.Int64("valid_bytes", seg.ValidBytes), zap.Int64("torn_bytes", seg.TornBytes))
			if err := wal.Truncate(dir, seg.Name, seg.ValidBytes); err != nil {
				return chain.Head{}, err
			}
		}
		if p.retire {
			rc.logger.Warn("A corrupt write-ahead log segment holds only entries the store has; it is kept under the log's lost directory",
				zap.Error(seg.Corrupt))
			if err := wal.Retire(dir, seg.Name); err != nil {
				return chain.Head{}, err
			}
			continue
		}
		if len(p.rest) == 0 {
			if err := os.Remove(path); err != nil {
				return chain.Head{}, fmt.Errorf("removing %s: %w", path, err)
			}
			continue
		}
		b, err := batch.NewBatch(rc.now(), p.rest)
		if err != nil {
			return chain.Head{}, fmt.Errorf("write-ahead log %s: %w", path, err)
		}
		for i := range p.rest {
			b.Bytes += parquetfile.EstimatedSize(&p.rest[i])
		}
		rc.out.seal = append(rc.out.seal, pending{b: b, segment: seg.Name})
		recovered += len(p.rest)
	}
	if recovered > 0 {
		rc.logger.Info("Recovered entries from the write-ahead log", zap.Int("entries", recovered), zap.String("wal", dir))
	}
	return head, nil
}

// storedHash returns the entry_hash stored at seq of this chain, and where:
// from the spool when it holds the batch, else from the trail's store.
func (rc *recovery) storedHash(ctx context.Context, seq int64) (hash, where string, err error) {
	err = store.ErrNotFound
	for _, s := range rc.st.readable() {
		keys, lerr := s.List(ctx, store.BatchesPrefix)
		if lerr != nil {
			return "", "", lerr
		}
		key, first := "", int64(-1)
		for _, k := range keys {
			if cid, f, _, perr := store.ParseBatchKey(k); perr == nil && cid == rc.chainID && f <= seq && f > first {
				key, first = k, f
			}
		}
		if key == "" {
			continue
		}
		data, gerr := s.Get(ctx, key)
		if gerr != nil {
			return "", "", gerr
		}
		entries, _, rerr := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		if rerr != nil {
			return "", "", fmt.Errorf("%s: %w", key, rerr)
		}
		if i := seq - first; i < int64(len(entries)) && entries[i].Seq == seq {
			return entries[i].EntryHash, key, nil
		}
		err = fmt.Errorf("%s does not hold seq %d: %w", key, seq, store.ErrNotFound)
	}
	return "", "", err
}

// resumeHead finds the newest batch of chain id in st and returns the head
// recorded in its footer, or the genesis head when the chain has no batch.
func resumeHead(ctx context.Context, st store.Store, id string) (chain.Head, error) {
	keys, err := st.List(ctx, store.BatchesPrefix)
	if err != nil {
		return chain.Head{}, fmt.Errorf("listing the store: %w", err)
	}
	last, lastSeq := "", int64(-1)
	for _, k := range keys {
		cid, seq, _, err := store.ParseBatchKey(k)
		if err != nil || cid != id {
			continue
		}
		if seq > lastSeq {
			last, lastSeq = k, seq
		}
	}
	if last == "" {
		return chain.Genesis(), nil
	}
	data, err := st.Get(ctx, last)
	if err != nil {
		return chain.Head{}, fmt.Errorf("reading the chain head from %q: %w", last, err)
	}
	f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return chain.Head{}, fmt.Errorf("reading the chain head from %q: %w", last, err)
	}
	if f.ChainID != id || f.FirstSeq != lastSeq || f.LastSeq < f.FirstSeq {
		return chain.Head{}, fmt.Errorf("reading the chain head from %q: footer names chain %q seq %d..%d, want chain %q from seq %d",
			last, f.ChainID, f.FirstSeq, f.LastSeq, id, lastSeq)
	}
	return chain.Head{Size: f.LastSeq + 1, Hash: f.LastHash}, nil
}
