package e2e

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// newestSegmentHasRecords reports whether the newest write-ahead log
// segment in dir, the open batch's, whose entries no sealed batch holds,
// holds any record, whole or torn.
func newestSegmentHasRecords(t *testing.T, dir string) bool {
	t.Helper()
	ids, err := wal.Chains(dir)
	require.NoError(t, err)
	require.Len(t, ids, 1, "the write-ahead log %s has an open segment, of one chain", dir)
	// The collector is running: it removes a sealed batch's segment,
	// maybe between Recover's listing and its reading of that segment.
	var segs []wal.Segment
	for try := 0; ; try++ {
		segs, err = wal.Recover(dir, ids[0])
		if !errors.Is(err, fs.ErrNotExist) || try == 10 {
			break
		}
	}
	require.NoError(t, err)
	newest := segs[len(segs)-1]
	return len(newest.Entries) > 0 || newest.Torn || newest.Corrupt != nil
}

const (
	logRecovered = "Recovered entries from the write-ahead log"
	logTornTail  = "Dropping the torn tail of a write-ahead log segment"
)

// TestSIGKILLLosesNothingAcknowledged runs once per way to split the
// stream (see harness.SplitConfigs): an acknowledgement through each is durable.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	harness.EachSplit(t, testSIGKILL)
}

func testSIGKILL(t *testing.T, split string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("AGENTAUDIT_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "AGENTAUDIT_E2E_SEED")
		seed = v
	}
	t.Logf("kill schedule seed %d (AGENTAUDIT_E2E_SEED=%d repeats it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	started := time.Now()

	const chainID, clients = "crash-1", 4
	dataDir := filepath.Join(t.TempDir(), "audit-data")
	walDir := filepath.Join(filepath.Dir(dataDir), "spool", "wal") // where the harness puts the spool
	opts := harness.CollectorOptions{ChainID: chainID, MaxEntries: 50, DataDir: dataDir, Split: split}
	c := harness.StartCollector(t, opts)

	g := &harness.LoadGen{Timeout: 2 * time.Second, Pause: 30 * time.Millisecond}
	g.SetTarget(c.GRPCAddr)
	stop := make(chan struct{})
	wait := g.Run(t, clients, stop)
	kills, withOpenBatch := 8+rng.IntN(2), 0
	deadline := time.Now().Add(30 * time.Second)
	k := 0
	for ; k < kills && time.Now().Before(deadline); k++ {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		c.Kill()
		// Entries in the open batch's segment are in no sealed batch: the
		// restart must recover them (or cut the torn tail of a write the
		// kill interrupted).
		open := newestSegmentHasRecords(t, walDir)
		c = harness.StartCollector(t, opts)
		g.SetTarget(c.GRPCAddr)
		if open {
			withOpenBatch++
			logs := c.Logs()
			assert.True(t, strings.Contains(logs, logRecovered) || strings.Contains(logs, logTornTail),
				"restart %d after a kill with entries in the open segment: no recovery logged\n%s", k+1, logs)
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	results := wait()

	// A last kill at a point known to leave acknowledged entries in the
	// open batch only: the restart must recover them.
	const last = clients
	results = append(results, nil)
	conn, err := grpc.NewClient(c.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(conn *grpc.ClientConn) {
		req := len(results[last])
		_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(harness.LoadTraces(last, req)))
		require.NoError(t, err)
		results[last] = append(results[last], harness.LoadResult{Client: last, Req: req, Acked: true})
	}
	for !newestSegmentHasRecords(t, walDir) {
		require.Less(t, len(results[last]), 3, "two requests of %d entries leave some in a batch of 50", harness.LoadAuditSpans)
		send(conn)
	}
	conn.Close()
	c.Kill()
	k++
	c = harness.StartCollector(t, opts)
	require.Contains(t, c.Logs(), logRecovered, "the restart recovers the acknowledged entries of the open batch")
	conn, err = grpc.NewClient(c.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	send(conn)
	conn.Close()
	c.Stop()

	acked, failed := 0, 0
	for _, rs := range results {
		for _, r := range rs {
			if r.Acked {
				acked++
			} else {
				failed++
			}
		}
	}
	t.Logf("%d kills (%d with entries in the open batch), %d requests acknowledged, %d failed, in %v",
		k, withOpenBatch+1, acked, failed, time.Since(started).Round(time.Millisecond))
	require.GreaterOrEqual(t, k, 4, "the kill loop ran")
	for client, rs := range results[:clients] {
		n := 0
		for _, r := range rs {
			if r.Acked {
				n++
			}
		}
		require.Positive(t, n, "client %d had requests acknowledged", client)
	}

	db := harness.TrailDB(t, dataDir)
	trail := harness.ReadLoadTrail(t, db)
	// k collectors were killed, the last one stopped: each start after a
	// kill found no record of a clean stop.
	killed := make([]bool, k+1)
	for i := range k {
		killed[i] = true
	}
	unacked := harness.CheckLoadTrail(t, trail, chainID, results, false, harness.Runs(killed...))
	t.Logf("trail: %d entries in %d files, %d of them from requests not acknowledged",
		len(trail), len(harness.ParquetFiles(t, dataDir)), unacked)
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql finds the trail intact")
}
