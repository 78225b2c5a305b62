// Command auditctl checks agentaudit trails for auditors.
//
//	auditctl verify [--checkpoint FILE] [--key PUBKEY_FILE] [--tsa-cert PEM_FILE [--require-timestamps] [--tsa-max-delay D]] [--witness VKEY... [--cosignatures N]] [--json] [--endpoint URL] [--region REGION] [--workers N] TARGET
//	auditctl checkpoint [--key PUBKEY_FILE] [--chain ID] [--json] TARGET
//	auditctl prove [--chain ID] [--json] [--key PUBKEY_FILE] TARGET SEQ
//	auditctl prove --check FILE [--key PUBKEY_FILE] [--json]
//	auditctl consistency [--key PUBKEY_FILE] OLD_CHECKPOINT NEW_CHECKPOINT TARGET
//	auditctl consistency --check PROOF_FILE|- [--key PUBKEY_FILE] [--json] OLD_CHECKPOINT NEW_CHECKPOINT [TARGET]
//	auditctl watch --state DIR [--interval D] [--json] [--key PUBKEY_FILE] TARGET
//	auditctl wal accept-loss --by NAME --reason TEXT [--chain ID] [--json] SPOOL_DIRECTORY
//	auditctl runs [--status S] [--agent A] [--since T] [--until T] [--approver P] [--target-system X] [--search TEXT] [--json] TARGET
//	auditctl show [--json] TARGET EXEC_ID
//	auditctl export (--exec ID | --since T [--until T] [filters]) --format csv|jsonl|html -o FILE TARGET
//	auditctl serve [--listen 127.0.0.1:8080] [--allow-remote --token-file FILE] TARGET
//	auditctl witness serve --state DIR --key KEY_FILE --log ORIGIN=VKEY_FILE [--log ...] [--listen 127.0.0.1:8090]
//	auditctl witness keygen [--ml-dsa] [--out KEY_FILE] NAME
//
// TARGET is a local directory or s3://bucket/prefix (credentials from the AWS
// SDK's default chain). verify checks every chain found under TARGET (one
// per collector replica): each entry hash is recomputed from its columns,
// the links are followed across files in seq order, footers and file names
// are checked against the rows, and every signed checkpoint stored beside
// the trail (and the one given with --checkpoint) is checked against it;
// with --tsa-cert, so are the RFC 3161 timestamps stored beside them.
// checkpoint prints the latest signed checkpoint of each chain, for an
// auditor to keep; consistency prints the proof that a newer checkpoint's
// tree extends an older one's, which consistency --check checks with the
// two checkpoints alone; prove prints a self-contained inclusion proof of one
// entry, which prove --check checks without the trail. Exit status: 0
// intact (valid), 1 violations found (invalid), 2 could not run (bad usage,
// unreadable target, no files, no key).
//
// watch is a monitor for cron or a loop: it remembers each chain's last
// verified checkpoint and checks only what was added since. Exit status:
// 0 nothing changed history, 1 history changed (the violation printed),
// 2 could not run.
//
// runs, show, export and serve are the review verbs (README, "Reviewing
// runs"): they query the trail with DuckDB (internal/review), which needs
// cgo; an auditctl built without cgo has every other verb. Each verifies the
// files its answer comes from. Exit status: 0 printed, 1 the files holding
// the answer fail verification (the answer is still printed, marked), 2
// could not run or nothing matched.
//
// witness serve is a C2SP tlog-witness an auditor runs (internal/witness):
// it cosigns a chain's checkpoints only while each consistently extends
// the last one it cosigned. Exit status: 0 stopped, 2 could not run.
package main

import (
	"context"
	"crypto/x509"
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

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tsa"
	"github.com/agentaudit/agentaudit/internal/verify"
	"github.com/agentaudit/agentaudit/internal/witness"
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
  auditctl verify [--checkpoint FILE] [--key PUBKEY_FILE] [--json] [--endpoint URL] [--region REGION] [--workers N] TARGET
      verify the trail under TARGET, a directory or s3://bucket/prefix, and the
      signed checkpoints beside it; --checkpoint: one you kept (auditctl checkpoint)
      --tsa-cert PEM_FILE: check the RFC 3161 timestamps beside the checkpoints
      against this TSA's certificate (or root); --require-timestamps: a
      checkpoint of each chain must have one (later ones without: a note); --tsa-max-delay (24h): how long after
      its batch a timestamp may be
      --witness VKEY (repeatable; a witness's verifier key or a file holding it):
      a checkpoint of each chain must carry valid cosignatures of
      --cosignatures N (default 1) of them (the newest that has them vouches
      for the chain up to its size; later ones, not cosigned yet, are a note)
      exit 0 intact, 1 violations found, 2 could not run
  auditctl checkpoint [--key PUBKEY_FILE] [--chain ID] [--json] TARGET
      print the latest signed checkpoint of each chain, to keep
      exit 0 printed, 1 a signature does not verify, 2 none found or could not run
  auditctl prove [--chain ID] [--json] [--key PUBKEY_FILE] TARGET SEQ
      print an inclusion proof (JSON) of entry SEQ that a third party checks alone
      exit 0 printed, 1 the trail cannot prove it, 2 could not run
  auditctl prove --check FILE [--key PUBKEY_FILE] [--json]
      check an inclusion proof without the trail
      exit 0 valid, 1 invalid, 2 could not run
  auditctl consistency [--key PUBKEY_FILE] OLD_CHECKPOINT NEW_CHECKPOINT TARGET
      print the proof (one base64 hash a line) that NEW's tree extends OLD's,
      read from TARGET's tiles (each file holds one checkpoint of format 2)
      exit 0 printed, 1 the trail cannot prove it (a fork, tiles missing or
      altered, a bad signature), 2 could not run (usage, other chains, format 1)
  auditctl consistency --check PROOF_FILE|- [--key PUBKEY_FILE] [--json] OLD_CHECKPOINT NEW_CHECKPOINT [TARGET]
      check a consistency proof (- : from standard input) with only the two
      checkpoints; TARGET, without --key, only for its published keys
      exit 0 valid, 1 invalid, 2 could not run
  auditctl watch --state DIR [--interval D] [--json] [--key PUBKEY_FILE] TARGET
      a monitor: per chain, check the newest stored checkpoint extends the one
      remembered in DIR, verify only the files added since, remember it; one
      round, or one every D until a violation or SIGINT; --json: a line a round
      exit 0 no history changed, 1 history changed (printed), 2 could not run
  auditctl wal accept-loss --by NAME --reason TEXT [--chain ID] [--json] SPOOL_DIRECTORY
      accept the loss of a corrupt write-ahead log segment's entries, which the
      collector then records in the trail; exit 0 accepted, 1 nothing corrupt
  auditctl runs [--status S,...] [--agent A] [--since T] [--until T] [--approver P]
                [--target-system X] [--search TEXT] [--json] TARGET
      one line per run: id, agent, principal, start, end, duration, status
      (in_progress, awaiting_approval, completed, failed, abandoned), counts
  auditctl show [--json] TARGET EXEC_ID
      one run's timeline, and the integrity of the files holding it
  auditctl export (--exec ID... | --since T [--until T] [filters]) --format csv|jsonl|html -o FILE TARGET
      a run (or the runs of a period) for external review
  auditctl serve [--listen 127.0.0.1:8080] [--allow-remote --token-file FILE] TARGET
      a read-only web view of runs and timelines
      review verbs: exit 0 printed, 1 the files holding the answer fail
      verification (still printed, marked), 2 could not run or nothing matched;
      T is RFC 3339, YYYY-MM-DD or a duration ago (24h); also --key, --cache,
      --abandon-after (default 24h), --as-of, --endpoint, --region
  Without --key (a file of verifier keys, one per line), the keys published
  beside the trail (or, for --check, in the proof) are trusted on first use.
  auditctl witness serve --state DIR --key KEY_FILE --log ORIGIN=VKEY_FILE [--log ...] [--listen 127.0.0.1:8090]
      a witness (C2SP tlog-witness) cosigning only consistent extensions of
      each log's checkpoints (--key: its signer key); exit 0 stopped, 2 could not run
  auditctl witness keygen [--ml-dsa] [--out KEY_FILE] NAME
      a new witness key pair (auditctl witness help: more)
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
	case "checkpoint":
		return runCheckpoint(ctx, args[1:], stdout, stderr)
	case "prove":
		return runProve(ctx, args[1:], stdout, stderr)
	case "consistency":
		return runConsistency(ctx, args[1:], stdout, stderr)
	case "watch":
		return runWatch(ctx, args[1:], stdout, stderr)
	case "wal":
		return runWAL(ctx, args[1:], stdout, stderr)
	case "runs":
		return runRuns(ctx, args[1:], stdout, stderr, progress)
	case "show":
		return runShow(ctx, args[1:], stdout, stderr, progress)
	case "export":
		return runExport(ctx, args[1:], stdout, stderr, progress)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr, progress)
	case "witness":
		return runWitness(ctx, args[1:], stdout, stderr)
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
	// The timestamps beside the checkpoints.
	tsaCert           string
	requireTimestamps bool
	tsaMaxDelay       time.Duration
	// The witnesses' cosignatures beside the checkpoints.
	witnesses    witnessKeys
	cosignatures int
}

// witnessKeys is the --witness flag: witness verifier keys, each given
// as the key or as a file holding it, checked as they are parsed.
type witnessKeys []string

func (w *witnessKeys) String() string { return strings.Join(*w, ",") }

func (w *witnessKeys) Set(v string) error {
	key := strings.TrimSpace(v)
	if _, err := witness.NewVerifier(key); err != nil {
		data, ferr := os.ReadFile(v)
		if ferr != nil {
			return fmt.Errorf("neither a witness verifier key (%v) nor a file holding one (%v)", err, ferr)
		}
		key = strings.TrimSpace(string(data))
		if _, err := witness.NewVerifier(key); err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
	}
	*w = append(*w, key)
	return nil
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	var f verifyFlags
	fs := flag.NewFlagSet("auditctl verify", flag.ContinueOnError)
	fs.BoolVar(&f.json, "json", false, "print one JSON document {chains, violations, intact} instead of text")
	fs.StringVar(&f.endpoint, "endpoint", "", "S3 endpoint URL, for S3-compatible servers")
	fs.StringVar(&f.region, "region", "", "S3 region (default: from the AWS configuration; us-east-1 with --endpoint)")
	fs.StringVar(&f.pathStyle, "path-style", "auto", "S3 path-style addressing: true, false or auto (true with --endpoint)")
	fs.IntVar(&f.workers, "workers", 0, "files read at once (default: the number of CPUs; 16 for S3)")
	fs.StringVar(&f.checkpoint, "checkpoint", "", "a signed checkpoint you kept (auditctl checkpoint output: one or more notes) to check the trail against")
	fs.StringVar(&f.key, "key", "", "file of the checkpoint signers' verifier keys, one per line (default: the published keys, trusted on first use)")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	fs.StringVar(&f.tsaCert, "tsa-cert", "", "PEM file of the timestamp authority's certificate (or its root and chain): check the RFC 3161 timestamps beside the checkpoints")
	fs.BoolVar(&f.requireTimestamps, "require-timestamps", false, "the latest checkpoint of each chain must have a timestamp (needs --tsa-cert)")
	fs.DurationVar(&f.tsaMaxDelay, "tsa-max-delay", verify.DefaultTimestampMaxDelay, "how much later than its batch's last entry a timestamp may be")
	fs.Var(&f.witnesses, "witness", "a witness's verifier key, or a file holding it (repeatable): the latest checkpoint of each chain must be cosigned")
	fs.IntVar(&f.cosignatures, "cosignatures", 0, "how many of the --witness keys must have cosigned the latest checkpoint of each chain (default 1)")
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl verify: want one TARGET, got %d\n%s", len(positional), usage)
		return exitError
	}
	tsaCerts, err := readTSACert(f)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl verify: %v\n", err)
		return exitError
	}
	if n := f.cosignatures; n < 0 || n > len(f.witnesses) {
		fmt.Fprintf(stderr, "auditctl verify: --cosignatures %d: want 1 to the number of --witness keys (%d)\n", n, len(f.witnesses))
		return exitError
	}
	target := positional[0]
	keys, err := readKeys(f.key)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl verify: %v\n", err)
		return exitError
	}
	opts := verify.Options{Keys: keys, TSA: tsaCerts, RequireTimestamps: f.requireTimestamps, TimestampMaxDelay: f.tsaMaxDelay,
		Witnesses: f.witnesses, Cosignatures: f.cosignatures}
	if f.checkpoint != "" {
		data, err := os.ReadFile(f.checkpoint)
		if err != nil {
			fmt.Fprintf(stderr, "auditctl verify: --checkpoint: %v\n", err)
			return exitError
		}
		notes := checkpoint.SplitNotes(data)
		if len(notes) == 0 {
			fmt.Fprintf(stderr, "auditctl verify: --checkpoint: %s holds no signed checkpoint\n", f.checkpoint)
			return exitError
		}
		for i, n := range notes {
			name := f.checkpoint
			if len(notes) > 1 {
				name = fmt.Sprintf("%s#%d", f.checkpoint, i+1)
			}
			opts.Checkpoints = append(opts.Checkpoints, verify.KeptCheckpoint{Name: name, Note: n})
		}
	}

	src, workers, err := openSource(ctx, target, f)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl verify: %v\n", err)
		return exitError
	}
	opts.Workers = workers
	var bar *progressBar
	if progress && !f.noProgress {
		bar = newProgressBar(stderr)
		opts.Progress = bar.update
	}
	rep, err := verify.Verify(ctx, src, opts)
	if bar != nil {
		bar.clear()
	}
	if errors.Is(err, verify.ErrNoKey) {
		fmt.Fprintf(stderr, "auditctl verify: cannot check %s: no verifier key: none given with --key and none published under %s/%s\n", f.checkpoint, target, store.KeysPrefix)
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditctl verify: could not verify %s: %v\n", target, err)
		return exitError
	}
	if f.json {
		if err := writeJSON(stdout, rep); err != nil {
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

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseArgs parses flags that may come before and after the positional
// arguments, which it returns. ok false: return code.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (positional []string, code int, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitIntact, false
			}
			return nil, exitError, false
		}
		if fs.NArg() == 0 {
			return positional, 0, true
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// readKeys reads a --key file: verifier keys, one per line. No file, no
// keys.
func readKeys(file string) ([]string, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	keys, err := checkpoint.ParseKeys(string(data))
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", file, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--key %s: no verifier key in it", file)
	}
	return keys, nil
}

// readTSACert reads the --tsa-cert file: PEM certificates of the TSA.
func readTSACert(f verifyFlags) ([]*x509.Certificate, error) {
	switch {
	case f.tsaCert == "" && f.requireTimestamps:
		return nil, errors.New("--require-timestamps needs --tsa-cert: timestamps cannot be checked without the TSA's certificate")
	case f.tsaCert == "":
		return nil, nil
	case f.tsaMaxDelay <= 0:
		return nil, fmt.Errorf("--tsa-max-delay %v must be positive", f.tsaMaxDelay)
	}
	data, err := os.ReadFile(f.tsaCert)
	if err != nil {
		return nil, fmt.Errorf("--tsa-cert: %w", err)
	}
	certs, err := tsa.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("--tsa-cert %s: %w", f.tsaCert, err)
	}
	return certs, nil
}

func openSource(ctx context.Context, target string, f verifyFlags) (store.Reader, int, error) {
	if !strings.HasPrefix(target, "s3://") {
		if f.endpoint != "" || f.region != "" {
			return nil, 0, fmt.Errorf("--endpoint and --region are for s3:// targets, not %s", target)
		}
		return store.Dir(target), f.workers, nil
	}
	bucket, prefix, err := store.ParseS3URL(target)
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
	src, err := store.NewS3(ctx, opts)
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
		signed := "no signed checkpoint"
		if c.CheckpointSize > 0 {
			signed = fmt.Sprintf("signed checkpoint at %s", plural(int(c.CheckpointSize), "entry"))
		}
		fmt.Fprintf(w, "chain %s: %s in %s, seq %d to %d, %s to %s, last entry_hash %s, %s: %s\n",
			c.ChainID, plural(int(c.Entries), "entry"), plural(c.Files, "file"), c.FirstSeq, c.LastSeq,
			c.FirstTime.Format(time.RFC3339Nano), c.LastTime.Format(time.RFC3339Nano), c.LastHash, signed, status)
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
