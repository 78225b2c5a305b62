package wal

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
)

func TestAcceptanceRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a, err := ReadAcceptance(dir, "c")
	require.NoError(t, err)
	assert.Nil(t, a)
	want := Acceptance{Segment: SegmentName("c", 3), Offset: 42, Corruption: "record payload checksum mismatch",
		By: "ops@example.com", Reason: "disk replaced", At: time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)}
	require.NoError(t, WriteAcceptance(dir, "c", want))
	a, err = ReadAcceptance(dir, "c")
	require.NoError(t, err)
	assert.Equal(t, want, *a)
	assert.Error(t, WriteAcceptance(dir, "c", want), "an acceptance is never replaced")

	require.NoError(t, os.WriteFile(filepath.Join(dir, AcceptanceName("d")), []byte(`{"segment":"x","offset":1}`), 0o640))
	_, err = ReadAcceptance(dir, "d")
	assert.ErrorContains(t, err, "accepted_by, reason and accepted_at are required")
}

// TestSalvage finds the records after a damaged one, in both formats.
func TestSalvage(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	want := entries(c, 4)
	var v1, v2 []byte
	v2 = append(v2, magic...)
	for i := range want {
		enc := chain.AppendCanonical(nil, &want[i])
		v2 = appendRecord(v2, enc)
		v1 = appendV1(v1, enc)
	}
	for name, data := range map[string][]byte{"format 2": v2, "format 1": v1} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, SegmentName("c", 0))
			p := parse(data, "c", 0)
			require.Empty(t, p.why)
			require.Equal(t, want, p.entries)
			start := 0
			if name == "format 2" {
				start = len(magic)
			}
			rec := (len(data) - start) / 4 // 4 records of equal size
			bad := append([]byte{}, data...)
			bad[start+rec+3] ^= 0xff // the length of seq 1
			require.NoError(t, os.WriteFile(path, bad, 0o640))
			segs, err := Recover(dir, "c")
			require.NoError(t, err)
			require.NotNil(t, segs[0].Corrupt)
			assert.Equal(t, want[:1], segs[0].Entries)
			got, err := Salvage(path, "c", segs[0].Corrupt.Offset)
			require.NoError(t, err)
			assert.Equal(t, want[2:], got, "every record after the damaged one")
			other, err := Salvage(path, "other", segs[0].Corrupt.Offset)
			require.NoError(t, err)
			assert.Empty(t, other, "only the chain's own entries")
		})
	}
}

// appendV1 appends a record of format 1: length, CRC-32C, payload.
func appendV1(dst, payload []byte) []byte {
	r := appendRecord(nil, payload)
	return append(append(dst, r[:8]...), payload...)
}

// TestReplace: a replacement retires the segments and the acceptance into
// the lost directory and puts the new segment in place; one a crash
// interrupted is undone while the acceptance is still in place, and
// completed once it was retired.
func TestReplace(t *testing.T) {
	c := chain.New("c", chain.Genesis())
	es := entries(c, 3)
	acc := &Acceptance{Segment: SegmentName("c", 0), Offset: 8, Corruption: "x", By: "ops", Reason: "r", At: time.Unix(100, 0)}
	setUp := func(t *testing.T) string {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, SegmentName("c", 0)), []byte("damaged"), 0o640))
		require.NoError(t, os.WriteFile(filepath.Join(dir, SegmentName("c", 5)), []byte("later"), 0o640))
		require.NoError(t, WriteAcceptance(dir, "c", *acc))
		return dir
	}
	lost := func(dir string) string { return filepath.Join(dir, LostDir, "c-00000000000000000000-100000000000") }

	t.Run("whole", func(t *testing.T) {
		dir := setUp(t)
		require.NoError(t, Replace(dir, "c", 0, acc, es, []string{SegmentName("c", 0), SegmentName("c", 5)}))
		segs, err := Recover(dir, "c")
		require.NoError(t, err)
		require.Len(t, segs, 1)
		assert.Equal(t, es, segs[0].Entries)
		for name, want := range map[string]string{SegmentName("c", 0): "damaged", SegmentName("c", 5): "later"} {
			got, err := os.ReadFile(filepath.Join(lost(dir), name))
			require.NoError(t, err)
			assert.Equal(t, want, string(got))
		}
		_, err = os.Stat(filepath.Join(lost(dir), AcceptanceName("c")))
		assert.NoError(t, err)
		a, err := ReadAcceptance(dir, "c")
		require.NoError(t, err)
		assert.Nil(t, a, "the acceptance is used up")
		require.NoError(t, FinishReplace(dir, "c"), "nothing to finish")
	})

	t.Run("interrupted before the acceptance moved", func(t *testing.T) {
		dir := setUp(t)
		// As Replace leaves it after moving the first segment.
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".c-00000000000000000000-100000000000"+replaceSuffix), []byte("new"), 0o640))
		require.NoError(t, os.MkdirAll(lost(dir), 0o750))
		require.NoError(t, os.Rename(filepath.Join(dir, SegmentName("c", 0)), filepath.Join(lost(dir), SegmentName("c", 0))))
		require.NoError(t, FinishReplace(dir, "c"))
		got, err := os.ReadFile(filepath.Join(dir, SegmentName("c", 0)))
		require.NoError(t, err)
		assert.Equal(t, "damaged", string(got), "undone: the damaged segment is back")
		names, err := filepath.Glob(filepath.Join(dir, ".*"))
		require.NoError(t, err)
		assert.Empty(t, names, "the new segment's temporary file is gone")
		a, err := ReadAcceptance(dir, "c")
		require.NoError(t, err)
		assert.NotNil(t, a, "the acceptance stays, for the next try")
	})

	t.Run("interrupted after the new segment was linked", func(t *testing.T) {
		dir := setUp(t)
		tmp := filepath.Join(dir, ".c-00000000000000000000-100000000000"+replaceSuffix)
		require.NoError(t, os.MkdirAll(lost(dir), 0o750))
		for _, name := range []string{SegmentName("c", 0), SegmentName("c", 5), AcceptanceName("c")} {
			require.NoError(t, os.Rename(filepath.Join(dir, name), filepath.Join(lost(dir), name)))
		}
		require.NoError(t, os.WriteFile(tmp, []byte("new"), 0o640))
		require.NoError(t, os.Link(tmp, filepath.Join(dir, SegmentName("c", 0))))
		require.NoError(t, FinishReplace(dir, "c"))
		assert.NoFileExists(t, tmp)
		got, err := os.ReadFile(filepath.Join(dir, SegmentName("c", 0)))
		require.NoError(t, err)
		assert.Equal(t, "new", string(got))
	})

	t.Run("interrupted after the acceptance moved", func(t *testing.T) {
		dir := setUp(t)
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".c-00000000000000000000-100000000000"+replaceSuffix), []byte("new"), 0o640))
		require.NoError(t, os.MkdirAll(lost(dir), 0o750))
		for _, name := range []string{SegmentName("c", 0), SegmentName("c", 5), AcceptanceName("c")} {
			require.NoError(t, os.Rename(filepath.Join(dir, name), filepath.Join(lost(dir), name)))
		}
		require.NoError(t, FinishReplace(dir, "c"))
		got, err := os.ReadFile(filepath.Join(dir, SegmentName("c", 0)))
		require.NoError(t, err)
		assert.Equal(t, "new", string(got), "completed: the new segment took its name")
	})
}
