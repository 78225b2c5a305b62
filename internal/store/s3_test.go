package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/s3test"
)

// lockNow stamps retain-until dates in tests: a fixed instant, in the future
// because servers refuse retention that has already expired.
var lockNow = time.Date(2030, 3, 9, 14, 23, 7, 0, time.UTC)

func newTestS3(t *testing.T, srv *s3test.Server, bucket string, lock *ObjectLock) *S3 {
	t.Helper()
	return newTestS3With(t, srv, S3Options{Bucket: bucket, Prefix: "agents", ObjectLock: lock})
}

func newTestS3With(t *testing.T, srv *s3test.Server, opts S3Options) *S3 {
	t.Helper()
	srv.SetEnv(t)
	opts.Endpoint = srv.Endpoint
	opts.ForcePathStyle = true
	opts.Region = s3test.Region
	if opts.Now == nil {
		opts.Now = func() time.Time { return lockNow }
	}
	s, err := NewS3(context.Background(), opts)
	require.NoError(t, err)
	require.NoError(t, s.Check(context.Background()))
	return s
}

// recorder keeps the headers of every request the SDK sends.
type recorder struct {
	mu       sync.Mutex
	requests []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req.Clone(req.Context()))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) puts() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*http.Request
	for _, req := range r.requests {
		if req.Method == http.MethodPut {
			out = append(out, req)
		}
	}
	return out
}

func TestS3PutCarriesChecksumLockAndNoReplace(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", true)
	rec := &recorder{}
	s := newTestS3With(t, srv, S3Options{
		Bucket: "trail", Prefix: "agents",
		ObjectLock: &ObjectLock{Mode: LockCompliance, RetentionDays: 2557},
		HTTPClient: &http.Client{Transport: rec},
	})
	data := []byte("PAR1 a sealed batch PAR1")
	key := BatchKey("collector-1", 0, lockNow)
	require.NoError(t, s.Put(ctx, key, data))

	puts := rec.puts()
	require.Len(t, puts, 1, "one PutObject per batch")
	h := puts[0].Header
	sum := sha256.Sum256(data)
	assert.Equal(t, base64.StdEncoding.EncodeToString(sum[:]), h.Get("X-Amz-Checksum-Sha256"), "our SHA-256, in a header")
	assert.Equal(t, "SHA256", h.Get("X-Amz-Sdk-Checksum-Algorithm"))
	assert.NotEmpty(t, h.Get("Content-Md5"))
	assert.Equal(t, "*", h.Get("If-None-Match"))
	assert.NotContains(t, h.Get("Content-Encoding"), "aws-chunked", "no streaming trailer checksums: some S3-compatible servers reject them")
	assert.Empty(t, h.Get("X-Amz-Trailer"))
	assert.Equal(t, "COMPLIANCE", h.Get("X-Amz-Object-Lock-Mode"))
	assert.Equal(t, "2037-03-09T14:23:07Z", h.Get("X-Amz-Object-Lock-Retain-Until-Date"), "2557 days (7 years) after the upload")

	// The server agrees: the object is under COMPLIANCE retention.
	c := srv.Client()
	full := "agents/" + key
	ret, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String("trail"), Key: &full})
	require.NoError(t, err)
	assert.Equal(t, types.ObjectLockRetentionModeCompliance, ret.Retention.Mode)
	assert.True(t, lockNow.AddDate(0, 0, 2557).Equal(*ret.Retention.RetainUntilDate), "retain until %v", ret.Retention.RetainUntilDate)

	// Deleting the locked version is refused, and the object stays.
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("trail"), Key: &full})
	require.NoError(t, err)
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("trail"), Key: &full, VersionId: head.VersionId})
	require.Error(t, err, "a locked version cannot be deleted")
	got, err := s.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

func TestS3LegalHold(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", true)
	s := newTestS3(t, srv, "trail", &ObjectLock{Mode: LockGovernance, RetentionDays: 1, LegalHold: true})
	require.NoError(t, s.Put(ctx, "held", []byte("x")))
	hold, err := srv.Client().GetObjectLegalHold(ctx, &s3.GetObjectLegalHoldInput{Bucket: aws.String("trail"), Key: aws.String("agents/held")})
	require.NoError(t, err)
	assert.Equal(t, types.ObjectLockLegalHoldStatusOn, hold.LegalHold.Status)
	ret, err := srv.Client().GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String("trail"), Key: aws.String("agents/held")})
	require.NoError(t, err)
	assert.Equal(t, types.ObjectLockRetentionModeGovernance, ret.Retention.Mode)
}

func TestS3RetryAfterLostResponse(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", true)
	s := newTestS3(t, srv, "trail", &ObjectLock{Mode: LockCompliance, RetentionDays: 1})
	key := BatchKey("collector-1", 0, lockNow)
	data := bytes.Repeat([]byte("batch "), 1000)
	// The first upload succeeded but its response was lost: the retry
	// meets 412 and finds the same checksum.
	require.NoError(t, s.Put(ctx, key, data))
	require.NoError(t, s.Put(ctx, key, data))
	err := s.Put(ctx, key, append([]byte("other "), data...))
	require.ErrorIs(t, err, ErrConflict, "another writer's batch under our key")
	assert.Contains(t, err.Error(), "s3://trail/agents/"+key)
}

func TestS3RefusesUnlockedBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("plain", false)
	srv.SetEnv(t)
	s, err := NewS3(ctx, S3Options{Bucket: "plain", Endpoint: srv.Endpoint, ForcePathStyle: true, Region: s3test.Region,
		ObjectLock: &ObjectLock{Mode: LockCompliance, RetentionDays: 1}})
	require.NoError(t, err)
	err = s.Check(ctx)
	require.ErrorIs(t, err, ErrObjectLockDisabled)
	assert.Contains(t, err.Error(), `bucket "plain"`)
	assert.Contains(t, err.Error(), "Object Lock")

	// Without object_lock the same bucket is acceptable.
	s, err = NewS3(ctx, S3Options{Bucket: "plain", Endpoint: srv.Endpoint, ForcePathStyle: true, Region: s3test.Region})
	require.NoError(t, err)
	require.NoError(t, s.Check(ctx))
}

func TestS3UnreachableBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	s, err := NewS3(ctx, S3Options{Bucket: "missing", Endpoint: srv.Endpoint, ForcePathStyle: true, Region: s3test.Region})
	require.NoError(t, err)
	err = s.Check(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `bucket "missing" is not reachable`)
	assert.NotErrorIs(t, err, ErrUnavailable, "a missing bucket is a refusal, not an outage")

	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	srv.CreateBucket("trail", false)
	s, err = NewS3(ctx, S3Options{Bucket: "trail", Endpoint: srv.Endpoint, ForcePathStyle: true, Region: s3test.Region})
	require.NoError(t, err)
	err = s.Check(ctx)
	require.Error(t, err, "bad credentials are caught at start")
	assert.NotContains(t, err.Error(), "wrong", "secrets never appear in errors")
}

func TestS3ServerDown(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", true)
	s := newTestS3(t, srv, "trail", &ObjectLock{Mode: LockCompliance, RetentionDays: 1})
	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := s.Put(cctx, "k", []byte("x"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrConflict), "an outage is retryable, not a conflict")
	err = s.Check(cctx)
	assert.ErrorIs(t, err, ErrUnavailable, "an outage at start is told apart from a refusal")
	srv.Restart()
	require.NoError(t, s.Put(ctx, "k", []byte("x")))
	r, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "x", string(r))
}

// throttler answers the first n PutObject requests with 503 SlowDown, as S3
// does under load, and passes everything else to the server.
type throttler struct {
	mu  sync.Mutex
	n   int
	hit int
}

func (th *throttler) RoundTrip(req *http.Request) (*http.Response, error) {
	th.mu.Lock()
	throttle := req.Method == http.MethodPut && th.n > 0
	if throttle {
		th.n--
		th.hit++
	}
	th.mu.Unlock()
	if throttle {
		if req.Body != nil {
			_, _ = io.Copy(io.Discard, req.Body)
			req.Body.Close()
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`
		return &http.Response{
			StatusCode: http.StatusServiceUnavailable,
			Status:     "503 Slow Down",
			Header:     http.Header{"Content-Type": []string{"application/xml"}},
			Body:       io.NopCloser(strings.NewReader(body)),
			Request:    req,
		}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

func TestS3ThrottlingIsRetried(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", true)
	th := &throttler{n: 2}
	s := newTestS3With(t, srv, S3Options{Bucket: "trail", HTTPClient: &http.Client{Transport: th},
		ObjectLock: &ObjectLock{Mode: LockCompliance, RetentionDays: 1}})
	require.NoError(t, s.Put(ctx, "k", []byte("batch")), "503 SlowDown is retried with backoff")
	assert.Equal(t, 2, th.hit)
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "batch", string(got))

	// Past the SDK's attempts the error comes back, retryable, for the
	// exporter to try again later.
	th.mu.Lock()
	th.n = 100
	th.mu.Unlock()
	err = s.Put(ctx, "k2", []byte("batch"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrConflict)
}
