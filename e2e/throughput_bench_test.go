package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
)

// BenchmarkOTLPThroughput measures acknowledged spans/s and per-request
// acknowledgement latency under concurrent OTLP/gRPC load, side by side in
// one run: a receive-and-discard collector (otlp receiver → nop exporter),
// agentaudit in the embedded default's shape (the agentaudit_split
// connector into traces/audit, the processor in mode audit and the
// agentaudit exporter with its fsynced write-ahead log, and
// traces/monitoring, the processor in mode monitoring and nop),
// agentaudit-split (the same without the two processors) and
// agentaudit-processors (no connector: traces/audit and traces/monitoring
// both on the receiver, each with its processor, so the collector copies
// every request). All are the same binary, started fresh, and get the same
// load:
//
//	TP_RUNS=3 go test -run '^$' -bench OTLPThroughput -benchtime 1x ./e2e/
//
// Each sub-benchmark runs once whatever b.N is: 8 closed-loop clients,
// each on its own connection, send pre-built requests of 100 spans for a
// 2 s warm-up, then for 10 s, the measured window. A request's
// latency is from the Export call to its successful return; a request
// counts in the window when it returns inside it. After the window the
// clients finish the request they have in flight, the collector gets
// SIGTERM, and for agentaudit the entries in the trail (read with DuckDB)
// must equal the audit spans acknowledged. The environment variables
// TP_CLIENTS (a comma-separated list of client counts, each measured in
// turn, e.g. "8,32" to see both collectors near saturation), TP_SPANS,
// TP_WARMUP and TP_DURATION override the defaults,
// TP_RUNS repeats the sub-benchmarks in rounds (medians are printed);
// TP_SLICES=N instead keeps all the collectors running side by side and
// gives them the load in turns, N turns of TP_WARMUP (0.5 s) + TP_DURATION
// (2 s) each, which resists the VM's drift far better (tpRunInterleaved);
// TP_TARGETS picks collectors (a comma-separated list of discard,
// agentaudit, agentaudit-split, agentaudit-processors, the first four by
// default, agentaudit-nodelay, and agentaudit-baseline); TP_COLLECTOR runs
// that collector binary instead of the one built from the working tree
// (to measure a given commit); TP_BASELINE is the binary of
// agentaudit-baseline, the default's configuration run by another build,
// so that a change and the commit before it are measured side by side in
// one run (TP_SLICES):
//
//	git worktree add /tmp/before HEAD~1 && (cd /tmp/before && go build -o /tmp/agentaudit-before .)
//	TP_SLICES=6 TP_TARGETS=discard,agentaudit,agentaudit-baseline TP_BASELINE=/tmp/agentaudit-before \
//	  go test -run '^$' -bench OTLPThroughput -benchtime 1x ./e2e/
//
// "all-audit" loads tag every span for audit; "mixed2" tags one span in
// two (an agent step that emits an LLM span and an audit span, as in the
// article's example run), "mixed10" one in ten, the others being ordinary
// GenAI/HTTP spans of similar size. TP_LOADS picks loads (a
// comma-separated list).
func BenchmarkOTLPThroughput(b *testing.B) {
	clientCounts := tpEnvInts("TP_CLIENTS", []int{8})
	spans := tpEnvInt("TP_SPANS", 100)
	warmup := tpEnvDuration("TP_WARMUP", 2*time.Second)
	window := tpEnvDuration("TP_DURATION", 10*time.Second)

	runs := tpEnvInt("TP_RUNS", 1)
	targets := []string{"discard", "agentaudit", "agentaudit-split", "agentaudit-processors"}
	if v := os.Getenv("TP_TARGETS"); v != "" {
		targets = strings.Split(v, ",")
		for _, t := range targets {
			if _, ok := tpConfigs[t]; !ok {
				b.Fatalf("TP_TARGETS: unknown collector %q", t)
			}
		}
	}

	type row struct {
		run     int
		load    string
		clients int
		target  string
		res     tpResult
	}
	var rows []row
	type tpLoadShape struct {
		name  string
		every int // one span in every is audit-tagged
	}
	shapes := []tpLoadShape{{"all-audit", 1}, {"mixed2", 2}, {"mixed10", 10}}
	if v := os.Getenv("TP_LOADS"); v != "" {
		names := strings.Split(v, ",")
		shapes = slices.DeleteFunc(shapes, func(s tpLoadShape) bool { return !slices.Contains(names, s.name) })
		if len(shapes) != len(names) {
			b.Fatalf("TP_LOADS %q: use a comma-separated list of all-audit, mixed2, mixed10", v)
		}
	}
	type built struct {
		payloads                 [][]byte
		auditPerReq, bytesPerReq int
	}
	var loads []built
	for _, shape := range shapes {
		payloads, auditPerReq, bytesPerReq := tpPayloads(b, 16, spans, shape.every)
		loads = append(loads, built{payloads, auditPerReq, bytesPerReq})
		fmt.Printf("%s load: %v clients × %d spans/request (%d audit-tagged), %d bytes/request on the wire\n",
			shape.name, clientCounts, spans, auditPerReq, bytesPerReq)
	}
	if turns := tpEnvInt("TP_SLICES", 0); turns > 0 {
		// Interleaved: the collectors run side by side and take the load in
		// turns; each turn of all of them is a round ("run" in the table).
		sliceLoad := func(i, clients int) tpLoad {
			return tpLoad{clients: clients, payloads: loads[i].payloads, spansPerReq: spans,
				auditPerReq: loads[i].auditPerReq, warmup: tpEnvDuration("TP_WARMUP", 500*time.Millisecond),
				window: tpEnvDuration("TP_DURATION", 2*time.Second)}
		}
		for i, shape := range shapes {
			for _, clients := range clientCounts {
				b.Run(shape.name+"/c"+strconv.Itoa(clients)+"/interleaved", func(b *testing.B) {
					results := tpRunInterleaved(b, targets, sliceLoad(i, clients), turns)
					for s, perTarget := range results {
						for t, res := range perTarget {
							rows = append(rows, row{s + 1, shape.name, clients, targets[t], res})
						}
					}
					b.ReportMetric(0, "ns/op")
				})
			}
		}
		runs = turns
	} else {
		// Rounds interleave the two collectors so that both see the same
		// machine; -count would run each sub-benchmark N times in a row.
		for run := 1; run <= runs; run++ {
			for i, shape := range shapes {
				for _, clients := range clientCounts {
					for _, target := range targets {
						name := shape.name + "/" + target
						if len(clientCounts) > 1 {
							name = shape.name + "/c" + strconv.Itoa(clients) + "/" + target
						}
						b.Run(name, func(b *testing.B) {
							res := tpRun(b, target, tpLoad{
								clients: clients, payloads: loads[i].payloads, spansPerReq: spans,
								auditPerReq: loads[i].auditPerReq, warmup: warmup, window: window,
							})
							b.ReportMetric(0, "ns/op")
							b.ReportMetric(res.spansPerSec, "spans/s")
							b.ReportMetric(res.p50.Seconds()*1e3, "p50-ms")
							b.ReportMetric(res.p99.Seconds()*1e3, "p99-ms")
							b.ReportMetric(float64(res.failed), "failed-reqs")
							b.ReportMetric(res.collectorCPU, "collector-cores")
							b.ReportMetric(res.generatorCPU, "generator-cores")
							b.ReportMetric(res.otherCPU, "other-cores")
							b.ReportMetric(res.peakRSS, "peak-rss-MiB")
							rows = append(rows, row{run, shape.name, clients, target, res})
						})
					}
				}
			}
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| run | load | clients | collector | spans/s | p50 ms | p99 ms | max ms | failed | collector CPU | generator CPU | other CPU | spans per collector-CPU-s | peak RSS MiB |\n")
	fmt.Fprintf(&sb, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %d | %s | %d | %s | %.0f | %.1f | %.1f | %.1f | %d | %.2f | %.2f | %.2f | %.0f | %.0f |\n",
			r.run, r.load, r.clients, r.target, r.res.spansPerSec, tpMs(r.res.p50), tpMs(r.res.p99), tpMs(r.res.max),
			r.res.failed, r.res.collectorCPU, r.res.generatorCPU, r.res.otherCPU, r.res.spansPerSec/max(r.res.collectorCPU, 1e-9), r.res.peakRSS)
	}
	median := func(load string, clients int, target string, f func(tpResult) float64) float64 {
		var v []float64
		for _, r := range rows {
			if r.load == load && r.clients == clients && r.target == target {
				v = append(v, f(r.res))
			}
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	spansPerSec := func(r tpResult) float64 { return r.spansPerSec }
	perCPU := func(r tpResult) float64 { return r.spansPerSec / max(r.collectorCPU, 1e-9) }
	// roundRatios are target's spans/s over discard's in each round, each
	// against the discard run of its own round: the machine drifts less
	// within a round than across the whole benchmark.
	roundRatios := func(load string, clients int, target string) []float64 {
		var v []float64
		for _, r := range rows {
			if r.load != load || r.clients != clients || r.target != target {
				continue
			}
			for _, d := range rows {
				if d.run == r.run && d.load == load && d.clients == clients && d.target == "discard" && d.res.spansPerSec > 0 {
					v = append(v, r.res.spansPerSec/d.res.spansPerSec)
				}
			}
		}
		slices.Sort(v)
		return v
	}
	fmt.Fprintf(&sb, "\nMedians of %d run(s):\n\n", runs)
	fmt.Fprintf(&sb, "| load | clients | collector | spans/s | ratio to discard | per round: median (min–max) | p50 / p99 ms | ratio of spans per collector-CPU-s |\n")
	fmt.Fprintf(&sb, "|---|---|---|---|---|---|---|---|\n")
	// ratio is "–" when a side did not run (a -bench filter picked one).
	ratio := func(a, d float64) string {
		if a == 0 || d == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", a/d)
	}
	for _, shape := range shapes {
		for _, c := range clientCounts {
			m := func(target string, f func(tpResult) float64) float64 { return median(shape.name, c, target, f) }
			p50 := func(r tpResult) float64 { return tpMs(r.p50) }
			p99 := func(r tpResult) float64 { return tpMs(r.p99) }
			d := m("discard", spansPerSec)
			for _, target := range targets {
				a := m(target, spansPerSec)
				if a == 0 {
					continue
				}
				perRound := "–"
				if v := roundRatios(shape.name, c, target); len(v) > 0 {
					perRound = fmt.Sprintf("%.2f× (%.2f–%.2f)", v[len(v)/2], v[0], v[len(v)-1])
				}
				fmt.Fprintf(&sb, "| %s | %d | %s | %.0f | %s | %s | %.1f / %.1f | %s |\n", shape.name, c, target, a, ratio(a, d),
					perRound, m(target, p50), m(target, p99), ratio(m(target, perCPU), m("discard", perCPU)))
			}
		}
	}
	// The parent of sub-benchmarks prints no log: write the table to stdout.
	fmt.Print(sb.String())
}

func tpMs(d time.Duration) float64 { return d.Seconds() * 1e3 }

// tpLoad is the load of one sub-benchmark.
type tpLoad struct {
	clients     int
	payloads    [][]byte // marshalled ExportTraceServiceRequests
	spansPerReq int
	auditPerReq int
	warmup      time.Duration
	window      time.Duration
}

// tpResult is what one sub-benchmark measured.
type tpResult struct {
	spansPerSec    float64
	p50, p99, max  time.Duration
	failed         int
	firstErr       error
	ackedReqsTotal int // warm-up, window and tail
	collectorCPU   float64
	generatorCPU   float64
	otherCPU       float64 // the rest of the machine: other processes, kernel threads
	// peakRSS is the collector's peak resident memory (VmHWM) since it
	// started, in MiB, read when the load ends. In interleaved mode the
	// collector took every turn before this one too.
	peakRSS float64
}

// tpLaunch starts a collector of the given kind (a key of tpConfigs) in a
// new directory and returns it, its OTLP/gRPC address and its trail
// directory.
func tpLaunch(b *testing.B, target string) (c *tpCollector, addr, trail string) {
	b.Helper()
	dir := b.TempDir()
	trail = filepath.Join(dir, "audit-data")
	addr = tpFreeAddr(b)
	cfg := strings.NewReplacer("{{GRPC}}", addr, "{{TRAIL}}", trail,
		"{{SPOOL}}", filepath.Join(dir, "spool")).Replace(tpConfigs[target])
	return tpStart(b, tpBinary(b, target), dir, cfg, addr), addr, trail
}

// tpRun starts a collector of the given kind, loads it and stops it.
func tpRun(b *testing.B, target string, load tpLoad) tpResult {
	b.Helper()
	c, addr, trail := tpLaunch(b, target)
	res := tpDrive(b, c, addr, load)
	c.stop(b)
	tpCheckTrail(b, target, trail, res.ackedReqsTotal, res.failed, res.firstErr, load.auditPerReq)
	return res
}

const tpDiscardConfig = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{GRPC}}
        max_recv_msg_size_mib: 128
exporters:
  nop:
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
`

// tpAuditConfig is testdata/agentaudit.yaml with test directories, the
// monitoring pipeline ending in nop and no metrics server. {{SPLIT}} and
// {{PIPELINES}} take one of harness.SplitConfigs (tpSplitConfig).
const tpAuditConfig = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{GRPC}}
        max_recv_msg_size_mib: 128
{{SPLIT}}
exporters:
  agentaudit:
    chain_id: tp-bench
    file:
      directory: {{TRAIL}}
    spool:
      directory: {{SPOOL}}
    batch:
      max_entries: 10000
      max_bytes: 16777216
      max_age: 10s
  nop:
service:
  telemetry:
    metrics:
      level: none
  pipelines:
{{PIPELINES}}
`

// tpSplitConfig is tpAuditConfig with the split of harness.SplitConfigs named
// split, its monitoring pipeline ending in nop.
func tpSplitConfig(split string) string {
	sc := harness.SplitConfigs[split]
	return strings.NewReplacer("{{SPLIT}}", sc[0],
		"{{PIPELINES}}", strings.ReplaceAll(sc[1], "otlp_http/monitoring", "nop")).Replace(tpAuditConfig)
}

// tpConfigs are the collectors measured, by name.
var tpConfigs = map[string]string{
	"discard":               tpDiscardConfig,
	"agentaudit":            tpSplitConfig("connector+processors"),
	"agentaudit-processors": tpSplitConfig("processors"),
	// The default without the commit delay (spool.commit_delay: 0), for
	// TP_TARGETS=discard,agentaudit,agentaudit-nodelay.
	"agentaudit-nodelay": strings.Replace(tpSplitConfig("connector+processors"), "    spool:\n", "    spool:\n      commit_delay: 0s\n", 1),
	"agentaudit-split":   tpSplitConfig("connector"),
	// The default run by the binary TP_BASELINE names (tpBinary).
	"agentaudit-baseline": tpSplitConfig("connector+processors"),
}

// tpBinary is the collector binary of a target: TP_BASELINE's for
// agentaudit-baseline, else TP_COLLECTOR's, else the one built for the
// tests.
func tpBinary(b *testing.B, target string) string {
	b.Helper()
	if target == "agentaudit-baseline" {
		bin := os.Getenv("TP_BASELINE")
		if bin == "" {
			b.Fatal("agentaudit-baseline needs TP_BASELINE, the path of the collector binary to compare with")
		}
		return bin
	}
	if v := os.Getenv("TP_COLLECTOR"); v != "" {
		return v
	}
	return harness.CollectorBin()
}

// tpCollector is a collector process started by tpStart.
type tpCollector struct{ *harness.Process }

func tpStart(b *testing.B, bin, dir, cfg, addr string) *tpCollector {
	b.Helper()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	c := &tpCollector{harness.StartProcess(b, bin, cfgPath, dir, nil)}
	c.WaitListening(b, addr)
	return c
}

// stop sends SIGTERM and waits for a clean exit.
func (c *tpCollector) stop(b *testing.B) {
	b.Helper()
	c.Terminate(b)
}

// cpu returns the CPU time (user + system) the collector used so far.
func (c *tpCollector) cpu() time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid()))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are fields 14 and 15 of the line, 12 and 13 after ")".
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTicks
}

// peakRSS returns the collector's peak resident memory so far (VmHWM of
// /proc/<pid>/status) in MiB, or 0 when it cannot be read.
func (c *tpCollector) peakRSS() float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid()))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// tpSelfCPU returns the CPU time of this process: the load generator.
func tpSelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tpMachineCPU returns the busy CPU time of the whole machine (all but idle
// and iowait) from /proc/stat.
func tpMachineCPU() time.Duration {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait, steal, guest (already in user)
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	const clockTicks = 100
	return time.Duration(busy) * time.Second / clockTicks
}

// tpCheckTrail fails unless the trail of target (after its collector
// stopped) holds exactly the audit spans of the acked requests, plus up to
// those of the failed ones, beside the coverage markers (a build before
// them writes none), with seq 0..n-1 and no gap.
func tpCheckTrail(b *testing.B, target, trail string, acked, failed int, firstErr error, auditPerReq int) {
	b.Helper()
	if failed > 0 {
		b.Logf("%s: %d requests failed; first: %v", target, failed, firstErr)
	}
	if target == "discard" {
		return
	}
	want := int64(acked * auditPerReq)
	got, all, distinct, next := tpTrailCount(b, trail)
	switch {
	case failed == 0 && got != want:
		b.Fatalf("%s: the trail holds %d entries, want the %d audit spans acknowledged", target, got, want)
	case got < want || got > want+int64(failed*auditPerReq):
		b.Fatalf("%s: the trail holds %d entries, want %d acknowledged (+ up to %d of failed requests)",
			target, got, want, failed*auditPerReq)
	case all-got > 2:
		b.Fatalf("%s: the trail holds %d coverage markers, want a start and a stop", target, all-got)
	case distinct != all || next != all:
		b.Fatalf("%s: the trail's seq are not 0..%d without gaps: %d distinct, max+1 = %d", target, all-1, distinct, next)
	}
	b.Logf("%s durable: %d entries in the trail = %d audit spans acknowledged (+ %d markers)", target, got, want, all-got)
}

// tpRunInterleaved starts a collector of each target and, after a first
// turn that warms them all up, drives them in turn, turns times, for a
// short warm-up and window each (rotating which goes first). Every target
// thus sees the machine at nearly the same moments: on a VM whose speed
// drifts from one minute to the next, this compares them far more closely
// than runs of 10 s one after the other. It returns one result per turn
// and target (results[turn][target]), then stops the collectors and checks
// their trails.
func tpRunInterleaved(b *testing.B, targets []string, load tpLoad, turns int) [][]tpResult {
	b.Helper()
	type running struct {
		c      *tpCollector
		addr   string
		trail  string
		acked  int
		failed int
		err    error
	}
	rs := make([]*running, len(targets))
	for i, target := range targets {
		r := &running{}
		r.c, r.addr, r.trail = tpLaunch(b, target)
		rs[i] = r
	}
	// Turn 0 warms every collector up (its first batches, log segments and
	// connections) and is not recorded.
	results := make([][]tpResult, turns+1)
	for s := range turns + 1 {
		results[s] = make([]tpResult, len(targets))
		for k := range targets {
			i := (s + k) % len(targets)
			res := tpDrive(b, rs[i].c, rs[i].addr, load)
			results[s][i] = res
			rs[i].acked += res.ackedReqsTotal
			rs[i].failed += res.failed
			if rs[i].err == nil {
				rs[i].err = res.firstErr
			}
		}
	}
	for i, target := range targets {
		rs[i].c.stop(b)
		tpCheckTrail(b, target, rs[i].trail, rs[i].acked, rs[i].failed, rs[i].err, load.auditPerReq)
	}
	return results[1:]
}

// tpRawCodec sends pre-marshalled requests as they are, so that the load
// generator spends no CPU on encoding, and keeps the response bytes.
type tpRawCodec struct{}

func (tpRawCodec) Name() string { return "proto" }

func (tpRawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (tpRawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

const tpExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// tpDrive runs the load against addr and measures it.
func tpDrive(b *testing.B, c *tpCollector, addr string, load tpLoad) tpResult {
	b.Helper()
	type clientStats struct {
		lat      []time.Duration // requests returned inside the window
		acked    int             // all acknowledged requests
		failed   int
		firstErr error
	}
	stats := make([]clientStats, load.clients)
	conns := make([]*grpc.ClientConn, load.clients)
	for i := range conns {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		conns[i] = conn
	}

	start := time.Now()
	winStart := start.Add(load.warmup)
	winEnd := winStart.Add(load.window)
	var cpuMu sync.Mutex
	var collCPU0, selfCPU0, collCPU1, selfCPU1, sysCPU0, sysCPU1 time.Duration
	var winStartAt, winEndAt time.Time
	cpuDone := make(chan struct{})
	go func() {
		defer close(cpuDone)
		time.Sleep(time.Until(winStart))
		cpuMu.Lock()
		winStartAt, collCPU0, selfCPU0, sysCPU0 = time.Now(), c.cpu(), tpSelfCPU(), tpMachineCPU()
		cpuMu.Unlock()
		time.Sleep(time.Until(winEnd))
		cpuMu.Lock()
		winEndAt, collCPU1, selfCPU1, sysCPU1 = time.Now(), c.cpu(), tpSelfCPU(), tpMachineCPU()
		cpuMu.Unlock()
	}()

	var wg sync.WaitGroup
	for i := range load.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[i]
			st.lat = make([]time.Duration, 0, 1<<16)
			var resp []byte
			for n := i; ; n++ {
				t0 := time.Now()
				if !t0.Before(winEnd) {
					return
				}
				req := load.payloads[n%len(load.payloads)]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := conns[i].Invoke(ctx, tpExportMethod, &req, &resp, grpc.ForceCodecV2(tpRawCodec{}))
				cancel()
				t1 := time.Now()
				if err == nil {
					r := ptraceotlp.NewExportResponse()
					if uerr := r.UnmarshalProto(resp); uerr != nil {
						err = uerr
					} else if rej := r.PartialSuccess().RejectedSpans(); rej != 0 {
						err = fmt.Errorf("%d spans rejected: %s", rej, r.PartialSuccess().ErrorMessage())
					}
				}
				if err != nil {
					st.failed++
					if st.firstErr == nil {
						st.firstErr = err
					}
					continue
				}
				st.acked++
				if !t1.Before(winStart) && t1.Before(winEnd) {
					st.lat = append(st.lat, t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	<-cpuDone

	var res tpResult
	var lat []time.Duration
	for _, st := range stats {
		lat = append(lat, st.lat...)
		res.ackedReqsTotal += st.acked
		res.failed += st.failed
		if res.firstErr == nil {
			res.firstErr = st.firstErr
		}
	}
	cpuMu.Lock()
	defer cpuMu.Unlock()
	secs := winEndAt.Sub(winStartAt).Seconds()
	res.spansPerSec = float64(len(lat)*load.spansPerReq) / load.window.Seconds()
	res.collectorCPU = (collCPU1 - collCPU0).Seconds() / secs
	res.generatorCPU = (selfCPU1 - selfCPU0).Seconds() / secs
	res.otherCPU = max((sysCPU1-sysCPU0).Seconds()/secs-res.collectorCPU-res.generatorCPU, 0)
	res.peakRSS = c.peakRSS()
	if len(lat) > 0 {
		slices.Sort(lat)
		res.p50 = lat[len(lat)*50/100]
		res.p99 = lat[min(len(lat)*99/100, len(lat)-1)]
		res.max = lat[len(lat)-1]
	}
	return res
}

// tpPayloads builds n distinct marshalled export requests of spans spans
// each, with one span in every audit-tagged. Each span carries about 400
// bytes of attributes.
func tpPayloads(b testing.TB, n, spans, every int) (payloads [][]byte, auditPerReq, bytesPerReq int) {
	b.Helper()
	for p := range n {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "crm-agent-svc")
		rs.Resource().Attributes().PutStr("gen_ai.agent.id", "agent-"+strconv.Itoa(p))
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("agentaudit-throughput-bench")
		var traceID pcommon.TraceID
		_, _ = rand.Read(traceID[:])
		base := uint64(time.Now().UnixNano())
		audited := 0
		for i := range spans {
			s := ss.Spans().AppendEmpty()
			var spanID pcommon.SpanID
			_, _ = rand.Read(spanID[:])
			s.SetTraceID(traceID)
			s.SetSpanID(spanID)
			s.SetStartTimestamp(pcommon.Timestamp(base + uint64(i)*1_000_000))
			s.SetEndTimestamp(pcommon.Timestamp(base + uint64(i)*1_000_000 + 850_000))
			s.Status().SetCode(ptrace.StatusCodeOk)
			a := s.Attributes()
			if i%every == 0 {
				audited++
				s.SetName("update phone")
				a.PutStr("audit.action.type", "write")
				a.PutStr("audit.execution.id", fmt.Sprintf("run-%d-%d", p, i/10))
				a.PutStr("audit.target.system", "salesforce")
				a.PutStr("audit.target.resource", fmt.Sprintf("Account/%06d/Phone", p*spans+i))
				a.PutStr("audit.value.proposed", "+1 555 0100")
				a.PutStr("audit.value.previous", "+1 555 0199")
				a.PutStr("audit.reasoning", "customer asked in ticket 48213 to update the phone number on file; verified caller identity")
				a.PutStr("audit.approver", "auto:low-risk")
				a.PutStr("gen_ai.agent.name", "crm-agent")
				a.PutStr("enduser.id", "alice@example.com")
				a.PutStr("http.request.method", "PATCH")
				a.PutStr("url.full", "https://example.my.salesforce.com/services/data/v59.0/sobjects/Account/001")
				a.PutInt("http.response.status_code", 200)
			} else {
				s.SetName("chat gpt-4o")
				a.PutStr("gen_ai.operation.name", "chat")
				a.PutStr("gen_ai.system", "openai")
				a.PutStr("gen_ai.request.model", "gpt-4o-2024-08-06")
				a.PutStr("gen_ai.response.model", "gpt-4o-2024-08-06")
				a.PutStr("gen_ai.response.id", fmt.Sprintf("chatcmpl-%d-%d-AbCdEfGhIjKlMnOpQrSt", p, i))
				a.PutInt("gen_ai.usage.input_tokens", 1834)
				a.PutInt("gen_ai.usage.output_tokens", 212)
				a.PutDouble("gen_ai.request.temperature", 0.2)
				a.PutStr("gen_ai.response.finish_reasons", "stop")
				a.PutStr("gen_ai.agent.name", "crm-agent")
				a.PutStr("server.address", "api.openai.com")
				a.PutStr("url.full", "https://api.openai.com/v1/chat/completions")
				a.PutInt("http.response.status_code", 200)
			}
		}
		raw, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			b.Fatal(err)
		}
		payloads = append(payloads, raw)
		auditPerReq, bytesPerReq = audited, len(raw)
	}
	return payloads, auditPerReq, bytesPerReq
}

// tpTrailCount returns the number of entries in the trail below dir that
// are not coverage markers, the number of all entries, of distinct seq and
// max(seq)+1, read with DuckDB.
func tpTrailCount(b *testing.B, dir string) (spans, count, distinct, next int64) {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.parquet"))
	if len(files) == 0 {
		return 0, 0, 0, 0
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	err = db.QueryRow(`SELECT count(*) FILTER (WHERE `+harness.NoMarkers+`), count(*), count(DISTINCT seq), coalesce(max(seq), -1) + 1
		FROM read_parquet('`+filepath.ToSlash(dir)+`/**/*.parquet', hive_partitioning=true)`).Scan(&spans, &count, &distinct, &next)
	if err != nil {
		b.Fatal(err)
	}
	return spans, count, distinct, next
}

func tpFreeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tpEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// tpEnvInts parses a comma-separated list of positive integers.
func tpEnvInts(name string, def []int) []int {
	var out []int
	for f := range strings.SplitSeq(os.Getenv(name), ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}

func tpEnvDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
