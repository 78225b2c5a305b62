package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// watch is a monitor (docs/FORMAT.md, "Monitoring a trail"): per chain it
// remembers the last checkpoint it verified, in a state file of DIR, and
// each round checks that the newest stored checkpoint is signed and
// extends it (a consistency proof from the tiles), then verifies only the
// files added since (verify.Options.From) and remembers the newest. The
// first round, with no state, verifies the whole trail.

// watchState is what watch remembers of one chain: DIR/<chain_id>.json.
type watchState struct {
	ChainID string `json:"chain_id"`
	Size    int64  `json:"size"`
	Root    string `json:"root"`
	// Checkpoint is the signed note, verbatim; Key the verifier key whose
	// signature verified, which later checkpoints must verify with too
	// (unless --key gives the keys).
	Checkpoint string `json:"checkpoint"`
	Key        string `json:"key"`
	// Range is the compact range of the chain's tree at Size, hex: what
	// the next round's tree extends.
	Range      []string  `json:"range"`
	VerifiedAt time.Time `json:"verified_at"`
}

// watchChain is one chain's part of a round.
type watchChain struct {
	ChainID string `json:"chain_id"`
	// From is the size remembered before the round (0: none), To the
	// newest stored checkpoint's size, Root its root.
	From int64  `json:"from"`
	To   int64  `json:"to"`
	Root string `json:"root"`
	// ProofHashes is the length of the consistency proof checked.
	ProofHashes int `json:"proof_hashes"`
}

// watchRound is what a round found: one line of --json.
type watchRound struct {
	Time    time.Time    `json:"time"`
	Target  string       `json:"target"`
	Intact  bool         `json:"intact"`
	Files   int          `json:"files"`
	Entries int64        `json:"entries"`
	Chains  []watchChain `json:"chains"`
	// Violations: history changed (or the trail is not intact).
	Violations []verify.Violation `json:"violations"`
	Notes      []string           `json:"notes"`
	// Error: the round could not run (the state is unchanged).
	Error string `json:"error,omitempty"`
}

type watchFlags struct {
	verifyFlags
	state    string
	interval time.Duration
}

// runWatch runs one round, or one every --interval until a violation or
// ctx's end (SIGINT).
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f watchFlags
	fs := flag.NewFlagSet("auditctl watch", flag.ContinueOnError)
	fs.StringVar(&f.state, "state", "", "directory of the monitor's state: the last verified checkpoint of each chain (created if missing)")
	fs.DurationVar(&f.interval, "interval", 0, "run a round every interval until a violation or SIGINT (default: one round, for cron)")
	fs.BoolVar(&f.json, "json", false, "print each round as one JSON object on one line")
	fs.StringVar(&f.key, "key", "", "file of the signers' verifier keys, one per line (default: the published keys, trusted on first use, then the key remembered per chain)")
	fs.IntVar(&f.workers, "workers", 0, "files read at once (default: the number of CPUs; 16 for S3)")
	addSourceFlags(fs, &f.verifyFlags)
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "auditctl watch: "+format+"\n", args...)
		return exitError
	}
	switch {
	case len(positional) != 1:
		return fail("want one TARGET, got %d\n%s", len(positional), usage)
	case f.state == "":
		return fail("--state DIR is required: where the last verified checkpoints are remembered")
	case f.interval < 0:
		return fail("--interval %v must be positive", f.interval)
	}
	given, err := readKeys(f.key)
	if err != nil {
		return fail("%v", err)
	}
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		return fail("--state: %v", err)
	}
	src, workers, err := openSource(ctx, positional[0], f.verifyFlags)
	if err != nil {
		return fail("%v", err)
	}
	w := &watcher{src: src, dir: f.state, given: given, workers: workers}
	for {
		r := w.round(ctx)
		if ctx.Err() != nil {
			return exitIntact // interrupted: the round's result is not one
		}
		printRound(stdout, r, f.json)
		if r.Error != "" {
			fmt.Fprintf(stderr, "auditctl watch: round at %s: %s\n", r.Time.Format(time.RFC3339), r.Error)
		}
		switch {
		case len(r.Violations) > 0:
			return exitViolations
		case r.Error != "" && f.interval == 0:
			return exitError
		case f.interval == 0:
			return exitIntact
		}
		select {
		case <-ctx.Done():
			return exitIntact
		case <-time.After(f.interval):
		}
	}
}

// watcher runs rounds over one trail.
type watcher struct {
	src     store.Reader
	dir     string
	given   []string // --key
	workers int
}

// round runs one round. The state changes only when it finds nothing.
func (w *watcher) round(ctx context.Context) *watchRound {
	r := &watchRound{Time: time.Now().UTC(), Target: w.src.String(), Chains: []watchChain{}, Violations: []verify.Violation{}, Notes: []string{}}
	if err := w.check(ctx, r); err != nil {
		r.Error = err.Error()
	}
	r.Intact = r.Error == "" && len(r.Violations) == 0
	r.Notes = slices.Compact(r.Notes) // the first use of a key, said by both
	return r
}

// newest is a chain's newest stored checkpoint, opened.
type newest struct {
	key    string // where it is stored
	msg    []byte
	c      checkpoint.Checkpoint
	signer string
}

func (w *watcher) check(ctx context.Context, r *watchRound) error {
	states, err := loadStates(w.dir)
	if err != nil {
		return err
	}
	latest, err := w.newestCheckpoints(ctx, states, r)
	if err != nil {
		return err
	}
	from := map[string]verify.Start{}
	for _, id := range sortedKeys(latest) {
		st, ok := states[id]
		if !ok {
			continue
		}
		start, err := w.extends(ctx, st, latest[id], r)
		if err != nil {
			return err
		}
		from[id] = start
	}
	if len(r.Violations) > 0 {
		return nil // history changed: what was added since is not read
	}
	upTo := map[string]int64{}
	for id, n := range latest {
		upTo[id] = n.c.Size // what the collector writes meanwhile is the next round's
	}
	opts := verify.Options{Keys: w.verifyKeys(states, latest), From: from, UpTo: upTo, Workers: w.workers}
	rep, err := verify.Verify(ctx, w.src, opts)
	if err != nil {
		return err
	}
	r.Files, r.Entries = rep.Files, rep.Entries
	r.Violations = append(r.Violations, rep.Violations...)
	r.Notes = append(r.Notes, slices.DeleteFunc(rep.Notes, func(n string) bool { return n == verify.NoCheckpointNote })...)
	if len(r.Violations) > 0 {
		return nil
	}
	return w.remember(latest, states, rep, r)
}

// newestCheckpoints opens the newest stored checkpoint of each chain: with
// the --key keys, else the key remembered for the chain, else the chain's
// published keys (trusted on first use, as a note says). A signature that
// does not verify is a violation.
func (w *watcher) newestCheckpoints(ctx context.Context, states map[string]watchState, r *watchRound) (map[string]newest, error) {
	names, err := w.src.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	sizes := map[string]int64{}
	for _, n := range names {
		if id, size, err := store.ParseCheckpointKey(n); err == nil && size >= sizes[id] {
			keys[id], sizes[id] = n, size
		}
	}
	for id, st := range states {
		if _, ok := keys[id]; !ok {
			r.Violations = append(r.Violations, verify.Violation{File: store.CheckpointKey(id, st.Size), ChainID: id, Seq: st.Size - 1, Kind: verify.CheckpointMismatch,
				Detail: fmt.Sprintf("no checkpoint of chain %s is stored any more: the one remembered (size %d, root %s) is gone", id, st.Size, st.Root)})
		}
	}
	published := checkpoint.Keys{Given: w.given}
	if len(w.given) == 0 {
		if published.Published, _, err = checkpoint.PublishedKeys(ctx, w.src); err != nil {
			return nil, err
		}
	}
	out := map[string]newest{}
	for _, id := range sortedKeys(keys) {
		msg, err := w.src.Get(ctx, keys[id])
		if err != nil {
			return nil, err
		}
		vkeys := published.For(id)
		if st, ok := states[id]; ok && len(w.given) == 0 {
			vkeys = []string{st.Key}
		}
		c, signer, err := checkpoint.Open(msg, vkeys...)
		if err == nil && c.ChainID != id {
			err = fmt.Errorf("it states chain %q", c.ChainID)
		}
		if err != nil {
			r.Violations = append(r.Violations, verify.Violation{File: keys[id], ChainID: id, Seq: verify.NoSeq, Kind: verify.BadSignature,
				Detail: fmt.Sprintf("the newest checkpoint of chain %s: %v (keys: %s)", id, err, strings.Join(keyIDs(vkeys), ", "))})
			continue
		}
		if _, ok := states[id]; !ok && len(w.given) == 0 {
			r.Notes = append(r.Notes, checkpoint.TOFUNote(signer))
		}
		out[id] = newest{key: keys[id], msg: msg, c: c, signer: signer}
	}
	return out, nil
}

func keyIDs(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = checkpoint.KeyID(k)
	}
	return out
}

// extends checks that chain st.ChainID's newest checkpoint n extends the
// one remembered, st, and that the checkpoint stored at st's size is
// still st's; it returns where the chain's verification starts. What does
// not hold is a violation.
func (w *watcher) extends(ctx context.Context, st watchState, n newest, r *watchRound) (verify.Start, error) {
	old, err := st.checkpoint()
	if err != nil {
		return verify.Start{}, err
	}
	start := verify.Start{Checkpoint: old, Range: make([][]byte, len(st.Range))}
	for i, h := range st.Range {
		if start.Range[i], err = hex.DecodeString(h); err != nil {
			return verify.Start{}, fmt.Errorf("state of chain %s: range: %w", st.ChainID, err)
		}
	}
	wc := watchChain{ChainID: st.ChainID, From: st.Size, To: n.c.Size, Root: n.c.Root}
	add := func(file string, format string, args ...any) {
		r.Violations = append(r.Violations, verify.Violation{File: file, ChainID: st.ChainID, Seq: old.Size - 1, Kind: verify.CheckpointMismatch, Detail: fmt.Sprintf(format, args...)})
	}
	if err := w.stillStored(ctx, old, add); err != nil {
		return verify.Start{}, err
	}
	if n.c.Size < old.Size {
		add(n.key, "the newest stored checkpoint is at size %d, the one remembered at size %d (root %s): the checkpoints after size %d are gone",
			n.c.Size, old.Size, old.Root, n.c.Size)
		return start, nil
	}
	p, err := verify.ConsistencyProof(ctx, w.src, old, n.c)
	var missing *verify.MissingTilesError
	switch {
	case err == nil:
		wc.ProofHashes = len(p)
		r.Chains = append(r.Chains, wc)
	case errors.Is(err, tlogtree.ErrProofFailed), errors.Is(err, tlogtree.ErrTilesMismatch), errors.As(err, &missing):
		add(n.key, "the newest stored checkpoint (size %d, root %s) is not proved to extend the one remembered (size %d, root %s): history changed: %s",
			n.c.Size, n.c.Root, old.Size, old.Root, proofProblem(err))
	default:
		return verify.Start{}, err
	}
	return start, nil
}

// stillStored checks that the checkpoint stored at old's size is old.
func (w *watcher) stillStored(ctx context.Context, old checkpoint.Checkpoint, add func(file, format string, args ...any)) error {
	key := store.CheckpointKey(old.ChainID, old.Size)
	msg, err := w.src.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		add(key, "the checkpoint remembered (size %d, root %s) is no longer stored", old.Size, old.Root)
		return nil
	case err != nil:
		return err
	}
	text, _, _ := strings.Cut(string(msg), "\n\n")
	if c, err := checkpoint.Parse(text + "\n"); err != nil || c != old {
		add(key, "the checkpoint stored at size %d is not the one remembered (root %s): it was replaced", old.Size, old.Root)
	}
	return nil
}

// verifyKeys are the keys Verify checks every checkpoint with: --key's,
// else the keys remembered when every chain has one, else none (the
// published keys, for the chains seen for the first time).
func (w *watcher) verifyKeys(states map[string]watchState, latest map[string]newest) []string {
	if len(w.given) > 0 {
		return w.given
	}
	var keys []string
	for id := range latest {
		st, ok := states[id]
		if !ok {
			return nil
		}
		if !slices.Contains(keys, st.Key) {
			keys = append(keys, st.Key)
		}
	}
	slices.Sort(keys)
	return keys
}

// remember writes the state of each chain whose newest checkpoint the
// verification matched with its entries.
func (w *watcher) remember(latest map[string]newest, states map[string]watchState, rep *verify.Report, r *watchRound) error {
	for _, id := range sortedKeys(latest) {
		n := latest[id]
		st, had := states[id]
		if had && st.Size == n.c.Size {
			continue // nothing new
		}
		size, hashes := rep.TreeRange(id)
		if size != n.c.Size {
			if n.c.Format() != 2 {
				r.Notes = append(r.Notes, fmt.Sprintf("chain %s: its newest checkpoint (size %d) is of format 1, without a tree root: not remembered; watch needs checkpoints of format 2", id, n.c.Size))
				continue
			}
			return fmt.Errorf("chain %s: the newest checkpoint (size %d) was not matched with the entries (tree at size %d) (bug)", id, n.c.Size, size)
		}
		if !had {
			r.Chains = append(r.Chains, watchChain{ChainID: id, To: n.c.Size, Root: n.c.Root})
		}
		st = watchState{ChainID: id, Size: n.c.Size, Root: n.c.Root, Checkpoint: string(n.msg), Key: n.signer, VerifiedAt: r.Time}
		if had && len(w.given) == 0 {
			st.Key = states[id].Key
		}
		for _, h := range hashes {
			st.Range = append(st.Range, hex.EncodeToString(h))
		}
		if err := saveState(w.dir, st); err != nil {
			return err
		}
	}
	slices.SortFunc(r.Chains, func(a, b watchChain) int { return strings.Compare(a.ChainID, b.ChainID) })
	return nil
}

// checkpoint is the remembered checkpoint, parsed (its signature was
// checked when it was remembered).
func (st watchState) checkpoint() (checkpoint.Checkpoint, error) {
	text, _, _ := strings.Cut(st.Checkpoint, "\n\n")
	c, err := checkpoint.Parse(text + "\n")
	if err != nil || c.ChainID != st.ChainID || c.Size != st.Size || c.Root != st.Root {
		return checkpoint.Checkpoint{}, fmt.Errorf("state of chain %s: the checkpoint remembered does not parse or disagrees with the state (%v)", st.ChainID, err)
	}
	return c, nil
}

// stateExt ends the name of a chain's state file.
const stateExt = ".json"

func loadStates(dir string) (map[string]watchState, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	states := map[string]watchState{}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, stateExt) || atomicfile.IsTemp(name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var st watchState
		if err := json.Unmarshal(data, &st); err != nil || st.ChainID+stateExt != name {
			return nil, fmt.Errorf("state file %s: not a watch state of its chain (%v)", filepath.Join(dir, name), err)
		}
		states[st.ChainID] = st
	}
	return states, nil
}

func saveState(dir string, st watchState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, st.ChainID+stateExt), append(data, '\n'), 0o600)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// printRound writes a round for people, or as one line of JSON.
func printRound(w io.Writer, r *watchRound, asJSON bool) {
	if asJSON {
		data, _ := json.Marshal(r) // plain values: no error
		fmt.Fprintf(w, "%s\n", data)
		return
	}
	at := r.Time.Format(time.RFC3339)
	for _, c := range r.Chains {
		if c.From == 0 {
			fmt.Fprintf(w, "%s %s: chain %s: verified whole, checkpoint at size %d remembered\n", at, r.Target, c.ChainID, c.To)
			continue
		}
		fmt.Fprintf(w, "%s %s: chain %s: size %d to %d, consistency proof of %d hashes checked\n", at, r.Target, c.ChainID, c.From, c.To, c.ProofHashes)
	}
	for _, v := range r.Violations {
		fmt.Fprintln(w, v.String())
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	switch {
	case len(r.Violations) > 0:
		fmt.Fprintf(w, "%s %s: HISTORY CHANGED: %s\n", at, r.Target, plural(len(r.Violations), "violation"))
	case r.Error != "":
		fmt.Fprintf(w, "%s %s: ERROR: %s\n", at, r.Target, r.Error)
	default:
		fmt.Fprintf(w, "%s %s: OK: %s, %s verified, no history changed\n", at, r.Target, plural(r.Files, "file"), plural(int(r.Entries), "entry"))
	}
}
