package store

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

var badKeys = []string{
	"", "/abs/key", "../escape", "a/../../b", "a/..", "..", ".", "./a", "a/./b",
	`a\b`, `..\..\x`, "a//b", "a/", "trailing/", ".hidden", "dir/.tmp-file", "nul\x00byte",
	strings.Repeat("k", 1025),
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "a/b", "dt=2026-11-27/chain-1-00000000000000000000.parquet", "x.y", "a/b.c/d..e", strings.Repeat("k", 1024)} {
		assert.NoError(t, ValidKey(k), k)
	}
	for _, k := range badKeys {
		assert.ErrorIs(t, ValidKey(k), ErrInvalidKey, k)
	}
}

func TestValidName(t *testing.T) {
	readable := []string{"a", "a/b", ".hidden/x.parquet", "dir/.x.parquet", "a//b", `a\b`, `..\..\x`, "a/", "trailing/", ".hidden", "dir/.tmp-file", "x..y/..z", strings.Repeat("k", 1024)}
	for _, k := range readable {
		assert.NoError(t, ValidName(k), k)
	}
	for _, k := range []string{"", "/abs", "..", ".", "../x", "a/..", "a/../b", "./a", "a/./b", "nul\x00", strings.Repeat("k", 1025)} {
		assert.ErrorIs(t, ValidName(k), ErrInvalidKey, k)
	}
	for _, k := range badKeys {
		if ValidName(k) == nil {
			assert.True(t, slices.Contains(readable, k), "%q: every bad key ValidName accepts is listed as readable above", k)
		}
	}
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

// TestFSPutAll: PutAll stores objects in several directories, new and
// existing, read-only and once each; an identical object already stored
// is success, a different one ErrConflict, which leaves that object as it
// was; an invalid key refuses the lot before anything is written; no
// temporary file is left on any path, and the PutAll that failed can be
// made again once the conflict is gone from the call.
func TestFSPutAll(t *testing.T) {
	s, dir := newFS(t)
	require.NoError(t, s.Put(ctx, "tiles/c1/tile/0/000", []byte("tile 0")))
	objs := []Object{
		{Key: "tiles/c1/tile/0/000", Data: []byte("tile 0")}, // already stored
		{Key: "tiles/c1/tile/0/001", Data: []byte("tile 1")},
		{Key: "tiles/c1/tile/0/x001/002", Data: []byte("tile 1002")},
		{Key: "tiles/c1/tile/1/000.p/2", Data: []byte("level 1")},
	}
	require.NoError(t, s.PutAll(ctx, objs))
	for _, o := range objs {
		data, err := s.Get(ctx, o.Key)
		require.NoError(t, err, o.Key)
		assert.Equal(t, string(o.Data), string(data), o.Key)
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(o.Key)))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o444), st.Mode().Perm(), "%s read-only", o.Key)
	}
	want := []string{"tiles", "tiles/c1", "tiles/c1/tile", "tiles/c1/tile/0", "tiles/c1/tile/0/000", "tiles/c1/tile/0/001",
		"tiles/c1/tile/0/x001", "tiles/c1/tile/0/x001/002", "tiles/c1/tile/1", "tiles/c1/tile/1/000.p", "tiles/c1/tile/1/000.p/2"}
	assert.ElementsMatch(t, want, allNames(t, dir))

	conflicting := []Object{
		{Key: "tiles/c1/tile/0/002", Data: []byte("tile 2")},
		{Key: "tiles/c1/tile/0/001", Data: []byte("another tile 1")},
		{Key: "tiles/c1/tile/0/003", Data: []byte("tile 3")},
	}
	err := s.PutAll(ctx, conflicting)
	require.ErrorIs(t, err, ErrConflict)
	assert.Contains(t, err.Error(), "tiles/c1/tile/0/001")
	data, err := s.Get(ctx, "tiles/c1/tile/0/001")
	require.NoError(t, err)
	assert.Equal(t, "tile 1", string(data), "the conflicting put changed nothing")
	for _, n := range allNames(t, dir) {
		assert.NotContains(t, n, tmpInfix, "no temporary file after a conflict")
	}
	require.NoError(t, s.PutAll(ctx, []Object{conflicting[0], conflicting[2]}), "again, without the conflict")

	before := allNames(t, dir)
	require.ErrorIs(t, s.PutAll(ctx, []Object{{Key: "tiles/c1/tile/0/004", Data: []byte("x")}, {Key: "../escape", Data: []byte("x")}}), ErrInvalidKey)
	assert.Equal(t, before, allNames(t, dir), "an invalid key refuses every object")
	require.NoError(t, s.PutAll(ctx, nil))
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
