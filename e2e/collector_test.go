package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// collector is a running agentaudit process.
type collector struct {
	t        *testing.T
	cmd      *exec.Cmd
	dataDir  string
	grpcAddr string
	httpAddr string
	metrics  string // address of the collector's own Prometheus metrics
	logs     *syncBuffer
	exited   chan struct{}
	exitErr  error
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
processors:
  agentaudit/audit:
    mode: audit
  agentaudit/monitoring:
    mode: monitoring
exporters:
  agentaudit:
    chain_id: {{CHAIN}}
    file:
      directory: {{DIR}}
    batch:
      max_entries: {{MAX_ENTRIES}}
      max_age: 1h
  nop:
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
    traces/audit:
      receivers: [otlp]
      processors: [agentaudit/audit]
      exporters: [agentaudit]
    traces/monitoring:
      receivers: [otlp]
      processors: [agentaudit/monitoring]
      exporters: [nop]
`

type collectorOptions struct {
	chainID    string
	maxEntries int
	dataDir    string // default: a new temporary directory
}

// startCollector runs the collector and waits until it accepts OTLP.
func startCollector(t *testing.T, opts collectorOptions) *collector {
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
	c := &collector{
		t:        t,
		dataDir:  opts.dataDir,
		grpcAddr: freeAddr(t),
		httpAddr: freeAddr(t),
		metrics:  freeAddr(t),
		logs:     &syncBuffer{},
		exited:   make(chan struct{}),
	}
	_, metricsPort, _ := net.SplitHostPort(c.metrics)
	cfg := strings.NewReplacer(
		"{{GRPC}}", c.grpcAddr,
		"{{HTTP}}", c.httpAddr,
		"{{CHAIN}}", opts.chainID,
		"{{DIR}}", opts.dataDir,
		"{{MAX_ENTRIES}}", strconv.Itoa(opts.maxEntries),
		"{{METRICS_PORT}}", metricsPort,
	).Replace(collectorConfig)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	c.cmd = exec.Command(collectorBin, "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	require.NoError(t, c.cmd.Start())
	go func() {
		c.exitErr = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("collector logs:\n%s", c.logs.String())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-c.exited:
			t.Fatalf("collector exited at start: %v\n%s", c.exitErr, c.logs.String())
		default:
		}
		if conn, err := net.DialTimeout("tcp", c.grpcAddr, time.Second); err == nil {
			conn.Close()
			if conn, err := net.DialTimeout("tcp", c.httpAddr, time.Second); err == nil {
				conn.Close()
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector did not open its OTLP ports within 60s\n%s", c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit: the collector seals and
// writes everything it received before it exits.
func (c *collector) stop() {
	c.t.Helper()
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-c.exited:
	case <-time.After(60 * time.Second):
		c.t.Fatalf("collector did not exit within 60s of SIGTERM\n%s", c.logs.String())
	}
	require.NoError(c.t, c.exitErr, "collector exit status\n%s", c.logs.String())
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+)`)

// metric returns the sum of the samples of the named metric the collector
// reports about itself (all label sets), and whether it was found.
func (c *collector) metric(name string) (float64, bool) {
	c.t.Helper()
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	require.NoError(c.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	sum, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(c.t, err)
		sum += v
		found = true
	}
	return sum, found
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
			c.t.Fatalf("metric %s = %v, want %v before timeout", name, got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *collector) String() string { return fmt.Sprintf("collector(%s)", c.grpcAddr) }
