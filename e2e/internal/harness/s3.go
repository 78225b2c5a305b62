package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// S3Store is the exporter's store configuration for bucket on srv.
func S3Store(srv *s3test.Server, bucket, spool string, locked bool) string {
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

// Download copies every object under prefix/ to dir, keeping the layout
// below the prefix, as an auditor would before reading the trail.
func Download(t *testing.T, ctx context.Context, c *s3.Client, bucket, prefix, dir string) []string {
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
