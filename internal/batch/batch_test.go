package batch

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

var t0 = time.Date(2026, 3, 9, 14, 23, 7, 0, time.UTC)

// seqs decodes b and returns the seqs of its entries.
func seqs(b *Batch) []int64 {
	entries, err := b.Entries()
	if err != nil {
		panic(err)
	}
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
	return f.b.Add(&e, f.c.Canonical(), size, now)
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
	assert.Equal(t, []int64{0, 1, 2}, seqs(sealed[0]))
	assert.Equal(t, []int64{3, 4, 5}, seqs(sealed[1]))
	assert.Equal(t, 30, sealed[0].Bytes)
	assert.Equal(t, 1, f.b.Len())
	last := f.b.Flush()
	require.NotNil(t, last)
	assert.Equal(t, []int64{6}, seqs(last))
	assert.Nil(t, f.b.Flush(), "nothing is open after a flush")
}

func TestAddSealsByBytes(t *testing.T) {
	f := newFeed(Limits{MaxEntries: 100, MaxBytes: 25, MaxAge: time.Minute})
	assert.Nil(t, f.add(10, t0))
	assert.Nil(t, f.add(10, t0))
	full := f.add(10, t0)
	require.NotNil(t, full)
	assert.Equal(t, []int64{0, 1, 2}, seqs(full))
	// An entry larger than the limit is a batch of its own.
	full = f.add(1000, t0)
	require.NotNil(t, full)
	assert.Equal(t, []int64{3}, seqs(full))
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
	assert.Equal(t, []int64{0}, seqs(f.b.Flush()))
	f.add(1, late.Add(2*time.Second))
	next := f.b.Flush()
	assert.Equal(t, []int64{1}, seqs(next))
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

// TestBatchKeepsEntriesExactly: a batch gives back exactly the entries it
// was given, hashes and optional fields included, decoded from its buffers;
// truncation keeps a prefix.
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
	got, err := full.Entries()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, int64(0), full.FirstSeq())

	again, err := NewBatch(t0, want)
	require.NoError(t, err)
	got, err = again.Entries()
	require.NoError(t, err)
	assert.Equal(t, want, got)

	full.Truncate(3)
	assert.Equal(t, 3, full.Len())
	got, err = full.Entries()
	require.NoError(t, err)
	assert.Equal(t, want[:3], got)
	full.Truncate(0)
	assert.Equal(t, 0, full.Len())
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
}

// BenchmarkEntries decodes a full batch of 10,000 realistic entries, as the
// exporter does before encoding it:
//
//	go test -run '^$' -bench Entries -benchmem ./internal/batch/
func BenchmarkEntries(b *testing.B) {
	f := newFeed(Limits{MaxEntries: 10000, MaxBytes: 1 << 30, MaxAge: time.Hour})
	var full *Batch
	for full == nil {
		full = f.add(1, t0)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := full.Entries(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(full.Len()), "ns/entry")
}
