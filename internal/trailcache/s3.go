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
	"unicode/utf8"

	"github.com/parquet-go/parquet-go/bloom"

	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// s3Source is a trail under an S3 prefix, with its local cache.
//
// Cache layout, below Options.CacheDir:
//
//	s3/<bucket>/<prefix>/<key>         a downloaded object
//	s3/<bucket>/<prefix>/<key>.meta    its size, ETag and SHA-256 (JSON)
//	s3/<bucket>/<prefix>/<key>.footer  what Files found in its footer: facts,
//	                                    statistics, bloom filter bits (JSON)
//	s3-other/<bucket>/<sha256 of prefix NUL key>.parquet[.meta|.footer]
//	                                    the same for a key that is not a
//	                                    plain relative path ("a//b", "..")
//
// Every file is written to a temporary file in its directory and renamed
// into place, so that processes sharing the cache see whole files only. A
// downloaded object is used again only when its .meta has the listing's
// size and ETag and the bytes have the SHA-256 it records: if two processes
// race to replace a file, the loser's .meta no longer matches and the
// object is downloaded again.
type s3Source struct {
	store *store.S3
	url   string // s3://bucket/prefix
	// base is <CacheDir>/s3/<bucket>/<prefix>, other
	// <CacheDir>/s3-other/<bucket>.
	base, other string
	prefix      string
}

func openS3(ctx context.Context, target string, opts Options) (*s3Source, error) {
	bucket, prefix, err := verify.ParseS3URL(target)
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
		user, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("trailcache: no cache directory given and none found: %w", err)
		}
		dir = filepath.Join(user, "agentaudit")
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
		store:  st,
		url:    url,
		base:   filepath.Join(dir, "s3", bucket, filepath.FromSlash(prefix)),
		other:  filepath.Join(dir, "s3-other", bucket),
		prefix: prefix,
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
		if isBatchKey(in.Key) {
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

// Sidecar suffixes.
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

// footerVersion is the version of the .footer layout and of what it is
// derived with; an entry of another version is read again.
const footerVersion = 1

// footerEntry is a .footer file: what reading an object's footer found.
type footerEntry struct {
	Version int         `json:"version"`
	Size    int64       `json:"size"`
	ETag    string      `json:"etag"`
	File    footerFacts `json:"file"`
	IDKnown bool        `json:"id_known"`
	Groups  []groupFact `json:"groups,omitempty"`
}

type footerFacts struct {
	ChainID      string `json:"chain_id,omitempty"`
	FirstSeq     int64  `json:"first_seq,omitempty"`
	LastSeq      int64  `json:"last_seq,omitempty"`
	Rows         int64  `json:"rows,omitempty"`
	MinTime      int64  `json:"min_time,omitempty"`
	MaxTime      int64  `json:"max_time,omitempty"`
	HasTimeStats bool   `json:"has_time_stats,omitempty"`
	MinEnd       int64  `json:"min_end,omitempty"`
	MaxEnd       int64  `json:"max_end,omitempty"`
	HasEndStats  bool   `json:"has_end_stats,omitempty"`
	Problem      string `json:"problem,omitempty"`
}

// groupFact is an idGroup; ids are bytes, which JSON strings need not hold.
type groupFact struct {
	HasStats bool   `json:"has_stats,omitempty"`
	Min      []byte `json:"min,omitempty"`
	Max      []byte `json:"max,omitempty"`
	Bloom    []byte `json:"bloom,omitempty"`
}

func (s *s3Source) cachedFooter(o object) *fileState {
	b, err := os.ReadFile(s.path(o.key) + footerSuffix)
	if err != nil {
		return nil
	}
	var e footerEntry
	if json.Unmarshal(b, &e) != nil || e.Version != footerVersion || e.Size != o.size || e.ETag != o.etag {
		return nil
	}
	ff := e.File
	fs := &fileState{File: File{
		Key: o.key, Size: o.size, etag: o.etag,
		ChainID: ff.ChainID, FirstSeq: ff.FirstSeq, LastSeq: ff.LastSeq, Rows: ff.Rows,
		MinTime: ff.MinTime, MaxTime: ff.MaxTime, HasTimeStats: ff.HasTimeStats,
		MinEnd: ff.MinEnd, MaxEnd: ff.MaxEnd, HasEndStats: ff.HasEndStats,
		Problem: ff.Problem,
	}}
	if fs.Problem != "" {
		return fs
	}
	fs.index = &index{idKnown: e.IDKnown}
	for _, g := range e.Groups {
		if len(g.Bloom)%bloom.BlockSize != 0 {
			return nil
		}
		ig := idGroup{hasStats: g.HasStats, min: string(g.Min), max: string(g.Max)}
		if len(g.Bloom) > 0 {
			ig.bloom = bloom.MakeSplitBlockFilter(g.Bloom)
		}
		fs.index.groups = append(fs.index.groups, ig)
	}
	return fs
}

// storeFooter caches what was read of o's footer, unless a string of it
// would not survive JSON (not UTF-8): then it is read again next time.
func (s *s3Source) storeFooter(o object, fs *fileState) error {
	if !utf8.ValidString(fs.ChainID) || !utf8.ValidString(fs.Problem) {
		return nil
	}
	f := &fs.File
	e := footerEntry{Version: footerVersion, Size: o.size, ETag: o.etag, File: footerFacts{
		ChainID: f.ChainID, FirstSeq: f.FirstSeq, LastSeq: f.LastSeq, Rows: f.Rows,
		MinTime: f.MinTime, MaxTime: f.MaxTime, HasTimeStats: f.HasTimeStats,
		MinEnd: f.MinEnd, MaxEnd: f.MaxEnd, HasEndStats: f.HasEndStats,
		Problem: f.Problem,
	}}
	if x := fs.index; x != nil {
		e.IDKnown = x.idKnown
		for _, g := range x.groups {
			e.Groups = append(e.Groups, groupFact{HasStats: g.hasStats, Min: []byte(g.min), Max: []byte(g.max), Bloom: g.bloom.Bytes()})
		}
	}
	return writeJSON(s.path(o.key)+footerSuffix, e)
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
	return n, writeJSON(p+metaSuffix, fileMeta{Size: o.size, ETag: o.etag, SHA256: hex.EncodeToString(h.Sum(nil))})
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

// writeJSON writes v to p through a temporary file and a rename.
func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("trailcache: %w", err)
	}
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
