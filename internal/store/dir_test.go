//go:build unix

package store

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDirGetRefusesNonRegular: Get, which checkpoints and proofs read
// through, neither follows a link nor blocks on a pipe; it says what the
// name is instead.
func TestDirGetRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "real"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink("real", filepath.Join(dir, "link")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.parquet"), 0o755))
	b, err := Dir(dir).Get(ctx, "real")
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))
	for name, what := range map[string]string{"link": "symlink to real", "fifo": "named pipe (FIFO)", "sub.parquet": "directory"} {
		_, err = Dir(dir).Get(ctx, name)
		assert.ErrorContains(t, err, name+" is not a regular file: "+what)
		var nr *NotRegularError
		require.True(t, errors.As(err, &nr), name)
		assert.Equal(t, name, nr.Key)
		assert.Equal(t, what, nr.What)
	}
	_, err = Dir(dir).Get(ctx, "gone")
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestDirBatches: every name a reader's glob reads, dot-names and names
// that are not regular files included; List, by contrast, gives the
// regular files under a prefix, no dot-names.
func TestDirBatches(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(name string) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(name), 0o644))
	}
	write("dt=2026-03-09/a-00000000000000000000.parquet")
	write(".hidden/b.parquet")
	write("dt=2026-03-09/.c.parquet")
	write("checkpoints/a/00000000000000000010.checkpoint")
	write("checkpoints/a/.00000000000000000020.checkpoint.tmp-1")
	write("notes.txt")
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "dt=2026-03-10")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "x.parquet"), filepath.Join(dir, "link.parquet")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "pipe.parquet"), 0o644))
	sock, err := net.Listen("unix", filepath.Join(dir, "s.parquet"))
	require.NoError(t, err)
	defer sock.Close()

	got, err := Dir(dir).Batches(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{
		".hidden/b.parquet",
		"dt=2026-03-09/.c.parquet",
		"dt=2026-03-09/a-00000000000000000000.parquet",
		"dt=2026-03-10",
		"link.parquet",
		"pipe.parquet",
		"s.parquet",
	}, got)
	b, err := Dir(dir).Get(ctx, ".hidden/b.parquet")
	require.NoError(t, err, "a dot-name a reader reads can be read")
	assert.Equal(t, ".hidden/b.parquet", string(b))

	cps, err := Dir(dir).List(ctx, CheckpointsPrefix)
	require.NoError(t, err)
	assert.Equal(t, []string{"checkpoints/a/00000000000000000010.checkpoint"}, cps)

	_, err = Dir(filepath.Join(dir, "missing")).Batches(ctx)
	require.ErrorIs(t, err, os.ErrNotExist, "a missing trail is an error, not an empty one")
	none, err := Dir(filepath.Join(dir, "missing")).List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, none)
}
