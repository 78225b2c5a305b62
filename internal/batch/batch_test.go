package batch

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

var t0 = time.Date(2026, 3, 9, 14, 23, 7, 0, time.UTC)

// entriesOf encodes b as its batch file and reads the file's entries back.
func entriesOf(t testing.TB, b *Batch) []entry.Entry {
	t.Helper()
	var buf bytes.Buffer
	_, err := b.Encode(&buf)
	require.NoError(t, err)
	entries, _, err := parquetfile.ReadEntries(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	return entries
}

// seqs returns the seqs of b's entries, as its file holds them.
func seqs(t testing.TB, b *Batch) []int64 {
	entries := entriesOf(t, b)
	var out []int64
	for _, e := range entries {
		out = append(out, e.Seq)
	}
	return out
}

// feed appends entries to one chain and hands each to a batcher the way the
// exporter does.
type feed struct {
	c *chain.Chain
	b *Batcher
}

func newFeed(limits Limits) *feed {
	return &feed{c: chain.New("c", chain.Genesis()), b: New(limits)}
}

func (f *feed) add(size int, now time.Time) *Batch {
	e := sample(int(f.c.Head().Size))
	f.c.Append(&e)
	sum := f.c.Sum()
	return f.b.Add(&e, &sum, size, now)
}

func strp(s string) *string { return &s }

// sample is a realistic entry, some optional fields set and some not;
// of format version 2 (an end time, a sender or NULL) but every fourth,
// of version 1 (neither).
func sample(i int) entry.Entry {
	e := entry.Entry{
		TimeUnixNano: 1_700_000_000_000_000_000 + int64(i), ExecutionID: fmt.Sprintf("run-%d", i/3),
		TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
		ActionType: "write", TargetSystem: "CRM", TargetResource: fmt.Sprintf("Contact/%d", i),
		Result: "ok", StatusCode: "Ok", Attributes: `{"k":"v"}`,
		ProposedValue: strp("jane@new.example — ü"), AgentName: strp("crm-agent"),
	}
	if i%2 == 0 {
		e.ParentSpanID = strp("00f067aa0ba902b7")
		e.Validation = strp(`[{"field":"x","problem":"missing"}]`)
	}
	if i%3 == 0 {
		e.Reasoning = strp("")
	}
	if i%4 != 1 {
		end := e.TimeUnixNano + 250_000_000
		e.EndTimeUnixNano = &end
		if i%2 == 0 {
			e.Sender = strp("svc-crm ✓")
		}
	}
	return e
}

func TestAddSealsByCount(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 3, MaxBytes: 1 << 20, MaxAge: time.Minute})
	var sealed []*Batch
	for range 7 {
		if full := f.add(10, t0); full != nil {
			sealed = append(sealed, full)
		}
	}
	require.Len(t, sealed, 2)
	assert.Equal(t, []int64{0, 1, 2}, seqs(t, sealed[0]))
	assert.Equal(t, []int64{3, 4, 5}, seqs(t, sealed[1]))
	assert.Equal(t, 30, sealed[0].Bytes)
	assert.Equal(t, 1, f.b.Len())
	last := f.b.Flush()
	require.NotNil(t, last)
	assert.Equal(t, []int64{6}, seqs(t, last))
	assert.Nil(t, f.b.Flush(), "nothing is open after a flush")
}

func TestAddSealsByBytes(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 100, MaxBytes: 25, MaxAge: time.Minute})
	assert.Nil(t, f.add(10, t0))
	assert.Nil(t, f.add(10, t0))
	full := f.add(10, t0)
	require.NotNil(t, full)
	assert.Equal(t, []int64{0, 1, 2}, seqs(t, full))
	// An entry larger than the limit is a batch of its own.
	full = f.add(1000, t0)
	require.NotNil(t, full)
	assert.Equal(t, []int64{3}, seqs(t, full))
}

func TestDueByAge(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 100, MaxBytes: 1 << 20, MaxAge: 10 * time.Second})
	assert.False(t, f.b.Due(t0), "no open batch")
	f.add(1, t0)
	assert.False(t, f.b.Due(t0.Add(9*time.Second)))
	assert.True(t, f.b.Due(t0.Add(10*time.Second)))
	assert.Equal(t, t0, f.b.Flush().Opened)
}

func TestNewDayMakesBatchDue(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 100, MaxBytes: 1 << 20, MaxAge: time.Hour})
	late := time.Date(2026, 3, 9, 23, 59, 59, 0, time.UTC)
	f.add(1, late)
	assert.False(t, f.b.Due(late.Add(500*time.Millisecond)))
	assert.True(t, f.b.Due(late.Add(2*time.Second)), "a new UTC day makes the batch due before MaxAge")
	assert.Equal(t, []int64{0}, seqs(t, f.b.Flush()))
	f.add(1, late.Add(2*time.Second))
	next := f.b.Flush()
	assert.Equal(t, []int64{1}, seqs(t, next))
	assert.Equal(t, "2026-03-10", next.Opened.UTC().Format(time.DateOnly))
}

func TestDayIsUTC(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 100, MaxBytes: 1 << 20, MaxAge: 2 * time.Hour})
	tz := time.FixedZone("UTC+5", 5*3600)
	// 23:30 and 00:30 local are 18:30 and 19:30 UTC: the same UTC day.
	f.add(1, time.Date(2026, 3, 9, 23, 30, 0, 0, tz))
	assert.False(t, f.b.Due(time.Date(2026, 3, 10, 0, 30, 0, 0, tz)))
	assert.Nil(t, f.add(1, time.Date(2026, 3, 10, 0, 30, 0, 0, tz)))
	assert.Equal(t, 2, f.b.Len())
}

// TestBatchKeepsEntriesExactly: a batch's file holds exactly the entries it
// was given, hashes and optional fields included; truncation keeps a
// prefix; a released batch's buffers hold nothing of it in the next batch.
func TestBatchKeepsEntriesExactly(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 7, MaxBytes: 1 << 20, MaxAge: time.Minute})
	c := chain.New("c", chain.Genesis())
	var want []entry.Entry
	var full *Batch
	for i := range 7 {
		e := sample(i)
		c.Append(&e)
		want = append(want, e)
		full = f.add(1, t0)
	}
	require.NotNil(t, full)
	assert.Equal(t, want, entriesOf(t, full))
	assert.Equal(t, int64(0), full.FirstSeq())

	again, err := NewBatch(t0, want)
	require.NoError(t, err)
	assert.Equal(t, want, entriesOf(t, again))

	full.Truncate(3)
	assert.Equal(t, 3, full.Len())
	assert.Equal(t, want[:3], entriesOf(t, full))
	full.Truncate(0)
	assert.Equal(t, 0, full.Len())

	// The next batch may reuse a released batch's buffers.
	full.Release()
	again.Release()
	var next *Batch
	for next == nil {
		next = f.add(1, t0)
	}
	got := entriesOf(t, next)
	require.Len(t, got, 7)
	assert.Equal(t, int64(7), got[0].Seq)
	assert.Equal(t, want[6].EntryHash, got[0].PrevHash)
}

func TestNewBatchRefusesGapsAndUnhashedEntries(t *testing.T) {
	c := chain.New("c", chain.Genesis())
	es := []entry.Entry{sample(0), sample(1), sample(2)}
	for i := range es {
		c.Append(&es[i])
	}
	_, err := NewBatch(t0, []entry.Entry{es[0], es[2]})
	require.ErrorIs(t, err, ErrNotConsecutive)
	es[1].EntryHash = ""
	_, err = NewBatch(t0, es)
	require.ErrorContains(t, err, "no entry hash")
	es[1].EntryHash = strings.Repeat("g", 64)
	_, err = NewBatch(t0, es)
	require.ErrorContains(t, err, "not hex")
}

// BenchmarkAdd chains 10,000 realistic entries and adds them to a
// batcher, as the exporter does under its lock (the write-ahead log aside):
//
//	go test -run '^$' -bench 'Add|Seal' -benchmem ./internal/batch/
func BenchmarkAdd(b *testing.B) {
	es := make([]entry.Entry, 10_000)
	for i := range es {
		es[i] = sample(i)
	}
	bt := New(Limits{MaxEntries: len(es), MaxBytes: 1 << 30, MaxAge: time.Hour})
	b.ReportAllocs()
	for b.Loop() {
		c := chain.New("c", chain.Genesis())
		for i := range es {
			e := es[i]
			c.Append(&e)
			sum := c.Sum()
			if full := bt.Add(&e, &sum, parquetfile.EstimatedSize(&e), t0); full != nil {
				full.Release()
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(es)), "ns/entry")
}

// BenchmarkSeal10k writes a full batch of 10,000 realistic entries as its
// Parquet file, as the exporter's writer does.
func BenchmarkSeal10k(b *testing.B) {
	f := newFeed(Limits{MaxEntries: 10000, MaxBytes: 1 << 30, MaxAge: time.Hour})
	var full *Batch
	for full == nil {
		full = f.add(1, t0)
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if _, err := full.Encode(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(full.Len()), "ns/entry")
}
