package store

import (
	"bytes"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/s3test"
)

// putRaw writes an object the way another S3 client would: no condition,
// any name, replacing what is there (the bucket has no Object Lock).
func putRaw(t *testing.T, srv *s3test.Server, bucket, key string, data []byte) {
	t.Helper()
	_, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
	require.NoError(t, err)
}

func TestS3ListInfo(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", false)
	s := newTestS3(t, srv, "trail", nil)
	putRaw(t, srv, "trail", "agents/dt=2026-03-09/b.parquet", []byte("bbbb"))
	putRaw(t, srv, "trail", "agents/dt=2026-03-09/a.parquet", []byte("a"))
	putRaw(t, srv, "trail", "agents/.hidden.parquet", []byte("hidden!"))
	putRaw(t, srv, "trail", "other/x.parquet", []byte("not under the prefix"))

	objs, err := s.ListInfo(ctx, "")
	require.NoError(t, err)
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
		head, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("trail"), Key: aws.String("agents/" + o.Key)})
		require.NoError(t, err)
		assert.Equal(t, aws.ToInt64(head.ContentLength), o.Size, o.Key)
		assert.Equal(t, aws.ToString(head.ETag), o.ETag, o.Key)
		assert.NotEmpty(t, o.ETag, o.Key)
	}
	assert.Equal(t, []string{".hidden.parquet", "dt=2026-03-09/a.parquet", "dt=2026-03-09/b.parquet"}, keys,
		"sorted, relative to the prefix, dot-named keys included like Batches")
	assert.Equal(t, []int64{7, 1, 4}, []int64{objs[0].Size, objs[1].Size, objs[2].Size})

	objs, err = s.ListInfo(ctx, "dt=2026-03-09/")
	require.NoError(t, err)
	assert.Len(t, objs, 2)
	_, err = s.ListInfo(ctx, "../x")
	require.ErrorIs(t, err, ErrInvalidKey)

	// Replacing an object changes its ETag.
	before := objs[1].ETag
	putRaw(t, srv, "trail", "agents/dt=2026-03-09/b.parquet", []byte("BBBB"))
	objs, err = s.ListInfo(ctx, "dt=2026-03-09/")
	require.NoError(t, err)
	assert.NotEqual(t, before, objs[1].ETag)
	assert.Equal(t, int64(4), objs[1].Size)
}

func TestS3GetRangeAndDownload(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", false)
	s := newTestS3(t, srv, "trail", nil)
	data := []byte("0123456789abcdefghij")
	putRaw(t, srv, "trail", "agents/.x.parquet", data)
	objs, err := s.ListInfo(ctx, "")
	require.NoError(t, err)
	require.Len(t, objs, 1)
	etag := objs[0].ETag

	got, err := s.GetRange(ctx, ".x.parquet", 16, 4, etag)
	require.NoError(t, err, "any listed key, dot-named included")
	assert.Equal(t, "ghij", string(got))
	got, err = s.GetRange(ctx, ".x.parquet", 0, 4, "")
	require.NoError(t, err)
	assert.Equal(t, "0123", string(got))
	_, err = s.GetRange(ctx, ".x.parquet", 18, 4, etag)
	require.Error(t, err, "a range past the end is not returned short")
	_, err = s.GetRange(ctx, ".x.parquet", 0, 0, etag)
	require.Error(t, err)
	_, err = s.GetRange(ctx, "missing.parquet", 0, 4, "")
	require.ErrorIs(t, err, ErrNotFound)

	var buf bytes.Buffer
	n, err := s.Download(ctx, ".x.parquet", etag, &buf)
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	assert.Equal(t, data, buf.Bytes())
	_, err = s.Download(ctx, "missing.parquet", "", &buf)
	require.ErrorIs(t, err, ErrNotFound)

	// Replaced since the listing: the old ETag no longer matches.
	putRaw(t, srv, "trail", "agents/.x.parquet", []byte(strings.ToUpper(string(data))))
	_, err = s.GetRange(ctx, ".x.parquet", 16, 4, etag)
	require.ErrorIs(t, err, ErrObjectChanged)
	assert.Contains(t, err.Error(), "s3://trail/agents/.x.parquet")
	buf.Reset()
	_, err = s.Download(ctx, ".x.parquet", etag, &buf)
	require.ErrorIs(t, err, ErrObjectChanged)
	assert.Zero(t, buf.Len(), "nothing of the new object is copied")
	got, err = s.GetRange(ctx, ".x.parquet", 16, 4, "")
	require.NoError(t, err)
	assert.Equal(t, "GHIJ", string(got))
}
