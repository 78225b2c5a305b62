package auditexporter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/storetest"
	"github.com/agentaudit/agentaudit/internal/witness"
)

func TestWitnessesConfig(t *testing.T) {
	_, vkey, err := witness.GenerateKey("witness.test/w1", false)
	require.NoError(t, err)
	load := func(witnesses any) (*Config, error) {
		cfg := createDefaultConfig().(*Config)
		cm := confmap.NewFromStringMap(map[string]any{
			"chain_id": "collector-1", "file": map[string]any{"directory": "x"},
			"checkpoint": map[string]any{"witnesses": witnesses},
		})
		require.NoError(t, cm.Unmarshal(cfg))
		return cfg, cfg.Checkpoint.Validate()
	}
	cfg, err := load([]any{map[string]any{"name": "w1", "url": "http://127.0.0.1:8090", "key": vkey, "timeout": "3s"}})
	require.NoError(t, err)
	assert.Equal(t, []WitnessConfig{{Name: "w1", URL: "http://127.0.0.1:8090", Key: vkey, Timeout: 3 * time.Second}}, cfg.Checkpoint.Witnesses)
	assert.Empty(t, createDefaultConfig().(*Config).Checkpoint.Witnesses, "off by default")

	_, err = load([]any{
		map[string]any{"name": "a/b", "url": "ftp://x", "key": "not a key", "timeout": "-1s"},
		map[string]any{"name": "w1", "url": "http://w1", "key": vkey},
		map[string]any{"name": "w1", "url": "https://w1", "key": vkey},
	})
	require.Error(t, err)
	for _, want := range []string{
		`"witnesses"[0]: "name" "a/b" is invalid`,
		`"witnesses"[0]: "url" "ftp://x" must be an http or https URL`,
		`"witnesses"[0]: "key" is not a witness verifier key`,
		`"witnesses"[0]: "timeout" -1s must not be negative`,
		`"witnesses": "w1" is named twice`,
	} {
		assert.Contains(t, err.Error(), want)
	}
}

// witnessGate stands in front of a witness at a fixed URL: up, or down
// (503).
type witnessGate struct {
	next http.Handler
	mu   sync.Mutex
	down bool
}

func (g *witnessGate) set(down bool) {
	g.mu.Lock()
	g.down = down
	g.mu.Unlock()
}

func (g *witnessGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	down := g.down
	g.mu.Unlock()
	if down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	g.next.ServeHTTP(w, r)
}

// witnessFixture is an exporter whose checkpoints a witness (ours, on
// 127.0.0.1 behind a gate) cosigns, with the exporter's telemetry.
type witnessFixture struct {
	cfg   *Config
	mem   *storetest.Memory
	srv   *witness.Server
	gate  *witnessGate
	wvkey string // the witness's verifier key
	vkey  string // the checkpoints' verifier key
	tel   *componenttest.Telemetry
	exp   *auditExporter
	te    exporter.Traces
}

func newWitnessFixture(t *testing.T) *witnessFixture {
	skey, vkey, err := checkpoint.GenerateKey("collector-1")
	require.NoError(t, err)
	t.Setenv("AGENTAUDIT_TEST_WITNESSED_KEY", skey)
	logVerifier, err := note.NewVerifier(vkey)
	require.NoError(t, err)
	wskey, wvkey, err := witness.GenerateKey("witness.test/w1", false)
	require.NoError(t, err)
	signer, err := witness.NewSigner(wskey)
	require.NoError(t, err)
	srv, err := witness.NewServer(witness.Config{StateDir: t.TempDir(), Signers: []note.Signer{signer},
		Logs: []witness.Log{{Origin: "agentaudit/collector-1", Verifiers: []note.Verifier{logVerifier}}}})
	require.NoError(t, err)
	f := &witnessFixture{mem: storetest.NewMemory(), srv: srv, gate: &witnessGate{next: srv}, wvkey: wvkey, vkey: vkey}
	hs := httptest.NewServer(f.gate)
	t.Cleanup(hs.Close)

	f.cfg = testConfig(t)
	f.cfg.Checkpoint.KeyEnv = "AGENTAUDIT_TEST_WITNESSED_KEY"
	f.cfg.Checkpoint.Witnesses = []WitnessConfig{{Name: "w1", URL: hs.URL, Key: wvkey, Timeout: time.Second}}
	f.tel = componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, f.tel.Shutdown(context.Background())) })
	set := exportertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = f.tel.NewTelemetrySettings()
	f.exp, f.te = newTestExporterWithSettings(t, f.cfg, f.mem, set)
	f.exp.now = time.Now // the lag is measured
	return f
}

// cosigned returns the sizes with a stored cosignature of w1, each
// checked against its checkpoint.
func (f *witnessFixture) cosigned(t *testing.T) []int64 {
	t.Helper()
	ctx := context.Background()
	keys, err := f.mem.List(ctx, store.CheckpointsPrefix)
	require.NoError(t, err)
	v, err := witness.NewVerifier(f.wvkey)
	require.NoError(t, err)
	var sizes []int64
	for _, k := range keys {
		if !store.IsCosignatureKey(k) {
			continue
		}
		chainID, size, name, err := store.ParseCosignatureKey(k)
		require.NoError(t, err)
		require.Equal(t, []string{"collector-1", "w1"}, []string{chainID, name})
		cosigs, err := f.mem.Get(ctx, k)
		require.NoError(t, err)
		cp, err := f.mem.Get(ctx, store.CheckpointKey(chainID, size))
		require.NoError(t, err)
		_, err = witness.RequireCosignatures(cp, cosigs, 1, v)
		require.NoError(t, err, k)
		sizes = append(sizes, size)
	}
	return sizes
}

// latest returns the size of the latest checkpoint stored, 0 if none.
func (f *witnessFixture) latest(t *testing.T) int64 {
	t.Helper()
	keys, err := f.mem.List(context.Background(), store.CheckpointsPrefix)
	require.NoError(t, err)
	var latest int64
	for _, k := range keys {
		if _, size, err := store.ParseCheckpointKey(k); err == nil {
			latest = max(latest, size)
		}
	}
	return latest
}

// gauge returns the float gauge's value for witness w1, and whether it
// has one.
func (f *witnessFixture) gauge(t *testing.T, name string) (float64, bool) {
	t.Helper()
	m, err := f.tel.GetMetric(name)
	if err != nil {
		return 0, false
	}
	g, ok := m.Data.(metricdata.Gauge[float64])
	require.True(t, ok, "%s is %T", name, m.Data)
	for _, dp := range g.DataPoints {
		if v, _ := dp.Attributes.Value("witness"); v.AsString() == "w1" {
			return dp.Value, true
		}
	}
	return 0, false
}

func TestWitnessCosignsEachCheckpoint(t *testing.T) {
	f := newWitnessFixture(t)
	ctx := context.Background()
	require.NoError(t, f.te.Start(ctx, componenttest.NewNopHost()))
	for range 3 {
		require.NoError(t, f.te.ConsumeTraces(ctx, traces(8, "exec"))) // 4 entries: a batch
		require.Eventually(t, func() bool {
			size, _ := f.srv.Size("agentaudit/collector-1")
			return int64(size) == f.latest(t)
		}, 5*time.Second, 10*time.Millisecond)
	}
	require.NoError(t, f.te.Shutdown(ctx))

	head := int64(14) // the start marker, 12 entries, the stop marker
	sizes := f.cosigned(t)
	assert.Contains(t, sizes, head, "the last checkpoint, sealed at shutdown, is cosigned too")
	size, _ := f.srv.Size("agentaudit/collector-1")
	assert.Equal(t, uint64(head), size)
	assert.Equal(t, int64(len(sizes)), metricValue(t, f.tel, "otelcol_agentaudit_witness_cosignatures", attribute.String("witness", "w1")))
	assert.Zero(t, metricValue(t, f.tel, "otelcol_agentaudit_witness_errors"))
}

// TestWitnessDownNeverBlocksIntake: with the witness down, every request
// is acknowledged and every batch sealed as before; the errors and the lag
// show in the metrics; once the witness is back, the newest checkpoint is
// cosigned (with a proof from the witness's size, read from the tiles)
// and the lag falls to 0.
func TestWitnessDownNeverBlocksIntake(t *testing.T) {
	f := newWitnessFixture(t)
	ctx := context.Background()
	require.NoError(t, f.te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, f.te.ConsumeTraces(ctx, traces(6, "exec"))) // the start marker and 3 entries: a batch
	require.Eventually(t, func() bool { return len(f.cosigned(t)) == 1 }, 5*time.Second, 10*time.Millisecond)
	age, ok := f.gauge(t, "otelcol_agentaudit_witness_cosigned_age_seconds")
	require.True(t, ok)
	assert.Less(t, age, 5.0)

	f.gate.set(true)
	for range 5 {
		start := time.Now()
		require.NoError(t, f.te.ConsumeTraces(ctx, traces(8, "exec")))
		assert.Less(t, time.Since(start), time.Second, "intake waited for the witness")
	}
	require.Eventually(t, func() bool { return f.latest(t) == 24 }, 5*time.Second, 10*time.Millisecond, "every batch sealed")
	head := f.latest(t)
	require.Eventually(t, func() bool {
		return metricValue(t, f.tel, "otelcol_agentaudit_witness_errors", attribute.String("witness", "w1"), attribute.String("kind", "unavailable")) > 0
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	lag, ok := f.gauge(t, "otelcol_agentaudit_witness_lag_seconds")
	require.True(t, ok)
	assert.Greater(t, lag, 0.0)
	assert.Equal(t, []int64{4}, f.cosigned(t), "nothing cosigned while the witness is down")

	f.gate.set(false)
	require.Eventually(t, func() bool { return slices.Contains(f.cosigned(t), head) }, 10*time.Second, 20*time.Millisecond,
		"the newest checkpoint is cosigned once the witness is back")
	require.Eventually(t, func() bool {
		lag, _ := f.gauge(t, "otelcol_agentaudit_witness_lag_seconds")
		return lag == 0
	}, time.Second, 10*time.Millisecond, "no lag once the newest is cosigned")
	require.NoError(t, f.te.Shutdown(ctx))
}

// TestWitnessRefusingNeverBlocksIntake: a witness that refuses every
// checkpoint (it knows the chain under another key) gets every request
// acknowledged all the same; the refusals are counted, nothing is stored.
func TestWitnessRefusingNeverBlocksIntake(t *testing.T) {
	f := newWitnessFixture(t)
	_, other, err := checkpoint.GenerateKey("collector-1")
	require.NoError(t, err)
	ov, err := note.NewVerifier(other)
	require.NoError(t, err)
	wskey, wvkey, err := witness.GenerateKey("witness.test/w1", false)
	require.NoError(t, err)
	signer, err := witness.NewSigner(wskey)
	require.NoError(t, err)
	f.gate.next, err = witness.NewServer(witness.Config{StateDir: t.TempDir(), Signers: []note.Signer{signer},
		Logs: []witness.Log{{Origin: "agentaudit/collector-1", Verifiers: []note.Verifier{ov}}}})
	require.NoError(t, err)
	f.cfg.Checkpoint.Witnesses[0].Key = wvkey

	ctx := context.Background()
	require.NoError(t, f.te.Start(ctx, componenttest.NewNopHost()))
	for range 3 {
		require.NoError(t, f.te.ConsumeTraces(ctx, traces(8, "exec")))
	}
	require.Eventually(t, func() bool { return f.latest(t) == 12 }, 5*time.Second, 10*time.Millisecond, "every batch sealed")
	require.Eventually(t, func() bool {
		return metricValue(t, f.tel, "otelcol_agentaudit_witness_errors", attribute.String("witness", "w1"), attribute.String("kind", "refused")) > 0
	}, 5*time.Second, 10*time.Millisecond)
	assert.Empty(t, f.cosigned(t))
	assert.Equal(t, int64(12), metricValue(t, f.tel, "otelcol_agentaudit_entries_accepted"))
	require.NoError(t, f.te.Shutdown(ctx))
}
