package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// process is a collector process started by startProcess.
type process struct {
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan struct{}
	exitErr error
}

// startProcess runs bin --config cfgPath (bin alone, on the embedded
// default, when cfgPath is "") in dir with env added, and kills it when the
// test ends (printing its logs if the test failed).
func startProcess(tb testing.TB, bin, cfgPath, dir string, env []string) *process {
	tb.Helper()
	p := &process{logs: &syncBuffer{}, exited: make(chan struct{})}
	if cfgPath == "" {
		p.cmd = exec.Command(bin)
	} else {
		p.cmd = exec.Command(bin, "--config", cfgPath)
	}
	p.cmd.Dir = dir // relative paths land there, never in the checkout
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(tb, p.cmd.Start())
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if tb.Failed() {
			tb.Logf("collector logs:\n%s", p.logs.String())
		}
	})
	return p
}

// waitListening waits until the process accepts connections on every addr.
func (p *process) waitListening(tb testing.TB, addrs ...string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, addr := range addrs {
		for {
			select {
			case <-p.exited:
				tb.Fatalf("collector exited at start: %v\n%s", p.exitErr, p.logs.String())
			default:
			}
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("collector did not open %s within 60s\n%s", addr, p.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// terminate sends SIGTERM and waits for a clean exit: the collector seals
// and writes everything it received before it exits.
func (p *process) terminate(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		tb.Fatalf("collector did not exit within 60s of SIGTERM\n%s", p.logs.String())
	}
	require.NoError(tb, p.exitErr, "collector exit status\n%s", p.logs.String())
}

// collector is a running agentaudit process with the test configuration.
type collector struct {
	*process
	t        *testing.T
	dataDir  string
	grpcAddr string
	httpAddr string
	metrics  string // address of the collector's own Prometheus metrics
	// monitoring is what the monitoring backend received.
	monitoring *backend
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// collectorConfig is the embedded default's shape with test ports, a test
// data directory and small batches so that one run writes several files.
const collectorConfig = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{GRPC}}
        max_recv_msg_size_mib: 128
      http:
        endpoint: {{HTTP}}
{{SPLIT}}
exporters:
  agentaudit:
    chain_id: {{CHAIN}}
{{STORE}}
    batch:
      max_entries: {{MAX_ENTRIES}}
      max_age: 1h
  otlp_http/monitoring:
    endpoint: {{MONITORING}}
    compression: none
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {{METRICS_PORT}}
  pipelines:
{{PIPELINES}}
`

// The ways to split the stream: one pipeline into the agentaudit_split
// connector that feeds traces/audit and traces/monitoring, each with the
// agentaudit processor as a second guard (the embedded default); the same
// without the processors; or two pipelines on the receiver, each with the
// processor.
var splitConfigs = map[string][2]string{
	"processors": {`processors:
  agentaudit/audit:
    mode: audit
  agentaudit/monitoring:
    mode: monitoring`, `    traces/audit:
      receivers: [otlp]
      processors: [agentaudit/audit]
      exporters: [agentaudit]
    traces/monitoring:
      receivers: [otlp]
      processors: [agentaudit/monitoring]
      exporters: [otlp_http/monitoring]`},
	"connector": {`connectors:
  agentaudit_split:
    audit_pipelines: [traces/audit]
    monitoring_pipelines: [traces/monitoring]`, `    traces:
      receivers: [otlp]
      exporters: [agentaudit_split]
    traces/audit:
      receivers: [agentaudit_split]
      exporters: [agentaudit]
    traces/monitoring:
      receivers: [agentaudit_split]
      exporters: [otlp_http/monitoring]`},
	"connector+processors": {`connectors:
  agentaudit_split:
    audit_pipelines: [traces/audit]
    monitoring_pipelines: [traces/monitoring]
processors:
  agentaudit/audit:
    mode: audit
  agentaudit/monitoring:
    mode: monitoring`, `    traces:
      receivers: [otlp]
      exporters: [agentaudit_split]
    traces/audit:
      receivers: [agentaudit_split]
      processors: [agentaudit/audit]
      exporters: [agentaudit]
    traces/monitoring:
      receivers: [agentaudit_split]
      processors: [agentaudit/monitoring]
      exporters: [otlp_http/monitoring]`},
}

// eachSplit runs f as a subtest for each way to split the stream.
func eachSplit(t *testing.T, f func(t *testing.T, split string)) {
	for _, split := range slices.Sorted(maps.Keys(splitConfigs)) {
		t.Run(split, func(t *testing.T) { f(t, split) })
	}
}

type collectorOptions struct {
	chainID    string
	maxEntries int
	dataDir    string // file store directory; default: a new temporary directory
	// store replaces the file store: the exporter's store settings as YAML
	// indented for the exporter block (an s3: and a spool: section).
	store string
	env   []string // added to the collector's environment
	// split is a key of splitConfigs; default "connector+processors", the
	// embedded default's.
	split string
}

// startCollector runs the collector and waits until it accepts OTLP.
func startCollector(t *testing.T, opts collectorOptions) *collector {
	t.Helper()
	c := launchCollector(t, opts)
	c.waitListening(t, c.grpcAddr, c.httpAddr)
	return c
}

// launchCollector starts the collector process with a configuration made
// from opts and stops it when the test ends.
func launchCollector(t *testing.T, opts collectorOptions) *collector {
	t.Helper()
	if opts.chainID == "" {
		opts.chainID = "e2e-collector"
	}
	if opts.maxEntries == 0 {
		opts.maxEntries = 10000
	}
	if opts.dataDir == "" {
		opts.dataDir = filepath.Join(t.TempDir(), "audit-data")
	}
	mon := newBackend(t)
	c := &collector{
		monitoring: mon,
		t:          t,
		dataDir:    opts.dataDir,
		grpcAddr:   freeAddr(t),
		httpAddr:   freeAddr(t),
		metrics:    freeAddr(t),
	}
	_, metricsPort, _ := net.SplitHostPort(c.metrics)
	storeYAML := opts.store
	if storeYAML == "" {
		storeYAML = "    file:\n      directory: " + opts.dataDir +
			"\n    spool:\n      directory: " + filepath.Join(filepath.Dir(opts.dataDir), "spool")
	}
	if opts.split == "" {
		opts.split = "connector+processors"
	}
	split, ok := splitConfigs[opts.split]
	require.True(t, ok, "unknown split %q", opts.split)
	cfg := strings.NewReplacer(
		"{{SPLIT}}", split[0],
		"{{PIPELINES}}", split[1],
		"{{STORE}}", storeYAML,
		"{{GRPC}}", c.grpcAddr,
		"{{HTTP}}", c.httpAddr,
		"{{CHAIN}}", opts.chainID,
		"{{MAX_ENTRIES}}", strconv.Itoa(opts.maxEntries),
		"{{METRICS_PORT}}", metricsPort,
		"{{MONITORING}}", mon.url,
	).Replace(collectorConfig)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	c.process = startProcess(t, collectorBin, cfgPath, t.TempDir(), opts.env)
	return c
}

// stop sends SIGTERM and waits for a clean exit.
func (c *collector) stop() {
	c.t.Helper()
	c.terminate(c.t)
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+)`)

// metric returns the sum of the samples of the named metric the collector
// reports about itself (all label sets), and whether it was found.
func (c *collector) metric(name string) (float64, bool) {
	c.t.Helper()
	sum, found := 0.0, false
	for _, smp := range scrapeSamples(c.t, c.metrics) {
		if smp.name == name {
			sum += smp.value
			found = true
		}
	}
	return sum, found
}

// promSample is one sample of a collector's own metrics: its name, its
// labels as written ("{...}", or ""), its value.
type promSample struct {
	name, labels string
	value        float64
}

// scrapeSamples reads every sample from the Prometheus endpoint at addr
// (host:port).
func scrapeSamples(t *testing.T, addr string) []promSample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out []promSample
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err)
		out = append(out, promSample{name: m[1], labels: m[2], value: v})
	}
	require.NoError(t, sc.Err())
	return out
}

// kill ends the collector with SIGKILL, as a crash would: no shutdown, no
// flush.
func (c *collector) kill() {
	c.t.Helper()
	require.NoError(c.t, c.cmd.Process.Kill())
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.t.Fatalf("collector did not die within 30s of SIGKILL")
	}
}

// waitExit waits for the collector to exit by itself and returns its exit
// error.
func (c *collector) waitExit() error {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.exitErr
	case <-time.After(60 * time.Second):
		c.t.Fatalf("collector still running after 60s\n%s", c.logs.String())
		return nil
	}
}

// metricNames lists the names of the metrics the collector reports.
func (c *collector) metricNames() string {
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var names []string
	for _, line := range strings.Split(string(body), "\n") {
		if m := metricLine.FindStringSubmatch(line); m != nil && !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return strings.Join(names, "\n")
}

// waitMetric waits until the named metric reaches want.
func (c *collector) waitMetric(ctx context.Context, name string, want float64) {
	c.t.Helper()
	for {
		got, _ := c.metric(name)
		if got >= want {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("metric %s = %v, want %v before timeout; the collector reports:\n%s", name, got, want, c.metricNames())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *collector) String() string { return fmt.Sprintf("collector(%s)", c.grpcAddr) }

// backend is a stand-in monitoring backend: an OTLP/HTTP server that keeps
// every span it receives.
type backend struct {
	url   string
	mu    sync.Mutex
	spans []ptrace.Span
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		td := req.Traces()
		b.mu.Lock()
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			sss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				for k := 0; k < sss.At(j).Spans().Len(); k++ {
					b.spans = append(b.spans, sss.At(j).Spans().At(k))
				}
			}
		}
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// received returns the spans the backend received so far.
func (b *backend) received() []ptrace.Span {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]ptrace.Span(nil), b.spans...)
}
