package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
)

// ErrNoKey: a checkpoint was given to check but no verifier key was given or
// published beside the trail. Nothing can be said about the checkpoint,
// which is not a pass.
var ErrNoKey = errors.New("verify: no verifier key given or published beside the trail")

// KeptCheckpoint is a signed checkpoint an auditor kept (the output of
// `auditctl checkpoint`), to check the trail against.
type KeptCheckpoint struct {
	// Name names it in violations, e.g. the file it was read from.
	Name string
	// Note is the signed note, verbatim.
	Note []byte
}

// checkpointCheck is one checkpoint to compare with the trail.
type checkpointCheck struct {
	name   string // violation File: the stored key or the kept file
	msg    []byte
	stored bool
}

// chainFiles is what checkpoints are compared with: the readable batch files
// of each chain, in seq order.
type chainFiles map[string][]*fileResult

// checkCheckpoints opens every checkpoint stored beside the trail and every
// kept one, and compares each with the trail. It adds violations and notes
// to rep.
func checkCheckpoints(ctx context.Context, src store.Reader, opts Options, rep *Report, files chainFiles, workers int, starts map[string]*compact.Range) error {
	keys := checkpoint.Keys{Given: opts.Keys}
	for _, k := range opts.Keys {
		if _, err := note.NewVerifier(k); err != nil {
			return fmt.Errorf("%w: %q: %w", checkpoint.ErrBadKey, k, err)
		}
	}
	if len(opts.Keys) == 0 {
		pub, problems, err := checkpoint.PublishedKeys(ctx, src)
		if err != nil {
			return err
		}
		keys.Published = pub
		rep.Notes = append(rep.Notes, problems...)
	}
	if len(opts.Checkpoints) > 0 && keys.Empty() {
		return fmt.Errorf("%w: pass the signer's key with --key", ErrNoKey)
	}

	rep.Checkpoint = len(opts.Checkpoints) > 0
	names, err := src.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		return err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !store.IsCheckpointKey(n) })
	checks := make([]checkpointCheck, len(names), len(names)+len(opts.Checkpoints))
	if err := readAll(ctx, src, names, workers, func(i int, data []byte) {
		checks[i] = checkpointCheck{name: names[i], msg: data, stored: true}
	}); err != nil {
		return err
	}
	for _, k := range opts.Checkpoints {
		checks = append(checks, checkpointCheck{name: k.Name, msg: k.Note})
	}
	rep.StoredCheckpoints = len(names)

	if len(names) > 0 && keys.Empty() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d stored checkpoints not checked: no verifier key given or published", len(names)))
		checks = checks[len(names):]
	}
	usedTOFU := map[string]bool{}
	checked := map[string]bool{} // chains with a stored checkpoint
	latest := map[string]int64{}
	var hashReads []headRead
	var roots []rootCheck // format 2: the tree's root to check
	latestRoot := map[string]rootCheck{}
	var kept []rootCheck // format 2, kept by the auditor
	for _, ck := range checks {
		chainID := checkpoint.UnverifiedChain(ck.msg)
		if chainID == "" && ck.stored {
			chainID, _, _ = store.ParseCheckpointKey(ck.name)
		}
		add := func(seq, through int64, kind Kind, format string, args ...any) {
			rep.Violations = append(rep.Violations, Violation{File: ck.name, ChainID: chainID, Seq: seq, Through: through, Kind: kind, Detail: fmt.Sprintf(format, args...)})
		}
		vkeys := keys.For(chainID)
		if chainID == "" {
			vkeys = keys.All() // not a checkpoint: Open says why
		}
		if len(vkeys) == 0 {
			add(NoSeq, 0, BadSignature, "no verifier key for chain %q: none given, none published under %s", chainID, store.KeysPrefix)
			continue
		}
		c, signer, err := checkpoint.Open(ck.msg, vkeys...)
		if err != nil {
			add(NoSeq, 0, BadSignature, "%v", err)
			continue
		}
		if len(keys.Given) == 0 && !usedTOFU[signer] {
			usedTOFU[signer] = true
			rep.TrustedOnFirstUse = append(rep.TrustedOnFirstUse, checkpoint.KeyID(signer))
		}
		if ck.stored {
			checked[c.ChainID] = true
			latest[c.ChainID] = max(latest[c.ChainID], c.Size)
			if want := store.CheckpointKey(c.ChainID, c.Size); ck.name != want {
				add(c.Size-1, 0, CheckpointMismatch, "stored as %s, but it states chain %q at size %d (%s)", ck.name, c.ChainID, c.Size, want)
			}
		}
		hr, ok := compareCheckpoint(c, files[c.ChainID], add)
		if ok {
			hr.add = add
			hashReads = append(hashReads, hr)
		}
		if c.Format() == 2 {
			rc := rootCheck{c: c, add: add, stored: ck.stored}
			roots = append(roots, rc)
			if ck.stored && c.Size >= latestRoot[c.ChainID].c.Size {
				latestRoot[c.ChainID] = rc
			}
			if !ck.stored {
				kept = append(kept, rc)
			}
		}
	}
	// Heads that no file ends at (the trail was re-batched) need the file
	// read again.
	for _, hr := range hashReads {
		r, err := reread(ctx, src, hr.file, hr.c.Size-1)
		if err != nil {
			return err
		}
		if !r.picked.eq(hash64(hr.c.Head)) {
			hr.add(hr.c.Size-1, 0, CheckpointMismatch, "checkpoint head (entry_hash of seq %d) is %s, the trail has %s in %s: history rewritten",
				hr.c.Size-1, hr.c.Head, r.picked, hr.file)
		}
	}
	if err := checkRoots(ctx, src, files, roots, starts, rep); err != nil {
		return err
	}
	if err := checkTiles(ctx, src, latestRoot, rep); err != nil {
		return err
	}
	if err := checkKept(ctx, src, kept, latestRoot, rep); err != nil {
		return err
	}
	slices.Sort(rep.TrustedOnFirstUse)
	for _, k := range rep.TrustedOnFirstUse {
		rep.Notes = append(rep.Notes, checkpoint.TOFUNote(k))
	}
	for i := range rep.Chains {
		c := &rep.Chains[i]
		c.CheckpointSize = latest[c.ChainID]
		if !checked[c.ChainID] && (len(names) == 0 || !keys.Empty()) {
			rep.Notes = append(rep.Notes, fmt.Sprintf("chain %s has no stored checkpoint: its tail is not covered by a signature", c.ChainID))
		}
	}
	return nil
}

// addFunc adds a violation of one checkpoint to the report.
type addFunc func(seq, through int64, kind Kind, format string, args ...any)

// headRead is a checkpoint head found inside a file rather than at its end.
type headRead struct {
	c    checkpoint.Checkpoint
	file string
	add  addFunc
}

// reread reads file key of the trail again for what a checkpoint needs
// inside it: the entry_hash of seq and the compact range up to it.
func reread(ctx context.Context, src store.Reader, key string, seq int64) (*fileReader, error) {
	data, err := src.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	r := newFileReader()
	r.pickSeq = seq
	r.read(key, data)
	return r, nil
}

// compareCheckpoint compares a checkpoint whose signature verified with the
// files of its chain. When its head lies inside a file rather than at the
// end of one, it returns that file to be read again (ok true).
func compareCheckpoint(c checkpoint.Checkpoint, files []*fileResult, add addFunc) (headRead, bool) {
	head := c.Size - 1
	if len(files) == 0 {
		add(head, 0, EndsBeforeCheckpoint, "checkpoint records chain %q at %d entries (head %s), the trail holds no file of it", c.ChainID, c.Size, c.Head)
		return headRead{}, false
	}
	var last int64 = -1
	for _, f := range files {
		last = max(last, f.lastSeq)
	}
	if head > last {
		add(head, 0, EndsBeforeCheckpoint, "checkpoint records %d entries (head seq %d, entry_hash %s), the trail ends at seq %d: its tail was truncated",
			c.Size, head, c.Head, last)
		return headRead{}, false
	}
	// The batch the checkpoint sealed.
	var batch []*fileResult
	for _, f := range files {
		if f.firstSeq == c.BatchFirst {
			batch = append(batch, f)
		}
	}
	switch {
	case len(batch) == 0:
		add(c.BatchFirst, c.BatchLast, CheckpointMismatch, "checkpoint seals a batch of seq %d to %d, no file of the trail starts at seq %d", c.BatchFirst, c.BatchLast, c.BatchFirst)
	case !slices.ContainsFunc(batch, func(f *fileResult) bool { return f.lastSeq == c.BatchLast && f.merkleRoot == c.BatchRoot }):
		f := batch[0]
		if f.lastSeq != c.BatchLast {
			add(c.BatchFirst, c.BatchLast, CheckpointMismatch, "checkpoint seals a batch of seq %d to %d, %s holds seq %d to %d", c.BatchFirst, c.BatchLast, f.key, f.firstSeq, f.lastSeq)
		} else {
			add(c.BatchFirst, c.BatchLast, CheckpointMismatch, "checkpoint batch root %s, the rows of %s have Merkle root %s: history rewritten", c.BatchRoot, f.key, f.merkleRoot)
		}
	}
	// The head: entry_hash of seq size-1.
	var holder *fileResult
	for _, f := range files {
		if f.lastSeq == head {
			if containsHash(f.lastHashes, hash64(c.Head)) {
				return headRead{}, false
			}
			holder = f
		}
	}
	if holder != nil {
		add(head, 0, CheckpointMismatch, "checkpoint head (entry_hash of seq %d) is %s, the trail has %s in %s: history rewritten",
			head, c.Head, joinHashes(holder.lastHashes), holder.key)
		return headRead{}, false
	}
	for _, f := range files {
		if f.firstSeq <= head && head <= f.lastSeq {
			return headRead{c: c, file: f.key}, true
		}
	}
	add(head, 0, CheckpointMismatch, "checkpoint head is seq %d, which no file of the trail holds", head)
	return headRead{}, false
}

// readAll reads the files names from src, workers at a time, and hands each
// to use (from several goroutines, never for the same i twice).
func readAll(ctx context.Context, src store.Reader, names []string, workers int, use func(i int, data []byte)) error {
	if len(names) == 0 {
		return nil
	}
	workers = max(1, min(workers, len(names)))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		next     int
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := firstErr != nil
				mu.Unlock()
				if i >= len(names) || stop {
					return
				}
				data, err := src.Get(ctx, names[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				use(i, data)
			}
		}()
	}
	wg.Wait()
	return firstErr
}
