package trailcache

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

var ctx = context.Background()

func ns(t time.Time) *int64 { v := t.UnixNano(); return &v }

// dirTrail writes the test trail into a directory, with things beside it
// that are not part of it, and opens it.
func dirTrail(t *testing.T) (*testTrail, string, *Trail) {
	t.Helper()
	tr := buildTrail(t)
	dir := t.TempDir()
	writeDir(t, dir, tr.objects())
	d := filepath.Join(dir, "dt=2026-03-09")
	// Not part of a trail: a symbolic link to a batch file, one to a
	// directory of batch files, a named pipe, a directory named *.parquet,
	// and files that are not .parquet.
	require.NoError(t, os.Symlink(filepath.Join(d, filepath.Base(tr.a[0].key)), filepath.Join(d, "link-00000000000000000000.parquet")))
	elsewhere := t.TempDir()
	writeDir(t, elsewhere, map[string][]byte{"x.parquet": tr.a[0].data})
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(dir, "linked")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(d, "fifo-00000000000000000000.parquet"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(d, "dir.parquet"), 0o755))
	writeDir(t, dir, map[string][]byte{"checkpoints/chain-a/00000000000000000800.json": []byte("{}"), "README": []byte("x")})

	trail, err := Open(ctx, dir, Options{})
	require.NoError(t, err)
	assert.Equal(t, dir, trail.String())
	return tr, dir, trail
}

func TestFilesOfADirectory(t *testing.T) {
	tr, dir, trail := dirTrail(t)
	files, err := trail.Files(ctx)
	require.NoError(t, err)

	var want []File
	for _, k := range tr.problemKeys() {
		want = append(want, File{Key: k, Size: int64(len(tr.problems[k]))})
	}
	for _, b := range tr.batches() {
		want = append(want, b.file())
	}
	require.Len(t, files, len(want), "symlinks, the pipe and the directory named *.parquet are left out: %v", keys(files))
	for i := range want {
		got := files[i]
		if want[i].Problem == "" && got.Problem != "" {
			assert.Equal(t, want[i].Key, got.Key)
			assert.NotEmpty(t, got.Problem)
			got.Problem = ""
		}
		assert.Equal(t, want[i], got)
	}
	b1 := files[len(files)-1]
	require.Equal(t, tr.b[1].key, b1.Key)
	assert.True(t, b1.HasEndStats, "end_time_unix_nano of the rows that have one")
	assert.Equal(t, day.Add(31*time.Minute+19*time.Millisecond+time.Second).UnixNano(), b1.MinEnd)
	assert.Equal(t, day.Add(31*time.Minute+10*time.Millisecond+10*time.Second).UnixNano(), b1.MaxEnd)
	for _, f := range files[:len(files)-1] {
		assert.False(t, f.HasEndStats, "%s: every end time NULL", f.Key)
	}
	problems := map[string]string{}
	for _, f := range files[:len(tr.problems)] {
		problems[f.Key] = f.Problem
	}
	assert.Contains(t, problems["dt=2026-03-09/plain-00000000000000000000.parquet"], "not an agentaudit batch file")
	assert.Contains(t, problems["dt=2026-03-09/junk-00000000000000000000.parquet"], "not a well-formed parquet file")
	assert.Contains(t, problems[".cut.parquet"], "not a well-formed parquet file")

	// A directory's files are read where they are.
	paths, err := trail.Local(ctx, files)
	require.NoError(t, err)
	for i, f := range files {
		assert.Equal(t, filepath.Join(dir, filepath.FromSlash(f.Key)), paths[i])
	}
	footers, downloads, n := trail.Fetched()
	assert.Equal(t, [3]int64{0, 0, 0}, [3]int64{int64(footers), int64(downloads), n}, "a directory downloads nothing")
}

func TestSelect(t *testing.T) {
	tr, _, trail := dirTrail(t)
	a0, a1, a2, b0, b1 := tr.a[0], tr.a[1], tr.a[2], tr.b[0], tr.b[1]
	for _, tc := range []struct {
		name string
		f    Filter
		want []*batch
	}{
		{"everything", Filter{}, []*batch{a0, a1, a2, b0, b1}},
		{"one id in one file", Filter{ExecutionIDs: []string{"a-04"}}, []*batch{a0}},
		{"an id across two files", Filter{ExecutionIDs: []string{"a-18"}}, []*batch{a0, a1}},
		{"an id in two chains", Filter{ExecutionIDs: []string{"shared-1"}}, []*batch{a2, b0}},
		{"any of two ids", Filter{ExecutionIDs: []string{"b-03", "a-20"}}, []*batch{a1, b0}},
		{"an id in no file", Filter{ExecutionIDs: []string{"nope"}}, nil},
		// a-05 lies between the min and max of file a0, and only its bloom
		// filter excludes it (TestBloomFilterExcludes).
		{"an id only a bloom filter excludes", Filter{ExecutionIDs: []string{"a-05"}}, nil},
		{"a chain", Filter{Chains: []string{"chain-b"}}, []*batch{b0, b1}},
		{"a chain and an id", Filter{Chains: []string{"chain-b"}, ExecutionIDs: []string{"shared-1"}}, []*batch{b0}},
		{"since", Filter{Since: ns(day.Add(90 * time.Minute))}, []*batch{a2}},
		{"until, exclusive", Filter{Until: ns(day.Add(30 * time.Minute))}, []*batch{a0, a1}},
		{"until just past a first row", Filter{Until: ns(day.Add(30*time.Minute + 1))}, []*batch{a0, a1, b0}},
		{"since the last row of a file", Filter{Since: &a0.entries[rowsPerFile-1].TimeUnixNano}, []*batch{a0, a1, a2, b0, b1}},
		{"since just past the last row of a file", Filter{Since: ns(time.Unix(0, a0.entries[rowsPerFile-1].TimeUnixNano+1))}, []*batch{a1, a2, b0, b1}},
		{"a window", Filter{Since: ns(day.Add(31 * time.Minute)), Until: ns(day.Add(90 * time.Minute))}, []*batch{b1}},
		{"a window and an id", Filter{Since: ns(day), Until: ns(day.Add(time.Hour)), ExecutionIDs: []string{"shared-1"}}, []*batch{b0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := trail.Select(ctx, tc.f)
			require.NoError(t, err)
			assert.Equal(t, tr.want(tc.want...), keys(got), "files that are not audit batches are always kept")
		})
	}
}

// TestBloomFilterExcludes shows that the bloom filter, not the statistics,
// is what leaves a file out when the id lies within its min and max.
func TestBloomFilterExcludes(t *testing.T) {
	tr, _, trail := dirTrail(t)
	_, err := trail.Files(ctx)
	require.NoError(t, err)
	var a0 *fileState
	for _, s := range trail.files {
		if s.Key == tr.a[0].key {
			a0 = s
		}
	}
	require.NotNil(t, a0)
	require.Len(t, a0.index.groups, 1)
	g := a0.index.groups[0]
	require.True(t, g.hasStats)
	assert.Equal(t, "a-00", g.min)
	assert.Equal(t, "a-18", g.max)
	require.NotNil(t, g.bloom)
	assert.True(t, g.min < "a-05" && "a-05" < g.max, "the statistics admit a-05")
	assert.False(t, a0.index.mayHoldID("a-05"))
	assert.True(t, a0.index.mayHoldID("a-06"))

	noBloom := index{idKnown: true, groups: []idGroup{{hasStats: true, min: g.min, max: g.max}}}
	assert.True(t, noBloom.mayHoldID("a-05"), "without the bloom filter the file would be read")
	assert.False(t, noBloom.mayHoldID("a-19"), "outside min..max")
	unknown := index{}
	assert.True(t, unknown.mayHoldID("anything"), "no execution_id column: cannot exclude")
}

// v2Row has a column inserted before execution_id, as format v2 does.
type v2Row struct {
	Timestamp       int64  `parquet:"timestamp,timestamp(millisecond:utc)"`
	TimeUnixNano    int64  `parquet:"time_unix_nano"`
	EndTimeUnixNano *int64 `parquet:"end_time_unix_nano,optional"`
	ChainID         string `parquet:"chain_id,dict"`
	Seq             int64  `parquet:"seq"`
	ExecutionID     string `parquet:"execution_id,dict"`
}

// TestColumnsByNameAndRowGroups reads a file whose columns are not where
// format v1 has them, with an optional end_time_unix_nano and two row
// groups, one of which has no end time.
func TestColumnsByNameAndRowGroups(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	rows := [][]v2Row{
		{
			{TimeUnixNano: 1000, EndTimeUnixNano: nil, ExecutionID: "m-1"},
			{TimeUnixNano: 1100, EndTimeUnixNano: i64(1500), ExecutionID: "m-1"},
			{TimeUnixNano: 1200, EndTimeUnixNano: i64(1700), ExecutionID: "m-4"},
			{TimeUnixNano: 1300, EndTimeUnixNano: nil, ExecutionID: "m-4"},
		},
		{
			{TimeUnixNano: 2000, ExecutionID: "m-6"},
			{TimeUnixNano: 2100, ExecutionID: "m-9"},
		},
	}
	data := writeRowGroups(t, parquetfile.FormatVersion, rows)
	trail, files := oneFileTrail(t, data)
	require.Len(t, files, 1)
	assert.Equal(t, File{
		Key: oneFileKey, Size: int64(len(data)), ChainID: "chain-v", FirstSeq: 0, LastSeq: 5, Rows: 6,
		MinTime: 1000, MaxTime: 2100, HasTimeStats: true,
		MinEnd: 1500, MaxEnd: 1700, HasEndStats: true,
	}, files[0])
	require.Len(t, trail.files[0].index.groups, 2)

	for id, want := range map[string]bool{
		"m-1": true, "m-4": true, "m-6": true, "m-9": true,
		"m-0": false, // below every row group
		"m-5": false, // within the file's min..max, outside each row group's
		"m-2": false, // within row group 0's min..max: its bloom filter
		"m-7": false, // within row group 1's: its bloom filter
	} {
		got, err := trail.Select(ctx, Filter{ExecutionIDs: []string{id}})
		require.NoError(t, err)
		assert.Equal(t, want, len(got) == 1, id)
	}
}

// v1Row has the columns of format v1 that matter here: no end time.
type v1Row struct {
	Timestamp    int64  `parquet:"timestamp,timestamp(millisecond:utc)"`
	TimeUnixNano int64  `parquet:"time_unix_nano"`
	ChainID      string `parquet:"chain_id,dict"`
	Seq          int64  `parquet:"seq"`
	ExecutionID  string `parquet:"execution_id,dict"`
}

func TestVersion1File(t *testing.T) {
	rows := [][]v1Row{{{TimeUnixNano: 10, ExecutionID: "e-1"}, {TimeUnixNano: 20, ExecutionID: "e-3"}}}
	data := writeRowGroups(t, parquetfile.FormatVersion1, rows)
	trail, files := oneFileTrail(t, data)
	assert.Equal(t, []File{{
		Key: oneFileKey, Size: int64(len(data)), ChainID: "chain-v", FirstSeq: 0, LastSeq: 1, Rows: 2,
		MinTime: 10, MaxTime: 20, HasTimeStats: true,
	}}, files, "no end_time_unix_nano: no end stats")
	for id, want := range map[string]bool{"e-1": true, "e-3": true, "e-2": false, "e-0": false} {
		got, err := trail.Select(ctx, Filter{ExecutionIDs: []string{id}})
		require.NoError(t, err)
		assert.Equal(t, want, len(got) == 1, id)
	}
}

const oneFileKey = "dt=2026-03-09/chain-v-00000000000000000000.parquet"

// oneFileTrail opens a trail of the one file data and reads its footer.
func oneFileTrail(t *testing.T, data []byte) (*Trail, []File) {
	t.Helper()
	dir := t.TempDir()
	writeDir(t, dir, map[string][]byte{oneFileKey: data})
	trail, err := Open(ctx, dir, Options{})
	require.NoError(t, err)
	files, err := trail.Files(ctx)
	require.NoError(t, err)
	return trail, files
}

// writeRowGroups writes a Parquet file of the given row groups, with the
// writer options and footer keys of a batch file of the format version;
// chain_id and seq are filled in. Encode writes only whole batches of the
// current version: this writes what it cannot.
func writeRowGroups[T any](t *testing.T, version string, groups [][]T) []byte {
	t.Helper()
	n := 0
	for _, g := range groups {
		n += len(g)
	}
	hash := strings.Repeat("0", 64)
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf,
		parquet.DataPageStatistics(true),
		parquet.BloomFilters(parquet.SplitBlockFilter(10, "execution_id")),
		parquet.KeyValueMetadata(parquetfile.KeyFormatVersion, version),
		parquet.KeyValueMetadata(parquetfile.KeyChainID, "chain-v"),
		parquet.KeyValueMetadata(parquetfile.KeyFirstSeq, "0"),
		parquet.KeyValueMetadata(parquetfile.KeyLastSeq, strconv.Itoa(n-1)),
		parquet.KeyValueMetadata(parquetfile.KeyEntryCount, strconv.Itoa(n)),
		parquet.KeyValueMetadata(parquetfile.KeyPrevHash, hash),
		parquet.KeyValueMetadata(parquetfile.KeyLastHash, hash),
		parquet.KeyValueMetadata(parquetfile.KeyMerkleRoot, hash),
	)
	seq := int64(0)
	for _, g := range groups {
		for i := range g {
			v := reflect.ValueOf(&g[i]).Elem()
			v.FieldByName("ChainID").SetString("chain-v")
			v.FieldByName("Seq").SetInt(seq)
			seq++
		}
		_, err := w.Write(g)
		require.NoError(t, err)
		require.NoError(t, w.Flush(), "one row group per Flush")
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(ctx, filepath.Join(t.TempDir(), "missing"), Options{})
	require.Error(t, err)
	f := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = Open(ctx, f, Options{})
	require.ErrorContains(t, err, "not a directory")
	_, err = Open(ctx, t.TempDir(), Options{Endpoint: "http://127.0.0.1:1"})
	require.ErrorContains(t, err, "s3://")
	_, err = Open(ctx, "s3://", Options{CacheDir: t.TempDir()})
	require.Error(t, err)
	_, err = Open(ctx, "s3://bucket/p", Options{CacheDir: t.TempDir(), PathStyle: "maybe"})
	require.ErrorContains(t, err, "path style")
	_, err = Open(ctx, "s3://bucket/../up", Options{CacheDir: t.TempDir()})
	require.ErrorContains(t, err, "plain relative path")
	trail, err := Open(ctx, "s3://bucket/some/prefix/", Options{CacheDir: t.TempDir()})
	require.NoError(t, err)
	assert.Equal(t, "s3://bucket/some/prefix", trail.String())
}

func TestPlainKey(t *testing.T) {
	for key, want := range map[string]bool{
		"dt=2026-03-09/chain-a-00000000000000000000.parquet": true,
		".x.parquet":                          true,
		".dir/x.parquet":                      true,
		"a//b.parquet":                        false,
		"../x.parquet":                        false,
		"a/../../x.parquet":                   false,
		"/abs.parquet":                        false,
		"./x.parquet":                         false,
		"a\\b.parquet":                        false,
		"x.parquet.meta/y":                    false,
		"x.parquet.footer/y":                  false,
		strings.Repeat("l", 201) + ".parquet": false,
	} {
		assert.Equal(t, want, plainKey(key), key)
	}
}

func TestCachePath(t *testing.T) {
	src, err := openS3(ctx, "s3://trail/agents", Options{CacheDir: "/cache"})
	require.NoError(t, err)
	assert.Equal(t, "/cache/s3/trail/agents/dt=2026-03-09/a-00000000000000000000.parquet", src.path("dt=2026-03-09/a-00000000000000000000.parquet"))
	assert.Equal(t, "/cache/s3/trail/agents/.x.parquet", src.path(".x.parquet"))
	for _, k := range []string{"../../escape.parquet", "a//b.parquet", "/abs.parquet"} {
		p := src.path(k)
		assert.Equal(t, "/cache/s3-other/trail", filepath.Dir(p), k)
		assert.Len(t, filepath.Base(p), 64+len(".parquet"), k)
	}
	assert.NotEqual(t, src.path("a//b.parquet"), src.path("../../escape.parquet"))
}

func TestCanceled(t *testing.T) {
	_, _, trail := dirTrail(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := trail.Files(cctx)
	require.ErrorIs(t, err, context.Canceled)
	_, err = trail.Select(cctx, Filter{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestSparseReader(t *testing.T) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	var fetches [][2]int64
	r := newSparseReader(int64(len(data)), func(off, n int64) ([]byte, error) {
		fetches = append(fetches, [2]int64{off, n})
		return data[off : off+n], nil
	}, span{4, []byte("4567")})
	p := make([]byte, 6)
	n, err := r.ReadAt(p, 2)
	require.NoError(t, err)
	assert.Equal(t, "234567", string(p[:n]))
	assert.Equal(t, [][2]int64{{2, 2}}, fetches, "only the bytes not held")
	require.NoError(t, r.prefetch([]extent{{10, 12}, {14, 16}, {30, 40}, {-5, 1}}, 2))
	assert.Equal(t, [][2]int64{{2, 2}, {0, 1}, {10, 6}, {30, 6}}, fetches, "gaps within 2 bytes joined, clamped to the object")
	n, err = r.ReadAt(make([]byte, 10), 30)
	assert.Equal(t, 6, n)
	assert.ErrorIs(t, err, io.EOF)
	n, err = r.ReadAt(p[:4], 0)
	require.NoError(t, err)
	assert.Equal(t, "0123", string(p[:n]))
	assert.Equal(t, [][2]int64{{2, 2}, {0, 1}, {10, 6}, {30, 6}, {1, 1}}, fetches)
	assert.Equal(t, int64(2+1+6+6+1), r.bytesFetched())
	assert.Equal(t, []span{{0, []byte("01234567")}, {10, []byte("abcdef")}, {30, []byte("uvwxyz")}}, r.spans, "coalesced")

	held := newSparseReader(10, nil, span{2, []byte("23")})
	_, err = held.ReadAt(make([]byte, 2), 2)
	require.NoError(t, err)
	_, err = held.ReadAt(make([]byte, 2), 3)
	require.ErrorIs(t, err, errNotHeld, "nothing to fetch with")
}
