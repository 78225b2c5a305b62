package harness

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
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// Collector is a running agentaudit process with the test configuration.
type Collector struct {
	*Process
	t           *testing.T
	DataDir     string
	GRPCAddr    string
	HTTPAddr    string
	MetricsAddr string // address of the collector's own Prometheus metrics
	// Monitoring is what the monitoring backend received.
	Monitoring *Backend
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
var SplitConfigs = map[string][2]string{
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

// EachSplit runs f as a subtest for each way to split the stream.
func EachSplit(t *testing.T, f func(t *testing.T, split string)) {
	for _, split := range slices.Sorted(maps.Keys(SplitConfigs)) {
		t.Run(split, func(t *testing.T) { f(t, split) })
	}
}

// CollectorOptions shape the configuration LaunchCollector writes; the
// zero value is the embedded default's on a temporary file store.
type CollectorOptions struct {
	ChainID    string
	MaxEntries int
	DataDir    string // file store directory; default: a new temporary directory
	// Store replaces the file store: the exporter's store settings as YAML
	// indented for the exporter block (an s3: and a spool: section).
	Store string
	Env   []string // added to the collector's environment
	// Split is a key of SplitConfigs; default "connector+processors", the
	// embedded default's.
	Split string
	// SplitConfig replaces the split's connectors and processors (the
	// first half of its SplitConfigs entry), keeping its pipelines.
	SplitConfig string
}

// StartCollector runs the collector and waits until it accepts OTLP.
func StartCollector(t *testing.T, opts CollectorOptions) *Collector {
	t.Helper()
	c := LaunchCollector(t, opts)
	c.WaitListening(t, c.GRPCAddr, c.HTTPAddr)
	return c
}

// LaunchCollector starts the collector process with a configuration made
// from opts and stops it when the test ends.
func LaunchCollector(t *testing.T, opts CollectorOptions) *Collector {
	t.Helper()
	if opts.ChainID == "" {
		opts.ChainID = "e2e-collector"
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = 10000
	}
	if opts.DataDir == "" {
		opts.DataDir = filepath.Join(t.TempDir(), "audit-data")
	}
	mon := NewBackend(t)
	c := &Collector{
		Monitoring:  mon,
		t:           t,
		DataDir:     opts.DataDir,
		GRPCAddr:    FreeAddr(t),
		HTTPAddr:    FreeAddr(t),
		MetricsAddr: FreeAddr(t),
	}
	_, metricsPort, _ := net.SplitHostPort(c.MetricsAddr)
	storeYAML := opts.Store
	if storeYAML == "" {
		storeYAML = "    file:\n      directory: " + opts.DataDir +
			"\n    spool:\n      directory: " + filepath.Join(filepath.Dir(opts.DataDir), "spool")
	}
	if opts.Split == "" {
		opts.Split = "connector+processors"
	}
	split, ok := SplitConfigs[opts.Split]
	require.True(t, ok, "unknown split %q", opts.Split)
	if opts.SplitConfig != "" {
		split[0] = opts.SplitConfig
	}
	cfg := strings.NewReplacer(
		"{{SPLIT}}", split[0],
		"{{PIPELINES}}", split[1],
		"{{STORE}}", storeYAML,
		"{{GRPC}}", c.GRPCAddr,
		"{{HTTP}}", c.HTTPAddr,
		"{{CHAIN}}", opts.ChainID,
		"{{MAX_ENTRIES}}", strconv.Itoa(opts.MaxEntries),
		"{{METRICS_PORT}}", metricsPort,
		"{{MONITORING}}", mon.URL,
	).Replace(collectorConfig)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	c.Process = StartProcess(t, CollectorBin(), cfgPath, t.TempDir(), opts.Env)
	return c
}

// Stop sends SIGTERM and waits for a clean exit.
func (c *Collector) Stop() {
	c.t.Helper()
	c.Terminate(c.t)
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+)`)

// Metric returns the sum of the samples of the named metric the collector
// reports about itself (all label sets), and whether it was found.
func (c *Collector) Metric(name string) (float64, bool) {
	c.t.Helper()
	sum, found := 0.0, false
	for _, smp := range ScrapeSamples(c.t, c.MetricsAddr) {
		if smp.Name == name {
			sum += smp.Value
			found = true
		}
	}
	return sum, found
}

// PromSample is one sample of a collector's own metrics: its name, its
// labels as written ("{...}", or ""), its value.
type PromSample struct {
	Name, Labels string
	Value        float64
}

// ScrapeSamples reads every sample from the Prometheus endpoint at addr
// (host:port).
func ScrapeSamples(t *testing.T, addr string) []PromSample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out []PromSample
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err)
		out = append(out, PromSample{Name: m[1], Labels: m[2], Value: v})
	}
	require.NoError(t, sc.Err())
	return out
}

// Kill ends the collector with SIGKILL, as a crash would: no shutdown, no
// flush.
func (c *Collector) Kill() {
	c.t.Helper()
	require.NoError(c.t, c.cmd.Process.Kill())
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.t.Fatalf("collector did not die within 30s of SIGKILL")
	}
}

// WaitExit waits for the collector to exit by itself and returns its exit
// error.
func (c *Collector) WaitExit() error {
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
func (c *Collector) metricNames() string {
	resp, err := http.Get("http://" + c.MetricsAddr + "/metrics")
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

// WaitMetric waits until the named metric reaches want.
func (c *Collector) WaitMetric(ctx context.Context, name string, want float64) {
	c.t.Helper()
	for {
		got, _ := c.Metric(name)
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

// String names the collector by its OTLP/gRPC address.
func (c *Collector) String() string { return fmt.Sprintf("collector(%s)", c.GRPCAddr) }

// Backend is a stand-in monitoring backend: an OTLP/HTTP server that keeps
// every span it receives.
type Backend struct {
	URL   string
	mu    sync.Mutex
	spans []ptrace.Span
}

// NewBackend starts a monitoring backend that closes when the test ends.
func NewBackend(t *testing.T) *Backend {
	t.Helper()
	b := &Backend{}
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
	b.URL = srv.URL
	return b
}

// Received returns the spans the backend received so far.
func (b *Backend) Received() []ptrace.Span {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]ptrace.Span(nil), b.spans...)
}

// PostTraces sends td as one OTLP/HTTP protobuf request and returns the
// response's status code and Retry-After header.
func PostTraces(t *testing.T, ctx context.Context, c *Collector, td ptrace.Traces) (int, string) {
	t.Helper()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.HTTPAddr+"/v1/traces", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}
