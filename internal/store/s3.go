package store // import "github.com/agentaudit/agentaudit/internal/store"

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // Content-MD5 is an integrity header S3 understands, not a security measure.
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// ErrObjectLockDisabled: Object Lock is configured for the store but the
// bucket does not have it enabled, so objects could be deleted or replaced.
var ErrObjectLockDisabled = errors.New("store: bucket does not have Object Lock enabled")

// ErrUnavailable: the S3 endpoint did not answer, or answered with a server
// error: an outage, which may pass. Refusals (bad credentials, no such
// bucket, no Object Lock) never wrap it.
var ErrUnavailable = errors.New("store: S3 is unavailable")

// Object Lock retention modes.
const (
	LockCompliance = "compliance"
	LockGovernance = "governance"
)

// ObjectLock is the retention every object gets when it is written.
type ObjectLock struct {
	// Mode is LockCompliance (nobody, the root account included, can
	// shorten or remove it) or LockGovernance.
	Mode string
	// RetentionDays is how long from the upload the object cannot be
	// deleted or overwritten.
	RetentionDays int
	// LegalHold also places a legal hold, which lasts until removed.
	LegalHold bool
}

// S3Options configure an S3 store.
type S3Options struct {
	Bucket string
	// Prefix is prepended to every key, with a '/' between ("" for none).
	Prefix         string
	Region         string
	Endpoint       string // for S3-compatible servers; "" for AWS
	ForcePathStyle bool
	ObjectLock     *ObjectLock // nil: objects get no retention of their own
	StorageClass   string      // "" for the bucket's default
	KMSKeyID       string      // "" for the bucket's default encryption
	RoleARN        string      // assumed with the default credentials when set
	// HTTPClient replaces the SDK's client (tests observe requests with it).
	HTTPClient *http.Client
	// Now stamps retain-until dates; time.Now when nil.
	Now func() time.Time
}

// S3 is a Store in an S3 bucket. Every object is written once with
// If-None-Match: *, an explicit SHA-256 checksum and, when configured, Object
// Lock retention.
type S3 struct {
	client *s3.Client
	opts   S3Options
	prefix string // opts.Prefix with a trailing '/', or ""
}

var _ Store = (*S3)(nil)

// NewS3 creates the client. Credentials come from the AWS SDK's default
// chain (environment, shared config, web identity, instance roles), then
// RoleARN is assumed when set. NewS3 makes no request: call Check.
func NewS3(ctx context.Context, opts S3Options) (*S3, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	loads := []func(*config.LoadOptions) error{
		// The SDK's default CRC32 request checksums, sent as aws-chunked
		// trailers, are rejected by some S3-compatible servers. Compute
		// checksums only when an operation requires one; Put sends its own
		// SHA-256 in a plain header, which AWS accepts for Object Lock uploads.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if opts.Region != "" {
		loads = append(loads, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("store: loading AWS configuration: %w", err)
	}
	if opts.RoleARN != "" {
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), opts.RoleARN))
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.ForcePathStyle
		if opts.HTTPClient != nil {
			o.HTTPClient = opts.HTTPClient
		}
	})
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, opts: opts, prefix: prefix}, nil
}

// Check verifies, before any data is accepted, that the bucket is reachable
// with the credentials and, when Object Lock is configured, that the bucket
// has it enabled (ErrObjectLockDisabled otherwise).
func (s *S3) Check(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.opts.Bucket}); err != nil {
		if st := httpStatus(err); st == 0 || st >= 500 {
			return fmt.Errorf("%w: bucket %q: %w", ErrUnavailable, s.opts.Bucket, err)
		}
		return fmt.Errorf("store: bucket %q is not reachable with these credentials: %w", s.opts.Bucket, err)
	}
	if s.opts.ObjectLock == nil {
		return nil
	}
	out, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &s.opts.Bucket})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ObjectLockConfigurationNotFoundError" {
			return fmt.Errorf("%w: bucket %q (object_lock is configured; create the bucket with Object Lock enabled)", ErrObjectLockDisabled, s.opts.Bucket)
		}
		return fmt.Errorf("store: reading the Object Lock configuration of bucket %q: %w", s.opts.Bucket, err)
	}
	if out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return fmt.Errorf("%w: bucket %q (object_lock is configured; create the bucket with Object Lock enabled)", ErrObjectLockDisabled, s.opts.Bucket)
	}
	return nil
}

// Put uploads data under key in one PutObject that never replaces an
// object. When the key exists (412 Precondition Failed, e.g. a retry after a
// lost response), the stored object's SHA-256 is compared: identical is
// success, different wraps ErrConflict. Other failures, 409 Conditional
// Request Conflict included, are returned for the caller to retry.
func (s *S3) Put(ctx context.Context, key string, data []byte) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	checksum := base64.StdEncoding.EncodeToString(sum[:])
	md5sum := md5.Sum(data) //nolint:gosec // see import
	in := &s3.PutObjectInput{
		Bucket:            &s.opts.Bucket,
		Key:               aws.String(s.prefix + key),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ContentType:       aws.String("application/vnd.apache.parquet"),
		ContentMD5:        aws.String(base64.StdEncoding.EncodeToString(md5sum[:])),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(checksum),
		IfNoneMatch:       aws.String("*"),
	}
	if l := s.opts.ObjectLock; l != nil {
		in.ObjectLockMode = types.ObjectLockModeCompliance
		if l.Mode == LockGovernance {
			in.ObjectLockMode = types.ObjectLockModeGovernance
		}
		in.ObjectLockRetainUntilDate = aws.Time(s.opts.Now().UTC().AddDate(0, 0, l.RetentionDays))
		if l.LegalHold {
			in.ObjectLockLegalHoldStatus = types.ObjectLockLegalHoldStatusOn
		}
	}
	if s.opts.StorageClass != "" {
		in.StorageClass = types.StorageClass(s.opts.StorageClass)
	}
	if s.opts.KMSKeyID != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(s.opts.KMSKeyID)
	}
	// A concurrent conditional write of the same key can make S3 answer
	// 409 ConditionalRequestConflict, or 412 before the winning object is
	// visible: both settle within moments, so try again a few times.
	delay := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.put(ctx, in, key, checksum, data)
		if !errors.Is(err, errInFlight) || attempt == maxInFlightAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// errInFlight marks a conditional write whose outcome depends on another
// write of the same key that is still in progress.
var errInFlight = errors.New("a concurrent write of the same key is in progress")

const maxInFlightAttempts = 8

func (s *S3) put(ctx context.Context, in *s3.PutObjectInput, key, checksum string, data []byte) error {
	in.Body = bytes.NewReader(data)
	_, err := s.client.PutObject(ctx, in)
	if err == nil {
		return nil
	}
	where := "s3://" + s.opts.Bucket + "/" + s.prefix + key
	switch httpStatus(err) {
	case http.StatusConflict:
		return fmt.Errorf("store: uploading %s: %w: %w", where, errInFlight, err)
	case http.StatusPreconditionFailed:
	default:
		return fmt.Errorf("store: uploading %s: %w", where, err)
	}
	same, err := s.holds(ctx, key, checksum, data)
	if httpStatus(err) == http.StatusNotFound || errors.Is(err, ErrNotFound) {
		return fmt.Errorf("store: %s exists but is not readable yet: %w", where, errInFlight)
	}
	if err != nil {
		return fmt.Errorf("store: %s exists; comparing it: %w", where, err)
	}
	if !same {
		return fmt.Errorf("%w: %s", ErrConflict, where)
	}
	return nil
}

// holds reports whether the object under key has the given SHA-256 (base64)
// and, where the server keeps no checksum, the given bytes.
func (s *S3) holds(ctx context.Context, key, checksum string, data []byte) (bool, error) {
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       &s.opts.Bucket,
		Key:          aws.String(s.prefix + key),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return false, err
	}
	if head.ChecksumSHA256 != nil && *head.ChecksumSHA256 != "" {
		return *head.ChecksumSHA256 == checksum, nil
	}
	stored, err := s.Get(ctx, key)
	if err != nil {
		return false, err
	}
	return bytes.Equal(stored, data), nil
}

// Get returns the object under key (see ValidName: also the names Batches
// returns that agentaudit never writes), or an error wrapping ErrNotFound.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidName(key); err != nil {
		return nil, err
	}
	return s.get(ctx, key)
}

func (s *S3) get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return nil, fmt.Errorf("%w: s3://%s/%s", ErrNotFound, s.opts.Bucket, s.prefix+key)
		}
		return nil, fmt.Errorf("store: reading s3://%s/%s: %w", s.opts.Bucket, s.prefix+key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("store: reading s3://%s/%s: %w", s.opts.Bucket, s.prefix+key, err)
	}
	return data, nil
}

// List returns every key under prefix, relative to the store's prefix,
// sorted. Objects whose names are not valid keys are skipped.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	return s.list(ctx, prefix, true)
}

// Batches lists the objects a reader's glob reads as batches (see
// IsBatchKey), also those whose names agentaudit never writes
// (".x.parquet", "a//b.parquet"): a verifier must see them.
func (s *S3) Batches(ctx context.Context) ([]string, error) {
	keys, err := s.list(ctx, "", false)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(keys, func(k string) bool { return !IsBatchKey(k) }), nil
}

// String is the store's URL: s3://bucket or s3://bucket/prefix.
func (s *S3) String() string {
	if s.prefix == "" {
		return "s3://" + s.opts.Bucket
	}
	return "s3://" + s.opts.Bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

// ParseS3URL splits "s3://bucket/prefix" into bucket and prefix, the
// prefix without a leading or trailing '/'.
func ParseS3URL(u string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", fmt.Errorf("store: %q is not an s3:// URL", u)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("store: %q names no bucket", u)
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

func (s *S3) list(ctx context.Context, prefix string, validOnly bool) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.opts.Bucket,
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: listing s3://%s/%s: %w", s.opts.Bucket, s.prefix+prefix, err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if !validOnly || ValidKey(k) == nil {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// httpStatus returns the HTTP status of a failed S3 call, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// ErrObjectChanged: the object under a key is no longer the one a listing
// saw (its ETag differs): it was replaced or deleted since. Check with
// errors.Is.
var ErrObjectChanged = errors.New("store: the object changed since it was listed")

// ObjectInfo is what a listing says of one object.
type ObjectInfo struct {
	Key  string // relative to the store's prefix
	Size int64
	// ETag is the entity tag as S3 sends it, quotes included: it changes
	// when the object is replaced.
	ETag string
}

// ListInfo lists every object under prefix, also those whose names are not
// valid keys (as Batches does), with its size and ETag, sorted by key.
func (s *S3) ListInfo(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	var objs []ObjectInfo
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.opts.Bucket,
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: listing s3://%s/%s: %w", s.opts.Bucket, s.prefix+prefix, err)
		}
		for _, o := range page.Contents {
			objs = append(objs, ObjectInfo{
				Key:  strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
				Size: aws.ToInt64(o.Size),
				ETag: aws.ToString(o.ETag),
			})
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

// GetRange returns n bytes of the object under key (any key ListInfo
// returns) from offset off. When etag is not "", the object must still have
// it (If-Match), or the error wraps ErrObjectChanged. A missing object wraps
// ErrNotFound; a range the object does not hold in full is an error.
func (s *S3) GetRange(ctx context.Context, key string, off, n int64, etag string) ([]byte, error) {
	if off < 0 || n <= 0 {
		return nil, fmt.Errorf("store: reading s3://%s/%s: invalid range of %d bytes at %d", s.opts.Bucket, s.prefix+key, n, off)
	}
	body, err := s.open(ctx, key, etag, fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	if err != nil {
		return nil, err
	}
	defer body.Close()
	// One byte more than asked: a server that ignores Range sends the
	// whole object, which must not pass for the range.
	data, err := io.ReadAll(io.LimitReader(body, n+1))
	if err != nil {
		return nil, fmt.Errorf("store: reading s3://%s/%s: %w", s.opts.Bucket, s.prefix+key, err)
	}
	if int64(len(data)) != n {
		return nil, fmt.Errorf("store: reading s3://%s/%s: %d bytes at %d: got %d", s.opts.Bucket, s.prefix+key, n, off, len(data))
	}
	return data, nil
}

// Download copies the object under key (any key ListInfo returns) into w
// and returns the number of bytes copied. When etag is not "", the object
// must still have it (If-Match), or the error wraps ErrObjectChanged. A
// missing object wraps ErrNotFound.
func (s *S3) Download(ctx context.Context, key, etag string, w io.Writer) (int64, error) {
	body, err := s.open(ctx, key, etag, "")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	n, err := io.Copy(w, body)
	if err != nil {
		return n, fmt.Errorf("store: reading s3://%s/%s: %w", s.opts.Bucket, s.prefix+key, err)
	}
	return n, nil
}

// open starts a GetObject, of the range rng unless "", on the condition
// that the object has etag unless "".
func (s *S3) open(ctx context.Context, key, etag, rng string) (io.ReadCloser, error) {
	in := &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.prefix + key)}
	if etag != "" {
		in.IfMatch = aws.String(etag)
	}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		where := "s3://" + s.opts.Bucket + "/" + s.prefix + key
		switch httpStatus(err) {
		case http.StatusNotFound:
			return nil, fmt.Errorf("%w: %s", ErrNotFound, where)
		case http.StatusPreconditionFailed:
			return nil, fmt.Errorf("%w: %s no longer has ETag %s", ErrObjectChanged, where, etag)
		}
		return nil, fmt.Errorf("store: reading %s: %w", where, err)
	}
	return out.Body, nil
}
