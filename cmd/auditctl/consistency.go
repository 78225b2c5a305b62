package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// stdin is where --check - reads a proof (a variable for the tests).
var stdin io.Reader = os.Stdin

// consistencyJSON is what `consistency --check --json` prints.
type consistencyJSON struct {
	Valid   bool   `json:"valid"`
	ChainID string `json:"chain_id"`
	OldSize int64  `json:"old_size"`
	NewSize int64  `json:"new_size"`
	OldRoot string `json:"old_root"`
	NewRoot string `json:"new_root"`
	Hashes  int    `json:"hashes"` // in the proof
	Problem string `json:"problem,omitempty"`
}

// runConsistency prints the consistency proof between two checkpoints, or
// with --check checks one.
func runConsistency(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f verifyFlags
	var check string
	fs := flag.NewFlagSet("auditctl consistency", flag.ContinueOnError)
	fs.StringVar(&check, "check", "", "check the proof in this file (- for standard input) with only the two checkpoints, instead of printing one")
	fs.StringVar(&f.key, "key", "", "file of the signers' verifier keys, one per line (default: the keys published beside TARGET, trusted on first use)")
	fs.BoolVar(&f.json, "json", false, "with --check: the result as {valid, chain_id, old_size, new_size, old_root, new_root, hashes, problem}")
	addSourceFlags(fs, &f)
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "auditctl consistency: "+format+"\n", args...)
		return code
	}
	if check != "" {
		if len(positional) != 2 && len(positional) != 3 {
			return fail(exitError, "--check: want OLD_CHECKPOINT NEW_CHECKPOINT [TARGET], got %d arguments\n%s", len(positional), usage)
		}
		return checkConsistency(ctx, check, positional, f, stdout, stderr)
	}
	if len(positional) != 3 {
		return fail(exitError, "want OLD_CHECKPOINT NEW_CHECKPOINT TARGET, got %d arguments\n%s", len(positional), usage)
	}
	src, _, err := openSource(ctx, positional[2], f)
	if err != nil {
		return fail(exitError, "%v", err)
	}
	keys, err := trailKeys(ctx, src, f.key)
	if err != nil {
		return fail(exitError, "%v", err)
	}
	older, newer, code, err := openPair(positional[0], positional[1], keys, stderr)
	if err != nil {
		return fail(code, "%v", err)
	}
	p, err := verify.ConsistencyProof(ctx, src, older, newer)
	if err != nil {
		return fail(consistencyCode(err), "%s: chain %s from size %d to %d: %s", positional[2], newer.ChainID, older.Size, newer.Size, proofProblem(err))
	}
	if _, err := stdout.Write(tlogtree.MarshalProof(p)); err != nil {
		return fail(exitError, "%v", err)
	}
	return exitIntact
}

// consistencyCode is the exit status of a ConsistencyProof error: what the
// trail lacks to prove it (a fork, tiles missing or altered) is 1, as
// prove's; a wrong request or an unreadable trail, 2.
func consistencyCode(err error) int {
	var missing *verify.MissingTilesError
	if errors.As(err, &missing) || errors.Is(err, tlogtree.ErrTilesMismatch) || errors.Is(err, tlogtree.ErrProofFailed) {
		return exitViolations
	}
	return exitError
}

// proofProblem says in one line why a consistency proof could not be
// made or does not hold (the verifier's error, which prints the roots as
// byte lists over several lines, is left out).
func proofProblem(err error) string {
	switch {
	case errors.Is(err, tlogtree.ErrProofFailed):
		return "the proof fails: the newer tree does not extend the older (a fork, or history rewritten)"
	case errors.Is(err, tlogtree.ErrTilesMismatch):
		return "the stored tiles do not support the newer checkpoint's root (tiles altered, or another tree's)"
	}
	return err.Error()
}

// checkConsistency checks a proof file against the two checkpoints
// (positional: OLD NEW [TARGET], TARGET only for its published keys).
func checkConsistency(ctx context.Context, file string, positional []string, f verifyFlags, stdout, stderr io.Writer) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "auditctl consistency --check: "+format+"\n", args...)
		return code
	}
	var keys checkpoint.Keys
	switch {
	case f.key != "" || len(positional) == 2:
		given, err := readKeys(f.key)
		if err != nil {
			return fail(exitError, "%v", err)
		}
		if len(given) == 0 {
			return fail(exitError, "no verifier key: give the signer's key with --key (or a TARGET whose published keys to trust)")
		}
		keys.Given = given
	default:
		src, _, err := openSource(ctx, positional[2], f)
		if err != nil {
			return fail(exitError, "%v", err)
		}
		if keys, err = trailKeys(ctx, src, ""); err != nil {
			return fail(exitError, "%v", err)
		}
	}
	older, newer, code, err := openPair(positional[0], positional[1], keys, stderr)
	if err != nil {
		return fail(code, "%v", err)
	}
	p, err := readProof(file)
	if err != nil {
		return fail(exitError, "%v", err)
	}
	res := consistencyJSON{ChainID: newer.ChainID, OldSize: older.Size, NewSize: newer.Size, OldRoot: older.Root, NewRoot: newer.Root, Hashes: len(p)}
	err = verify.CheckConsistency(older, newer, p)
	switch {
	case errors.Is(err, verify.ErrIncomparable):
		return fail(exitError, "%v", err)
	case err != nil:
		res.Problem = proofProblem(err)
	default:
		res.Valid = true
	}
	if f.json {
		if err := writeJSON(stdout, res); err != nil {
			return fail(exitError, "%v", err)
		}
	} else if res.Valid {
		fmt.Fprintf(stdout, "VALID: chain %s at size %d (root %s) extends size %d (root %s): a proof of %d hashes checked\n",
			res.ChainID, res.NewSize, res.NewRoot, res.OldSize, res.OldRoot, res.Hashes)
	} else {
		fmt.Fprintf(stdout, "INVALID: %s\n", res.Problem)
	}
	if !res.Valid {
		return exitViolations
	}
	return exitIntact
}

// readProof reads a proof in tlogtree.MarshalProof's form from file, or
// from standard input for "-".
func readProof(file string) ([]tlog.Hash, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	p, err := tlogtree.ParseProof(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not a consistency proof (one base64 hash a line): %w", file, err)
	}
	return p, nil
}

// openPair reads and opens the checkpoint files old and new, each holding
// one signed checkpoint. A signature that does not verify is exit 1 (as
// prove's), anything else 2.
func openPair(oldFile, newFile string, keys checkpoint.Keys, stderr io.Writer) (older, newer checkpoint.Checkpoint, code int, err error) {
	tofu := map[string]bool{}
	open := func(file string) (checkpoint.Checkpoint, int, error) {
		msg, err := readOneNote(file)
		if err != nil {
			return checkpoint.Checkpoint{}, exitError, err
		}
		chainID := checkpoint.UnverifiedChain(msg)
		if chainID == "" {
			return checkpoint.Checkpoint{}, exitError, fmt.Errorf("%s is not a signed checkpoint (auditctl checkpoint --chain ID prints one)", file)
		}
		vkeys := keys.For(chainID)
		if len(vkeys) == 0 {
			return checkpoint.Checkpoint{}, exitError, fmt.Errorf("%s: no verifier key for chain %q: none given with --key and none published", file, chainID)
		}
		c, signer, err := checkpoint.Open(msg, vkeys...)
		if err != nil {
			return checkpoint.Checkpoint{}, exitViolations, fmt.Errorf("%s: bad_signature: %w", file, err)
		}
		if len(keys.Given) == 0 && !tofu[signer] {
			tofu[signer] = true
			fmt.Fprintf(stderr, "note: %s\n", checkpoint.TOFUNote(signer))
		}
		return c, exitIntact, nil
	}
	if older, code, err = open(oldFile); err != nil {
		return older, newer, code, err
	}
	newer, code, err = open(newFile)
	return older, newer, code, err
}

// readOneNote reads a file holding one signed checkpoint (auditctl
// checkpoint --chain ID prints one).
func readOneNote(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	notes := checkpoint.SplitNotes(data)
	switch len(notes) {
	case 0:
		return nil, fmt.Errorf("%s holds no signed checkpoint", file)
	case 1:
		return notes[0], nil
	}
	return nil, fmt.Errorf("%s holds %d signed checkpoints, want one (auditctl checkpoint --chain ID prints one)", file, len(notes))
}
