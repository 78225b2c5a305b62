package e2e

import (
	"context"
	"fmt"
	"io"
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

	"github.com/agentaudit/agentaudit/internal/s3test"
)

// s3Store is the exporter's store configuration for bucket on srv.
func s3Store(srv *s3test.Server, bucket, spool string, locked bool) string {
	y := fmt.Sprintf(`    s3:
      bucket: %s
      prefix: agents
      region: %s
      endpoint: %s
      force_path_style: true
`, bucket, s3test.Region, srv.Endpoint)
	if locked {
		y += "      object_lock: {mode: compliance, retention_days: 1}\n"
	}
	return y + "    spool:\n      directory: " + spool
}

// download copies every object under prefix/ to dir, keeping the layout
// below the prefix, as an auditor would before reading the trail.
func download(t *testing.T, ctx context.Context, c *s3.Client, bucket, prefix, dir string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix + "/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: o.Key})
			require.NoError(t, err)
			data, err := io.ReadAll(out.Body)
			out.Body.Close()
			require.NoError(t, err)
			path := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(*o.Key, prefix+"/")))
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o750))
			require.NoError(t, os.WriteFile(path, data, 0o444))
		}
	}
	return keys
}

func TestS3TrailUnderObjectLockSurvivesOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket("audit-trail", true)
	spool := t.TempDir()
	c := startCollector(t, collectorOptions{
		chainID: "collector-1", maxEntries: 3,
		store: s3Store(srv, "audit-trail", spool, true), env: srv.Env(),
	})

	type run struct {
		sent  []sentSpan
		runSC trace.SpanContext
	}
	var runs []run
	sent, sc := sendCRMRun(t, ctx, c, "exec-before")
	runs = append(runs, run{sent, sc})
	c.waitMetric(ctx, "otelcol_agentaudit_entries_stored", 9)

	// The server goes away mid-run: the collector keeps accepting, and the
	// sealed batches wait in the spool.
	srv.Stop()
	sent, sc = sendCRMRun(t, ctx, c, "exec-outage")
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
	sent, sc = sendCRMRun(t, ctx, c, "exec-after")
	runs = append(runs, run{sent, sc})
	c.stop()
	assert.Empty(t, parquetFiles(t, spool), "the spool is empty once the bucket has everything")

	dir := t.TempDir()
	keys := download(t, ctx, srv.Client(), "audit-trail", "agents", dir)
	var batches []string
	for _, k := range keys {
		if strings.HasSuffix(k, ".parquet") {
			assert.Regexp(t, `^agents/dt=\d{4}-\d{2}-\d{2}/collector-1-\d{20}\.parquet$`, k)
			batches = append(batches, k)
		} else {
			assert.Regexp(t, `^agents/(checkpoints/collector-1/\d{20}\.checkpoint|keys/collector-1-[0-9a-f]{8}\.vkey)$`, k)
		}
	}
	require.Len(t, batches, 9, "27 entries in batches of 3")
	for _, k := range keys {
		ret, err := srv.Client().GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String("audit-trail"), Key: aws.String(k)})
		require.NoError(t, err)
		assert.Equal(t, types.ObjectLockRetentionModeCompliance, ret.Retention.Mode, "%s is under COMPLIANCE retention (checkpoints and keys too)", k)
		assert.WithinDuration(t, time.Now().AddDate(0, 0, 1), *ret.Retention.RetainUntilDate, 5*time.Minute)
	}

	db := trailDB(t, dir)
	got := readRows(t, db, "")
	require.Len(t, got, 27, "nothing lost, nothing duplicated")
	prev := strings.Repeat("0", 64)
	for i, r := range runs {
		rows := got[9*i : 9*i+9]
		checkCRMRows(t, rows, r.sent, r.runSC, "collector-1", int64(9*i), prev)
		prev = rows[8].EntryHash
	}
	assert.Empty(t, runVerifySQL(t, db), "docs/verify.sql finds the downloaded trail intact")
}

func TestS3UnlockedBucketIsRefusedAtStart(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("plain", false)
	c := launchCollector(t, collectorOptions{
		store: s3Store(srv, "plain", t.TempDir(), true), env: srv.Env(),
	})
	err := c.waitExit()
	require.Error(t, err, "the collector must not run against a bucket without Object Lock")
	logs := c.logs.String()
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
	opts := collectorOptions{chainID: "collector-1", maxEntries: 3,
		store: s3Store(srv, "audit-trail", spool, true), env: srv.Env()}
	c := startCollector(t, opts)
	sent, sc := sendCRMRun(t, ctx, c, "exec-before")
	c.stop()

	// The bucket goes down, and the collector restarts meanwhile: it resumes
	// from its local state and keeps accepting.
	srv.Stop()
	c = startCollector(t, opts)
	assert.Contains(t, c.logs.String(), "resuming the chain from local state")
	sent2, sc2 := sendCRMRun(t, ctx, c, "exec-during")
	srv.Restart()
	c.stop()

	dir := t.TempDir()
	download(t, ctx, srv.Client(), "audit-trail", "agents", dir)
	db := trailDB(t, dir)
	got := readRows(t, db, "")
	require.Len(t, got, 18, "both runs, one chain")
	checkCRMRows(t, got[:9], sent, sc, "collector-1", 0, strings.Repeat("0", 64))
	checkCRMRows(t, got[9:], sent2, sc2, "collector-1", 9, got[8].EntryHash)
	assert.Empty(t, runVerifySQL(t, db))
}
