package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/agentaudit/agentaudit/internal/trailcache"
)

// BenchmarkReviewVsSQL times the review verbs on a trail of 10 million
// entries in about 1,000 files (review_bench_gen_test.go) as a reviewer
// runs them, each command a process of its own, side by side with the
// hand-written DuckDB SQL that answers the same question over every file
// (review_bench_sql.go, built as its own program):
//
//   - runs-day: `auditctl runs --since D --until D+1 DIR` against
//     internal/review/runs.sql over read_parquet('DIR/**/*.parquet') of the
//     runs with an entry that day;
//   - show: `auditctl show DIR ID` against SELECT * ... WHERE execution_id
//     = ID ORDER BY time_unix_nano, chain_id, seq, for a run in one file
//     and for the run of that day spread over the most files;
//   - the same verbs on the trail in S3 (Versity Gateway on loopback,
//     uploaded once), with an empty --cache each time (cold) and with the
//     cache a first run filled (warm). DuckDB here has no httpfs: their SQL
//     side is the same SQL over the local copy.
//
// Run it with
//
//	go test -run '^$' -bench ReviewVsSQL -benchtime 1x -timeout 90m ./e2e/
//
// Each case runs both commands once unmeasured (their answers must agree:
// the same runs and statuses, the same number of steps), then
// REVIEW_BENCH_RUNS times (5; REVIEW_BENCH_S3_RUNS, 3, for S3) in turn,
// A B A B, and prints wall time, CPU time and peak RSS (as GNU time
// reports them) as median (min-max), and the ratio auditctl / SQL pair by
// pair. Files read: for runs, the files of the day, then the files
// verified (auditctl's integrity line); for show, the files trailcache
// selects; for S3, the footers and files in the cache after a cold run.
//
// The trail is generated once into $TMPDIR/agentaudit-review-bench-10M
// (REVIEW_BENCH_DIR) and reused while its manifest.json matches the
// parameters: REVIEW_BENCH_ENTRIES (10000000) and REVIEW_BENCH_FILE_ENTRIES
// (10000) resize it (e.g. 200000 and 200 for a quick run). REVIEW_BENCH_S3=0
// leaves S3 out; REVIEW_BENCH_CASES picks cases by name (comma-separated
// substrings).
func BenchmarkReviewVsSQL(b *testing.B) {
	p := rbParams{Version: rbGenVersion, Seed: 20261114, Entries: rbEnvInt("REVIEW_BENCH_ENTRIES", 10_000_000),
		FileEntries: rbEnvInt("REVIEW_BENCH_FILE_ENTRIES", 10_000), Chains: 4, Days: 30, Start: "2026-11-01"}
	root := os.Getenv("REVIEW_BENCH_DIR")
	if root == "" {
		root = filepath.Join(os.TempDir(), "agentaudit-review-bench-"+rbSize(p.Entries))
	}
	dir, m, err := rbTrail(p, root, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(rbTime); err != nil {
		b.Fatalf("the benchmark measures peak RSS with GNU time (Debian package time): %v", err)
	}
	fmt.Printf("trail %s: %d entries, %d runs, %d batch files (%d chains, %d entries a file), %.2f GB of batch files (%.1f bytes/entry), %.2f GB in all; generated in %.0f s\n",
		dir, p.Entries, m.Runs, m.Files, p.Chains, p.FileEntries, float64(m.Bytes)/1e9, float64(m.Bytes)/float64(p.Entries), float64(m.TotalBytes)/1e9, m.GenSeconds)
	fmt.Printf("day %s: %d runs with an entry that day\n", m.Day, m.DayRuns)
	for _, s := range m.Show {
		fmt.Printf("show %s: %s, %d steps in %d files\n", s.Label, s.ID, s.Steps, s.Files)
	}

	bin := b.TempDir()
	auditctl := harness.BuildAuditctl(b, bin)
	reviewsql := filepath.Join(bin, "reviewsql")
	if out, err := exec.Command("go", "build", "-o", reviewsql, "review_bench_sql.go").CombinedOutput(); err != nil {
		b.Fatalf("building review_bench_sql.go: %v\n%s", err, out)
	}
	runsSQL, err := filepath.Abs(filepath.Join("..", "internal", "review", "runs.sql"))
	if err != nil {
		b.Fatal(err)
	}
	day, err := time.Parse(time.DateOnly, m.Day)
	if err != nil {
		b.Fatal(err)
	}
	since, until := day.Format(time.DateOnly), day.AddDate(0, 0, 1).Format(time.DateOnly)
	sqlRuns := []string{reviewsql, "runs", runsSQL, dir, strconv.FormatInt(day.UnixNano(), 10), strconv.FormatInt(day.AddDate(0, 0, 1).UnixNano(), 10)}
	sqlShow := func(id string) []string { return []string{reviewsql, "show", dir, id} }

	trail, err := trailcache.Open(context.Background(), dir, trailcache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	files, err := trail.Files(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	dayNs, nextNs := day.UnixNano(), day.AddDate(0, 0, 1).UnixNano()
	dayFiles, err := trail.Select(context.Background(), trailcache.Filter{Since: &dayNs, Until: &nextNs})
	if err != nil {
		b.Fatal(err)
	}

	var table []rbRow
	runs := rbEnvInt("REVIEW_BENCH_RUNS", 5)
	b.Run("local", func(b *testing.B) {
		// The footer index is written by each case's unmeasured first run.
		cache := filepath.Join(b.TempDir(), "cache")
		if rbWant("local/runs-day") {
			c := rbCase{name: "local/runs-day", a: rbCmd{args: []string{auditctl, "runs", "--no-progress", "--cache", cache, "--since", since, "--until", until, dir}}, b: rbCmd{args: sqlRuns}}
			c.check = func(b *testing.B, a, s rbResult) string {
				n := rbCheckRuns(b, a, s, m.DayRuns)
				return fmt.Sprintf("%d day files, then %d files checked for %d runs", len(dayFiles), n, m.DayRuns)
			}
			table = append(table, c.run(b, runs)...)
		}
		for _, s := range m.Show {
			if !rbWant("local/show-" + s.Label) {
				continue
			}
			sel, err := trail.Select(context.Background(), trailcache.Filter{ExecutionIDs: []string{s.ID}})
			if err != nil {
				b.Fatal(err)
			}
			c := rbCase{name: "local/show-" + s.Label, a: rbCmd{args: []string{auditctl, "show", "--no-progress", "--cache", cache, dir, s.ID}}, b: rbCmd{args: sqlShow(s.ID)}}
			c.check = func(b *testing.B, a, q rbResult) string {
				rbCheckShow(b, a, q, s)
				return fmt.Sprintf("%d of %d files selected (%d hold the run)", len(sel), len(files), s.Files)
			}
			table = append(table, c.run(b, runs)...)
		}
		b.ReportMetric(0, "ns/op")
	})

	type s3case struct {
		name  string
		args  []string
		sql   []string
		check func(b *testing.B, a, q rbResult)
	}
	target := "s3://review-bench/trail"
	s3cases := []s3case{{name: "runs-day", args: []string{"runs", "--since", since, "--until", until, target}, sql: sqlRuns,
		check: func(b *testing.B, a, q rbResult) { rbCheckRuns(b, a, q, m.DayRuns) }}}
	for _, s := range m.Show {
		s3cases = append(s3cases, s3case{name: "show-" + s.Label, args: []string{"show", target, s.ID}, sql: sqlShow(s.ID),
			check: func(b *testing.B, a, q rbResult) { rbCheckShow(b, a, q, s) }})
	}
	s3cases = slices.DeleteFunc(s3cases, func(c s3case) bool { return !rbWant("s3/"+c.name+"/cold") && !rbWant("s3/"+c.name+"/warm") })
	if os.Getenv("REVIEW_BENCH_S3") != "0" && len(s3cases) > 0 {
		b.Run("s3", func(b *testing.B) {
			srv := s3test.Start(b)
			srv.CreateBucket("review-bench", false)
			start := time.Now()
			n, size := rbUpload(b, srv.Client(), dir, "review-bench", "trail/")
			fmt.Printf("uploaded %d objects (%.2f GB) to Versity Gateway in %.0f s\n", n, float64(size)/1e9, time.Since(start).Seconds())
			s3runs := rbEnvInt("REVIEW_BENCH_S3_RUNS", 3)
			verb := func(cache string, args []string) []string {
				return append([]string{auditctl, args[0], "--no-progress", "--endpoint", srv.Endpoint, "--cache", cache}, args[1:]...)
			}
			for _, sc := range s3cases {
				if rbWant("s3/" + sc.name + "/cold") {
					// A fresh cache each run; what it holds after is what
					// the run fetched.
					var cache, fetched string
					cold := rbCmd{env: srv.Env()}
					cold.before = func(c *rbCmd) {
						var err error
						if cache, err = os.MkdirTemp(b.TempDir(), "cache-"); err != nil {
							b.Fatal(err)
						}
						c.args = verb(cache, sc.args)
					}
					cold.after = func(*rbCmd) {
						fetched = rbCacheCount(cache)
						os.RemoveAll(cache)
					}
					c := rbCase{name: "s3/" + sc.name + "/cold", a: cold, b: rbCmd{args: sc.sql}}
					c.check = func(b *testing.B, a, q rbResult) string { sc.check(b, a, q); return "" }
					c.note = func() string { return "fetched " + fetched }
					table = append(table, c.run(b, s3runs)...)
				}
				if rbWant("s3/" + sc.name + "/warm") {
					warm := b.TempDir()
					c := rbCase{name: "s3/" + sc.name + "/warm", a: rbCmd{env: srv.Env(), args: verb(warm, sc.args)}, b: rbCmd{args: sc.sql}}
					c.check = func(b *testing.B, a, q rbResult) string {
						sc.check(b, a, q)
						return "cache holds " + rbCacheCount(warm)
					}
					table = append(table, c.run(b, s3runs)...)
				}
			}
			b.ReportMetric(0, "ns/op")
		})
	}
	rbPrint(table)
}

// rbCmd is a command to run as a process.
type rbCmd struct {
	args   []string
	env    []string
	json   bool           // add --json after the verb
	before func(c *rbCmd) // before each run, unmeasured
	after  func(c *rbCmd) // after each run, unmeasured
}

// rbResult is one finished run of a command.
type rbResult struct {
	wall, cpu      time.Duration
	rss            int64 // peak resident set size, bytes
	stdout, stderr []byte
}

// rbTime is GNU time. Its own resident set is small: a child started
// straight from the benchmark would report at least the benchmark's own
// peak RSS (Linux keeps the parent's high-water mark in a child started
// with vfork, as Go starts children, across exec).
const rbTime = "/usr/bin/time"

func (c *rbCmd) exec(b *testing.B) rbResult {
	b.Helper()
	if c.before != nil {
		c.before(c)
	}
	args := c.args
	if c.json {
		args = append(slices.Clone(args[:2]), append([]string{"--json"}, args[2:]...)...)
	}
	usage := filepath.Join(b.TempDir(), "usage")
	cmd := exec.Command(rbTime, append([]string{"-f", "%U %S %M", "-o", usage}, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, rbTail(errb.Bytes()))
	}
	var user, sys float64
	var rssKiB int64
	u, err := os.ReadFile(usage)
	if err == nil {
		_, err = fmt.Sscan(string(u), &user, &sys, &rssKiB)
	}
	if err != nil {
		b.Fatalf("%s: reading %s: %v", rbTime, usage, err)
	}
	r := rbResult{wall: wall, cpu: time.Duration((user + sys) * 1e9), rss: rssKiB << 10, stdout: out.Bytes(), stderr: errb.Bytes()}
	if c.after != nil {
		c.after(c)
	}
	return r
}

// rbCase is auditctl (a) against the plain SQL (b).
type rbCase struct {
	name string
	a, b rbCmd
	// check compares a first, unmeasured answer of each (a with --json)
	// and says what was read.
	check func(b *testing.B, a, q rbResult) string
	note  func() string // after the runs: what was read
}

// rbRow is a line of the printed table.
type rbRow struct {
	name, side, read string
	res              []rbResult
	ratio            []float64
}

func (c *rbCase) run(b *testing.B, runs int) []rbRow {
	b.Helper()
	// The unmeasured first run: the answers agree, the page cache is warm.
	aj := c.a
	aj.json = true
	read := c.check(b, aj.exec(b), c.b.exec(b))
	var as, bs []rbResult
	var ratio []float64
	for range runs {
		ra := c.a.exec(b)
		rb := c.b.exec(b)
		as, bs = append(as, ra), append(bs, rb)
		ratio = append(ratio, ra.wall.Seconds()/rb.wall.Seconds())
	}
	if c.note != nil {
		read = c.note()
	}
	med := func(rs []rbResult) float64 { return rbMedian(rs, func(r rbResult) float64 { return r.wall.Seconds() }) }
	b.ReportMetric(med(as), strings.ReplaceAll(c.name, "/", "_")+"-auditctl-s")
	b.ReportMetric(med(bs), strings.ReplaceAll(c.name, "/", "_")+"-sql-s")
	fmt.Printf("%s: auditctl %.3f s, SQL %.3f s (medians of %d), %s\n", c.name, med(as), med(bs), runs, read)
	return []rbRow{{name: c.name, side: "auditctl", read: read, res: as, ratio: ratio}, {name: c.name, side: "SQL", res: bs}}
}

// rbCheckRuns checks that auditctl (--json) and the SQL list the same runs
// with the same statuses, want of them, and returns how many files auditctl
// verified.
func rbCheckRuns(b *testing.B, a, q rbResult, want int) int {
	b.Helper()
	var runs []struct {
		ExecutionID string `json:"execution_id"`
		Status      string `json:"status"`
	}
	if err := json.Unmarshal(a.stdout, &runs); err != nil {
		b.Fatalf("auditctl runs --json: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(q.stdout), "\n"), "\n")
	if len(runs) != want || len(lines) != want {
		b.Fatalf("runs of the day: auditctl %d, SQL %d, the generator %d", len(runs), len(lines), want)
	}
	for i, l := range lines {
		f := strings.Split(l, "\t")
		if f[0] != runs[i].ExecutionID || f[6] != runs[i].Status {
			b.Fatalf("run %d: auditctl %s %s, SQL %s %s", i, runs[i].ExecutionID, runs[i].Status, f[0], f[6])
		}
	}
	return rbVerified(b, a.stderr)
}

// rbCheckShow checks that auditctl (--json) and the SQL give the run's
// steps.
func rbCheckShow(b *testing.B, a, q rbResult, s rbShow) {
	b.Helper()
	var tl struct {
		Steps []struct {
			Seq int64 `json:"seq"`
		} `json:"steps"`
		Integrity struct {
			Intact bool `json:"intact"`
		} `json:"integrity"`
	}
	if err := json.Unmarshal(a.stdout, &tl); err != nil {
		b.Fatalf("auditctl show --json: %v", err)
	}
	rows := strings.Count(string(q.stdout), "\n")
	if len(tl.Steps) != s.Steps || rows != s.Steps || !tl.Integrity.Intact {
		b.Fatalf("run %s: auditctl %d steps (intact %v), SQL %d rows, the generator %d", s.ID, len(tl.Steps), tl.Integrity.Intact, rows, s.Steps)
	}
}

var rbVerifiedRE = regexp.MustCompile(`(?:verified|checked) (\d+) files?: intact`)

func rbVerified(b *testing.B, out []byte) int {
	b.Helper()
	m := rbVerifiedRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("no integrity line in:\n%s", rbTail(out))
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// rbCacheCount says what a trailcache directory holds: footers read and
// files downloaded.
func rbCacheCount(dir string) string {
	var footers, files int
	var bytes int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		switch {
		case filepath.Base(filepath.Dir(p)) == "footers":
			footers++ // one index per trail
		case strings.HasSuffix(p, ".parquet"):
			files++
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return fmt.Sprintf("%d footer index, %d files (%.0f MB)", footers, files, float64(bytes)/1e6)
}

// rbUpload puts every file below dir into the bucket under prefix.
func rbUpload(b *testing.B, client *s3.Client, dir, bucket, prefix string) (int, int64) {
	b.Helper()
	var keys []string
	var size int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		size += fi.Size()
		keys = append(keys, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 8 {
		wg.Go(func() {
			for k := range work {
				f, err := os.Open(filepath.Join(dir, filepath.FromSlash(k)))
				if err == nil {
					_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(prefix + k), Body: f})
					f.Close()
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("uploading %s: %w", k, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return len(keys), size
}

// rbPrint prints the results as a table.
func rbPrint(rows []rbRow) {
	if len(rows) == 0 {
		return
	}
	wall := func(r rbResult) float64 { return r.wall.Seconds() }
	cpu := func(r rbResult) float64 { return r.cpu.Seconds() }
	rss := func(r rbResult) float64 { return float64(r.rss) / (1 << 20) }
	fmt.Println()
	fmt.Println("| case | command | wall s, median (min–max) | auditctl ÷ SQL, median (min–max) | CPU s, median | peak RSS MiB, median (max) | files read |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ratio := ""
		if len(r.ratio) > 0 {
			ratio = fmt.Sprintf("%.2f× (%.2f–%.2f)", rbMid(r.ratio), slices.Min(r.ratio), slices.Max(r.ratio))
		}
		fmt.Printf("| %s | %s | %.3f (%.3f–%.3f) | %s | %.2f | %.0f (%.0f) | %s |\n", r.name, r.side,
			rbMedian(r.res, wall), rbMin(r.res, wall), rbMax(r.res, wall), ratio, rbMedian(r.res, cpu),
			rbMedian(r.res, rss), rbMax(r.res, rss), r.read)
	}
}

func rbMedian(rs []rbResult, f func(rbResult) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return rbMid(v)
}

func rbMid(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func rbMin(rs []rbResult, f func(rbResult) float64) float64 {
	m := f(rs[0])
	for _, r := range rs {
		m = min(m, f(r))
	}
	return m
}

func rbMax(rs []rbResult, f func(rbResult) float64) float64 {
	m := f(rs[0])
	for _, r := range rs {
		m = max(m, f(r))
	}
	return m
}

func rbTail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func rbEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// rbWant reports whether REVIEW_BENCH_CASES (unset: all) asks for the case.
func rbWant(name string) bool {
	v := os.Getenv("REVIEW_BENCH_CASES")
	if v == "" {
		return true
	}
	for _, w := range strings.Split(v, ",") {
		if strings.Contains(name, w) || strings.Contains(w, name) {
			return true
		}
	}
	return false
}

// rbSize names a trail size: 10M, 200k.
func rbSize(n int) string {
	switch {
	case n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}
