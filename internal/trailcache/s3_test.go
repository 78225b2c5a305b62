package trailcache

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/agentaudit/agentaudit/internal/store"
)

// requests counts what the AWS SDK sends, by kind.
type requests struct {
	mu                  sync.Mutex
	lists, ranges, gets int
}

func (r *requests) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	switch {
	case req.Method == http.MethodGet && req.URL.Query().Has("list-type"):
		r.lists++
	case req.Method == http.MethodGet && req.Header.Get("Range") != "":
		r.ranges++
	case req.Method == http.MethodGet:
		r.gets++
	}
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *requests) take() (lists, ranges, gets int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lists, ranges, gets = r.lists, r.ranges, r.gets
	r.lists, r.ranges, r.gets = 0, 0, 0
	return lists, ranges, gets
}

// progressLog records Progress calls.
type progressLog struct {
	inside  atomic.Bool
	overlap atomic.Bool // two calls at once
	mu      sync.Mutex
	calls   map[string][][2]int
}

func (p *progressLog) record(stage string, done, total int) {
	if p.inside.Swap(true) {
		p.overlap.Store(true)
	}
	defer p.inside.Store(false)
	time.Sleep(100 * time.Microsecond) // to catch overlapping calls
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == nil {
		p.calls = map[string][][2]int{}
	}
	p.calls[stage] = append(p.calls[stage], [2]int{done, total})
}

func (p *progressLog) last(stage string) [2]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls[stage]
	if len(c) == 0 {
		return [2]int{-1, -1}
	}
	return c[len(c)-1]
}

type s3Fixture struct {
	srv   *s3test.Server
	tr    *testTrail
	cache string
	reqs  *requests
	prog  *progressLog
}

// s3Trail uploads the test trail under s3://trail/agents, with objects
// that are not batch files beside it, in a bucket without Object Lock.
func s3Trail(t *testing.T) *s3Fixture {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket("trail", false)
	srv.SetEnv(t)
	fx := &s3Fixture{srv: srv, tr: buildTrail(t), cache: t.TempDir(), reqs: &requests{}, prog: &progressLog{}}
	for k, d := range fx.tr.objects() {
		fx.put(t, k, d)
	}
	fx.put(t, "checkpoints/chain-a/00000000000000000800.json", []byte("{}"))
	fx.put(t, "README", []byte("not a batch file"))
	return fx
}

func (fx *s3Fixture) put(t *testing.T, key string, data []byte) {
	t.Helper()
	_, err := fx.srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("trail"), Key: aws.String("agents/" + key), Body: bytes.NewReader(data)})
	require.NoError(t, err)
}

func (fx *s3Fixture) open(t *testing.T) *Trail {
	t.Helper()
	trail, err := Open(ctx, "s3://trail/agents", Options{
		CacheDir: fx.cache, Endpoint: fx.srv.Endpoint, Region: s3test.Region,
		Fetchers:   4,
		Progress:   fx.prog.record,
		HTTPClient: &http.Client{Transport: fx.reqs},
	})
	require.NoError(t, err)
	return trail
}

func fetched(trail *Trail) [2]int {
	footers, files, _ := trail.Fetched()
	return [2]int{footers, files}
}

func TestS3FetchesOnlyWhatItNeedsAndCaches(t *testing.T) {
	fx := s3Trail(t)
	tr := fx.tr
	objs := tr.objects()
	total := int64(0)
	for _, d := range objs {
		total += int64(len(d))
	}

	// The same files and facts as from a directory.
	dir := t.TempDir()
	writeDir(t, dir, objs)
	local, err := Open(ctx, dir, Options{})
	require.NoError(t, err)
	wantFiles, err := local.Files(ctx)
	require.NoError(t, err)

	trail := fx.open(t)
	assert.Equal(t, "s3://trail/agents", trail.String())
	files, err := trail.Files(ctx)
	require.NoError(t, err)
	require.Len(t, files, len(wantFiles))
	for i := range files {
		assert.NotEmpty(t, files[i].etag, files[i].Key)
		got := files[i]
		got.etag = ""
		assert.Equal(t, wantFiles[i], got)
	}
	footers, downloads, n := trail.Fetched()
	assert.Equal(t, len(objs), footers, "every footer read once")
	assert.Zero(t, downloads)
	assert.Less(t, n, total/2, "footers only: the tails of the files")
	bound := int64(0)
	for _, d := range objs {
		bound += min(int64(len(d)), tailBytes)
	}
	assert.LessOrEqual(t, n, bound)
	lists, ranges, gets := fx.reqs.take()
	assert.Equal(t, 1, lists)
	assert.Zero(t, gets, "no whole object")
	assert.Equal(t, len(objs), ranges, "one request per footer: the tail")
	assert.Equal(t, [2]int{len(objs), len(objs)}, fx.prog.last(StageFooters))

	sel, err := trail.Select(ctx, Filter{ExecutionIDs: []string{"a-18"}})
	require.NoError(t, err)
	assert.Equal(t, tr.want(tr.a[0], tr.a[1]), keys(sel))
	_, ranges, _ = fx.reqs.take()
	assert.Zero(t, ranges, "bloom filters are held since Files")

	paths, err := trail.Local(ctx, sel)
	require.NoError(t, err)
	require.Len(t, paths, len(sel))
	for i, f := range sel {
		assert.Equal(t, filepath.Join(fx.cache, "s3", "trail", "agents", filepath.FromSlash(f.Key)), paths[i])
		got, err := os.ReadFile(paths[i])
		require.NoError(t, err)
		assert.True(t, bytes.Equal(objs[f.Key], got), f.Key)
	}
	assert.Equal(t, [2]int{len(objs), len(sel)}, fetched(trail), "only the selected files are downloaded")
	_, _, gets = fx.reqs.take()
	assert.Equal(t, len(sel), gets)
	assert.Equal(t, [2]int{len(sel), len(sel)}, fx.prog.last(StageFiles))
	assert.False(t, fx.prog.overlap.Load(), "Progress calls are serial")
	assert.Equal(t, [2]int{0, len(objs)}, fx.prog.calls[StageFooters][0])
	assert.Len(t, fx.prog.calls[StageFooters], len(objs)+1)

	// A second process: only the LIST, and bloom filters from the footer
	// index, one file.
	index := indexPath(fx.cache, s3IndexID(fx.srv.Endpoint, "s3://trail/agents"))
	require.FileExists(t, index)
	again := fx.open(t)
	files2, err := again.Files(ctx)
	require.NoError(t, err)
	assert.Equal(t, files, files2)
	for _, id := range []string{"a-18", "a-05", "shared-1"} {
		s1, err := trail.Select(ctx, Filter{ExecutionIDs: []string{id}})
		require.NoError(t, err)
		s2, err := again.Select(ctx, Filter{ExecutionIDs: []string{id}})
		require.NoError(t, err)
		assert.Equal(t, keys(s1), keys(s2), id)
	}
	paths2, err := again.Local(ctx, sel)
	require.NoError(t, err)
	assert.Equal(t, paths, paths2)
	// A File built by hand names the object of the last listing.
	byHand, err := again.Local(ctx, []File{{Key: sel[len(sel)-1].Key, Size: sel[len(sel)-1].Size}})
	require.NoError(t, err)
	assert.Equal(t, paths[len(paths)-1], byHand[0])
	_, err = again.Local(ctx, []File{{Key: "dt=2026-03-09/none.parquet", Size: 1}})
	require.ErrorContains(t, err, "not a file of the last listing")
	footers, downloads, n = again.Fetched()
	assert.Equal(t, [3]int64{0, 0, 0}, [3]int64{int64(footers), int64(downloads), n}, "everything from the cache")
	lists, ranges, gets = fx.reqs.take()
	assert.Equal(t, [3]int{1, 0, 0}, [3]int{lists, ranges, gets}, "one LIST and nothing else")
}

func TestS3ReplacedObject(t *testing.T) {
	fx := s3Trail(t)
	tr := fx.tr
	trail := fx.open(t)
	_, err := trail.Files(ctx)
	require.NoError(t, err)
	sel, err := trail.Select(ctx, Filter{ExecutionIDs: []string{"b-12"}})
	require.NoError(t, err)
	require.Equal(t, tr.want(tr.b[1]), keys(sel))
	_, err = trail.Local(ctx, sel)
	require.NoError(t, err)

	// Someone replaces chain-b's second file (the bucket has no Object
	// Lock) with other rows under the same key.
	cb := chain.New("chain-b", chain.Genesis())
	appendBatch(t, cb, rowsPerFile, day, ids("b-", rowsPerFile, 0))
	forged := appendBatch(t, cb, rowsPerFile, day.Add(31*time.Minute), ids("z-", rowsPerFile, 1, 2))
	require.Equal(t, tr.b[1].key, forged.key)
	fx.put(t, forged.key, forged.data)

	// A File from before the replacement names the old object: the cache
	// that holds it serves it; a download fails.
	stale, err := fx.open(t).Local(ctx, sel)
	require.NoError(t, err)
	got, err := os.ReadFile(stale[len(stale)-1])
	require.NoError(t, err)
	assert.True(t, bytes.Equal(tr.b[1].data, got))
	other, err := Open(ctx, "s3://trail/agents", Options{CacheDir: t.TempDir(), Endpoint: fx.srv.Endpoint})
	require.NoError(t, err)
	_, err = other.Local(ctx, sel)
	require.ErrorIs(t, err, store.ErrObjectChanged)

	again := fx.open(t)
	fx.reqs.take()
	_, err = again.Files(ctx)
	require.NoError(t, err)
	assert.Equal(t, [2]int{1, 0}, fetched(again), "the replaced file's footer only")
	lists, ranges, gets := fx.reqs.take()
	assert.Equal(t, [3]int{1, 1, 0}, [3]int{lists, ranges, gets}, "a LIST and one range request")
	sel, err = again.Select(ctx, Filter{ExecutionIDs: []string{"b-12"}})
	require.NoError(t, err)
	assert.Equal(t, tr.want(), keys(sel), "the new rows have no b-12")
	sel, err = again.Select(ctx, Filter{ExecutionIDs: []string{"z-02"}})
	require.NoError(t, err)
	require.Equal(t, append(tr.problemKeys(), forged.key), keys(sel))
	paths, err := again.Local(ctx, sel)
	require.NoError(t, err)
	assert.Equal(t, [2]int{1, 1}, fetched(again), "the replaced file downloaded again, the problem files from the cache")
	got, err = os.ReadFile(paths[len(paths)-1])
	require.NoError(t, err)
	assert.True(t, bytes.Equal(forged.data, got))
}

// TestS3CacheDamage: a cached file whose bytes are not what its .meta
// records, as after a race between two processes, is downloaded again.
func TestS3CacheDamage(t *testing.T) {
	fx := s3Trail(t)
	tr := fx.tr
	trail := fx.open(t)
	sel, err := trail.Select(ctx, Filter{ExecutionIDs: []string{"a-04"}})
	require.NoError(t, err)
	paths, err := trail.Local(ctx, sel)
	require.NoError(t, err)
	p := paths[len(paths)-1]
	damaged := bytes.Clone(tr.a[0].data)
	damaged[100] ^= 1
	require.NoError(t, os.WriteFile(p, damaged, 0o644))
	// A footer index that does not decode: every footer is read again.
	index := indexPath(fx.cache, s3IndexID(fx.srv.Endpoint, "s3://trail/agents"))
	b, err := os.ReadFile(index)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(index, b[:len(b)/2], 0o644))

	again := fx.open(t)
	sel2, err := again.Select(ctx, Filter{ExecutionIDs: []string{"a-04"}})
	require.NoError(t, err)
	assert.Equal(t, sel, sel2)
	_, err = again.Local(ctx, sel2)
	require.NoError(t, err)
	assert.Equal(t, [2]int{len(tr.objects()), 1}, fetched(again))
	b2, err := os.ReadFile(index)
	require.NoError(t, err)
	assert.Equal(t, b, b2, "the index written again")
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(tr.a[0].data, got))
}

// TestS3SharedCache: processes sharing the cache may download the same
// files at once.
func TestS3SharedCache(t *testing.T) {
	fx := s3Trail(t)
	var trails []*Trail
	var sels [][]File
	for range 4 {
		trail := fx.open(t)
		sel, err := trail.Select(ctx, Filter{})
		require.NoError(t, err)
		trails, sels = append(trails, trail), append(sels, sel)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(trails))
	for i, trail := range trails {
		wg.Go(func() { _, errs[i] = trail.Local(ctx, sels[i]) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	objs := fx.tr.objects()
	again := fx.open(t)
	paths, err := again.Local(ctx, sels[0])
	require.NoError(t, err)
	for i, f := range sels[0] {
		got, err := os.ReadFile(paths[i])
		require.NoError(t, err)
		assert.True(t, bytes.Equal(objs[f.Key], got), f.Key)
	}
	assert.Equal(t, [2]int{0, 0}, fetched(again))
	// No temporary file is left behind.
	err = filepath.WalkDir(fx.cache, func(p string, _ os.DirEntry, err error) error {
		assert.False(t, strings.HasSuffix(p, ".tmp"), p)
		return err
	})
	require.NoError(t, err)
}

// TestS3OddKeys: keys that are no plain path are cached under a hash.
// (Versity Gateway stores "a//b" and "../x" as "a/b" and "x";
// TestCachePath covers them.)
func TestS3OddKeys(t *testing.T) {
	fx := s3Trail(t)
	data := fx.tr.a[0].data
	oddKeys := []string{`b\c.parquet`, "x.parquet.meta/y.parquet"}
	for _, k := range oddKeys {
		fx.put(t, k, data)
	}
	trail := fx.open(t)
	files, err := trail.Files(ctx)
	require.NoError(t, err)
	var odd []File
	for _, f := range files {
		if slices.Contains(oddKeys, f.Key) {
			odd = append(odd, f)
			assert.Empty(t, f.Problem)
			assert.Equal(t, "chain-a", f.ChainID)
		}
	}
	require.Len(t, odd, 2)
	paths, err := trail.Local(ctx, odd)
	require.NoError(t, err)
	for _, p := range paths {
		assert.Equal(t, filepath.Join(fx.cache, "s3-other", "trail"), filepath.Dir(p))
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(data, got))
	}
	assert.NotEqual(t, paths[0], paths[1])
}
