package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
)

// Where checkpoints and verifier keys are stored beside the trail (see
// checkpoint.ObjectKey and checkpoint.VerifierObjectKey).
const (
	checkpointsPrefix = "checkpoints/"
	keysPrefix        = "keys/"
)

// ErrNoKey: a checkpoint was given to check but no verifier key was given or
// published beside the trail. Nothing can be said about the checkpoint,
// which is not a pass.
var ErrNoKey = errors.New("verify: no verifier key given or published beside the trail")

// ErrBadKey: a verifier key given in Options.Keys is not a note verifier key.
var ErrBadKey = errors.New("verify: not a verifier key")

// KeptCheckpoint is a signed checkpoint an auditor kept (the output of
// `auditctl checkpoint`), to check the trail against.
type KeptCheckpoint struct {
	// Name names it in violations, e.g. the file it was read from.
	Name string
	// Note is the signed note, verbatim.
	Note []byte
}

// Keys is a set of verifier keys in the note format ("name+hash+key").
type Keys struct {
	// Given are keys the auditor gave (--key): trusted for every chain.
	Given []string
	// Published are keys found beside the trail, by chain id: trusted on
	// first use, for their own chain only.
	Published map[string][]string
}

// For returns the keys a checkpoint of chainID may be signed with.
func (k Keys) For(chainID string) []string {
	if len(k.Given) > 0 {
		return k.Given
	}
	return k.Published[chainID]
}

// all returns every key.
func (k Keys) all() []string {
	all := slices.Clone(k.Given)
	for _, ks := range k.Published {
		all = append(all, ks...)
	}
	return all
}

// Empty reports whether there is no key at all.
func (k Keys) Empty() bool { return len(k.Given) == 0 && len(k.Published) == 0 }

// ParseKeys reads verifier keys, one per line; blank lines and lines
// starting with # are skipped. It fails on a line that is not a key.
func ParseKeys(text string) ([]string, error) {
	var keys []string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := note.NewVerifier(line); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrBadKey, line, err)
		}
		keys = append(keys, line)
	}
	return keys, nil
}

// KeyID is the "name+hash" part of a verifier key, which names it.
func KeyID(vkey string) string {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) < 2 {
		return vkey
	}
	return parts[0] + "+" + parts[1]
}

// TOFUNote is the report note for a published key trusted on first use.
func TOFUNote(vkey string) string {
	return fmt.Sprintf("trusting the published key %s on first use: record it, better obtain it from the operator, and pass it with --key", KeyID(vkey))
}

// PublishedKeys reads the verifier keys published beside the trail
// (keys/<chain_id>-<key hash>.vkey), by chain id. Files that are not keys
// are returned as problems, not errors: they are the trail's content.
func PublishedKeys(ctx context.Context, src Source) (keys map[string][]string, problems []string, err error) {
	names, err := src.ListUnder(ctx, keysPrefix)
	if err != nil {
		return nil, nil, err
	}
	keys = map[string][]string{}
	for _, name := range names {
		base, ok := strings.CutSuffix(strings.TrimPrefix(name, keysPrefix), ".vkey")
		if !ok || strings.Contains(base, "/") {
			continue
		}
		i := strings.LastIndexByte(base, '-')
		if i <= 0 {
			problems = append(problems, fmt.Sprintf("%s: not named keys/<chain_id>-<key hash>.vkey: ignored", name))
			continue
		}
		data, err := src.ReadFile(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		vkey := strings.TrimSpace(string(data))
		if _, err := note.NewVerifier(vkey); err != nil {
			problems = append(problems, fmt.Sprintf("%s: not a verifier key (%v): ignored", name, err))
			continue
		}
		chainID := base[:i]
		if !slices.Contains(keys[chainID], vkey) {
			keys[chainID] = append(keys[chainID], vkey)
		}
	}
	return keys, problems, nil
}

// OpenCheckpoint checks a signed checkpoint against vkeys and returns it
// with the verifier key whose signature verified. A note that no key
// verifies wraps checkpoint.ErrBadSignature; one whose signed text is not a
// checkpoint, checkpoint.ErrMalformed.
func OpenCheckpoint(msg []byte, vkeys []string) (checkpoint.Checkpoint, string, error) {
	var vs []note.Verifier
	byID := map[string]string{}
	for _, k := range vkeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return checkpoint.Checkpoint{}, "", fmt.Errorf("%w: %q: %w", ErrBadKey, k, err)
		}
		vs = append(vs, v)
		byID[KeyID(k)] = k
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		return checkpoint.Checkpoint{}, "", fmt.Errorf("%w: %w", checkpoint.ErrBadSignature, err)
	}
	c, err := checkpoint.Parse(n.Text)
	if err != nil {
		return checkpoint.Checkpoint{}, "", err
	}
	s := n.Sigs[0]
	return c, byID[fmt.Sprintf("%s+%08x", s.Name, s.Hash)], nil
}

// unverifiedChain is the chain id a checkpoint claims, read without checking
// its signature (to choose the keys, and to file a bad signature under a
// chain); "" when it does not parse.
func unverifiedChain(msg []byte) string {
	text, _, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return ""
	}
	c, err := checkpoint.Parse(string(text) + "\n")
	if err != nil {
		return ""
	}
	return c.ChainID
}

// SplitNotes splits text holding one or more signed notes, each followed by
// a blank line (or the end), as `auditctl checkpoint` prints them.
func SplitNotes(text []byte) [][]byte {
	var notes [][]byte
	var cur []byte
	inSigs := false
	for line := range bytes.Lines(text) {
		blank := len(bytes.TrimSpace(line)) == 0
		switch {
		case blank && !inSigs && len(cur) > 0:
			inSigs = true
		case blank && inSigs:
			notes = append(notes, cur)
			cur, inSigs = nil, false
			continue
		case blank:
			continue // blank lines between notes
		}
		cur = append(cur, line...)
	}
	if len(cur) > 0 {
		notes = append(notes, cur)
	}
	return notes
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
func checkCheckpoints(ctx context.Context, src Source, opts Options, rep *Report, files chainFiles, workers int) error {
	keys := Keys{Given: opts.Keys}
	for _, k := range opts.Keys {
		if _, err := note.NewVerifier(k); err != nil {
			return fmt.Errorf("%w: %q: %w", ErrBadKey, k, err)
		}
	}
	if len(opts.Keys) == 0 {
		pub, problems, err := PublishedKeys(ctx, src)
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
	names, err := src.ListUnder(ctx, checkpointsPrefix)
	if err != nil {
		return err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !strings.HasSuffix(n, ".checkpoint") })
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
	for _, ck := range checks {
		chainID := unverifiedChain(ck.msg)
		if chainID == "" && ck.stored {
			chainID = strings.TrimPrefix(ck.name, checkpointsPrefix)
			chainID, _, _ = strings.Cut(chainID, "/")
		}
		add := func(seq, through int64, kind Kind, format string, args ...any) {
			rep.Violations = append(rep.Violations, Violation{File: ck.name, ChainID: chainID, Seq: seq, Through: through, Kind: kind, Detail: fmt.Sprintf(format, args...)})
		}
		vkeys := keys.For(chainID)
		if chainID == "" {
			vkeys = keys.all() // not a checkpoint: Open says why
		}
		if len(vkeys) == 0 {
			add(NoSeq, 0, BadSignature, "no verifier key for chain %q: none given, none published as %s%s-<key hash>.vkey", chainID, keysPrefix, chainID)
			continue
		}
		c, signer, err := OpenCheckpoint(ck.msg, vkeys)
		if err != nil {
			add(NoSeq, 0, BadSignature, "%v", err)
			continue
		}
		if len(keys.Given) == 0 && !usedTOFU[signer] {
			usedTOFU[signer] = true
			rep.TrustedOnFirstUse = append(rep.TrustedOnFirstUse, KeyID(signer))
		}
		if ck.stored {
			checked[c.ChainID] = true
			latest[c.ChainID] = max(latest[c.ChainID], c.Size)
			if want := checkpoint.ObjectKey(c.ChainID, c.Size); ck.name != want {
				add(c.Size-1, 0, CheckpointMismatch, "stored as %s, but it states chain %q at size %d (%s)", ck.name, c.ChainID, c.Size, want)
			}
		}
		hr, ok := compareCheckpoint(c, files[c.ChainID], add)
		if ok {
			hr.add = add
			hashReads = append(hashReads, hr)
		}
	}
	// Heads that no file ends at (the trail was re-batched) need the file
	// read again.
	for _, hr := range hashReads {
		data, err := src.ReadFile(ctx, hr.file)
		if err != nil {
			return err
		}
		r := newFileReader()
		r.pickSeq = hr.c.Size - 1
		r.read(hr.file, data)
		if !r.picked.eq(hash64(hr.c.Head)) {
			hr.add(hr.c.Size-1, 0, CheckpointMismatch, "checkpoint head (entry_hash of seq %d) is %s, the trail has %s in %s: history rewritten",
				hr.c.Size-1, hr.c.Head, r.picked, hr.file)
		}
	}
	slices.Sort(rep.TrustedOnFirstUse)
	for _, k := range rep.TrustedOnFirstUse {
		rep.Notes = append(rep.Notes, TOFUNote(k))
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

// headRead is a checkpoint head found inside a file rather than at its end.
type headRead struct {
	c    checkpoint.Checkpoint
	file string
	add  func(seq, through int64, kind Kind, format string, args ...any)
}

// compareCheckpoint compares a checkpoint whose signature verified with the
// files of its chain. When its head lies inside a file rather than at the
// end of one, it returns that file to be read again (ok true).
func compareCheckpoint(c checkpoint.Checkpoint, files []*fileResult, add func(seq, through int64, kind Kind, format string, args ...any)) (headRead, bool) {
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
func readAll(ctx context.Context, src Source, names []string, workers int, use func(i int, data []byte)) error {
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
				data, err := src.ReadFile(ctx, names[i])
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
