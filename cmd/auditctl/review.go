//go:build cgo

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentaudit/agentaudit/internal/review"
	"github.com/agentaudit/agentaudit/internal/review/web"
	"github.com/agentaudit/agentaudit/internal/trailcache"
)

// reviewFlags are the flags every review verb takes.
type reviewFlags struct {
	verifyFlags
	cache        string
	abandonAfter time.Duration
	asOf         string
	now          func() time.Time // set by openReviewer from --as-of
}

func (f *reviewFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.json, "json", false, "print JSON (the documented contract) instead of text")
	fs.StringVar(&f.key, "key", "", "file of the checkpoint signers' verifier keys, one per line (default: the published keys, trusted on first use)")
	fs.StringVar(&f.cache, "cache", "", "where files downloaded from S3 and each trail's footer index are kept (default: the user cache directory, agentaudit/)")
	fs.DurationVar(&f.abandonAfter, "abandon-after", review.DefaultAbandonAfter, "a run with no end and no entry for this long is abandoned")
	fs.StringVar(&f.asOf, "as-of", "", "compute statuses as of this time (RFC 3339 or YYYY-MM-DD; default now)")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	addSourceFlags(fs, &f.verifyFlags)
}

// openReviewer opens the trail behind target for review.
func openReviewer(ctx context.Context, target string, f *reviewFlags, stderr io.Writer, progress bool) (*review.Engine, func(), error) {
	keys, err := readKeys(f.key)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now
	if f.asOf != "" {
		t, err := parseTime(f.asOf, time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("--as-of: %w", err)
		}
		now = func() time.Time { return t }
	}
	f.now = now
	if f.abandonAfter <= 0 {
		return nil, nil, fmt.Errorf("--abandon-after %s: want a positive duration", f.abandonAfter)
	}
	src, _, err := openSource(ctx, target, f.verifyFlags)
	if err != nil {
		return nil, nil, err
	}
	// A directory's footers are indexed in the cache directory too; with
	// none found, S3 fails in Open and a directory is read without one.
	cache := f.cache
	if cache == "" {
		cache, _ = trailcache.DefaultCacheDir()
	}
	opts := trailcache.Options{CacheDir: cache, Endpoint: f.endpoint, Region: f.region, PathStyle: f.pathStyle}
	var bar *stageBar
	if progress && !f.noProgress {
		bar = &stageBar{w: stderr}
		opts.Progress = bar.update
	}
	trail, err := trailcache.Open(ctx, target, opts)
	if err != nil {
		return nil, nil, err
	}
	eng, err := review.Open(review.Options{
		Target: target, Files: trail, Source: src, Keys: keys,
		AbandonAfter: f.abandonAfter, Now: now, MemoryLimit: "512MB",
	})
	if err != nil {
		return nil, nil, err
	}
	done := func() {
		if bar != nil {
			bar.clear()
		}
	}
	return eng, done, nil
}

// parseTime reads RFC 3339, a date (midnight UTC), or a duration before now
// ("24h" or "-24h").
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339 (2026-03-09T09:30:00Z), a date (2026-03-09) or a duration before now (24h)", s)
}

func runRuns(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	var f reviewFlags
	var rf review.Filter
	var status, since, until string
	fs := flag.NewFlagSet("auditctl runs", flag.ContinueOnError)
	f.register(fs)
	fs.StringVar(&status, "status", "", "only runs of these statuses, comma-separated: "+statusList())
	fs.StringVar(&rf.Agent, "agent", "", "only runs of this agent (agent_id, agent_name or service_name)")
	fs.StringVar(&since, "since", "", "only runs with an entry at or after this time (RFC 3339, YYYY-MM-DD or a duration ago)")
	fs.StringVar(&until, "until", "", "only runs with an entry before this time")
	fs.StringVar(&rf.Approver, "approver", "", "only runs with an entry approved by this approver")
	fs.StringVar(&rf.TargetSystem, "target-system", "", "only runs with an entry on this target system")
	fs.StringVar(&rf.Text, "search", "", "only runs where some value contains this text (case-insensitive)")
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl runs: want one TARGET, got %d\n%s", len(positional), usage)
		return exitError
	}
	if err := parseFilter(&rf, status, since, until); err != nil {
		fmt.Fprintf(stderr, "auditctl runs: %v\n", err)
		return exitError
	}
	eng, done, err := openReviewer(ctx, positional[0], &f, stderr, progress)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl runs: %v\n", err)
		return exitError
	}
	defer eng.Close()
	runs, integ, err := eng.Runs(ctx, rf)
	done()
	if err != nil {
		fmt.Fprintf(stderr, "auditctl runs: %v\n", err)
		return exitError
	}
	if f.json {
		if err := writeJSON(stdout, runs); err != nil {
			fmt.Fprintf(stderr, "auditctl runs: %v\n", err)
			return exitError
		}
	} else {
		printRuns(stdout, runs)
	}
	printIntegrity(stderr, integ)
	switch {
	case !integ.Intact:
		return exitViolations
	case len(runs) == 0:
		fmt.Fprintln(stderr, "auditctl runs: no run matches")
		return exitError
	}
	return exitIntact
}

func statusList() string {
	s := make([]string, len(review.Statuses))
	for i, st := range review.Statuses {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

func parseFilter(rf *review.Filter, status, since, until string) error {
	now := time.Now()
	if status != "" {
		for _, s := range strings.Split(status, ",") {
			st := review.Status(strings.TrimSpace(s))
			if !isStatus(st) {
				return fmt.Errorf("--status %q: want one or more of %s", s, statusList())
			}
			rf.Statuses = append(rf.Statuses, st)
		}
	}
	for _, x := range []struct {
		name, val string
		dst       **time.Time
	}{{"--since", since, &rf.Since}, {"--until", until, &rf.Until}} {
		if x.val == "" {
			continue
		}
		t, err := parseTime(x.val, now)
		if err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
		*x.dst = &t
	}
	if rf.Since != nil && rf.Until != nil && !rf.Since.Before(*rf.Until) {
		return fmt.Errorf("--since %s is not before --until %s", rf.Since.Format(time.RFC3339), rf.Until.Format(time.RFC3339))
	}
	return nil
}

func isStatus(s review.Status) bool {
	for _, st := range review.Statuses {
		if s == st {
			return true
		}
	}
	return false
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// printRuns writes the run list as aligned columns.
func printRuns(w io.Writer, runs []review.Run) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXECUTION_ID\tAGENT\tPRINCIPAL\tSTART\tEND\tDURATION\tSTATUS\tACTIONS\tERRORS\tAPPROVALS\tINTEGRITY")
	for _, r := range runs {
		end, dur := "-", "-"
		if r.End != nil {
			end = r.End.Format(time.RFC3339Nano)
			dur = (time.Duration(*r.DurationMS * 1e6)).Round(time.Millisecond).String()
		}
		approvals := fmt.Sprint(r.Approvals)
		if r.PendingApprovals > 0 {
			approvals += fmt.Sprintf(" (%d pending)", r.PendingApprovals)
		}
		integrity := "intact"
		if !r.Intact {
			integrity = "VIOLATIONS: " + plural(r.Violations, "violation")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", printable(r.ExecutionID), printable(orDash(r.Agent)),
			printable(orDash(r.Principal)), r.Start.Format(time.RFC3339Nano), end, dur, r.Status, r.Actions, r.Errors, approvals, integrity)
	}
	tw.Flush()
}

// printable makes a value safe for a terminal: control characters (which
// could move the cursor or hide text) are shown escaped.
func printable(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x202e || r == 0x202d || (r >= 0x2066 && r <= 0x2069)
}

// printIntegrity writes what verification found of the files read.
func printIntegrity(w io.Writer, integ review.Integrity) {
	if integ.Intact {
		var msg string
		switch p := len(integ.Proven); {
		case p == 0:
			msg = fmt.Sprintf("verified %s: intact", plural(len(integ.Files), "file"))
		case p == len(integ.Files):
			msg = fmt.Sprintf("checked %s: intact, the entries read proven against each batch's signed checkpoint", plural(len(integ.Files), "file"))
		default:
			msg = fmt.Sprintf("checked %s: intact, the entries read in %d proven against their batches' signed checkpoints, %d verified whole",
				plural(len(integ.Files), "file"), p, len(integ.Files)-p)
		}
		if cp := integ.Checkpoint; cp != nil {
			msg += fmt.Sprintf("; signed checkpoint of chain %s at size %d by key %s (%s)", cp.ChainID, cp.Size, cp.KeyName, cp.KeyID)
		}
		fmt.Fprintln(w, msg)
	} else {
		fmt.Fprintf(w, "VIOLATIONS in the files read (%s):\n", plural(len(integ.Violations), "violation"))
		for _, v := range integ.Violations {
			fmt.Fprintf(w, "  %s\n", printable(v.String()))
		}
	}
	for _, n := range integ.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if integ.TrustedOnFirstUse && integ.Checkpoint != nil {
		fmt.Fprintln(w, "note: checkpoints checked with the keys published beside the trail (trusted on first use); pass --key to check with yours")
	}
}

func runShow(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	var f reviewFlags
	fs := flag.NewFlagSet("auditctl show", flag.ContinueOnError)
	f.register(fs)
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 2 {
		fmt.Fprintf(stderr, "auditctl show: want TARGET EXEC_ID, got %d arguments\n%s", len(positional), usage)
		return exitError
	}
	eng, done, err := openReviewer(ctx, positional[0], &f, stderr, progress)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl show: %v\n", err)
		return exitError
	}
	defer eng.Close()
	tl, err := eng.Timeline(ctx, positional[1])
	done()
	var unreadable *review.UnreadableError
	switch {
	case errors.As(err, &unreadable):
		printIntegrity(stderr, unreadable.Integrity)
		fmt.Fprintf(stderr, "auditctl show: no readable entry of execution %q\n", positional[1])
		return exitViolations
	case errors.Is(err, review.ErrNoRun):
		fmt.Fprintf(stderr, "auditctl show: no entry of execution %q under %s\n", positional[1], positional[0])
		return exitError
	case err != nil:
		fmt.Fprintf(stderr, "auditctl show: %v\n", err)
		return exitError
	}
	if f.json {
		if err := writeJSON(stdout, tl); err != nil {
			fmt.Fprintf(stderr, "auditctl show: %v\n", err)
			return exitError
		}
	} else {
		printTimeline(stdout, tl)
		printIntegrity(stdout, tl.Integrity)
	}
	if !tl.Integrity.Intact {
		return exitViolations
	}
	return exitIntact
}

// printTimeline writes a run's summary and its steps, indented by depth.
func printTimeline(w io.Writer, tl *review.Timeline) {
	r := tl.Run
	fmt.Fprintf(w, "execution %s: %s\n", printable(r.ExecutionID), r.Status)
	fmt.Fprintf(w, "agent %s, principal %s\n", printable(orDash(r.Agent)), printable(orDash(r.Principal)))
	end := "-"
	if r.End != nil {
		end = fmt.Sprintf("%s (%s)", r.End.Format(time.RFC3339Nano), time.Duration(*r.DurationMS*1e6).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "start %s, end %s, last activity %s\n", r.Start.Format(time.RFC3339Nano), end, r.LastActivity.Format(time.RFC3339Nano))
	fmt.Fprintf(w, "%d actions, %d errors, %d approvals, %d rejections, %d pending approvals", r.Actions, r.Errors, r.Approvals, r.Rejections, r.PendingApprovals)
	if r.AfterEnd > 0 {
		fmt.Fprintf(w, ", %d entries after the end", r.AfterEnd)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	for _, s := range tl.Steps {
		ind := strings.Repeat("  ", s.Depth)
		dur := ""
		if s.DurationMS != nil {
			dur = " (" + time.Duration(*s.DurationMS*1e6).String() + ")"
		}
		target := ""
		if s.TargetSystem != "" || s.TargetResource != "" {
			target = "  " + printable(s.TargetSystem) + " / " + printable(s.TargetResource)
		}
		fmt.Fprintf(w, "%s%s%s  %s%s  [%s seq %d]\n", ind, s.Timestamp.Format("2006-01-02T15:04:05.000Z"), dur,
			printable(s.ActionType), target, printable(s.ChainID), s.Seq)
		field := func(name string, v *string) {
			if v != nil {
				fmt.Fprintf(w, "%s    %s: %s\n", ind, name, printable(clip(*v)))
			}
		}
		if s.PreviousValue != nil || s.ProposedValue != nil {
			fmt.Fprintf(w, "%s    value: %s -> %s\n", ind, printable(clip(orNull(s.PreviousValue))), printable(clip(orNull(s.ProposedValue))))
		}
		field("reasoning", s.Reasoning)
		field("approver", s.Approver)
		fmt.Fprintf(w, "%s    result: %s (%s)\n", ind, printable(clip(s.Result)), s.StatusCode)
		field("validation", s.Validation)
		for _, v := range s.Violations {
			fmt.Fprintf(w, "%s    VIOLATION %s: %s\n", ind, v.Kind, printable(v.Detail))
		}
	}
	fmt.Fprintln(w)
}

func orNull(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// clip shortens a value for the terminal; --json and export give it whole.
func clip(s string) string {
	const n = 300
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d bytes; --json for all)", len(s))
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	var f reviewFlags
	var rf review.Filter
	var execs stringList
	var status, since, until, format, out string
	fs := flag.NewFlagSet("auditctl export", flag.ContinueOnError)
	f.register(fs)
	fs.Var(&execs, "exec", "the execution id to export (repeat for several)")
	fs.StringVar(&status, "status", "", "with --since/--until: only runs of these statuses")
	fs.StringVar(&rf.Agent, "agent", "", "only runs of this agent")
	fs.StringVar(&since, "since", "", "runs with an entry at or after this time")
	fs.StringVar(&until, "until", "", "runs with an entry before this time")
	fs.StringVar(&rf.Approver, "approver", "", "only runs with an entry approved by this approver")
	fs.StringVar(&rf.TargetSystem, "target-system", "", "only runs with an entry on this target system")
	fs.StringVar(&format, "format", "", "csv, jsonl or html")
	fs.StringVar(&out, "o", "", "the file to write (- for standard output)")
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl export: want one TARGET, got %d\n%s", len(positional), usage)
		return exitError
	}
	if format != "csv" && format != "jsonl" && format != "html" {
		fmt.Fprintf(stderr, "auditctl export: --format %q: want csv, jsonl or html\n", format)
		return exitError
	}
	if out == "" {
		fmt.Fprintln(stderr, "auditctl export: -o FILE is required (- for standard output)")
		return exitError
	}
	if err := parseFilter(&rf, status, since, until); err != nil {
		fmt.Fprintf(stderr, "auditctl export: %v\n", err)
		return exitError
	}
	filtered := rf.Since != nil || rf.Until != nil || rf.Agent != "" || rf.Approver != "" || rf.TargetSystem != "" || len(rf.Statuses) > 0
	if len(execs) > 0 == filtered || (filtered && rf.Since == nil && rf.Until == nil) {
		fmt.Fprintln(stderr, "auditctl export: give either --exec ID, or --since/--until (with optional filters)")
		return exitError
	}
	eng, done, err := openReviewer(ctx, positional[0], &f, stderr, progress)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl export: %v\n", err)
		return exitError
	}
	defer eng.Close()
	ids := []string(execs)
	if filtered {
		runs, _, err := eng.Runs(ctx, rf)
		if err != nil {
			done()
			fmt.Fprintf(stderr, "auditctl export: %v\n", err)
			return exitError
		}
		for _, r := range runs {
			ids = append(ids, r.ExecutionID)
		}
	}
	if len(ids) == 0 {
		done()
		fmt.Fprintln(stderr, "auditctl export: no run matches")
		return exitError
	}
	tls, err := eng.Timelines(ctx, ids)
	done()
	if err != nil {
		fmt.Fprintf(stderr, "auditctl export: %v\n", err)
		return exitError
	}
	if len(tls) == 0 {
		fmt.Fprintln(stderr, "auditctl export: no entry of the runs asked for")
		return exitError
	}
	write := func(w io.Writer) error {
		switch format {
		case "csv":
			return review.WriteCSV(w, allSteps(tls))
		case "jsonl":
			return review.WriteJSONL(w, allSteps(tls))
		}
		return web.Report(w, tls, web.ReportMeta{Target: positional[0], Generated: time.Now().UTC(),
			Command: "auditctl " + strings.Join(append([]string{"export"}, args...), " ")})
	}
	if err := writeOutput(out, stdout, write); err != nil {
		fmt.Fprintf(stderr, "auditctl export: %v\n", err)
		return exitError
	}
	intact := true
	for _, tl := range tls {
		if !tl.Integrity.Intact {
			intact = false
			fmt.Fprintf(stderr, "execution %s: VIOLATIONS (%s), marked in the export\n", printable(tl.ExecutionID), plural(len(tl.Integrity.Violations), "violation"))
		}
	}
	if out != "-" {
		fmt.Fprintf(stderr, "wrote %s: %s, %s\n", out, plural(len(tls), "run"), plural(len(allSteps(tls)), "step"))
	}
	if !intact {
		return exitViolations
	}
	return exitIntact
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func allSteps(tls []*review.Timeline) []review.Step {
	var steps []review.Step
	for _, tl := range tls {
		steps = append(steps, tl.Steps...)
	}
	return steps
}

// writeOutput writes to file through a temporary file renamed into place,
// so that a failed export leaves no partial file; "-" is stdout.
func writeOutput(file string, stdout io.Writer, write func(io.Writer) error) error {
	if file == "-" {
		return write(stdout)
	}
	tmp, err := os.CreateTemp(dirOf(file), ".auditctl-export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

func dirOf(file string) string {
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		return file[:i+1]
	}
	return "."
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	var f reviewFlags
	var listen, tokenFile string
	var allowRemote bool
	fs := flag.NewFlagSet("auditctl serve", flag.ContinueOnError)
	f.register(fs)
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on (loopback unless --allow-remote)")
	fs.BoolVar(&allowRemote, "allow-remote", false, "allow a non-loopback --listen address; needs a token")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the access token (default: $AUDITCTL_TOKEN); required with --allow-remote")
	positional, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "auditctl serve: want one TARGET, got %d\n%s", len(positional), usage)
		return exitError
	}
	token := os.Getenv("AUDITCTL_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "auditctl serve: --token-file: %v\n", err)
			return exitError
		}
		token = strings.TrimSpace(string(b))
	}
	loopback, err := isLoopback(listen)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl serve: --listen %q: %v\n", listen, err)
		return exitError
	}
	if !loopback && !allowRemote {
		fmt.Fprintf(stderr, "auditctl serve: --listen %s is not a loopback address: pass --allow-remote and a token (--token-file or AUDITCTL_TOKEN)\n", listen)
		return exitError
	}
	if !loopback && len(token) < 16 {
		fmt.Fprintln(stderr, "auditctl serve: --allow-remote needs a token of at least 16 characters (--token-file or AUDITCTL_TOKEN)")
		return exitError
	}
	f.noProgress = true
	eng, done, err := openReviewer(ctx, positional[0], &f, stderr, false)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl serve: %v\n", err)
		return exitError
	}
	done()
	defer eng.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "auditctl serve: %v\n", err)
		return exitError
	}
	srv := &http.Server{
		Handler:           web.Handler(eng, web.Options{Token: token, AbandonAfter: f.abandonAfter, Now: f.now}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stdout, "serving %s read-only on http://%s/\n", positional[0], ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
		return exitIntact
	case err := <-errc:
		fmt.Fprintf(stderr, "auditctl serve: %v\n", err)
		return exitError
	}
}

// isLoopback reports whether addr (host:port) listens on loopback only.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// stageBar draws the review verbs' progress: footers read, files fetched.
type stageBar struct {
	w     io.Writer
	last  time.Time
	drawn bool
}

func (b *stageBar) update(stage string, done, total int) {
	now := time.Now()
	if done < total && now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	const width = 30
	filled := width * done / max(total, 1)
	fmt.Fprintf(b.w, "\r[%s%s] %s %d/%d ", strings.Repeat("#", filled), strings.Repeat("-", width-filled), stage, done, total)
	b.drawn = true
}

func (b *stageBar) clear() {
	if b.drawn {
		fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", 70))
	}
}
