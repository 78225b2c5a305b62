// Command auditctl checks agentaudit trails for auditors.
//
//	auditctl verify [--json] [--endpoint URL] [--region REGION] [--workers N] TARGET
//
// TARGET is a local directory or s3://bucket/prefix (credentials from the AWS
// SDK's default chain). Every chain found under TARGET (one per collector
// replica) is verified: each entry hash is recomputed from its columns, the
// links are followed across files in seq order, and footers and file names
// are checked against the rows. Exit status: 0 intact, 1 violations found,
// 2 could not run (bad usage, unreadable target, no files).
//
// Signed checkpoints (--checkpoint, --key, auditctl checkpoint, auditctl
// prove) are not implemented yet: given, they exit 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// Exit statuses.
const (
	exitIntact     = 0
	exitViolations = 1
	exitError      = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), without
// a dependency for it.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

const usage = `usage:
  auditctl verify [--json] [--endpoint URL] [--region REGION] [--workers N] TARGET
      verify the trail under TARGET, a directory or s3://bucket/prefix
      exit 0 intact, 1 violations found, 2 could not run
  auditctl checkpoint ...    (not implemented yet)
  auditctl prove ...         (not implemented yet)
`

// run is the command with its environment passed in; it returns the exit
// status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError
	}
	switch args[0] {
	case "verify":
		return runVerify(ctx, args[1:], stdout, stderr, progress)
	case "checkpoint", "prove":
		fmt.Fprintf(stderr, "auditctl %s: not implemented yet (signed checkpoints are coming)\n", args[0])
		return exitError
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitIntact
	}
	fmt.Fprintf(stderr, "auditctl: unknown command %q\n%s", args[0], usage)
	return exitError
}

type verifyFlags struct {
	json       bool
	endpoint   string
	region     string
	pathStyle  string
	workers    int
	checkpoint string
	key        string
	noProgress bool
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	var f verifyFlags
	fs := flag.NewFlagSet("auditctl verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.json, "json", false, "print one JSON document {chains, violations, intact} instead of text")
	fs.StringVar(&f.endpoint, "endpoint", "", "S3 endpoint URL, for S3-compatible servers")
	fs.StringVar(&f.region, "region", "", "S3 region (default: from the AWS configuration; us-east-1 with --endpoint)")
	fs.StringVar(&f.pathStyle, "path-style", "auto", "S3 path-style addressing: true, false or auto (true with --endpoint)")
	fs.IntVar(&f.workers, "workers", 0, "files read at once (default: the number of CPUs; 16 for S3)")
	fs.StringVar(&f.checkpoint, "checkpoint", "", "signed checkpoint to check the chain heads against (not implemented yet)")
	fs.StringVar(&f.key, "key", "", "public key file of the checkpoint signer (not implemented yet)")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }

	// Flags may come before and after TARGET.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitIntact
			}
			return exitError
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl verify: want one TARGET, got %d\n%s", len(positional), usage)
		return exitError
	}
	if f.checkpoint != "" || f.key != "" {
		fmt.Fprintln(stderr, "auditctl verify: --checkpoint and --key are not implemented yet (signed checkpoints are coming); without them a truncated tail cannot be detected")
		return exitError
	}
	target := positional[0]

	src, workers, err := openSource(ctx, target, f)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl verify: %v\n", err)
		return exitError
	}
	opts := verify.Options{Workers: workers}
	var bar *progressBar
	if progress && !f.noProgress {
		bar = newProgressBar(stderr)
		opts.Progress = bar.update
	}
	rep, err := verify.Verify(ctx, src, opts)
	if bar != nil {
		bar.clear()
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditctl verify: could not verify %s: %v\n", target, err)
		return exitError
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "auditctl verify: %v\n", err)
			return exitError
		}
	} else {
		printReport(stdout, rep)
	}
	if !rep.Intact {
		return exitViolations
	}
	return exitIntact
}

func openSource(ctx context.Context, target string, f verifyFlags) (verify.Source, int, error) {
	if !strings.HasPrefix(target, "s3://") {
		if f.endpoint != "" || f.region != "" {
			return nil, 0, fmt.Errorf("--endpoint and --region are for s3:// targets, not %s", target)
		}
		return verify.Dir(target), f.workers, nil
	}
	bucket, prefix, err := verify.ParseS3URL(target)
	if err != nil {
		return nil, 0, err
	}
	opts := store.S3Options{Bucket: bucket, Prefix: prefix, Region: f.region, Endpoint: f.endpoint}
	switch f.pathStyle {
	case "auto":
		opts.ForcePathStyle = f.endpoint != ""
	case "true":
		opts.ForcePathStyle = true
	case "false":
	default:
		return nil, 0, fmt.Errorf("--path-style %q: want true, false or auto", f.pathStyle)
	}
	if opts.Region == "" && opts.Endpoint != "" && os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
		opts.Region = "us-east-1" // S3-compatible servers rarely care; the SDK insists on one
	}
	src, err := verify.NewS3(ctx, opts)
	if err != nil {
		return nil, 0, err
	}
	workers := f.workers
	if workers == 0 {
		workers = 16 // downloads wait on the network, not the CPU
	}
	return src, workers, nil
}

// printReport writes the human-readable report: a summary per chain, then
// one line per violation.
func printReport(w io.Writer, rep *verify.Report) {
	fmt.Fprintf(w, "%s: %d files, %d entries, %d chains\n", rep.Target, rep.Files, rep.Entries, len(rep.Chains))
	for _, c := range rep.Chains {
		status := "intact"
		if !c.Intact {
			status = plural(c.Violations, "violation")
		}
		fmt.Fprintf(w, "chain %s: %s in %s, seq %d to %d, %s to %s, last entry_hash %s: %s\n",
			c.ChainID, plural(int(c.Entries), "entry"), plural(c.Files, "file"), c.FirstSeq, c.LastSeq,
			c.FirstTime.Format(time.RFC3339Nano), c.LastTime.Format(time.RFC3339Nano), c.LastHash, status)
	}
	for _, v := range rep.Violations {
		fmt.Fprintln(w, v.String())
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if rep.Intact {
		fmt.Fprintln(w, "INTACT: no violations")
	} else {
		fmt.Fprintf(w, "VIOLATIONS: %s found\n", plural(len(rep.Violations), "violation"))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, word[:len(word)-1])
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// progressBar draws "[#####-----] 12/60 files, 1.2M entries/s" on a
// terminal, at most ten times a second.
type progressBar struct {
	w     io.Writer
	start time.Time
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w, start: time.Now()} }

func (p *progressBar) update(done, total int, entries int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	filled := width * done / max(total, 1)
	rate := float64(entries) / max(now.Sub(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d files, %s entries/s ", strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		done, total, humanRate(rate))
	p.drawn = true
}

func (p *progressBar) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 70))
	}
}

func humanRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.1fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.0fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}
