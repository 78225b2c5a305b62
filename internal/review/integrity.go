package review

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// fileCheck is what verification found of one batch file on its own and
// against the checkpoint sealed with it.
type fileCheck struct {
	key, path string
	// readable: the rows can be queried (the file is a well-formed batch,
	// whatever its hashes say).
	readable   bool
	footer     parquetfile.Footer
	footerOK   bool
	violations []verify.Violation
	checkpoint *Checkpoint
	// cpObject is the key of the checkpoint sealed with the batch.
	cpObject string
	notes    []string
	// prove: the batch's checkpoint verified and matches its footer; the
	// answer's entries in it are to be proven against it (Engine.prove)
	// rather than the file verified whole. proven: they were.
	prove, proven bool
}

// checker verifies the files answers come from. The trail's files are
// written once, so a check is kept for the life of the checker, keyed by
// the local file and its size and modification time.
type checker struct {
	src      store.Reader
	given    []string // verifier keys the reviewer gave
	workers  int
	keysOnce sync.Once
	keys     checkpoint.Keys
	keysErr  error
	keyNotes []string

	mu   sync.Mutex
	done map[string]*fileCheck
}

func newChecker(src store.Reader, given []string, workers int) *checker {
	return &checker{src: src, given: given, workers: max(workers, 1), done: map[string]*fileCheck{}}
}

func (c *checker) loadKeys(ctx context.Context) (checkpoint.Keys, error) {
	c.keysOnce.Do(func() {
		if len(c.given) > 0 {
			c.keys = checkpoint.Keys{Given: c.given}
			return
		}
		pub, problems, err := checkpoint.PublishedKeys(ctx, c.src)
		c.keys, c.keyNotes, c.keysErr = checkpoint.Keys{Published: pub}, problems, err
	})
	return c.keys, c.keysErr
}

// check verifies keys (below the target) whose local copies are paths, in
// parallel, and returns their checks in the same order. A file to prove
// whose signed checkpoint verifies is left for Engine.prove (its check has
// prove set), unless it was verified whole before.
func (c *checker) check(ctx context.Context, keys, paths []string, prove []bool) ([]*fileCheck, error) {
	keys2, err := c.loadKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*fileCheck, len(keys))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(c.workers, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if prove[i] {
					out[i] = c.checkEntries(ctx, keys2, keys[i], paths[i])
				} else {
					out[i] = c.checkOne(ctx, keys2, keys[i], paths[i])
				}
			}
		}()
	}
	for i := range keys {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// checkEntries checks the footer of the file and the checkpoint sealed
// with it, leaving the entries to prove; a file it cannot prove entries
// of is verified whole.
func (c *checker) checkEntries(ctx context.Context, keys checkpoint.Keys, key, path string) *fileCheck {
	memo, fc := c.memo(path)
	if fc != nil {
		return fc
	}
	if memo == "" {
		return c.checkOne(ctx, keys, key, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return c.checkOne(ctx, keys, key, path)
	}
	st, err := f.Stat()
	if err == nil {
		fc = &fileCheck{key: key, path: path}
		fc.footer, err = parquetfile.ReadFooter(f, st.Size())
	}
	f.Close()
	if err != nil {
		return c.checkOne(ctx, keys, key, path)
	}
	fc.footerOK = true
	c.checkCheckpoint(ctx, keys, fc)
	if fc.checkpoint == nil || len(fc.violations) > 0 {
		return c.checkOne(ctx, keys, key, path)
	}
	fc.readable, fc.prove = true, true
	return fc
}

// memo returns the key of the file at path in c.done, "" when it cannot be
// stat'ed, and its whole check when it was verified before.
func (c *checker) memo(path string) (string, *fileCheck) {
	st, err := os.Stat(path)
	if err != nil {
		return "", nil
	}
	memo := fmt.Sprintf("%s\x00%d\x00%d", path, st.Size(), st.ModTime().UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	return memo, c.done[memo]
}

// checkOne verifies the file whole (verify.CheckFile) and its checkpoint.
func (c *checker) checkOne(ctx context.Context, keys checkpoint.Keys, key, path string) *fileCheck {
	memo, fc := c.memo(path)
	if fc != nil {
		return fc
	}
	fc = &fileCheck{key: key, path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		fc.violations = []verify.Violation{{File: key, Seq: verify.NoSeq, Kind: verify.NotAuditFile, Detail: err.Error()}}
		return fc
	}
	fc.violations = verify.CheckFile(key, data)
	fc.readable = !slices.ContainsFunc(fc.violations, func(v verify.Violation) bool { return v.Kind == verify.NotAuditFile })
	if f, err := parquetfile.ReadFooter(bytes.NewReader(data), int64(len(data))); err == nil {
		fc.footer, fc.footerOK = f, true
		c.checkCheckpoint(ctx, keys, fc)
	}
	if memo != "" && ctx.Err() == nil {
		c.mu.Lock()
		c.done[memo] = fc
		c.mu.Unlock()
	}
	return fc
}

// checkCheckpoint compares the checkpoint sealed with fc's batch with it.
func (c *checker) checkCheckpoint(ctx context.Context, keys checkpoint.Keys, fc *fileCheck) {
	f := fc.footer
	obj := store.CheckpointKey(f.ChainID, f.LastSeq+1)
	fc.cpObject = obj
	msg, err := c.src.Get(ctx, obj)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fc.notes = append(fc.notes, fmt.Sprintf("no signed checkpoint for batch %s %d-%d (%s)", f.ChainID, f.FirstSeq, f.LastSeq, obj))
		return
	case err != nil:
		fc.notes = append(fc.notes, fmt.Sprintf("checkpoint %s: %v", obj, err))
		return
	}
	vkeys := keys.For(f.ChainID)
	if len(vkeys) == 0 {
		fc.notes = append(fc.notes, fmt.Sprintf("no verifier key for chain %s: its checkpoints are not checked", f.ChainID))
		return
	}
	cp, signer, err := checkpoint.Open(msg, vkeys...)
	if err != nil {
		fc.violations = append(fc.violations, verify.Violation{File: obj, ChainID: f.ChainID, Seq: verify.NoSeq, Kind: verify.BadSignature, Detail: err.Error()})
		return
	}
	if cp.ChainID != f.ChainID || cp.BatchFirst != f.FirstSeq || cp.BatchLast != f.LastSeq ||
		cp.BatchRoot != f.MerkleRoot || cp.Head != f.LastHash || cp.Size != f.LastSeq+1 {
		fc.violations = append(fc.violations, verify.Violation{File: obj, ChainID: f.ChainID, Seq: f.LastSeq, Kind: verify.CheckpointMismatch,
			Detail: fmt.Sprintf("checkpoint says batch %d-%d root %s head %s; the file holds %d-%d root %s head %s",
				cp.BatchFirst, cp.BatchLast, cp.BatchRoot, cp.Head, f.FirstSeq, f.LastSeq, f.MerkleRoot, f.LastHash)})
		return
	}
	name, _, _ := strings.Cut(signer, "+")
	fc.checkpoint = &Checkpoint{
		ChainID: cp.ChainID, Size: cp.Size, Head: cp.Head,
		BatchFirst: cp.BatchFirst, BatchLast: cp.BatchLast, BatchRoot: cp.BatchRoot,
		KeyName: name, KeyID: checkpoint.KeyID(signer), Key: signer, Object: obj, Text: string(msg),
	}
}

// links checks that consecutive files of a chain among checks link: the
// first prev_hash of one is the last entry_hash of the other.
func links(checks []*fileCheck) []verify.Violation {
	byChain := map[string][]*fileCheck{}
	for _, fc := range checks {
		if fc.footerOK {
			byChain[fc.footer.ChainID] = append(byChain[fc.footer.ChainID], fc)
		}
	}
	var vs []verify.Violation
	for _, files := range byChain {
		slices.SortFunc(files, func(a, b *fileCheck) int { return cmp.Compare(a.footer.FirstSeq, b.footer.FirstSeq) })
		for i := 1; i < len(files); i++ {
			prev, cur := files[i-1].footer, files[i].footer
			if cur.FirstSeq == prev.LastSeq+1 && cur.PrevHash != prev.LastHash {
				vs = append(vs, verify.Violation{File: files[i].key, ChainID: cur.ChainID, Seq: cur.FirstSeq, Kind: verify.BrokenLink,
					Detail: fmt.Sprintf("prev_hash %s, but seq %d in %s has entry_hash %s", cur.PrevHash, prev.LastSeq, files[i-1].key, prev.LastHash)})
			}
		}
	}
	return vs
}
