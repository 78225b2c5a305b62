package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestEmbeddedDefault runs the collector as `go run .` does, with no flag:
// OTLP on 127.0.0.1:4317 and :4318, the trail under ./audit-data, the
// monitoring pipeline into the debug exporter, the collector's own metrics
// on 127.0.0.1:8888. It needs those ports free: under CI=true it fails when
// one is taken, elsewhere it skips.
func TestEmbeddedDefault(t *testing.T) {
	const grpcAddr, httpAddr, metricsAddr = "127.0.0.1:4317", "127.0.0.1:4318", "127.0.0.1:8888"
	for _, addr := range []string{grpcAddr, httpAddr, metricsAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the embedded default needs %s: %v", addr, err)
			}
			t.Skipf("the embedded default needs %s: %v", addr, err)
		}
		require.NoError(t, l.Close())
	}
	dir := t.TempDir()
	p := harness.StartProcess(t, harness.CollectorBin(), "", dir, nil)
	p.WaitListening(t, grpcAddr, httpAddr, metricsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// One request of 100 spans over each protocol, one span in ten
	// audit-tagged.
	payloads, auditPerReq, _ := tpPayloads(t, 2, 100, 10)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	req := ptraceotlp.NewExportRequest()
	require.NoError(t, req.UnmarshalProto(payloads[0]))
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, req)
	require.NoError(t, err)
	req = ptraceotlp.NewExportRequest()
	require.NoError(t, req.UnmarshalProto(payloads[1]))
	code, _ := harness.PostTraces(t, ctx, &harness.Collector{HTTPAddr: httpAddr}, req.Traces())
	require.Equal(t, http.StatusOK, code)

	// Each layer of the default saw the audit-tagged spans: the connector
	// split them (kept for traces/audit, stripped for traces/monitoring);
	// behind it, the processor in traces/audit kept them without a problem
	// and dropped nothing, the one in traces/monitoring stripped them again
	// (a no-op: TestProcessorsAfterConnectorChangeNothing).
	metrics := scrape(t, metricsAddr)
	audited := float64(2 * auditPerReq)
	assert.Equal(t, audited, metrics[`otelcol_connector_agentaudit_split_spans{outcome="kept_audit"}`], "connector, audit side")
	assert.Equal(t, audited, metrics[`otelcol_connector_agentaudit_split_spans{outcome="stripped"}`], "connector, monitoring side")
	assert.Equal(t, audited, metrics[`otelcol_processor_agentaudit_spans{outcome="kept_audit"}`], "processor, mode audit")
	assert.Equal(t, audited, metrics[`otelcol_processor_agentaudit_spans{outcome="stripped"}`], "processor, mode monitoring")
	assert.Zero(t, metrics[`otelcol_processor_agentaudit_spans{outcome="dropped_unaudited"}`], "the connector sends traces/audit only audit-tagged spans")

	p.Terminate(t)

	// The trail holds exactly the audit-tagged spans and the collector's
	// start and stop, and verifies.
	rep := harness.Verify(t, filepath.Join(dir, "audit-data"))
	assert.True(t, rep.Intact, "%+v", rep.Violations)
	assert.EqualValues(t, 2*auditPerReq+2, rep.Entries)
	assert.Equal(t, harness.OneCleanRun, harness.TrailMarkers(t, harness.TrailDB(t, filepath.Join(dir, "audit-data"))))
	_, err = os.Stat(filepath.Join(dir, "audit-spool"))
	require.NoError(t, err, "the write-ahead log lives in ./audit-spool")

	// The debug exporter (basic verbosity) logged every span of both
	// requests, audit-tagged or not.
	total := 0
	for _, m := range regexp.MustCompile(`"spans": (\d+)`).FindAllStringSubmatch(p.Logs(), -1) {
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		total += n
	}
	assert.Equal(t, 200, total, "spans the monitoring pipeline's debug exporter logged")
}

// scrape returns the samples of the agentaudit metrics at addr by series,
// the labels reduced to outcome (summed over the others), e.g.
// `otelcol_processor_agentaudit_spans{outcome="stripped"}`.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	outcome := regexp.MustCompile(`outcome="[a-z_]+"`)
	out := map[string]float64{}
	for _, smp := range harness.ScrapeSamples(t, addr) {
		if !strings.Contains(smp.Name, "agentaudit") {
			continue
		}
		key := smp.Name
		if o := outcome.FindString(smp.Labels); o != "" {
			key += "{" + o + "}"
		}
		out[key] += smp.Value
	}
	return out
}
