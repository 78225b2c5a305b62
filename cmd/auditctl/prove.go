package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// ProofFormat tags an inclusion proof bundle against a checkpoint of
// format 1, whose audit path leads to the batch's root; ProofFormatTree one
// against a checkpoint of format 2, whose audit path leads to the root of
// the chain's tree (docs/FORMAT.md, "Inclusion proofs").
const (
	ProofFormat     = "agentaudit.proof.v1"
	ProofFormatTree = "agentaudit.proof.v2"
)

// proofBundle is what `auditctl prove` prints: everything needed to check
// that one entry is part of a signed chain, without the trail.
type proofBundle struct {
	Format  string `json:"format"`
	ChainID string `json:"chain_id"`
	Seq     int64  `json:"seq"`
	// Canonical is the entry's canonical encoding (docs/FORMAT.md, "The
	// entry hash"), base64: version 2, or version 1 for an entry without an
	// end time.
	Canonical string `json:"canonical"`
	EntryHash string `json:"entry_hash"`
	// LeafIndex is the entry's position in its batch (seq - batch_first)
	// in v1, in the chain's tree (seq) in v2; BatchSize the batch's number
	// of entries.
	LeafIndex  int64 `json:"leaf_index"`
	BatchSize  int64 `json:"batch_size"`
	BatchFirst int64 `json:"batch_first"`
	BatchLast  int64 `json:"batch_last"`
	// AuditPath is the RFC 6962 inclusion proof, hex, from the leaf up: in
	// the batch's tree (v1), in the chain's tree at TreeSize (v2).
	AuditPath []string `json:"audit_path"`
	BatchRoot string   `json:"batch_root"`
	// TreeSize and TreeRoot (v2) are the checkpoint's size and root: the
	// chain's tree the audit path leads to.
	TreeSize int64  `json:"tree_size,omitempty"`
	TreeRoot string `json:"tree_root,omitempty"`
	// BatchFile is where the batch is stored below the trail, for
	// reference; it is not checked.
	BatchFile string `json:"batch_file"`
	// Checkpoint is the signed checkpoint sealed with the batch, verbatim.
	Checkpoint string `json:"checkpoint"`
	// KeyName is the signer's key name; Key the verifier key the prover
	// checked the signature with (a checker should use its own, --key).
	KeyName string `json:"key_name"`
	Key     string `json:"key"`
}

// runProve prints an inclusion proof of one entry, or with --check checks
// one.
func runProve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f verifyFlags
	var chainID, check string
	fs := flag.NewFlagSet("auditctl prove", flag.ContinueOnError)
	fs.StringVar(&chainID, "chain", "", "the entry's chain (needed when TARGET holds several)")
	fs.StringVar(&check, "check", "", "check the proof in this file instead, without the trail")
	fs.StringVar(&f.key, "key", "", "file of the signers' verifier keys, one per line (default: the published key, or with --check the key in the proof, trusted on first use)")
	fs.BoolVar(&f.json, "json", false, "JSON output: the proof is always JSON; with --check, the result as {valid, checks, problems, entry}")
	addSourceFlags(fs, &f)
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if check != "" {
		if len(positional) != 0 {
			fmt.Fprintf(stderr, "auditctl prove --check: want no TARGET, got %q\n", positional)
			return exitError
		}
		return runCheckProof(check, f, stdout, stderr)
	}
	if len(positional) != 2 {
		fmt.Fprintf(stderr, "auditctl prove: want TARGET SEQ, got %d arguments\n%s", len(positional), usage)
		return exitError
	}
	target := positional[0]
	seq, err := strconv.ParseInt(positional[1], 10, 64)
	if err != nil || seq < 0 {
		fmt.Fprintf(stderr, "auditctl prove: SEQ %q is not a seq (0, 1, 2, ...)\n", positional[1])
		return exitError
	}
	src, _, err := openSource(ctx, target, f)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl prove: %v\n", err)
		return exitError
	}
	b, code, err := prove(ctx, src, chainID, seq, f.key, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl prove: %v\n", err)
		return code
	}
	if err := writeJSON(stdout, b); err != nil {
		fmt.Fprintf(stderr, "auditctl prove: %v\n", err)
		return exitError
	}
	return exitIntact
}

// errUnprovable wraps what the trail lacks to prove an entry (exit 1).
var errUnprovable = errors.New("cannot prove")

// prove builds the bundle of entry seq. The code goes with a non-nil error.
func prove(ctx context.Context, src store.Reader, chainID string, seq int64, keyFile string, stderr io.Writer) (*proofBundle, int, error) {
	keys, err := src.Batches(ctx)
	if err != nil {
		return nil, exitError, err
	}
	// The batch holding seq: the chain's file with the highest first seq
	// not above it.
	var chains []string
	file, fileFirst := "", int64(-1)
	for _, k := range keys {
		id, first, _, err := store.ParseBatchName(k)
		if err != nil {
			continue
		}
		if !slices.Contains(chains, id) {
			chains = append(chains, id)
		}
		if (chainID == "" || id == chainID) && first <= seq && first > fileFirst {
			file, fileFirst = k, first
		}
	}
	switch {
	case len(chains) == 0:
		return nil, exitError, fmt.Errorf("no batch files under %s", src)
	case chainID == "" && len(chains) > 1:
		slices.Sort(chains)
		return nil, exitError, fmt.Errorf("%s holds chains %s: choose one with --chain", src, strings.Join(chains, ", "))
	case chainID == "":
		chainID = chains[0]
	case !slices.Contains(chains, chainID):
		return nil, exitError, fmt.Errorf("no chain %q under %s", chainID, src)
	}
	if file == "" {
		return nil, exitViolations, fmt.Errorf("%w: no batch file of chain %s holds seq %d", errUnprovable, chainID, seq)
	}
	data, err := src.Get(ctx, file)
	if err != nil {
		return nil, exitError, err
	}
	// The file must be intact on its own before it is read for a proof:
	// the verifier reads it within bounds (a crafted file cannot make this
	// exhaust memory) and rejects what parquet-go would misread.
	if vs := verify.CheckFile(file, data); len(vs) > 0 {
		return nil, exitViolations, fmt.Errorf("%w: %s: %s: %s (%s; run auditctl verify)",
			errUnprovable, file, vs[0].Kind, vs[0].Detail, plural(len(vs), "violation"))
	}
	entries, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, exitViolations, fmt.Errorf("%w: %s: %v (run auditctl verify)", errUnprovable, file, err)
	}
	idx := slices.IndexFunc(entries, func(e entry.Entry) bool { return e.Seq == seq })
	if idx < 0 || entries[0].ChainID != chainID {
		return nil, exitViolations, fmt.Errorf("%w: %s does not hold seq %d of chain %s", errUnprovable, file, seq, chainID)
	}
	hashes := make([][]byte, len(entries))
	for i := range entries {
		if want := chain.Hash(&entries[i]); entries[i].EntryHash != want {
			return nil, exitViolations, fmt.Errorf("%w: %s: seq %d: entry_hash %s, want %s (run auditctl verify)", errUnprovable, file, entries[i].Seq, entries[i].EntryHash, want)
		}
		hashes[i], _ = hex.DecodeString(entries[i].EntryHash)
	}
	e := &entries[idx]
	last := entries[len(entries)-1]
	b := &proofBundle{
		Format: ProofFormat, ChainID: chainID, Seq: seq,
		Canonical: base64.StdEncoding.EncodeToString(chain.AppendCanonical(nil, e)), EntryHash: e.EntryHash,
		LeafIndex: int64(idx), BatchSize: int64(len(entries)), BatchFirst: entries[0].Seq, BatchLast: last.Seq,
		BatchRoot: hex.EncodeToString(merkle.Root(hashes)), BatchFile: file,
	}
	c, code, err := batchCheckpoint(ctx, src, b, keyFile, stderr)
	if err != nil {
		return nil, code, err
	}
	var path [][]byte
	if c.Format() == 2 {
		path, code, err = treePath(ctx, src, b, c)
	} else {
		path, err = merkle.InclusionProof(hashes, idx)
		code = exitError
	}
	if err != nil {
		return nil, code, err
	}
	b.AuditPath = make([]string, len(path))
	for i, p := range path {
		b.AuditPath[i] = hex.EncodeToString(p)
	}
	// What a checker will find: nothing, or the trail is not what it seems.
	if res := checkProof(b, []string{b.Key}); !res.Valid {
		return nil, exitViolations, fmt.Errorf("%w: the proof does not check: %s", errUnprovable, strings.Join(res.Problems, "; "))
	}
	return b, exitIntact, nil
}

// batchCheckpoint reads and opens the checkpoint sealed with b's batch
// and puts it, with its signer's key, in b.
func batchCheckpoint(ctx context.Context, src store.Reader, b *proofBundle, keyFile string, stderr io.Writer) (checkpoint.Checkpoint, int, error) {
	cpKey := store.CheckpointKey(b.ChainID, b.BatchLast+1)
	msg, err := src.Get(ctx, cpKey)
	if err != nil {
		return checkpoint.Checkpoint{}, exitViolations, fmt.Errorf("%w: the checkpoint of the batch, %s: %v", errUnprovable, cpKey, err)
	}
	ks, err := trailKeys(ctx, src, keyFile)
	if err != nil {
		return checkpoint.Checkpoint{}, exitError, err
	}
	vkeys := ks.For(b.ChainID)
	if len(vkeys) == 0 {
		return checkpoint.Checkpoint{}, exitError, fmt.Errorf("no verifier key: none given with --key and none published for chain %s", b.ChainID)
	}
	c, signer, err := checkpoint.Open(msg, vkeys...)
	if err != nil {
		return checkpoint.Checkpoint{}, exitViolations, fmt.Errorf("%w: %s: bad_signature: %v", errUnprovable, cpKey, err)
	}
	b.Checkpoint, b.Key, b.KeyName = string(msg), signer, strings.SplitN(signer, "+", 2)[0]
	if len(ks.Given) == 0 {
		fmt.Fprintf(stderr, "note: %s\n", checkpoint.TOFUNote(signer))
	}
	return c, exitIntact, nil
}

// treePath makes b a proof of format 2, against c's root (the chain's
// tree): the entry's audit path in the tree at c's size, read from the
// tiles beside the trail.
func treePath(ctx context.Context, src store.Reader, b *proofBundle, c checkpoint.Checkpoint) ([][]byte, int, error) {
	root, err := verify.TreeRoot(c)
	if err != nil {
		return nil, exitViolations, fmt.Errorf("%w: %v", errUnprovable, err)
	}
	tr, err := verify.Tiles(ctx, src, b.ChainID)
	if err != nil {
		return nil, exitError, err
	}
	p, err := tr.InclusionProof(b.Seq, c.Size, root)
	if err != nil {
		err = verify.TilesError(ctx, src, b.ChainID, err)
		return nil, consistencyCode(err), fmt.Errorf("%w: the chain's tree at size %d: %v", errUnprovable, c.Size, err)
	}
	b.Format, b.LeafIndex, b.TreeSize, b.TreeRoot = ProofFormatTree, b.Seq, c.Size, c.Root
	path := make([][]byte, len(p))
	for i := range p {
		path[i] = p[i][:]
	}
	return path, exitIntact, nil
}

// checkResult is what `prove --check --json` prints.
type checkResult struct {
	Valid bool `json:"valid"`
	// Checks are the checks that passed, Problems those that failed.
	Checks   []string `json:"checks"`
	Problems []string `json:"problems"`
	// Entry is the entry decoded from the canonical bytes, by column name
	// (null for NULL).
	Entry map[string]*string `json:"entry,omitempty"`
	// fields keeps Entry in column order for the text output.
	fields []string
}

// checkProof checks a bundle against the verifier keys, without the trail.
func checkProof(b *proofBundle, vkeys []string) *checkResult {
	r := &checkResult{Checks: []string{}, Problems: []string{}}
	ok := func(format string, args ...any) { r.Checks = append(r.Checks, fmt.Sprintf(format, args...)) }
	bad := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	defer func() { r.Valid = len(r.Problems) == 0 }()

	if b.Format != ProofFormat && b.Format != ProofFormatTree {
		bad("format %q, want %q or %q", b.Format, ProofFormat, ProofFormatTree)
		return r
	}
	// 1. The entry: its canonical bytes hash to entry_hash.
	canonical, err := base64.StdEncoding.DecodeString(b.Canonical)
	if err != nil {
		bad("canonical is not base64: %v", err)
		return r
	}
	sum := sha256.Sum256(canonical)
	if got := hex.EncodeToString(sum[:]); got != b.EntryHash {
		bad("SHA-256 of the canonical bytes is %s, entry_hash says %s", got, b.EntryHash)
	} else {
		ok("SHA-256 of the canonical bytes is entry_hash %s", b.EntryHash)
	}
	e, rest, err := chain.DecodeCanonical(canonical)
	switch {
	case err != nil:
		bad("canonical bytes do not decode: %v", err)
	case len(rest) > 0:
		bad("%d bytes after the canonical encoding", len(rest))
	case e.ChainID != b.ChainID || e.Seq != b.Seq:
		bad("the entry is chain %q seq %d, the proof says chain %q seq %d", e.ChainID, e.Seq, b.ChainID, b.Seq)
	default:
		ok("the canonical bytes decode to chain %s seq %d", e.ChainID, e.Seq)
		r.Entry, r.fields = entryFields(&e)
	}
	// 2. The audit path leads from the entry to the batch root, or (v2)
	// to the root of the chain's tree.
	if b.Format == ProofFormatTree {
		checkTreePath(b, ok, bad)
	} else if b.LeafIndex != b.Seq-b.BatchFirst || b.BatchSize != b.BatchLast-b.BatchFirst+1 || b.LeafIndex < 0 || b.LeafIndex >= b.BatchSize {
		bad("leaf %d of %d does not place seq %d in a batch of seq %d to %d", b.LeafIndex, b.BatchSize, b.Seq, b.BatchFirst, b.BatchLast)
	} else {
		leaf, err1 := hex.DecodeString(b.EntryHash)
		root, err2 := hex.DecodeString(b.BatchRoot)
		path := make([][]byte, len(b.AuditPath))
		var err3 error
		for i, p := range b.AuditPath {
			if path[i], err = hex.DecodeString(p); err != nil {
				err3 = err
			}
		}
		switch {
		case errors.Join(err1, err2, err3) != nil:
			bad("hashes are not hex: %v", errors.Join(err1, err2, err3))
		default:
			if err := merkle.VerifyInclusion(leaf, uint64(b.LeafIndex), uint64(b.BatchSize), path, root); err != nil {
				bad("the audit path does not lead to batch root %s: %v", b.BatchRoot, err)
			} else {
				ok("the audit path leads from leaf %d of %d to batch root %s", b.LeafIndex, b.BatchSize, b.BatchRoot)
			}
		}
	}
	// 3. The checkpoint is signed, and seals that batch of that chain.
	c, signer, err := checkpoint.Open([]byte(b.Checkpoint), vkeys...)
	if err != nil {
		bad("checkpoint: %v", err)
		return r
	}
	ok("checkpoint signature verifies with %s", checkpoint.KeyID(signer))
	switch {
	case c.ChainID != b.ChainID:
		bad("checkpoint is of chain %q, the proof of chain %q", c.ChainID, b.ChainID)
	case b.Format == ProofFormatTree && (c.Size != b.TreeSize || c.Root != b.TreeRoot):
		bad("checkpoint states the chain's tree at size %d with root %s, the proof's tree is of size %d with root %s", c.Size, c.Root, b.TreeSize, b.TreeRoot)
	case b.Format == ProofFormatTree:
		ok("checkpoint states chain %s at size %d with root %s (head %s)", c.ChainID, c.Size, c.Root, c.Head)
	case c.BatchFirst != b.BatchFirst || c.BatchLast != b.BatchLast:
		bad("checkpoint seals seq %d to %d, the proof's batch is seq %d to %d", c.BatchFirst, c.BatchLast, b.BatchFirst, b.BatchLast)
	case c.BatchRoot != b.BatchRoot:
		bad("checkpoint batch root %s, the proof's %s", c.BatchRoot, b.BatchRoot)
	default:
		ok("checkpoint seals chain %s seq %d to %d with root %s (chain size %d, head %s)", c.ChainID, c.BatchFirst, c.BatchLast, c.BatchRoot, c.Size, c.Head)
	}
	return r
}

// checkTreePath checks the audit path of a proof of format 2: from the
// entry's leaf (index seq) to the root of the chain's tree at TreeSize.
func checkTreePath(b *proofBundle, ok, bad func(format string, args ...any)) {
	if b.LeafIndex != b.Seq || b.Seq < 0 || b.Seq >= b.TreeSize {
		bad("leaf %d of a tree of %d entries does not place seq %d", b.LeafIndex, b.TreeSize, b.Seq)
		return
	}
	leaf, err1 := hex.DecodeString(b.EntryHash)
	root, err2 := hex.DecodeString(b.TreeRoot)
	path := make([]tlog.Hash, len(b.AuditPath))
	var err3 error
	for i, p := range b.AuditPath {
		h, err := hex.DecodeString(p)
		if err != nil || len(h) != tlog.HashSize {
			err3 = fmt.Errorf("audit path hash %d %q is not 32 bytes of hex", i, p)
		}
		path[i] = tlog.Hash(h)
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		bad("hashes are not hex: %v", err)
		return
	}
	if len(leaf) != 32 || len(root) != 32 {
		bad("entry_hash or tree_root is not 32 bytes")
		return
	}
	if err := tlogtree.CheckInclusion([32]byte(leaf), b.Seq, b.TreeSize, tlog.Hash(root), path); err != nil {
		bad("the audit path does not lead to the root %s of the chain's tree at size %d: %v", b.TreeRoot, b.TreeSize, err)
		return
	}
	ok("the audit path leads from leaf %d to the root %s of the chain's tree at size %d", b.Seq, b.TreeRoot, b.TreeSize)
}

// entryFields lists the entry's columns in the order they are hashed
// (docs/FORMAT.md); end_time_unix_nano and sender are NULL for an entry of
// version 1.
func entryFields(e *entry.Entry) (map[string]*string, []string) {
	str := func(s string) *string { return &s }
	var end *string
	if e.EndTimeUnixNano != nil {
		end = str(strconv.FormatInt(*e.EndTimeUnixNano, 10))
	}
	pairs := []struct {
		name  string
		value *string
	}{
		{"chain_id", str(e.ChainID)}, {"seq", str(strconv.FormatInt(e.Seq, 10))},
		{"time_unix_nano", str(strconv.FormatInt(e.TimeUnixNano, 10))}, {"end_time_unix_nano", end},
		{"execution_id", str(e.ExecutionID)},
		{"trace_id", str(e.TraceID)}, {"span_id", str(e.SpanID)}, {"parent_span_id", e.ParentSpanID},
		{"agent_id", e.AgentID}, {"agent_name", e.AgentName}, {"service_name", e.ServiceName},
		{"principal", e.Principal}, {"sender", e.Sender}, {"action_type", str(e.ActionType)}, {"target_system", str(e.TargetSystem)},
		{"target_resource", str(e.TargetResource)}, {"proposed_value", e.ProposedValue},
		{"previous_value", e.PreviousValue}, {"reasoning", e.Reasoning}, {"approver", e.Approver},
		{"result", str(e.Result)}, {"status_code", str(e.StatusCode)}, {"attributes", str(e.Attributes)},
		{"validation", e.Validation}, {"prev_hash", str(e.PrevHash)}, {"entry_hash", str(e.EntryHash)},
	}
	m := make(map[string]*string, len(pairs))
	names := make([]string, len(pairs))
	for i, p := range pairs {
		m[p.name], names[i] = p.value, p.name
	}
	return m, names
}

// runCheckProof checks a proof file offline.
func runCheckProof(file string, f verifyFlags, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl prove --check: %v\n", err)
		return exitError
	}
	var b proofBundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		fmt.Fprintf(stderr, "auditctl prove --check: %s is not a proof: %v\n", file, err)
		return exitError
	}
	vkeys, err := readKeys(f.key)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl prove --check: %v\n", err)
		return exitError
	}
	if len(vkeys) == 0 {
		if b.Key == "" {
			fmt.Fprintln(stderr, "auditctl prove --check: no verifier key: none given with --key and none in the proof")
			return exitError
		}
		if _, err := checkpoint.ParseKeys(b.Key); err != nil {
			fmt.Fprintf(stderr, "auditctl prove --check: the proof's key: %v\n", err)
			return exitError
		}
		vkeys = []string{b.Key}
		fmt.Fprintf(stderr, "note: trusting the key in the proof %s on first use: obtain the operator's key and pass it with --key\n", checkpoint.KeyID(b.Key))
	}
	r := checkProof(&b, vkeys)
	if f.json {
		if err := writeJSON(stdout, r); err != nil {
			fmt.Fprintf(stderr, "auditctl prove --check: %v\n", err)
			return exitError
		}
	} else {
		fmt.Fprintf(stdout, "proof of chain %s seq %d (%s)\n", b.ChainID, b.Seq, file)
		for _, c := range r.Checks {
			fmt.Fprintf(stdout, "ok: %s\n", c)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(stdout, "FAIL: %s\n", p)
		}
		if r.Entry != nil {
			fmt.Fprintln(stdout, "entry:")
			for _, name := range r.fields {
				v := "NULL"
				if p := r.Entry[name]; p != nil {
					v = strconv.Quote(*p)
				}
				fmt.Fprintf(stdout, "  %s: %s\n", name, v)
			}
		}
		if r.Valid {
			fmt.Fprintln(stdout, "VALID: the entry is part of the signed chain")
		} else {
			fmt.Fprintf(stdout, "INVALID: %s\n", plural(len(r.Problems), "problem"))
		}
	}
	if !r.Valid {
		return exitViolations
	}
	return exitIntact
}
