package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
)

// checkpointJSON is one chain's latest checkpoint in `checkpoint --json`.
type checkpointJSON struct {
	ChainID    string `json:"chain_id"`
	Size       int64  `json:"size"`
	Head       string `json:"head"`
	BatchFirst int64  `json:"batch_first"`
	BatchLast  int64  `json:"batch_last"`
	BatchRoot  string `json:"batch_root"`
	// Note is the signed note, verbatim: what `verify --checkpoint` reads.
	Note string `json:"note"`
	// Key is the verifier key whose signature verified.
	Key string `json:"key"`
	// File is where it is stored, below TARGET.
	File string `json:"file"`
}

// addSourceFlags adds the S3 flags every verb that reads a trail takes.
func addSourceFlags(fs *flag.FlagSet, f *verifyFlags) {
	fs.StringVar(&f.endpoint, "endpoint", "", "S3 endpoint URL, for S3-compatible servers")
	fs.StringVar(&f.region, "region", "", "S3 region (default: from the AWS configuration; us-east-1 with --endpoint)")
	fs.StringVar(&f.pathStyle, "path-style", "auto", "S3 path-style addressing: true, false or auto (true with --endpoint)")
}

// trailKeys returns the --key keys, or else the keys published beside the
// trail, telling stderr which published keys it trusts on first use.
func trailKeys(ctx context.Context, src store.Reader, keyFile string) (checkpoint.Keys, error) {
	given, err := readKeys(keyFile)
	if err != nil || len(given) > 0 {
		return checkpoint.Keys{Given: given}, err
	}
	pub, _, err := checkpoint.PublishedKeys(ctx, src)
	return checkpoint.Keys{Published: pub}, err
}

// runCheckpoint prints the latest stored checkpoint of each chain after
// checking its signature.
func runCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f verifyFlags
	var chainID string
	fs := flag.NewFlagSet("auditctl checkpoint", flag.ContinueOnError)
	fs.BoolVar(&f.json, "json", false, "print a JSON array of {chain_id, size, head, batch_first, batch_last, batch_root, note, key, file}")
	fs.StringVar(&f.key, "key", "", "file of the signers' verifier keys, one per line (default: the published keys, trusted on first use)")
	fs.StringVar(&chainID, "chain", "", "only this chain")
	addSourceFlags(fs, &f)
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl checkpoint: want one TARGET, got %d\n%s", len(positional), usage)
		return exitError
	}
	target := positional[0]
	src, _, err := openSource(ctx, target, f)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl checkpoint: %v\n", err)
		return exitError
	}
	keys, err := trailKeys(ctx, src, f.key)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl checkpoint: %v\n", err)
		return exitError
	}
	names, err := src.List(ctx, store.CheckpointsPrefix)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl checkpoint: %v\n", err)
		return exitError
	}
	// The latest of each chain: the largest size.
	latest := map[string]string{}
	sizes := map[string]int64{}
	var chains []string
	for _, n := range names {
		id, size, err := store.ParseCheckpointKey(n)
		if err != nil || (chainID != "" && id != chainID) {
			continue
		}
		if _, seen := latest[id]; !seen {
			chains = append(chains, id)
		} else if size < sizes[id] {
			continue
		}
		latest[id], sizes[id] = n, size
	}
	if len(chains) == 0 {
		what := "no checkpoints"
		if chainID != "" {
			what = "no checkpoint of chain " + chainID
		}
		fmt.Fprintf(stderr, "auditctl checkpoint: %s under %s\n", what, target)
		return exitError
	}
	if keys.Empty() {
		fmt.Fprintf(stderr, "auditctl checkpoint: no verifier key: none given with --key and none published under %s/%s\n", target, store.KeysPrefix)
		return exitError
	}
	slices.Sort(chains)
	var out []checkpointJSON
	tofu := map[string]bool{}
	code = exitIntact
	for _, id := range chains {
		msg, err := src.Get(ctx, latest[id])
		if err != nil {
			fmt.Fprintf(stderr, "auditctl checkpoint: %v\n", err)
			return exitError
		}
		vkeys := keys.For(id)
		if len(vkeys) == 0 {
			fmt.Fprintf(stderr, "auditctl checkpoint: %s: bad_signature: no verifier key for chain %s\n", latest[id], id)
			code = exitViolations
			continue
		}
		c, signer, err := checkpoint.Open(msg, vkeys...)
		if err == nil && c.ChainID != id {
			err = fmt.Errorf("it states chain %q", c.ChainID)
		}
		if err != nil {
			fmt.Fprintf(stderr, "auditctl checkpoint: %s: bad_signature: %v\n", latest[id], err)
			code = exitViolations
			continue
		}
		if len(keys.Given) == 0 && !tofu[signer] {
			tofu[signer] = true
			fmt.Fprintf(stderr, "note: %s\n", checkpoint.TOFUNote(signer))
		}
		out = append(out, checkpointJSON{ChainID: c.ChainID, Size: c.Size, Head: c.Head, BatchFirst: c.BatchFirst,
			BatchLast: c.BatchLast, BatchRoot: c.BatchRoot, Note: string(msg), Key: signer, File: latest[id]})
	}
	if f.json {
		if out == nil {
			out = []checkpointJSON{}
		}
		if err := writeJSON(stdout, out); err != nil {
			fmt.Fprintf(stderr, "auditctl checkpoint: %v\n", err)
			return exitError
		}
		return code
	}
	// The notes, each followed by a blank line: the file verify
	// --checkpoint reads.
	for _, c := range out {
		fmt.Fprint(stdout, c.Note)
		if !strings.HasSuffix(c.Note, "\n") {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintln(stdout)
	}
	return code
}
