package auditexporter

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configauth"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/recorder"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/storetest"
)

// markers lists the coverage markers of chain collector-1 in st, as
// "action_type: result".
func markers(t *testing.T, st *storetest.Memory) []string {
	t.Helper()
	var out []string
	for _, e := range readTrailAll(t, st, "collector-1") {
		if isMarker(e) {
			out = append(out, e.ActionType+": "+e.Result)
		}
	}
	return out
}

// TestMarkersShowWhenRecordingWasOff: each start writes a start marker
// saying how the run before ended, each clean shutdown a stop marker; a
// crash leaves a start marker after no stop marker.
func TestMarkersShowWhenRecordingWasOff(t *testing.T) {
	st := storetest.NewMemory()
	cfg := testConfig(t) // one spool for every run
	ctx := context.Background()
	run := func(crashed bool) {
		exp, te := newTestExporter(t, cfg, st)
		require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
		require.NoError(t, te.ConsumeTraces(ctx, traces(2, "exec")))
		if crashed {
			crash(t, exp)
			return
		}
		require.NoError(t, te.Shutdown(ctx))
	}
	run(false)
	run(true)
	run(false)
	var got []string
	for _, e := range readTrailAll(t, st, "collector-1") {
		got = append(got, e.ActionType+": "+e.Result)
		if isMarker(e) {
			assert.Equal(t, "agentaudit.recorder/collector-1", e.ExecutionID)
			assert.Equal(t, "agentaudit recorder", e.TargetSystem)
			assert.Equal(t, "collector-1", e.TargetResource)
			assert.Equal(t, "agentaudit", *e.ServiceName)
			assert.Nil(t, e.Sender, "the collector's own entry has no sender")
			assert.Nil(t, e.Validation, "the collector's own keys are not flagged")
			assert.Contains(t, e.Attributes, `"agentaudit.recorder.version":`)
		}
	}
	assert.Equal(t, []string{
		"agentaudit.recorder_start: first start", "write: unset", "agentaudit.recorder_stop: clean stop",
		"agentaudit.recorder_start: after a clean stop", "write: unset",
		"agentaudit.recorder_start: no record of a clean stop", "write: unset", "agentaudit.recorder_stop: clean stop",
	}, got)
}

// TestFailedStartStopsWithAMarker: a start that fails after the recorder
// started (here the approval service's authenticator is missing) shuts
// the recorder down cleanly, so it writes the stop marker first: the next
// start's "after a clean stop" then has the stop marker before it. The
// host's shutdown that follows writes no second one.
func TestFailedStartStopsWithAMarker(t *testing.T) {
	st := storetest.NewMemory()
	ctx := context.Background()
	cfg := testConfig(t)
	a := defaultApprovalsConfig()
	a.NetAddr.Endpoint = "127.0.0.1:0"
	a.Auth = configoptional.Some(confighttp.AuthConfig{Config: configauth.Config{AuthenticatorID: component.MustNewID("bearertokenauth")}})
	a.Reviewers = []string{"alice@example.com"}
	cfg.Approvals = configoptional.Some(a)
	_, te := newTestExporter(t, cfg, st)
	err := te.Start(ctx, componenttest.NewNopHost()) // the host has no extensions
	require.Error(t, err)
	assert.Contains(t, err.Error(), `approvals: "auth"`)
	require.NoError(t, te.Shutdown(ctx))

	cfg.Approvals = configoptional.None[ApprovalsConfig]()
	_, te = newTestExporter(t, cfg, st)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.Shutdown(ctx))
	assert.Equal(t, []string{
		"agentaudit.recorder_start: first start", "agentaudit.recorder_stop: clean stop",
		"agentaudit.recorder_start: after a clean stop", "agentaudit.recorder_stop: clean stop",
	}, markers(t, st))
}

// TestMarkersAreNotAccepted: the markers are stored and chained like any
// entry but are not counted as entries the senders sent.
func TestMarkersAreNotAccepted(t *testing.T) {
	st := storetest.NewMemory()
	ctx := context.Background()
	te, tel := newObservedExporter(t, testConfig(t), st)
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	assert.Zero(t, metricValue(t, tel, "otelcol_agentaudit_entries_accepted"))
	assert.Equal(t, int64(0), metricValue(t, tel, "otelcol_agentaudit_chain_head_seq"), "the start marker is seq 0")
	require.NoError(t, te.Shutdown(ctx))
	assert.Zero(t, metricValue(t, tel, "otelcol_agentaudit_entries_accepted"))
	assert.Equal(t, int64(2), metricValue(t, tel, "otelcol_agentaudit_entries_stored"), "the start and stop markers")
	assert.Equal(t, []string{"agentaudit.recorder_start: first start", "agentaudit.recorder_stop: clean stop"}, markers(t, st))
}

// TestStopMarkerDespiteAFullSpool: at shutdown the spool is full (the
// store is down) and senders' entries are refused, but the stop marker is
// taken, after the run's entries, and reaches the store once it is back.
func TestStopMarkerDespiteAFullSpool(t *testing.T) {
	mem := storetest.NewMemory()
	down := &flakyStore{Store: mem, failures: 1 << 30, attempts: map[string][][]byte{}}
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.Spool.Directory = dir
	cfg.Spool.MaxBytes = 1 // one batch in the spool fills it
	set := exportertest.NewNopSettings(metadata.Type)
	exp, err := newAuditExporter(cfg, set, func(context.Context, *Config) (recorder.Stores, error) {
		spool, err := store.NewFS(filepath.Join(dir, "batches"))
		return recorder.Stores{WALDir: filepath.Join(dir, "wal"), Trail: down, Spool: spool}, err
	})
	require.NoError(t, err)
	exp.now = func() time.Time { return t0 }
	te, err := exp.asTraces(context.Background(), set)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, te.ConsumeTraces(ctx, traces(8, "exec"))) // the start marker and 3 entries seal a batch; 1 open
	require.Eventually(t, func() bool {
		used, _, _ := exp.rec.Stats()
		return used > cfg.Spool.MaxBytes
	}, 10*time.Second, 5*time.Millisecond, "the batch waits in the spool, which is full")
	require.Error(t, te.ConsumeTraces(ctx, traces(2, "refused")), "the spool is full")

	back := time.AfterFunc(300*time.Millisecond, func() {
		down.mu.Lock()
		down.failures = 0
		down.mu.Unlock()
	})
	defer back.Stop()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, te.Shutdown(sctx))

	es := readTrailAll(t, mem, "collector-1")
	require.Len(t, es, 6, "the start marker, 4 entries, the stop marker")
	assert.Equal(t, actionRecorderStart, es[0].ActionType)
	assert.Equal(t, actionRecorderStop, es[5].ActionType, "the stop marker, last")
	assert.Empty(t, spoolKeys(t, dir))
}
