package recorder

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
)

func TestHeadMarkerOfAnotherStoreIsIgnored(t *testing.T) {
	dir := t.TempDir()
	h := chain.Head{Size: 6, Hash: strings.Repeat("ab", 32)}
	a := headMarker{dir, "collector-1", "file:/trail-a"}
	require.NoError(t, a.write(h))
	got, ok, err := a.read()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, h, got)
	_, ok, err = headMarker{dir, "collector-1", "file:/trail-b"}.read()
	require.NoError(t, err)
	assert.False(t, ok, "a spool reused for another trail must not move that trail's chain")
	_, ok, err = headMarker{dir, "collector-2", "file:/trail-a"}.read()
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, os.WriteFile(a.path(), []byte("garbage"), 0o640))
	_, _, err = a.read()
	assert.Error(t, err, "a corrupt marker is an error naming the path, not a silent restart from genesis")
}

func TestSortUploadsPutsCheckpointsAfterTheirBatches(t *testing.T) {
	keys := []string{
		"checkpoints/c/00000000000000000008.checkpoint",
		"checkpoints/c/00000000000000000004.checkpoint",
		"dt=2026-03-10/c-00000000000000000004.parquet",
		"dt=2026-03-09/c-00000000000000000000.parquet",
		"keys/c-1234abcd.vkey",
		"checkpoints/b/00000000000000000002.checkpoint",
		"dt=2026-03-09/b-00000000000000000000.parquet",
	}
	sortUploads(keys)
	assert.Equal(t, []string{
		"keys/c-1234abcd.vkey",
		"dt=2026-03-09/b-00000000000000000000.parquet",
		"checkpoints/b/00000000000000000002.checkpoint",
		"dt=2026-03-09/c-00000000000000000000.parquet",
		"checkpoints/c/00000000000000000004.checkpoint",
		"dt=2026-03-10/c-00000000000000000004.parquet",
		"checkpoints/c/00000000000000000008.checkpoint",
	}, keys)
}
