package store

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

func TestParseBatchName(t *testing.T) {
	k := "dt=2026-11-27/c-1-00000000000000000042.parquet"
	for _, name := range []string{k, ".hidden/" + k, "a/b/" + k} {
		id, seq, day, err := ParseBatchName(name)
		require.NoError(t, err, name)
		assert.Equal(t, "c-1", id)
		assert.Equal(t, int64(42), seq)
		assert.Equal(t, "2026-11-27", day)
	}
	for _, name := range []string{"", "c-1-00000000000000000042.parquet", "x/c-1-00000000000000000042.parquet", "dt=2026-11-27/x/c-1-00000000000000000042.parquet"} {
		_, _, _, err := ParseBatchName(name)
		assert.ErrorIs(t, err, ErrNotBatchKey, name)
	}
}

func TestIsBatchKey(t *testing.T) {
	for _, k := range []string{"dt=2026-11-27/c-00000000000000000000.parquet", ".hidden/x.parquet", "x.parquet", "dir.parquet"} {
		assert.True(t, IsBatchKey(k), k)
	}
	for _, k := range []string{"", "x.parquet.tmp-1", "checkpoints/c/00000000000000000001.checkpoint", "x.PARQUET", "keys/c-1.vkey"} {
		assert.False(t, IsBatchKey(k), k)
	}
}

func TestCheckpointKey(t *testing.T) {
	k := CheckpointKey("collector-1", 10)
	assert.Equal(t, "checkpoints/collector-1/00000000000000000010.checkpoint", k)
	assert.True(t, strings.HasPrefix(k, CheckpointsPrefix))
	assert.True(t, IsCheckpointKey(k))

	for _, id := range []string{"a", "a-b-c", "x.y_z", strings.Repeat("z", 128)} {
		for _, size := range []int64{0, 1, 10, 1<<63 - 1} {
			gotID, gotSize, err := ParseCheckpointKey(CheckpointKey(id, size))
			require.NoError(t, err, id)
			assert.Equal(t, id, gotID)
			assert.Equal(t, size, gotSize)
		}
	}
	// Sizes sort like their keys.
	var keys []string
	for _, n := range []int64{1, 9, 10, 100, 1 << 40} {
		keys = append(keys, CheckpointKey("c", n))
	}
	assert.True(t, slices.IsSorted(keys), "%v", keys)
}

func TestParseCheckpointKeyForeign(t *testing.T) {
	for _, k := range []string{
		"",
		"checkpoints/c/00000000000000000010", // no suffix
		"checkpoints/c/10.checkpoint",        // not padded
		"checkpoints/c/000000000000000000010.checkpoint",       // 21 digits
		"checkpoints/c/99999999999999999999.checkpoint",        // beyond int64
		"checkpoints/c/-0000000000000000010.checkpoint",        // negative
		"checkpoints/c/d/00000000000000000010.checkpoint",      // nested
		"checkpoints/00000000000000000010.checkpoint",          // no chain
		"checkpoints//00000000000000000010.checkpoint",         // empty chain
		"checkpoints/.c/00000000000000000010.checkpoint",       // invalid chain id
		"checkpoint/c/00000000000000000010.checkpoint",         // other prefix
		"x/checkpoints/c/00000000000000000010.checkpoint",      // not at the root
		"checkpoints/c/.00000000000000000010.checkpoint.tmp-1", // temp file
	} {
		_, _, err := ParseCheckpointKey(k)
		assert.ErrorIs(t, err, ErrNotCheckpointKey, k)
	}
	// A verifier still reads what is stored under another name.
	assert.True(t, IsCheckpointKey("checkpoints/c/10.checkpoint"))
	assert.True(t, IsCheckpointKey("checkpoints/c/d/00000000000000000010.checkpoint"))
	assert.False(t, IsCheckpointKey("checkpoints/c/00000000000000000010.txt"))
	assert.False(t, IsCheckpointKey("x/checkpoints/c/00000000000000000010.checkpoint"))
}

func TestVerifierKeyKey(t *testing.T) {
	vkey := "agentaudit-collector-1+7f3a01bc+AQIDBA=="
	k := VerifierKeyKey("collector-1", vkey)
	assert.Equal(t, "keys/collector-1-7f3a01bc.vkey", k)
	assert.True(t, strings.HasPrefix(k, KeysPrefix))
	id, hash, err := ParseVerifierKeyKey(k)
	require.NoError(t, err)
	assert.Equal(t, "collector-1", id, "the hash follows the last '-'")
	assert.Equal(t, "7f3a01bc", hash)
	assert.Equal(t, "keys/c-unknown.vkey", VerifierKeyKey("c", "not a key"))

	for _, k := range []string{"", "keys/c.vkey", "keys/-7f3a01bc.vkey", "keys/.vkey", "keys/c-1.txt", "keys/d/c-1.vkey", "x/keys/c-1.vkey", "key/c-1.vkey"} {
		_, _, err := ParseVerifierKeyKey(k)
		assert.ErrorIs(t, err, ErrNotVerifierKeyKey, k)
	}
	assert.True(t, IsVerifierKeyKey("keys/c.vkey"), "named like a key file, though no chain id")
	assert.False(t, IsVerifierKeyKey("keys/d/c-1.vkey"))
	assert.False(t, IsVerifierKeyKey("keys/README"))
}
