package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/s3test"
)

// requireRefused asserts that err is the exporter's retryable refusal:
// UNAVAILABLE with a retry delay.
func requireRefused(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "a gRPC status: %v", err)
	require.Equal(t, codes.Unavailable, st.Code(), "retryable: %v", err)
	assert.Contains(t, st.Message(), "spool")
	var delay time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	assert.Positive(t, delay, "the refusal tells the client when to retry (RetryInfo): %v", st.Details())
}

// spoolBatches counts the sealed batches waiting in spool.
func spoolBatches(t *testing.T, spool string) int {
	t.Helper()
	dir := filepath.Join(spool, "batches")
	if _, err := os.Stat(dir); err != nil {
		return 0
	}
	return len(harness.ParquetFiles(t, dir))
}

// waitSpoolEmpty waits until the collector's spool holds nothing: every
// object queued so far is in the remote store.
func waitSpoolEmpty(t *testing.T, ctx context.Context, c *harness.Collector) {
	t.Helper()
	for {
		used, found := c.Metric("otelcol_agentaudit_spool_bytes")
		if found && used == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the spool still holds %v bytes (metric found: %v)", used, found)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestSpoolFullRefusesThenRecovers runs once per way to split the stream
// (see harness.SplitConfigs): the refusal must reach the client through each.
func TestSpoolFullRefusesThenRecovers(t *testing.T) {
	harness.EachSplit(t, testSpoolFull)
}

func testSpoolFull(t *testing.T, split string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket("audit-trail", true)
	spool := t.TempDir()
	const chainID = "spool-full"
	// One request is one batch, and one batch in the spool fills it (the
	// first batch holds the start marker and all the first request's spans
	// but the last).
	c := harness.StartCollector(t, harness.CollectorOptions{
		ChainID: chainID, MaxEntries: harness.LoadAuditSpans,
		Store: harness.S3Store(srv, "audit-trail", spool, true) + "\n      max_bytes: 1",
		Env:   srv.Env(),
		Split: split,
	})
	conn, err := grpc.NewClient(c.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	const grpcClient, httpClient = 0, 1
	results := make([][]harness.LoadResult, 2)
	export := func(req int) error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := client.Export(rctx, ptraceotlp.NewExportRequestFromTraces(harness.LoadTraces(grpcClient, req)))
		return err
	}
	record := func(client, req int, err error) {
		results[client] = append(results[client], harness.LoadResult{Client: client, Req: req, Acked: err == nil, Err: err})
	}

	require.NoError(t, export(0))
	record(grpcClient, 0, nil)
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_stored", harness.LoadAuditSpans)
	// The batch's checkpoint follows it to the bucket; were the bucket to go
	// before, the checkpoint alone would fill the spool, with no batch in it.
	waitSpoolEmpty(t, ctx, c)

	// The bucket goes away: the next batch stays in the spool, which is
	// then full, and new data is refused.
	srv.Stop()
	req := 1
	var refused error
	for refused == nil {
		require.Less(t, req, 20, "requests keep being acknowledged although the spool is full")
		if err := export(req); err != nil {
			refused = err
		} else {
			record(grpcClient, req, nil)
			req++
			time.Sleep(50 * time.Millisecond)
		}
	}
	requireRefused(t, refused)
	assert.Positive(t, spoolBatches(t, spool), "batches wait in the spool")
	code, retryAfter := harness.PostTraces(t, ctx, c, harness.LoadTraces(httpClient, 0))
	assert.Equal(t, http.StatusServiceUnavailable, code, "OTLP/HTTP refuses with 503")
	secs, err := strconv.Atoi(retryAfter)
	require.NoError(t, err, "Retry-After %q is a number of seconds", retryAfter)
	assert.Positive(t, secs, "Retry-After")
	refusedEntries, _ := c.Metric("otelcol_agentaudit_entries_refused")
	assert.GreaterOrEqual(t, refusedEntries, float64(2*harness.LoadAuditSpans), "refused entries are counted")
	requireRefused(t, export(req)) // still full while the bucket is away

	// The bucket is back: the spool drains and the clients' retries of the
	// very same requests are accepted.
	srv.Restart()
	retried := 0
	for err := export(req); err != nil; err = export(req) {
		requireRefused(t, err)
		require.NoError(t, ctx.Err(), "the retried request was never accepted")
		retried++
		time.Sleep(100 * time.Millisecond)
	}
	record(grpcClient, req, nil)
	for {
		code, _ := harness.PostTraces(t, ctx, c, harness.LoadTraces(httpClient, 0))
		if code == http.StatusOK {
			break
		}
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.NoError(t, ctx.Err(), "the retried HTTP request was never accepted")
		retried++
		time.Sleep(100 * time.Millisecond)
	}
	record(httpClient, 0, nil)
	t.Logf("accepted after %d more refusals", retried)

	acked := 0
	for _, rs := range results {
		acked += len(rs)
	}
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_stored", float64(acked*harness.LoadAuditSpans))
	c.Stop()
	assert.Zero(t, spoolBatches(t, spool), "the spool is empty once the bucket has everything")

	dir := t.TempDir()
	require.NotEmpty(t, harness.Download(t, ctx, srv.Client(), "audit-trail", "agents", dir))
	db := harness.TrailDB(t, dir)
	trail := harness.ReadLoadTrail(t, db)
	harness.CheckLoadTrail(t, trail, chainID, results, true, harness.OneCleanRun)
	assert.Len(t, harness.LoadEntries(trail), acked*harness.LoadAuditSpans, "every acknowledged span once, nothing of the refusals")
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql finds the downloaded trail intact")
}

func TestS3OutageUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	started := time.Now()
	srv := s3test.Start(t)
	srv.CreateBucket("audit-trail", true)
	spool := t.TempDir()
	const chainID, clients = "outage-1", 4
	c := harness.StartCollector(t, harness.CollectorOptions{
		ChainID: chainID, MaxEntries: 50,
		Store: harness.S3Store(srv, "audit-trail", spool, true), // the default spool limit, 1 GiB
		Env:   srv.Env(),
	})

	g := &harness.LoadGen{Timeout: 20 * time.Second, Pause: 30 * time.Millisecond}
	g.SetTarget(c.GRPCAddr)
	stop := make(chan struct{})
	wait := g.Run(t, clients, stop)
	c.WaitMetric(ctx, "otelcol_agentaudit_batches_stored", 2)
	srv.Stop()
	// Wait until the outage has made an upload fail, so that batches
	// surely wait in the spool, then keep the bucket away a little longer.
	c.WaitMetric(ctx, "otelcol_agentaudit_store_errors", 1)
	time.Sleep(time.Second)
	waiting := spoolBatches(t, spool)
	srv.Restart()
	time.Sleep(time.Second)
	close(stop)
	results := wait()

	requests, slowDisk := 0, 0
	for _, rs := range results {
		for _, r := range rs {
			if !r.Acked {
				// The bound on sealed batches waiting for the local disk
				// may refuse (retryably) on a starved machine; the spool's
				// limit, the outage's, must not.
				require.ErrorContains(t, r.Err, "sealed batches wait to be written to disk",
					"request %d-%d: with room in the spool nothing is refused for the outage", r.Client, r.Req)
				slowDisk++
				continue
			}
			requests++
		}
	}
	if slowDisk > 0 {
		t.Logf("%d requests refused while sealed batches waited for the local disk (a loaded machine)", slowDisk)
	}
	// Every full batch reaches the bucket before the collector is asked to
	// stop, so that its shutdown grace has only the last batch to upload.
	// The chain holds the start marker and the acknowledged spans.
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_stored", float64((1+requests*harness.LoadAuditSpans)/50*50))
	c.Stop()
	assert.Zero(t, spoolBatches(t, spool), "the spool is empty once the bucket has everything")

	dir := t.TempDir()
	keys := harness.Download(t, ctx, srv.Client(), "audit-trail", "agents", dir)
	db := harness.TrailDB(t, dir)
	trail := harness.ReadLoadTrail(t, db)
	harness.CheckLoadTrail(t, trail, chainID, results, true, harness.OneCleanRun)
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql finds the downloaded trail intact")
	t.Logf("%d requests acknowledged, %d batches waited in the spool during the outage, %d objects, in %v",
		requests, waiting, len(keys), time.Since(started).Round(time.Millisecond))
	assert.Positive(t, waiting, "batches waited in the spool during the outage")
}
