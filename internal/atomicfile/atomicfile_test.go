package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	require.NoError(t, WriteFile(path, []byte("one"), 0o640))
	require.NoError(t, WriteFile(path, []byte("two"), 0o600))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "two", string(b))
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	names, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, names, 1, "no temporary file is left")
}

func TestWriteFileFailsWithoutTheDirectory(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "missing", "state"), []byte("x"), 0o600)
	assert.Error(t, err)
}

func TestIsTemp(t *testing.T) {
	assert.True(t, IsTemp(".state.tmp-123"))
	assert.False(t, IsTemp("state"))
	assert.False(t, IsTemp(".state"))
	assert.False(t, IsTemp("state.tmp-1"))
}
