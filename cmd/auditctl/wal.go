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

	"github.com/agentaudit/agentaudit/internal/spoollock"
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
	// Also are the later corrupt segments the acceptance covers too.
	Also []wal.Damage `json:"also,omitempty"`
	// IntactThrough is the seq of the last entry before the damage (-1 when
	// none is in the log).
	IntactThrough int64 `json:"intact_through_seq"`
	// Readable are the entries found after the damage, which the
	// collector renumbers after the loss entry: their first and last seq.
	Readable      int    `json:"readable_after_damage"`
	ReadableFirst *int64 `json:"readable_first_seq,omitempty"`
	ReadableLast  *int64 `json:"readable_last_seq,omitempty"`
	// Lost are the seq ranges [first, last] missing before and between
	// the readable ones; with none readable, every seq after IntactThrough.
	Lost       [][2]int64 `json:"lost,omitempty"`
	Acceptance string     `json:"acceptance"`
	AcceptedBy string     `json:"accepted_by"`
	Reason     string     `json:"reason"`
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
	// The collector refuses to start on a corrupt log, so it is not
	// running: make sure.
	lock, err := spoollock.Acquire(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "auditctl wal accept-loss: the spool directory %v\n", err)
		return exitError
	}
	defer lock.Release()
	if pending, err := wal.ReplacePending(dir); err != nil || pending {
		fmt.Fprintf(stderr, "auditctl wal accept-loss: %s holds a salvage a crash interrupted (%v): start the collector once to complete it\n", dir, err)
		return exitError
	}
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
			for _, later := range segs[i+1:] {
				if later.Corrupt != nil {
					r.Also = append(r.Also, wal.Damage{Segment: later.Name, Offset: later.Corrupt.Offset})
				}
			}
			// What the collector will find after the damage.
			after, err := wal.AfterDamage(dir, id, segs[i:])
			if err != nil {
				fmt.Fprintf(stderr, "auditctl wal accept-loss: %v\n", err)
				return exitError
			}
			kept, lost := wal.Survivors(after, r.IntactThrough)
			r.Readable, r.Lost = len(kept), lost
			if len(kept) > 0 {
				r.ReadableFirst, r.ReadableLast = &kept[0].Seq, &kept[len(kept)-1].Seq
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
	acc := wal.Acceptance{Segment: r.Segment, Offset: r.Offset, Corruption: r.Corruption, Also: r.Also, By: *by, Reason: *reason, At: time.Now().UTC()}
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
	for _, d := range r.Also {
		fmt.Fprintf(stdout, "chain %s: %s is corrupt too, at byte offset %d\n", r.ChainID, filepath.Join(dir, d.Segment), d.Offset)
	}
	if r.IntactThrough >= 0 {
		fmt.Fprintf(stdout, "intact: every entry through seq %d\n", r.IntactThrough)
	}
	for _, l := range r.Lost {
		fmt.Fprintf(stdout, "lost: seq %d to %d\n", l[0], l[1])
	}
	if r.Readable == 0 {
		fmt.Fprintf(stdout, "lost: whatever the log held from seq %d on (nothing after the damage can be read)\n", r.IntactThrough+1)
	} else {
		fmt.Fprintf(stdout, "readable after the damage: %d entries, seq %d to %d (renumbered after the loss entry)\n", r.Readable, *r.ReadableFirst, *r.ReadableLast)
	}
	fmt.Fprintf(stdout, "accepted by %s: %s\nrestart the collector: it records the loss in the trail as an agentaudit.loss entry and keeps the damaged files under %s\n",
		r.AcceptedBy, r.Acceptance, filepath.Join(dir, wal.LostDir))
	return exitIntact
}
