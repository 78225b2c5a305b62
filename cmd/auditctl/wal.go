package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/agentaudit/agentaudit/internal/wal"
)

const walUsage = `usage:
  auditctl wal accept-loss --by NAME --reason TEXT [--chain ID] [--json] SPOOL_DIRECTORY
      accept the loss of what a corrupt write-ahead log segment held, so that
      the collector, which refuses to start past it, records the loss in the
      trail (an agentaudit.loss entry) and goes on; see the README, "Recovery"
      exit 0 accepted, 1 nothing corrupt to accept, 2 could not run
`

// lossReport is what accept-loss found and decided, for --json.
type lossReport struct {
	ChainID    string `json:"chain_id"`
	Segment    string `json:"segment"`
	Offset     int64  `json:"offset"`
	Corruption string `json:"corruption"`
	// IntactThrough is the seq of the last entry before the damage (-1 when
	// none is in the log).
	IntactThrough int64 `json:"intact_through_seq"`
	// Readable are the entries found after the damage, which the
	// collector renumbers after the loss entry: their first and last seq.
	Readable      int    `json:"readable_after_damage"`
	ReadableFirst *int64 `json:"readable_first_seq,omitempty"`
	ReadableLast  *int64 `json:"readable_last_seq,omitempty"`
	Acceptance    string `json:"acceptance"`
	AcceptedBy    string `json:"accepted_by"`
	Reason        string `json:"reason"`
}

func runWAL(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "accept-loss" {
		fmt.Fprint(stderr, walUsage)
		return exitError
	}
	fs := flag.NewFlagSet("auditctl wal accept-loss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	by := fs.String("by", "", "who accepts the loss (recorded as the loss entry's approver and principal)")
	reason := fs.String("reason", "", "why (recorded as the loss entry's reasoning)")
	chainID := fs.String("chain", "", "the chain whose log is corrupt (default: the only one that is)")
	asJSON := fs.Bool("json", false, "print what was accepted as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return exitError
	}
	if fs.NArg() != 1 || *by == "" || *reason == "" {
		fmt.Fprint(stderr, "auditctl wal accept-loss: --by, --reason and the spool directory are required\n", walUsage)
		return exitError
	}
	dir := filepath.Join(fs.Arg(0), "wal")
	chains, err := wal.Chains(dir)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl wal accept-loss: %v\n", err)
		return exitError
	}
	var found []lossReport
	for _, id := range chains {
		if *chainID != "" && id != *chainID {
			continue
		}
		segs, err := wal.Recover(dir, id)
		if err != nil {
			fmt.Fprintf(stderr, "auditctl wal accept-loss: %v\n", err)
			return exitError
		}
		for i, s := range segs {
			if s.Corrupt == nil {
				continue
			}
			r := lossReport{ChainID: id, Segment: s.Name, Offset: s.Corrupt.Offset, Corruption: s.Corrupt.Reason, IntactThrough: s.FirstSeq - 1}
			if n := len(s.Entries); n > 0 {
				r.IntactThrough = s.Entries[n-1].Seq
			}
			// What the collector will find after the damage, each seq once.
			after, err := wal.AfterDamage(dir, id, segs[i:])
			if err != nil {
				fmt.Fprintf(stderr, "auditctl wal accept-loss: %v\n", err)
				return exitError
			}
			last := r.IntactThrough
			for _, e := range after {
				if seq := e.Seq; seq > last {
					if r.ReadableFirst == nil {
						r.ReadableFirst = &seq
					}
					r.ReadableLast = &seq
					r.Readable++
					last = seq
				}
			}
			found = append(found, r)
			break
		}
	}
	switch {
	case len(found) == 0:
		fmt.Fprintf(stderr, "auditctl wal accept-loss: no corrupt segment in %s: nothing to accept\n", dir)
		return exitViolations
	case len(found) > 1:
		fmt.Fprintf(stderr, "auditctl wal accept-loss: the logs of %d chains are corrupt in %s: choose one with --chain\n", len(found), dir)
		return exitError
	}
	r := found[0]
	r.AcceptedBy, r.Reason = *by, *reason
	r.Acceptance = filepath.Join(dir, wal.AcceptanceName(r.ChainID))
	acc := wal.Acceptance{Segment: r.Segment, Offset: r.Offset, Corruption: r.Corruption, By: *by, Reason: *reason, At: time.Now().UTC()}
	if _, err := os.Lstat(r.Acceptance); err == nil {
		fmt.Fprintf(stderr, "auditctl wal accept-loss: %s exists: a loss was accepted already and the collector has not applied it yet\n", r.Acceptance)
		return exitError
	}
	if err := wal.WriteAcceptance(dir, r.ChainID, acc); err != nil {
		fmt.Fprintf(stderr, "auditctl wal accept-loss: %v\n", err)
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return exitIntact
	}
	fmt.Fprintf(stdout, "chain %s: %s is corrupt at byte offset %d: %s\n", r.ChainID, filepath.Join(dir, r.Segment), r.Offset, r.Corruption)
	if r.IntactThrough >= 0 {
		fmt.Fprintf(stdout, "intact: every entry through seq %d\n", r.IntactThrough)
	}
	if r.Readable == 0 {
		fmt.Fprintf(stdout, "lost: seq %d and every later entry the log held\n", r.IntactThrough+1)
	} else {
		if *r.ReadableFirst > r.IntactThrough+1 {
			fmt.Fprintf(stdout, "lost: seq %d to %d\n", r.IntactThrough+1, *r.ReadableFirst-1)
		}
		fmt.Fprintf(stdout, "readable after the damage: %d entries, seq %d to %d (renumbered after the loss entry)\n", r.Readable, *r.ReadableFirst, *r.ReadableLast)
	}
	fmt.Fprintf(stdout, "accepted by %s: %s\nrestart the collector: it records the loss in the trail as an agentaudit.loss entry and keeps the damaged files under %s\n",
		r.AcceptedBy, r.Acceptance, filepath.Join(dir, wal.LostDir))
	return exitIntact
}
