package trailcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Progress stages.
const (
	StageFooters = "footers" // reading the footers of the trail's files
	StageFiles   = "files"   // bringing selected files local
)

// DefaultFetchers is how many downloads or footer reads run at a time when
// Options.Fetchers is 0: they wait on the network, not the CPU.
const DefaultFetchers = 16

// Options configure Open. The zero value reads a directory, or S3 with the
// AWS SDK's default configuration and the default cache directory.
type Options struct {
	// CacheDir holds the files downloaded from S3, under
	// <CacheDir>/s3/<bucket>/<prefix>/<key>, and each trail's footer index
	// (what Files read of its footers), under <CacheDir>/footers. For S3
	// its default is DefaultCacheDir; a directory trail keeps no footer
	// index unless it is set. A footer index that cannot be read or
	// written is read again or not kept, never an error.
	CacheDir string
	// Endpoint and Region of S3 (s3:// targets only). With an Endpoint and
	// no Region anywhere, the region is us-east-1.
	Endpoint, Region string
	// PathStyle is "auto" (path-style addressing with an Endpoint), "true"
	// or "false"; "" is "auto".
	PathStyle string
	// Fetchers is how many downloads or footer reads run at a time
	// (DefaultFetchers when 0).
	Fetchers int
	// Progress, when set, is told how far a long step is: stage is
	// StageFooters or StageFiles. Calls are serial.
	Progress func(stage string, done, total int)
	// HTTPClient replaces the AWS SDK's (tests observe requests with it).
	HTTPClient *http.Client
}

// File is one batch file of a trail and what its footer says.
type File struct {
	// Key is the file's path below the target, slash-separated, e.g.
	// "dt=2026-03-09/chain-a-00000000000000000000.parquet".
	Key  string
	Size int64
	// ChainID, FirstSeq and LastSeq are the footer's agentaudit facts;
	// Rows the Parquet row count.
	ChainID           string
	FirstSeq, LastSeq int64
	Rows              int64
	// MinTime and MaxTime bound time_unix_nano over the file's rows, from
	// the row group statistics, when HasTimeStats.
	MinTime, MaxTime int64
	HasTimeStats     bool
	// MinEnd and MaxEnd bound end_time_unix_nano (format v2) over the rows
	// that have one, when HasEndStats.
	MinEnd, MaxEnd int64
	HasEndStats    bool
	// Problem says why the footer could not be read (not Parquet, not an
	// audit batch file, ...); then only Key and Size are set. Select keeps
	// such files so that the reader of the rows reports them.
	Problem string

	etag string // S3: the ETag the listing gave; Local downloads that object
}

// Trail is a trail's files, read from a directory or S3. Its methods are
// safe for concurrent use.
type Trail struct {
	target string
	opts   Options
	src    source

	// indexPath is where the footer index is kept ("": none) and
	// indexID what it names the trail by.
	indexPath, indexID string

	mu    sync.Mutex
	files []*fileState // of the last Files, sorted

	progressMu sync.Mutex // serializes Options.Progress

	footers, downloads, bytes atomic.Int64
	parsed                    atomic.Int64 // footers read, from anywhere
}

// fileState is a File with the index Select uses.
type fileState struct {
	File
	// mtime is a directory file's modification time, as listed.
	mtime int64
	index *index // nil for a Problem
}

// DefaultCacheDir returns os.UserCacheDir()/agentaudit, the cache
// directory of S3 trails when Options.CacheDir is "".
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "agentaudit"), nil
}

// Open returns the trail at target, a directory or s3://bucket/prefix. It
// checks a directory exists; for S3 it makes no request.
func Open(ctx context.Context, target string, opts Options) (*Trail, error) {
	if opts.Fetchers <= 0 {
		opts.Fetchers = DefaultFetchers
	}
	t := &Trail{target: target, opts: opts}
	if !strings.HasPrefix(target, "s3://") {
		if opts.Endpoint != "" || opts.Region != "" {
			return nil, fmt.Errorf("trailcache: an endpoint and a region are for s3:// targets, not %s", target)
		}
		st, err := os.Stat(target)
		if err != nil {
			return nil, fmt.Errorf("trailcache: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("trailcache: %s is not a directory", target)
		}
		t.src = dirSource(target)
		if opts.CacheDir != "" {
			abs, err := filepath.Abs(target)
			if err != nil {
				return nil, fmt.Errorf("trailcache: %w", err)
			}
			t.indexID = dirIndexID(abs)
			t.indexPath = indexPath(opts.CacheDir, t.indexID)
		}
		return t, nil
	}
	src, err := openS3(ctx, target, opts)
	if err != nil {
		return nil, err
	}
	t.target, t.src = src.url, src
	t.indexID = s3IndexID(opts.Endpoint, src.url)
	t.indexPath = indexPath(src.cacheDir, t.indexID)
	return t, nil
}

// String names the trail: its directory or s3://bucket/prefix.
func (t *Trail) String() string { return t.target }

// Fetched returns what the Trail has downloaded since Open: the number of
// files whose footer it fetched (not found in the cache), the number of
// files it downloaded whole, and the bytes of both. A directory downloads
// nothing.
func (t *Trail) Fetched() (footers, files int, bytes int64) {
	return int(t.footers.Load()), int(t.downloads.Load()), t.bytes.Load()
}

// Files lists the trail and reads the footer of every batch file (every
// .parquet regular file or object below the target), sorted by chain, then
// first seq, then key; files with a Problem, which have no chain, come
// first. It reads only each file's tail (for S3, a range request), and
// not even that for a file that the last Files, or the trail's footer
// index in Options.CacheDir, read at the same size and ETag (S3) or
// modification time (directory). It writes the footer index again when it
// read a footer.
func (t *Trail) Files(ctx context.Context) ([]File, error) {
	objs, err := t.src.list(ctx)
	if err != nil {
		return nil, err
	}
	// Files are written once: what the last listing read of an object of
	// the same size and ETag (or modification time) holds.
	t.mu.Lock()
	last := t.files
	t.mu.Unlock()
	var known map[string]*fileState
	if last == nil && t.indexPath != "" {
		known = loadIndex(t.indexPath, t.indexID)
	} else {
		known = make(map[string]*fileState, len(last))
		for _, fs := range last {
			known[fs.Key] = fs
		}
	}
	states := make([]*fileState, len(objs))
	var read atomic.Int64
	err = t.forEach(ctx, StageFooters, len(objs), func(ctx context.Context, i int) (err error) {
		o := objs[i]
		if fs := known[o.key]; fs != nil && fs.Size == o.size && fs.etag == o.etag && fs.mtime == o.mtime {
			states[i] = fs
			return nil
		}
		read.Add(1)
		states[i], err = t.readFooter(ctx, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(states, func(a, b *fileState) int {
		return cmp.Or(cmp.Compare(a.ChainID, b.ChainID), cmp.Compare(a.FirstSeq, b.FirstSeq), cmp.Compare(a.Key, b.Key))
	})
	if read.Load() > 0 && t.indexPath != "" {
		// Not kept (a read-only cache, a full disk): read again next time.
		_ = storeIndex(t.indexPath, t.indexID, states)
	}
	t.mu.Lock()
	t.files = states
	t.mu.Unlock()
	out := make([]File, len(states))
	for i, s := range states {
		out[i] = s.File
	}
	return out, nil
}

// readFooter reads one object's facts and index.
func (t *Trail) readFooter(ctx context.Context, o object) (*fileState, error) {
	fs := &fileState{File: File{Key: o.key, Size: o.size, etag: o.etag}, mtime: o.mtime}
	fetch, done := t.src.fetcher(ctx, o)
	defer done()
	r := newSparseReader(o.size, fetch)
	// Most files' footer, page index and bloom filters lie in their last
	// tailBytes: one request instead of one per structure. The head is
	// not read: selecting is not verifying, which reads the file whole.
	if err := r.prefetch([]extent{{o.size - tailBytes, o.size}}, 0); err != nil {
		return nil, t.fetchFailed(o, err)
	}
	x, err := analyze(r, &fs.File)
	if err != nil {
		return nil, t.fetchFailed(o, err)
	}
	fs.index = x
	t.parsed.Add(1)
	if t.src.remote() {
		t.footers.Add(1)
		t.bytes.Add(r.bytesFetched())
	}
	return fs, nil
}

func (t *Trail) fetchFailed(o object, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("trailcache: reading the footer of %s/%s: %w", t.target, o.key, err)
}

// tailBytes is how much of a file's end the first read of its footer
// fetches. A batch file of 10,000 entries keeps its bloom filter, page
// index and footer in its last 7 KB, one of 100,000 entries in 25 KB.
const tailBytes = 32 << 10

// Local returns a local path for each file, in the same order: for a
// directory, the file's own path; for S3, a copy in the cache, downloaded
// unless the cache holds the object of the File's ETag already. An object
// replaced since Files fails with an error wrapping store.ErrObjectChanged:
// call Files again.
func (t *Trail) Local(ctx context.Context, files []File) ([]string, error) {
	objs := make([]object, len(files))
	for i, f := range files {
		objs[i] = object{key: f.Key, size: f.Size, etag: f.etag}
		if f.etag == "" && t.src.remote() {
			// A File not from Files: the object of the last listing.
			fs := t.listed(f.Key)
			if fs == nil || fs.Size != f.Size {
				return nil, fmt.Errorf("trailcache: %s/%s is not a file of the last listing (call Files)", t.target, f.Key)
			}
			objs[i].etag = fs.etag
		}
	}
	paths := make([]string, len(files))
	err := t.forEach(ctx, StageFiles, len(files), func(ctx context.Context, i int) error {
		p, downloaded, n, err := t.src.local(ctx, objs[i])
		t.bytes.Add(n)
		if downloaded {
			t.downloads.Add(1)
		}
		paths[i] = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return paths, nil
}

// listed returns the file of the last Files under key, or nil.
func (t *Trail) listed(key string) *fileState {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, fs := range t.files {
		if fs.Key == key {
			return fs
		}
	}
	return nil
}

// forEach calls fn for 0..n-1 on up to Options.Fetchers goroutines and
// returns the first error, after which no new call starts. It tells
// Options.Progress how many calls of stage are done, one call at a time.
func (t *Trail) forEach(ctx context.Context, stage string, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	done := 0
	report := func() {
		if t.opts.Progress == nil {
			return
		}
		t.progressMu.Lock() // serial across the Trail's calls, too
		defer t.progressMu.Unlock()
		t.opts.Progress(stage, done, n)
	}
	report()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(t.opts.Fetchers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				done++
				report()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// object is a listed file.
type object struct {
	key  string
	size int64
	etag string // "" for a directory
	// mtime is a directory file's modification time: a file rewritten in
	// place gets its footer read again.
	mtime int64
}

// source is where a trail's files are.
type source interface {
	// remote is true when reading costs a download worth caching.
	remote() bool
	// list returns the batch files, sorted by key.
	list(ctx context.Context) ([]object, error)
	// fetcher returns a function that reads n bytes at off of o, until
	// done is called.
	fetcher(ctx context.Context, o object) (fetch func(off, n int64) ([]byte, error), done func())
	// local returns a local path holding o, whether it downloaded o, and
	// the bytes it downloaded.
	local(ctx context.Context, o object) (path string, downloaded bool, n int64, err error)
}
