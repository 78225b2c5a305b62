package store

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/s3test"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// impls runs the same behaviour table against every Store.
var impls = map[string]func(t *testing.T) Store{
	"fs": func(t *testing.T) Store {
		s, err := NewFS(t.TempDir())
		require.NoError(t, err)
		return s
	},
	"memory": func(t *testing.T) Store { return NewMemory() },
	"s3": func(t *testing.T) Store {
		srv := s3test.Start(t)
		srv.CreateBucket("trail", true)
		return newTestS3(t, srv, "trail", &ObjectLock{Mode: LockCompliance, RetentionDays: 1})
	},
}

func forEachStore(t *testing.T, test func(t *testing.T, s Store)) {
	for name, newStore := range impls {
		t.Run(name, func(t *testing.T) { test(t, newStore(t)) })
	}
}

var ctx = context.Background()

func TestPutGetList(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		keys := []string{
			"dt=2026-11-27/b-00000000000000000010.parquet",
			"dt=2026-11-27/a-00000000000000000000.parquet",
			"dt=2026-11-26/a-00000000000000000000.parquet",
			"top.bin",
		}
		for i, k := range keys {
			require.NoError(t, s.Put(ctx, k, []byte(fmt.Sprintf("object %d", i))))
		}
		for i, k := range keys {
			got, err := s.Get(ctx, k)
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("object %d", i), string(got))
		}

		all, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, []string{
			"dt=2026-11-26/a-00000000000000000000.parquet",
			"dt=2026-11-27/a-00000000000000000000.parquet",
			"dt=2026-11-27/b-00000000000000000010.parquet",
			"top.bin",
		}, all)

		day, err := s.List(ctx, "dt=2026-11-27/")
		require.NoError(t, err)
		assert.Equal(t, []string{
			"dt=2026-11-27/a-00000000000000000000.parquet",
			"dt=2026-11-27/b-00000000000000000010.parquet",
		}, day)

		partial, err := s.List(ctx, "dt=2026-11-27/b")
		require.NoError(t, err)
		assert.Equal(t, []string{"dt=2026-11-27/b-00000000000000000010.parquet"}, partial)

		dts, err := s.List(ctx, "dt=")
		require.NoError(t, err)
		assert.Len(t, dts, 3)

		none, err := s.List(ctx, "dt=2030-01-01/")
		require.NoError(t, err)
		assert.Empty(t, none)
	})
}

func TestEmptyObject(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		require.NoError(t, s.Put(ctx, "empty", nil))
		got, err := s.Get(ctx, "empty")
		require.NoError(t, err)
		assert.Empty(t, got)
		require.NoError(t, s.Put(ctx, "empty", []byte{}))
		assert.ErrorIs(t, s.Put(ctx, "empty", []byte{0}), ErrConflict)
	})
}

func TestIdempotentPut(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		k := BatchKey("c", 0, time.Now())
		require.NoError(t, s.Put(ctx, k, []byte("batch")))
		require.NoError(t, s.Put(ctx, k, []byte("batch")), "a retried upload is not an error")
		got, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, "batch", string(got))
		keys, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, []string{k}, keys)
	})
}

func TestConflict(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		k := BatchKey("c", 0, time.Now())
		require.NoError(t, s.Put(ctx, k, []byte("first writer")))
		err := s.Put(ctx, k, []byte("second writer"))
		require.ErrorIs(t, err, ErrConflict)
		assert.Contains(t, err.Error(), k)
		err = s.Put(ctx, k, []byte("first writer, longer"))
		require.ErrorIs(t, err, ErrConflict)
		got, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, "first writer", string(got), "original unchanged")
	})
}

func TestNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		_, err := s.Get(ctx, "dt=2026-11-27/missing.parquet")
		require.ErrorIs(t, err, ErrNotFound)
		assert.Contains(t, err.Error(), "missing.parquet")
	})
}

func TestNoAliasing(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		data := []byte("abc")
		require.NoError(t, s.Put(ctx, "k", data))
		data[0] = 'X'
		got, err := s.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "abc", string(got), "Put keeps its own copy")
		got[1] = 'Y'
		again, err := s.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "abc", string(again), "Get returns a copy")
	})
}

var badKeys = []string{
	"", "/abs/key", "../escape", "a/../../b", "a/..", "..", ".", "./a", "a/./b",
	`a\b`, `..\..\x`, "a//b", "a/", "trailing/", ".hidden", "dir/.tmp-file", "nul\x00byte",
	strings.Repeat("k", 1025),
}

func TestInvalidKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		for _, k := range badKeys {
			assert.ErrorIs(t, s.Put(ctx, k, []byte("x")), ErrInvalidKey, "put %q", k)
			_, err := s.Get(ctx, k)
			assert.ErrorIs(t, err, ErrInvalidKey, "get %q", k)
		}
		for _, p := range []string{"/", "/abs", "../", "..", "a/../", `a\`, ".hidden/", "a//"} {
			_, err := s.List(ctx, p)
			assert.ErrorIs(t, err, ErrInvalidKey, "list %q", p)
		}
		keys, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Empty(t, keys, "nothing stored by rejected puts")
	})
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "a/b", "dt=2026-11-27/chain-1-00000000000000000000.parquet", "x.y", "a/b.c/d..e", strings.Repeat("k", 1024)} {
		assert.NoError(t, ValidKey(k), k)
	}
	for _, k := range badKeys {
		assert.ErrorIs(t, ValidKey(k), ErrInvalidKey, k)
	}
}

func TestCanceledContext(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		assert.ErrorIs(t, s.Put(cctx, "k", []byte("x")), context.Canceled)
		_, err := s.Get(cctx, "k")
		assert.ErrorIs(t, err, context.Canceled)
		_, err = s.List(cctx, "")
		assert.ErrorIs(t, err, context.Canceled)
		keys, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Empty(t, keys)
	})
}

func TestConcurrentPuts(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		const writers, each = 8, 25
		day := time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC)
		var wg sync.WaitGroup
		errs := make(chan error, writers*each*2)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					k := BatchKey(fmt.Sprintf("chain-%d", w), int64(i*100), day)
					errs <- s.Put(ctx, k, []byte(k))
					// Every writer also races on one shared key with equal bytes.
					shared := BatchKey("shared", int64(i), day)
					errs <- s.Put(ctx, shared, []byte(shared))
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		keys, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Len(t, keys, writers*each+each)
		for _, k := range keys {
			got, err := s.Get(ctx, k)
			require.NoError(t, err)
			assert.Equal(t, k, string(got))
		}
	})
}

func TestConcurrentConflict(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		const writers = 8
		var wg sync.WaitGroup
		results := make([]error, writers)
		for w := range writers {
			wg.Go(func() { results[w] = s.Put(ctx, "k", []byte(fmt.Sprintf("writer %d", w))) })
		}
		wg.Wait()
		winners := 0
		for _, err := range results {
			if err == nil {
				winners++
			} else {
				assert.ErrorIs(t, err, ErrConflict)
			}
		}
		assert.Equal(t, 1, winners, "exactly one writer wins")
		got, err := s.Get(ctx, "k")
		require.NoError(t, err)
		assert.Contains(t, string(got), "writer ")
	})
}

// FS-only behaviour.

func newFS(t *testing.T) (*FS, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := NewFS(dir)
	require.NoError(t, err)
	return s, dir
}

// allNames lists every file and directory under dir, dot-files included.
func allNames(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	}))
	return names
}

func TestFSLayoutAndModes(t *testing.T) {
	s, dir := newFS(t)
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, st.IsDir())
	assert.Equal(t, fs.FileMode(0o750), st.Mode().Perm()&^umask(t))
	assert.Equal(t, dir, s.Dir())

	k := BatchKey("chain-a", 42, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	require.NoError(t, s.Put(ctx, k, []byte("parquet bytes")))

	p := filepath.Join(dir, "dt=2026-11-27", "chain-a-00000000000000000042.parquet")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "parquet bytes", string(data))
	fst, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o444), fst.Mode().Perm(), "read-only after put")
	assert.True(t, fst.Mode().IsRegular())
	if sys, ok := fst.Sys().(interface{ Nlink() uint64 }); ok {
		assert.Equal(t, uint64(1), sys.Nlink())
	}
	dst, err := os.Stat(filepath.Dir(p))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o750), dst.Mode().Perm()&^umask(t))

	assert.Equal(t, []string{"dt=2026-11-27", "dt=2026-11-27/chain-a-00000000000000000042.parquet"}, allNames(t, dir),
		"no temp or probe files left")

	// A read-only object is still refused on a conflicting put, and the
	// identical retry still succeeds.
	require.ErrorIs(t, s.Put(ctx, k, []byte("other")), ErrConflict)
	require.NoError(t, s.Put(ctx, k, []byte("parquet bytes")))
	assert.Len(t, allNames(t, dir), 2, "no temp files left after a conflict or a retry")
}

func umask(t *testing.T) fs.FileMode {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "umask")
	require.NoError(t, os.Mkdir(probe, 0o777))
	st, err := os.Stat(probe)
	require.NoError(t, err)
	return 0o777 &^ st.Mode().Perm()
}

func TestFSListSkipsDotFiles(t *testing.T) {
	s, dir := newFS(t)
	require.NoError(t, s.Put(ctx, "dt=2026-11-27/a.parquet", []byte("a")))
	// What a crashed Put or another tool may leave behind.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dt=2026-11-27", ".a.parquet.tmp-123"), []byte("x"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".staging", "dt=2026-11-27"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".staging", "dt=2026-11-27", "b.parquet"), []byte("b"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(dir, "dt=2026-11-27", "a.parquet"), filepath.Join(dir, "link.parquet")))

	keys, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []string{"dt=2026-11-27/a.parquet"}, keys)
}

func TestFSFailureLeavesNoTemp(t *testing.T) {
	t.Run("parent is a file", func(t *testing.T) {
		s, dir := newFS(t)
		require.NoError(t, s.Put(ctx, "blocker", []byte("file")))
		err := s.Put(ctx, "blocker/child.parquet", []byte("x"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "blocker")
		assert.Equal(t, []string{"blocker"}, allNames(t, dir))
	})
	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		s, dir := newFS(t)
		require.NoError(t, s.Put(ctx, "dt=2026-11-27/a.parquet", []byte("a")))
		day := filepath.Join(dir, "dt=2026-11-27")
		require.NoError(t, os.Chmod(day, 0o550))
		t.Cleanup(func() { _ = os.Chmod(day, 0o750) })
		err := s.Put(ctx, "dt=2026-11-27/b.parquet", []byte("b"))
		require.ErrorIs(t, err, fs.ErrPermission)
		assert.Contains(t, err.Error(), day, "the error names the path")
		assert.Equal(t, []string{"dt=2026-11-27", "dt=2026-11-27/a.parquet"}, allNames(t, dir))
	})
	t.Run("canceled context", func(t *testing.T) {
		s, dir := newFS(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, s.Put(cctx, "dt=2026-11-27/a.parquet", []byte("a")), context.Canceled)
		assert.Empty(t, allNames(t, dir))
	})
}

func TestNewFSErrors(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "plain-file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))

	_, err := NewFS(file)
	require.Error(t, err)
	assert.Contains(t, err.Error(), file)

	_, err = NewFS(filepath.Join(file, "sub"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), file)

	_, err = NewFS("")
	require.Error(t, err)

	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		require.NoError(t, os.Mkdir(ro, 0o550))
		_, err = NewFS(ro)
		require.ErrorIs(t, err, fs.ErrPermission)
		assert.Contains(t, err.Error(), ro)
	}

	nested := filepath.Join(base, "a", "b", "c")
	s, err := NewFS(nested)
	require.NoError(t, err)
	assert.Equal(t, nested, s.Dir())
	assert.Empty(t, allNames(t, nested), "the writability probe is removed")
}

// Keys.

func TestBatchKey(t *testing.T) {
	// 23:30 at UTC-5 is already the next day in UTC.
	ny := time.FixedZone("UTC-5", -5*3600)
	k := BatchKey("collector-7f3a-pod-1", 10_000, time.Date(2026, 11, 26, 23, 30, 0, 0, ny))
	assert.Equal(t, "dt=2026-11-27/collector-7f3a-pod-1-00000000000000010000.parquet", k)

	id, seq, day, err := ParseBatchKey(k)
	require.NoError(t, err)
	assert.Equal(t, "collector-7f3a-pod-1", id)
	assert.Equal(t, int64(10_000), seq)
	assert.Equal(t, "2026-11-27", day)

	max := BatchKey("c", 1<<63-1, time.Unix(0, 0))
	assert.Equal(t, "dt=1970-01-01/c-09223372036854775807.parquet", max)
	_, seq, _, err = ParseBatchKey(max)
	require.NoError(t, err)
	assert.Equal(t, int64(1<<63-1), seq)
}

func TestBatchKeyOrder(t *testing.T) {
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	seqs := []int64{0, 9, 10, 99, 100, 10_000, 1 << 40, 1<<63 - 1}
	var keys []string
	for _, s := range seqs {
		keys = append(keys, BatchKey("c", s, day))
	}
	assert.True(t, slices.IsSorted(keys), "lexical order is seq order: %v", keys)
}

func TestParseBatchKeyRoundTrip(t *testing.T) {
	day := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, id := range []string{"a", "a-b-c", "-", "--x--", "x.y_z", "A9", "a..", strings.Repeat("z", 128)} {
		for _, seq := range []int64{0, 1, 12345678901234} {
			gotID, gotSeq, gotDay, err := ParseBatchKey(BatchKey(id, seq, day))
			require.NoError(t, err, id)
			assert.Equal(t, id, gotID)
			assert.Equal(t, seq, gotSeq)
			assert.Equal(t, "2026-02-03", gotDay)
		}
	}
}

func TestParseBatchKeyForeign(t *testing.T) {
	for _, k := range []string{
		"",
		"random.txt",
		"c-00000000000000000000.parquet", // no day directory
		"dt=2026-11-27/c-00000000000000000000.csv",          // other extension
		"dt=2026-11-27/c-0.parquet",                         // not padded
		"dt=2026-11-27/c-000000000000000000001.parquet",     // 21 digits
		"dt=2026-11-27/c-9999999999999999999x.parquet",      // not digits
		"dt=2026-11-27/c-99999999999999999999.parquet",      // beyond int64
		"dt=2026-11-27/-00000000000000000000.parquet",       // empty chain id
		"dt=2026-11-27/c_00000000000000000000.parquet",      // no dash
		"dt=2026-11-27/a/b-00000000000000000000.parquet",    // nested
		"dt=2026-13-01/c-00000000000000000000.parquet",      // no month 13
		"dt=2026-1-1/c-00000000000000000000.parquet",        // not YYYY-MM-DD
		"day=2026-11-27/c-00000000000000000000.parquet",     // other partition name
		"dt=2026-11-27/c d-00000000000000000000.parquet",    // space in chain id
		"dt=2026-11-27/.c-00000000000000000000.parquet.tmp", // temp file
		"dt=2026-11-27/c--0000000000000000001.parquet",      // negative seq
	} {
		_, _, _, err := ParseBatchKey(k)
		assert.ErrorIs(t, err, ErrNotBatchKey, k)
	}
}

func TestValidChainID(t *testing.T) {
	for _, id := range []string{"a", "A-z_0.9", "collector-7f3a-pod-1", "a..", "-", strings.Repeat("x", 128)} {
		assert.True(t, ValidChainID(id), id)
	}
	for _, id := range []string{"", ".", "..", ".a", "..a", "a/b", `a\b`, "a b", "é", "a:b", strings.Repeat("x", 129), "a\x00"} {
		assert.False(t, ValidChainID(id), id)
	}
}

func TestFSDelete(t *testing.T) {
	s, dir := newFS(t)
	k := BatchKey("c", 0, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	require.NoError(t, s.Put(ctx, k, []byte("x")))
	require.NoError(t, s.Delete(ctx, k))
	_, err := s.Get(ctx, k)
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Delete(ctx, k), "deleting a missing key is not an error")
	assert.ErrorIs(t, s.Delete(ctx, "../escape"), ErrInvalidKey)
	_, err = os.Stat(filepath.Join(dir, filepath.FromSlash(k)))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// TestFSRemoveTemporary: the temporary files a crash left behind are
// removed for the keys the caller owns, and nothing else is touched.
func TestFSRemoveTemporary(t *testing.T) {
	ctx := context.Background()
	s, err := NewFS(t.TempDir())
	require.NoError(t, err)
	mine := BatchKey("c-1", 0, time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC))
	require.NoError(t, s.Put(ctx, mine, []byte("stored")))
	day := filepath.Join(s.Dir(), "dt=2026-03-09")
	left := []string{
		filepath.Join(day, ".c-1-00000000000000000010.parquet.tmp-123"),
		filepath.Join(day, ".c-1-00000000000000000020.parquet.tmp-9"),
	}
	kept := []string{
		filepath.Join(day, ".c-2-00000000000000000000.parquet.tmp-77"), // another writer's Put in flight
		filepath.Join(day, ".hidden"),
		filepath.Join(day, "c-1-00000000000000000030.parquet.tmp-1"), // not ours: no dot
	}
	for _, p := range append(append([]string{}, left...), kept...) {
		require.NoError(t, os.WriteFile(p, []byte("partial"), 0o640))
	}
	n, err := s.RemoveTemporary(func(key string) bool {
		id, _, _, err := ParseBatchKey(key)
		return err == nil && id == "c-1"
	})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, p := range left {
		assert.NoFileExists(t, p)
	}
	for _, p := range kept {
		assert.FileExists(t, p)
	}
	got, err := s.Get(ctx, mine)
	require.NoError(t, err)
	assert.Equal(t, "stored", string(got))
}
