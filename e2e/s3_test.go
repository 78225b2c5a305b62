package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/s3test"
)

func TestS3TrailUnderObjectLockSurvivesOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket("audit-trail", true)
	spool := t.TempDir()
	c := harness.StartCollector(t, harness.CollectorOptions{
		ChainID: "collector-1", MaxEntries: 3,
		Store: harness.S3Store(srv, "audit-trail", spool, true), Env: srv.Env(),
	})

	type run struct {
		sent  []harness.SentSpan
		runSC trace.SpanContext
	}
	var runs []run
	sent, sc := harness.SendCRMRun(t, ctx, c, "exec-before")
	runs = append(runs, run{sent, sc})
	// The full batches are stored: the start marker and all of the run but
	// its last entry.
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_stored", 9)

	// The server goes away mid-run: the collector keeps accepting, and the
	// sealed batches wait in the spool.
	srv.Stop()
	sent, sc = harness.SendCRMRun(t, ctx, c, "exec-outage")
	runs = append(runs, run{sent, sc})
	require.Eventually(t, func() bool {
		n := 0
		_ = filepath.WalkDir(spool, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.HasPrefix(d.Name(), ".") {
				n++
			}
			return nil
		})
		return n == 3
	}, time.Minute, 20*time.Millisecond, "three sealed batches wait on local disk")

	srv.Restart()
	sent, sc = harness.SendCRMRun(t, ctx, c, "exec-after")
	runs = append(runs, run{sent, sc})
	c.Stop()
	assert.Empty(t, harness.ParquetFiles(t, spool), "the spool is empty once the bucket has everything")

	dir := t.TempDir()
	keys := harness.Download(t, ctx, srv.Client(), "audit-trail", "agents", dir)
	var batches []string
	for _, k := range keys {
		if strings.HasSuffix(k, ".parquet") {
			assert.Regexp(t, `^agents/dt=\d{4}-\d{2}-\d{2}/collector-1-\d{20}\.parquet$`, k)
			batches = append(batches, k)
		} else {
			assert.Regexp(t, `^agents/(checkpoints/collector-1/\d{20}\.checkpoint|keys/collector-1-[0-9a-f]{8}\.vkey|tiles/collector-1/tile/0/000(\.p/\d+)?)$`, k)
		}
	}
	require.Len(t, batches, 10, "27 entries and the start and stop markers in batches of 3")
	for _, k := range keys {
		ret, err := srv.Client().GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String("audit-trail"), Key: aws.String(k)})
		require.NoError(t, err)
		assert.Equal(t, types.ObjectLockRetentionModeCompliance, ret.Retention.Mode, "%s is under COMPLIANCE retention (checkpoints, keys and tiles too)", k)
		assert.WithinDuration(t, time.Now().AddDate(0, 0, 1), *ret.Retention.RetainUntilDate, 5*time.Minute)
	}

	db := harness.TrailDB(t, dir)
	all := harness.ReadRows(t, db, "")
	got, markers := harness.SplitMarkers(all)
	require.Len(t, got, 27, "nothing lost, nothing duplicated")
	assert.Equal(t, harness.OneCleanRun, markers)
	require.Equal(t, harness.ActionRecorderStart, all[0].ActionType, "the chain begins with the start marker")
	prev := all[0].EntryHash
	for i, r := range runs {
		rows := got[9*i : 9*i+9]
		harness.CheckCRMRows(t, rows, r.sent, r.runSC, "collector-1", int64(1+9*i), prev)
		prev = rows[8].EntryHash
	}
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql finds the downloaded trail intact")
}

func TestS3UnlockedBucketIsRefusedAtStart(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("plain", false)
	c := harness.LaunchCollector(t, harness.CollectorOptions{
		Store: harness.S3Store(srv, "plain", t.TempDir(), true), Env: srv.Env(),
	})
	err := c.WaitExit()
	require.Error(t, err, "the collector must not run against a bucket without Object Lock")
	logs := c.Logs()
	assert.Contains(t, logs, `bucket "plain"`)
	assert.Contains(t, logs, "does not have Object Lock enabled")
	assert.NotContains(t, logs, s3test.SecretKey, "secrets are never logged")
}

func TestS3CollectorRestartsDuringAnOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket("audit-trail", true)
	spool := t.TempDir()
	opts := harness.CollectorOptions{ChainID: "collector-1", MaxEntries: 3,
		Store: harness.S3Store(srv, "audit-trail", spool, true), Env: srv.Env()}
	c := harness.StartCollector(t, opts)
	sent, sc := harness.SendCRMRun(t, ctx, c, "exec-before")
	c.Stop()

	// The bucket goes down, and the collector restarts meanwhile: it resumes
	// from its local state and keeps accepting.
	srv.Stop()
	c = harness.StartCollector(t, opts)
	assert.Contains(t, c.Logs(), "resuming the chain from local state")
	sent2, sc2 := harness.SendCRMRun(t, ctx, c, "exec-during")
	srv.Restart()
	c.Stop()

	dir := t.TempDir()
	harness.Download(t, ctx, srv.Client(), "audit-trail", "agents", dir)
	db := harness.TrailDB(t, dir)
	all := harness.ReadRows(t, db, "")
	got, markers := harness.SplitMarkers(all)
	require.Len(t, got, 18, "both runs, one chain")
	// One spool for both: the second start found the first's clean stop.
	require.Equal(t, harness.Runs(false, false), markers)
	// The chain: start, 9 entries, stop, start, 9 entries, stop.
	require.Len(t, all, 22)
	harness.CheckCRMRows(t, got[:9], sent, sc, "collector-1", 1, all[0].EntryHash)
	harness.CheckCRMRows(t, got[9:], sent2, sc2, "collector-1", 12, all[11].EntryHash)
	assert.Empty(t, harness.VerifySQL(t, db))
}
