package batch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/entry"
)

var t0 = time.Date(2026, 3, 9, 14, 23, 7, 0, time.UTC)

func seqs(b *Batch) []int64 {
	var out []int64
	for _, e := range b.Entries {
		out = append(out, e.Seq)
	}
	return out
}

func TestAddSealsByCount(t *testing.T) {
	b := New(Limits{MaxEntries: 3, MaxBytes: 1 << 20, MaxAge: time.Minute})
	var sealed []*Batch
	for i := range int64(7) {
		if full := b.Add(entry.Entry{Seq: i}, 10, t0); full != nil {
			sealed = append(sealed, full)
		}
	}
	require.Len(t, sealed, 2)
	assert.Equal(t, []int64{0, 1, 2}, seqs(sealed[0]))
	assert.Equal(t, []int64{3, 4, 5}, seqs(sealed[1]))
	assert.Equal(t, 30, sealed[0].Bytes)
	assert.Equal(t, 1, b.Len())
	last := b.Flush()
	require.NotNil(t, last)
	assert.Equal(t, []int64{6}, seqs(last))
	assert.Nil(t, b.Flush(), "nothing is open after a flush")
}

func TestAddSealsByBytes(t *testing.T) {
	b := New(Limits{MaxEntries: 100, MaxBytes: 25, MaxAge: time.Minute})
	assert.Nil(t, b.Add(entry.Entry{Seq: 0}, 10, t0))
	assert.Nil(t, b.Add(entry.Entry{Seq: 1}, 10, t0))
	full := b.Add(entry.Entry{Seq: 2}, 10, t0)
	require.NotNil(t, full)
	assert.Equal(t, []int64{0, 1, 2}, seqs(full))
	// An entry larger than the limit is a batch of its own.
	full = b.Add(entry.Entry{Seq: 3}, 1000, t0)
	require.NotNil(t, full)
	assert.Equal(t, []int64{3}, seqs(full))
}

func TestDueByAge(t *testing.T) {
	b := New(Limits{MaxEntries: 100, MaxBytes: 1 << 20, MaxAge: 10 * time.Second})
	assert.False(t, b.Due(t0), "no open batch")
	b.Add(entry.Entry{Seq: 0}, 1, t0)
	assert.False(t, b.Due(t0.Add(9*time.Second)))
	assert.True(t, b.Due(t0.Add(10*time.Second)))
	assert.Equal(t, t0, b.Flush().Opened)
}

func TestNewDayMakesBatchDue(t *testing.T) {
	b := New(Limits{MaxEntries: 100, MaxBytes: 1 << 20, MaxAge: time.Hour})
	late := time.Date(2026, 3, 9, 23, 59, 59, 0, time.UTC)
	b.Add(entry.Entry{Seq: 0}, 1, late)
	assert.False(t, b.Due(late.Add(500*time.Millisecond)))
	assert.True(t, b.Due(late.Add(2*time.Second)), "a new UTC day makes the batch due before MaxAge")
	assert.Equal(t, []int64{0}, seqs(b.Flush()))
	b.Add(entry.Entry{Seq: 1}, 1, late.Add(2*time.Second))
	next := b.Flush()
	assert.Equal(t, []int64{1}, seqs(next))
	assert.Equal(t, "2026-03-10", next.Opened.UTC().Format(time.DateOnly))
}

func TestDayIsUTC(t *testing.T) {
	b := New(Limits{MaxEntries: 100, MaxBytes: 1 << 20, MaxAge: 2 * time.Hour})
	tz := time.FixedZone("UTC+5", 5*3600)
	// 23:30 and 00:30 local are 18:30 and 19:30 UTC: the same UTC day.
	b.Add(entry.Entry{Seq: 0}, 1, time.Date(2026, 3, 9, 23, 30, 0, 0, tz))
	assert.False(t, b.Due(time.Date(2026, 3, 10, 0, 30, 0, 0, tz)))
	assert.Nil(t, b.Add(entry.Entry{Seq: 1}, 1, time.Date(2026, 3, 10, 0, 30, 0, 0, tz)))
	assert.Equal(t, 2, b.Len())
}
