package store

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCosignatureKey(t *testing.T) {
	k := CosignatureKey("collector-1", 10, "witness.example-1")
	assert.Equal(t, "checkpoints/collector-1/00000000000000000010.checkpoint.cosig.witness.example-1", k)
	require.NoError(t, ValidKey(k), "a cosignature key is a store key")
	assert.True(t, IsCosignatureKey(k))
	assert.False(t, IsCheckpointKey(k), "a verifier listing checkpoints skips it")
	assert.False(t, IsTimestampKey(k))

	for _, id := range []string{"a", "a-b-c", "x.y_z"} {
		for _, size := range []int64{0, 1, 1<<63 - 1} {
			for _, w := range []string{"w", "w.cosig.x", "a-b"} {
				gotID, gotSize, gotW, err := ParseCosignatureKey(CosignatureKey(id, size, w))
				require.NoError(t, err)
				assert.Equal(t, []any{id, size, w}, []any{gotID, gotSize, gotW})
			}
		}
	}
	for _, k := range []string{
		"",
		"checkpoints/c/00000000000000000010.checkpoint",
		"checkpoints/c/00000000000000000010.checkpoint.cosig.",          // no witness
		"checkpoints/c/00000000000000000010.checkpoint.cosig..w",        // witness starts with '.'
		"checkpoints/c/00000000000000000010.checkpoint.cosig.w/x",       // nested
		"checkpoints/c/10.checkpoint.cosig.w",                           // not padded
		"x/checkpoints/c/00000000000000000010.checkpoint.cosig.w",       // not at the root
		"checkpoints/c/00000000000000000010.checkpoint.tsr",             // a timestamp
		"checkpoints/c/00000000000000000010.checkpoint.cosig.w.tmp-1/x", // temp dir
	} {
		_, _, _, err := ParseCosignatureKey(k)
		assert.ErrorIs(t, err, ErrNotCosignatureKey, k)
	}
	assert.False(t, ValidWitnessName(""))
	assert.False(t, ValidWitnessName("a/b"))
	assert.True(t, ValidWitnessName("sigsum.org-w1"))
}

func TestTimestampKey(t *testing.T) {
	k := TimestampKey("collector-1", 10)
	assert.Equal(t, "checkpoints/collector-1/00000000000000000010.checkpoint.tsr", k)
	require.NoError(t, ValidKey(k))
	assert.True(t, IsTimestampKey(k))
	assert.False(t, IsCheckpointKey(k), "a verifier listing checkpoints skips it")
	assert.False(t, IsCosignatureKey(k))

	id, size, err := ParseTimestampKey(k)
	require.NoError(t, err)
	assert.Equal(t, "collector-1", id)
	assert.Equal(t, int64(10), size)
	for _, k := range []string{"", "checkpoints/c/00000000000000000010.checkpoint", "checkpoints/c/10.checkpoint.tsr", "x/checkpoints/c/00000000000000000010.checkpoint.tsr", "checkpoints/c/00000000000000000010.tsr"} {
		_, _, err := ParseTimestampKey(k)
		assert.ErrorIs(t, err, ErrNotTimestampKey, k)
	}
}
