package trailcache

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go/bloom"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIndexRoundTrip(t *testing.T) {
	_, _, trail := dirTrail(t)
	_, err := trail.Files(ctx)
	require.NoError(t, err)
	states := append([]*fileState{}, trail.files...)
	// Ids and chain ids are bytes: ones that are not UTF-8 survive; so do
	// an ETag, a row group without statistics or bloom filter and a file
	// without an execution_id column.
	states = append(states,
		&fileState{File: File{Key: "odd.parquet", Size: 1, ChainID: "\xff", etag: `"e"`}, mtime: -5,
			index: &index{idKnown: true, groups: []idGroup{{hasStats: true, min: "\xff\xfe", max: "\xff\xff"}, {}}}},
		&fileState{File: File{Key: "noid.parquet", Size: 2, ChainID: "c"}, index: &index{}},
	)
	var bloomed int
	for _, fs := range states {
		if fs.index != nil {
			for _, g := range fs.index.groups {
				if g.bloom != nil {
					bloomed++
				}
			}
		}
	}
	require.NotZero(t, bloomed, "the test trail has bloom filters")

	const id = "dir\x00/trail"
	b := encodeIndex(id, states)
	got, err := decodeIndex(id, b)
	require.NoError(t, err)
	require.Len(t, got, len(states))
	for _, fs := range states {
		assert.Equal(t, fs, got[fs.Key], fs.Key)
	}
	// What it decodes selects what the footers select.
	for _, id := range []string{"a-04", "a-18", "b-12", "shared-1", "zzz"} {
		for _, fs := range trail.files {
			f := Filter{ExecutionIDs: []string{id}}
			assert.Equal(t, fs.mayMatch(&f), got[fs.Key].mayMatch(&f), "%s %s", fs.Key, id)
		}
	}

	_, err = decodeIndex("dir\x00/other", b)
	require.ErrorIs(t, err, errIndex, "another trail's")
	empty, err := decodeIndex(id, encodeIndex(id, nil))
	require.NoError(t, err)
	assert.Empty(t, empty)
}

// reseal replaces the checksum of an index whose body was changed.
func reseal(b []byte) []byte {
	body := b[:len(b)-4]
	return binary.LittleEndian.AppendUint32(body[:len(body):len(body)], crc32.Checksum(body, castagnoli))
}

// otherVersion returns the index b with the next version number.
func otherVersion(b []byte) []byte {
	out := append([]byte(indexMagic), binary.AppendUvarint(nil, indexVersion+1)...)
	return reseal(append(out, b[len(indexMagic)+len(binary.AppendUvarint(nil, indexVersion)):]...))
}

func TestIndexMalformed(t *testing.T) {
	_, _, trail := dirTrail(t)
	_, err := trail.Files(ctx)
	require.NoError(t, err)
	const id = "dir\x00/trail"
	good := encodeIndex(id, trail.files)

	flipped := append([]byte{}, good...)
	flipped[len(flipped)/2] ^= 1
	cases := map[string][]byte{
		"empty":          {},
		"magic only":     []byte(indexMagic),
		"truncated":      good[:len(good)-1],
		"half":           good[:len(good)/2],
		"bit flip":       flipped,
		"other version":  otherVersion(good),
		"trailing bytes": reseal(append(append(append([]byte{}, good[:len(good)-4]...), 0), 0, 0, 0, 0)),
		"json":           []byte(`{"version":1}`),
	}
	for name, b := range cases {
		_, err := decodeIndex(id, b)
		require.ErrorIs(t, err, errIndex, name)
	}

	// Bytes changed under a valid checksum, as a bug or another program
	// would write them: an error, never a panic.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := append([]byte{}, good...)
		for range 1 + rng.IntN(3) {
			i := len(indexMagic) + rng.IntN(len(b)-len(indexMagic)-4)
			b[i] ^= byte(1 + rng.IntN(255))
		}
		_, _ = decodeIndex(id, reseal(b))
	}
}

func FuzzDecodeIndex(f *testing.F) {
	st := &fileState{File: File{Key: "k.parquet", Size: 9, ChainID: "c", etag: "e"},
		index: &index{idKnown: true, groups: []idGroup{{hasStats: true, min: "a", max: "b", bloom: bloom.MakeSplitBlockFilter(make([]byte, 64))}}}}
	f.Add(encodeIndex("id", []*fileState{st, {File: File{Key: "p", Problem: "bad"}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 4 {
			return
		}
		m, err := decodeIndex("id", reseal(b))
		if err != nil {
			return
		}
		for _, fs := range m {
			// What Select does with a decoded entry.
			f := Filter{ExecutionIDs: []string{"x"}}
			fs.mayMatch(&f)
		}
	})
}

// indexedDir opens the trail in dir with the footer index in cache.
func indexedDir(t *testing.T, dir, cache string) (*Trail, []File) {
	t.Helper()
	trail, err := Open(ctx, dir, Options{CacheDir: cache})
	require.NoError(t, err)
	files, err := trail.Files(ctx)
	require.NoError(t, err)
	return trail, files
}

func TestDirectoryIndex(t *testing.T) {
	tr, dir, plain := dirTrail(t)
	want, err := plain.Files(ctx)
	require.NoError(t, err)
	n := len(tr.objects())
	cache := t.TempDir()
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	index := indexPath(cache, dirIndexID(abs))

	first, files := indexedDir(t, dir, cache)
	assert.Equal(t, want, files)
	assert.EqualValues(t, n, first.parsed.Load(), "every footer read")
	assert.Equal(t, [2]int{0, 0}, fetched(first), "a directory downloads nothing")
	st, err := os.Stat(index)
	require.NoError(t, err, "the index is written in the cache directory")

	// Another process reads the index, not the footers, and selects the
	// same files; it does not write the index again.
	second, files := indexedDir(t, dir, cache)
	assert.Equal(t, want, files)
	assert.Zero(t, second.parsed.Load(), "no footer read")
	for _, id := range []string{"a-04", "a-18", "b-12", "shared-1", "zzz"} {
		s1, err := plain.Select(ctx, Filter{ExecutionIDs: []string{id}})
		require.NoError(t, err)
		s2, err := second.Select(ctx, Filter{ExecutionIDs: []string{id}})
		require.NoError(t, err)
		assert.Equal(t, s1, s2, id)
	}
	st2, err := os.Stat(index)
	require.NoError(t, err)
	assert.Equal(t, st.ModTime(), st2.ModTime(), "not written when nothing was read")

	// A file of another modification time, one of another size, a new
	// file and a removed one: those two and the new one are read again.
	a0 := filepath.Join(dir, filepath.FromSlash(tr.a[0].key))
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(a0, later, later))
	junk := filepath.Join(dir, filepath.FromSlash("dt=2026-03-09/junk-00000000000000000000.parquet"))
	require.NoError(t, os.WriteFile(junk, []byte("still not a parquet file, longer"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(tr.b[0].key))))
	writeDir(t, dir, map[string][]byte{"dt=2026-03-10/copy-00000000000000000000.parquet": tr.b[0].data})
	third, files := indexedDir(t, dir, cache)
	assert.EqualValues(t, 3, third.parsed.Load(), "the changed and the new files' footers")
	want, err = plain.Files(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, files)
	fourth, files := indexedDir(t, dir, cache)
	assert.Zero(t, fourth.parsed.Load(), "the index was written again")
	assert.Equal(t, want, files)

	// A file rewritten with another footer at the same size and time is
	// not noticed by a listing: the footer index, like the last Files,
	// trusts write-once files.
}

func TestDirectoryIndexIgnored(t *testing.T) {
	tr, dir, _ := dirTrail(t)
	n := len(tr.objects())
	cache := t.TempDir()
	first, want := indexedDir(t, dir, cache)
	require.EqualValues(t, n, first.parsed.Load())
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	index := indexPath(cache, dirIndexID(abs))
	good, err := os.ReadFile(index)
	require.NoError(t, err)

	// Another trail's index under this one's name (copied, or a name
	// collision), an index that does not decode, and one of another
	// version are ignored: every footer is read again and the index
	// written anew.
	other := encodeIndex("dir\x00/elsewhere", first.files)
	bad := append([]byte{}, good...)
	bad[len(bad)/3] ^= 0x10
	for name, b := range map[string][]byte{
		"foreign":   other,
		"corrupt":   bad,
		"truncated": good[:100],
		"version":   otherVersion(good),
		"directory": nil,
	} {
		require.NoError(t, os.RemoveAll(index))
		if b == nil {
			require.NoError(t, os.Mkdir(index, 0o755))
		} else {
			require.NoError(t, os.WriteFile(index, b, 0o644))
		}
		trail, files := indexedDir(t, dir, cache)
		assert.Equal(t, want, files, name)
		assert.EqualValues(t, n, trail.parsed.Load(), name)
		if b != nil {
			got, err := os.ReadFile(index)
			require.NoError(t, err)
			assert.Equal(t, good, got, "%s: written anew", name)
		}
	}
}

func TestDirectoryIndexUnwritable(t *testing.T) {
	tr, dir, _ := dirTrail(t)
	n := len(tr.objects())
	// A cache directory that cannot be created (below a file): Files
	// works, without an index.
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	for range 2 {
		trail, files := indexedDir(t, dir, filepath.Join(f, "cache"))
		assert.Len(t, files, n)
		assert.EqualValues(t, n, trail.parsed.Load())
	}
	// A missing one is created.
	missing := filepath.Join(t.TempDir(), "a", "b")
	indexedDir(t, dir, missing)
	trail, files := indexedDir(t, dir, missing)
	assert.Len(t, files, n)
	assert.Zero(t, trail.parsed.Load())
}

// TestDirectoryIndexShared: processes that write the index at once leave
// a whole one and no temporary file.
func TestDirectoryIndexShared(t *testing.T) {
	tr, dir, _ := dirTrail(t)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			trail, err := Open(ctx, dir, Options{CacheDir: cache, Fetchers: 1 + i%3})
			if err == nil {
				_, err = trail.Files(ctx)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	trail, files := indexedDir(t, dir, cache)
	assert.Len(t, files, len(tr.objects()))
	assert.Zero(t, trail.parsed.Load())
	err := filepath.WalkDir(cache, func(p string, _ os.DirEntry, err error) error {
		assert.False(t, strings.HasSuffix(p, ".tmp"), p)
		return err
	})
	require.NoError(t, err)
}
