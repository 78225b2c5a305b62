package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentaudit/agentaudit/internal/wal"
)

// TestSecondCollectorOnASpoolRefusesToStart: a second collector process
// configured with a spool directory in use (a restarted pod whose old
// process still runs, a copied configuration) exits non-zero naming the
// directory and the holder; the first keeps acknowledging and loses
// nothing.
func TestSecondCollectorOnASpoolRefusesToStart(t *testing.T) {
	const chainID = "shared-spool"
	dataDir := filepath.Join(t.TempDir(), "audit-data")
	spool := filepath.Join(filepath.Dir(dataDir), "spool") // where the harness puts it
	opts := collectorOptions{chainID: chainID, maxEntries: 7, dataDir: dataDir}
	first := startCollector(t, opts)

	conn, err := grpc.NewClient(first.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var results [][]loadResult = [][]loadResult{nil}
	send := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := len(results[0])
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(loadTraces(0, req)))
		require.NoError(t, err, "request %d to the first collector", req)
		results[0] = append(results[0], loadResult{client: 0, req: req, acked: true})
	}
	for range 3 {
		send()
	}

	second := launchCollector(t, opts)
	err = second.waitExit()
	require.Error(t, err, "the second collector exits non-zero\n%s", second.logs.String())
	assert.Contains(t, second.logs.String(),
		fmt.Sprintf(`spool: \"directory\" \"%s\" is in use by another collector (held by pid %d on host `, spool, first.cmd.Process.Pid))

	for range 3 {
		send()
	}
	first.stop()

	_, err = os.Stat(filepath.Join(spool, "wal", wal.SegmentName(chainID, 0)))
	assert.True(t, os.IsNotExist(err), "the first collector sealed its log on shutdown")
	db := trailDB(t, dataDir)
	trail := readLoadTrail(t, db)
	checkLoadTrail(t, trail, chainID, results, true)
	assert.Empty(t, runVerifySQL(t, db), "docs/verify.sql finds the trail intact")
}
