package auditexporter

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tsa/localtsa"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// fastTimestampRetries makes the client retry within milliseconds for
// the test.
func fastTimestampRetries(t *testing.T) {
	minB, maxB := timestampMinBackoff, timestampMaxBackoff
	timestampMinBackoff, timestampMaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { timestampMinBackoff, timestampMaxBackoff = minB, maxB })
}

// timestampConfig is testConfig with a file store in dir and timestamps
// from the TSA at tsaURL, trusting certPEM.
func timestampConfig(t *testing.T, dir, tsaURL string, certPEM []byte) *Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.File = &FileConfig{Directory: dir}
	certFile := filepath.Join(t.TempDir(), "tsa.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o644))
	cfg.Checkpoint.Timestamp = &TimestampConfig{URL: tsaURL, CertificateFile: certFile}
	return cfg
}

// recentTraces is traces with spans of now, so that the tokens' times lie
// in their batches' windows.
func recentTraces(n int, execID string) ptrace.Traces {
	td := traces(n, execID)
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	now := time.Now()
	for i := range spans.Len() {
		s := spans.At(i)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i) * time.Millisecond)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i+1) * time.Millisecond)))
	}
	return td
}

// startStamping creates and starts the exporter over the file store st,
// with a clock of now (the coverage markers' times) and readable
// telemetry.
func startStamping(t *testing.T, cfg *Config, st store.Store) (*auditExporter, func(context.Context, ptrace.Traces) error, func() error, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := exportertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	exp, te := newTestExporterWithSettings(t, cfg, st, set)
	exp.now = time.Now
	require.NoError(t, te.Start(context.Background(), componenttest.NewNopHost()))
	return exp, te.ConsumeTraces, func() error { return te.Shutdown(context.Background()) }, tel
}

// checkpointKeys lists the checkpoints of st and the ones with a token
// beside them.
func checkpointKeys(t *testing.T, st store.Store) (cps, stamped []string) {
	t.Helper()
	names, err := st.List(context.Background(), store.CheckpointsPrefix)
	require.NoError(t, err)
	for _, n := range names {
		switch {
		case store.IsCheckpointKey(n):
			cps = append(cps, n)
		case store.IsTimestampKey(n):
			stamped = append(stamped, strings.TrimSuffix(n, ".tsr"))
		}
	}
	return cps, stamped
}

// floatGauge returns the float64 gauge name; ok false when it is not
// reported.
func floatGauge(t *testing.T, tel *componenttest.Telemetry, name string) (v float64, ok bool) {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0, false
	}
	g, ok := m.Data.(metricdata.Gauge[float64])
	require.True(t, ok, "metric %s has data %T", name, m.Data)
	if len(g.DataPoints) == 0 {
		return 0, false
	}
	require.Len(t, g.DataPoints, 1)
	return g.DataPoints[0].Value, true
}

func TestTimestampsBesideEveryCheckpoint(t *testing.T) {
	a := localtsa.Start(t)
	dir := t.TempDir()
	st, err := store.NewFS(dir)
	require.NoError(t, err)
	cfg := timestampConfig(t, dir, a.URL, a.PEM)
	_, consume, shutdown, tel := startStamping(t, cfg, st)

	for i := range 3 {
		require.NoError(t, consume(context.Background(), recentTraces(8, fmt.Sprintf("exec-%d", i))))
	}
	require.NoError(t, shutdown())

	cps, stamped := checkpointKeys(t, st)
	require.Len(t, cps, 4, "the start marker and 12 entries, then the stop marker: batches of 4, 4, 4 and 2")
	assert.Equal(t, cps, stamped, "every checkpoint has a token, the last one's got at shutdown")
	assert.Equal(t, int64(4), metricValue(t, tel, "otelcol_agentaudit_timestamps_stored"))
	assert.Zero(t, metricValue(t, tel, "otelcol_agentaudit_timestamp_errors"))

	// The auditor's check: each token is the TSA's, over its checkpoint,
	// in its batch's window.
	for name, trusted := range map[string][]*x509.Certificate{"root": {a.Root()}, "TSA certificate": {a.Leaf()}} {
		rep, err := verify.Verify(context.Background(), store.Dir(dir), verify.Options{TSA: trusted, RequireTimestamps: true})
		require.NoError(t, err, name)
		require.True(t, rep.Intact, "%s: violations: %v", name, rep.Violations)
	}
}

// flakyTSA is a proxy in front of a TSA that can be down: it then drops
// each connection unanswered.
type flakyTSA struct {
	URL  string
	down atomic.Bool
}

func newFlakyTSA(t *testing.T, tsaURL string) *flakyTSA {
	t.Helper()
	target, err := url.Parse(tsaURL)
	require.NoError(t, err)
	target.Path = ""
	f := &flakyTSA{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL + "/api/v1/timestamp"
	return f
}

func TestTimestampsCatchUpAfterTSADown(t *testing.T) {
	fastTimestampRetries(t)
	a := localtsa.Start(t)
	flaky := newFlakyTSA(t, a.URL)
	flaky.down.Store(true)
	dir := t.TempDir()
	st, err := store.NewFS(dir)
	require.NoError(t, err)
	_, consume, shutdown, tel := startStamping(t, timestampConfig(t, dir, flaky.URL, a.PEM), st)
	t.Cleanup(func() { _ = shutdown() })

	// Intake goes on while the TSA is down.
	for i := range 3 {
		require.NoError(t, consume(context.Background(), recentTraces(8, fmt.Sprintf("exec-%d", i))))
	}
	require.Eventually(t, func() bool {
		cps, _ := checkpointKeys(t, st)
		return len(cps) == 3
	}, 10*time.Second, 10*time.Millisecond, "the three full batches are sealed and stored")
	assert.Len(t, readTrailAll(t, st, "collector-1"), 12, "the start marker and 11 entries")
	require.Eventually(t, func() bool {
		return metricValue(t, tel, "otelcol_agentaudit_timestamp_errors", attribute.String("kind", stampUnavailable)) >= 3
	}, 10*time.Second, 10*time.Millisecond, "the failed attempts are counted")
	_, stamped := checkpointKeys(t, st)
	assert.Empty(t, stamped)
	assert.Equal(t, int64(3), metricValue(t, tel, "otelcol_agentaudit_timestamps_pending"))
	time.Sleep(20 * time.Millisecond)
	lag, ok := floatGauge(t, tel, "otelcol_agentaudit_timestamp_lag_seconds")
	require.True(t, ok)
	assert.Greater(t, lag, 0.01, "the oldest checkpoint waits")
	_, ok = floatGauge(t, tel, "otelcol_agentaudit_timestamp_age_seconds")
	assert.False(t, ok, "nothing timestamped yet")

	// Back up: the tokens catch up, newest first.
	flaky.down.Store(false)
	require.Eventually(t, func() bool {
		return metricValue(t, tel, "otelcol_agentaudit_timestamps_pending") == 0
	}, 10*time.Second, 10*time.Millisecond)
	cps, stamped := checkpointKeys(t, st)
	assert.Equal(t, cps, stamped)
	assert.Equal(t, int64(3), metricValue(t, tel, "otelcol_agentaudit_timestamps_stored"))
	age, ok := floatGauge(t, tel, "otelcol_agentaudit_timestamp_age_seconds")
	require.True(t, ok)
	assert.Less(t, age, 10.0, "the newest checkpoint is timestamped")
	lag, _ = floatGauge(t, tel, "otelcol_agentaudit_timestamp_lag_seconds")
	assert.Zero(t, lag, "none waits")

	require.NoError(t, shutdown())
	rep, err := verify.Verify(context.Background(), store.Dir(dir), verify.Options{TSA: []*x509.Certificate{a.Root()}, RequireTimestamps: true})
	require.NoError(t, err)
	require.True(t, rep.Intact, "violations: %v", rep.Violations)
}

func TestTimestampsFromAnotherTSARefused(t *testing.T) {
	fastTimestampRetries(t)
	a, b := localtsa.Start(t), localtsa.Start(t)
	dir := t.TempDir()
	st, err := store.NewFS(dir)
	require.NoError(t, err)
	// Tokens from a, while the configuration trusts b only.
	_, consume, shutdown, tel := startStamping(t, timestampConfig(t, dir, a.URL, b.PEM), st)
	t.Cleanup(func() { _ = shutdown() })

	require.NoError(t, consume(context.Background(), recentTraces(8, "exec")))
	require.Eventually(t, func() bool {
		return metricValue(t, tel, "otelcol_agentaudit_timestamp_errors", attribute.String("kind", stampInvalid)) >= 2
	}, 10*time.Second, 10*time.Millisecond)
	_, stamped := checkpointKeys(t, st)
	assert.Empty(t, stamped, "no token of another TSA is stored")
	assert.Zero(t, metricValue(t, tel, "otelcol_agentaudit_timestamps_stored"))
}

func TestTimestampConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  TimestampConfig
		want []string
	}{
		{TimestampConfig{URL: "http://127.0.0.1:1/api/v1/timestamp", CertificateFile: "tsa.pem", Timeout: time.Second}, nil},
		{TimestampConfig{}, []string{`"url" "" must be an http or https URL`, `"certificate_file" must name the PEM file of the TSA's certificate`}},
		{TimestampConfig{URL: "ftp://tsa", CertificateFile: "x", Timeout: -time.Second}, []string{`"url" "ftp://tsa" must be an http or https URL`, `"timeout" -1s must not be negative`}},
	} {
		err := tc.cfg.Validate()
		if tc.want == nil {
			assert.NoError(t, err)
			continue
		}
		require.Error(t, err)
		assert.Equal(t, strings.Join(tc.want, "\n"), err.Error())
	}
}

func TestTimestampConfigValidatedAsPartOfTheConfig(t *testing.T) {
	cfg := testConfig(t)
	require.NoError(t, confmap.Validate(cfg))
	cfg.Checkpoint.Timestamp = &TimestampConfig{URL: "tsa.example", CertificateFile: "tsa.pem"}
	assert.EqualError(t, confmap.Validate(cfg), `checkpoint::timestamp: "url" "tsa.example" must be an http or https URL`)
}

func TestTimestampsBadCertificateFailsStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.File = &FileConfig{Directory: t.TempDir()}
	missing := filepath.Join(t.TempDir(), "none.pem")
	notPEM := filepath.Join(t.TempDir(), "key.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644))
	for file, want := range map[string]string{
		missing: `checkpoint: timestamp: "certificate_file": open ` + missing,
		notPEM:  `checkpoint: timestamp: "certificate_file" ` + notPEM + `: tsa: no PEM CERTIFICATE block`,
	} {
		cfg.Checkpoint.Timestamp = &TimestampConfig{URL: "http://127.0.0.1:1/", CertificateFile: file}
		st, err := store.NewFS(cfg.File.Directory)
		require.NoError(t, err)
		_, te := newTestExporter(t, cfg, st)
		err = te.Start(context.Background(), componenttest.NewNopHost())
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
		require.NoError(t, te.Shutdown(context.Background()))
	}
}
