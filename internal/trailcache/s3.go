package trailcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/agentaudit/agentaudit/internal/store"
)

// s3Source is a trail under an S3 prefix, with its local cache.
//
// Cache layout, below Options.CacheDir:
//
//	s3/<bucket>/<prefix>/<key>         a downloaded object
//	s3/<bucket>/<prefix>/<key>.meta    its size, ETag and SHA-256 (JSON)
//	s3-other/<bucket>/<sha256 of prefix NUL key>.parquet[.meta]
//	                                    the same for a key that is not a
//	                                    plain relative path ("a//b", "..")
//
// Every file is written to a temporary file in its directory and renamed
// into place, so that processes sharing the cache see whole files only. A
// downloaded object is used again only when its .meta has the listing's
// size and ETag and the bytes have the SHA-256 it records: if two processes
// race to replace a file, the loser's .meta no longer matches and the
// object is downloaded again. What Files reads of the footers is kept in
// the trail's footer index (see indexMagic).
type s3Source struct {
	store *store.S3
	url   string // s3://bucket/prefix
	// base is <CacheDir>/s3/<bucket>/<prefix>, other
	// <CacheDir>/s3-other/<bucket>.
	base, other string
	prefix      string
	cacheDir    string // Options.CacheDir or its default
}

func openS3(ctx context.Context, target string, opts Options) (*s3Source, error) {
	bucket, prefix, err := store.ParseS3URL(target)
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	so := store.S3Options{Bucket: bucket, Prefix: prefix, Region: opts.Region, Endpoint: opts.Endpoint, HTTPClient: opts.HTTPClient}
	// As auditctl verify does (cmd/auditctl openSource).
	switch opts.PathStyle {
	case "auto", "":
		so.ForcePathStyle = opts.Endpoint != ""
	case "true":
		so.ForcePathStyle = true
	case "false":
	default:
		return nil, fmt.Errorf("trailcache: path style %q: want true, false or auto", opts.PathStyle)
	}
	if so.Region == "" && so.Endpoint != "" && os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
		so.Region = "us-east-1" // S3-compatible servers rarely care; the SDK insists on one
	}
	dir := opts.CacheDir
	if dir == "" {
		if dir, err = DefaultCacheDir(); err != nil {
			return nil, fmt.Errorf("trailcache: no cache directory given and none found: %w", err)
		}
	}
	if !plainKey(bucket) || (prefix != "" && !plainKey(prefix)) {
		return nil, fmt.Errorf("trailcache: cannot cache %s: the bucket and prefix must be a plain relative path", target)
	}
	st, err := store.NewS3(ctx, so)
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	url := "s3://" + bucket
	if prefix != "" {
		url += "/" + prefix
	}
	return &s3Source{
		store:    st,
		url:      url,
		base:     filepath.Join(dir, "s3", bucket, filepath.FromSlash(prefix)),
		cacheDir: dir,
		other:    filepath.Join(dir, "s3-other", bucket),
		prefix:   prefix,
	}, nil
}

func (s *s3Source) remote() bool { return true }

// list lists the .parquet objects, dot-named ones included: a reader of
// the bucket may read them.
func (s *s3Source) list(ctx context.Context) ([]object, error) {
	infos, err := s.store.ListInfo(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("trailcache: %w", err)
	}
	var objs []object
	for _, in := range infos {
		if store.IsBatchKey(in.Key) {
			objs = append(objs, object{key: in.Key, size: in.Size, etag: in.ETag})
		}
	}
	return objs, nil
}

func (s *s3Source) fetcher(ctx context.Context, o object) (func(off, n int64) ([]byte, error), func()) {
	return func(off, n int64) ([]byte, error) {
		return s.store.GetRange(ctx, o.key, off, n, o.etag)
	}, func() {}
}

// path returns where the object under key is cached.
func (s *s3Source) path(key string) string {
	if plainKey(key) {
		return filepath.Join(s.base, filepath.FromSlash(key))
	}
	sum := sha256.Sum256([]byte(s.prefix + "\x00" + key))
	return filepath.Join(s.other, hex.EncodeToString(sum[:])+".parquet")
}

// Sidecar suffixes. Earlier versions kept each object's footer in a
// .footer file beside it: a key must not be taken for one either.
const (
	metaSuffix   = ".meta"
	footerSuffix = ".footer"
)

// plainKey reports whether key can name a file below the cache directory
// as it is: a clean relative path whose segments are not too long for a
// filesystem and cannot be taken for a sidecar.
func plainKey(key string) bool {
	if key == "" || path.Clean(key) != key || strings.ContainsAny(key, "\\\x00") ||
		!filepath.IsLocal(filepath.FromSlash(key)) {
		return false
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > 200 || strings.HasSuffix(seg, metaSuffix) || strings.HasSuffix(seg, footerSuffix) {
			return false
		}
	}
	return true
}

// fileMeta is a .meta file: what the downloaded object beside it is.
type fileMeta struct {
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
	SHA256 string `json:"sha256"`
}

func (s *s3Source) local(ctx context.Context, o object) (string, bool, int64, error) {
	p := s.path(o.key)
	if s.cached(p, o) {
		return p, false, 0, nil
	}
	n, err := s.download(ctx, o, p)
	if err != nil {
		return "", false, n, err
	}
	return p, true, n, nil
}

// download downloads o into p, through a temporary file beside it, and
// writes p's .meta.
func (s *s3Source) download(ctx context.Context, o object, p string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return 0, fmt.Errorf("trailcache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*.tmp")
	if err != nil {
		return 0, fmt.Errorf("trailcache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, of nothing
	h := sha256.New()
	n, err := s.store.Download(ctx, o.key, o.etag, io.MultiWriter(tmp, h))
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("trailcache: downloading %s/%s: %w", s.url, o.key, err)
	}
	if n != o.size {
		return n, fmt.Errorf("trailcache: downloading %s/%s: %d bytes, the listing said %d: %w", s.url, o.key, n, o.size, store.ErrObjectChanged)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return n, fmt.Errorf("trailcache: %w", err)
	}
	b, err := json.Marshal(fileMeta{Size: o.size, ETag: o.etag, SHA256: hex.EncodeToString(h.Sum(nil))})
	if err != nil {
		return n, fmt.Errorf("trailcache: %w", err)
	}
	return n, writeFile(p+metaSuffix, b)
}

// cached reports whether p holds the object o, as its .meta says and its
// SHA-256 confirms.
func (s *s3Source) cached(p string, o object) bool {
	b, err := os.ReadFile(p + metaSuffix)
	if err != nil {
		return false
	}
	var m fileMeta
	if json.Unmarshal(b, &m) != nil || m.Size != o.size || m.ETag != o.etag {
		return false
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() != o.size {
		return false
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	want, err := hex.DecodeString(m.SHA256)
	return err == nil && bytes.Equal(h.Sum(nil), want)
}

// writeFile writes b to p through a temporary file and a rename.
func writeFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("trailcache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*.tmp")
	if err != nil {
		return fmt.Errorf("trailcache: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("trailcache: %w", err)
	}
	return nil
}
