package wal

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func strp(s string) *string { return &s }

// entries returns n chained entries of chain "c" starting at head.
func entries(c *chain.Chain, n int) []entry.Entry {
	out := make([]entry.Entry, n)
	for i := range out {
		out[i] = entry.Entry{
			TimeUnixNano: int64(1_700_000_000_000_000_000 + i), ExecutionID: fmt.Sprintf("exec-%d", i),
			TraceID: "0102030405060708090a0b0c0d0e0f10", SpanID: "0102030405060708",
			ActionType: "write", TargetSystem: "CRM", Result: "ok", StatusCode: "Unset", Attributes: "{}",
			ProposedValue: strp("jane@newdomain.com — ü"),
		}
		c.Append(&out[i])
	}
	return out
}

func TestAppendSyncRecover(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), l.DurableSeq())
	want := entries(c, 5)
	for i := range want {
		l.Append(&want[i])
	}
	require.NoError(t, l.Sync(l.End()))
	assert.Equal(t, int64(4), l.DurableSeq())

	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 1)
	assert.Equal(t, "c-00000000000000000000.wal", segs[0].Name)
	assert.Equal(t, int64(0), segs[0].FirstSeq)
	assert.False(t, segs[0].Torn)
	assert.Equal(t, want, segs[0].Entries, "entries come back exactly, hashes included")
	require.NoError(t, l.Close())
}

// TestAppendCanonical: records appended from the chain's encoding, as the
// exporter does, are the records Append writes.
func TestAppendCanonical(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := Open(dirA, "c", 0)
	require.NoError(t, err)
	b, err := Open(dirB, "c", 0)
	require.NoError(t, err)
	c := chain.New("c", chain.Genesis())
	want := entries(chain.New("c", chain.Genesis()), 3)
	for i := range want {
		e := want[i]
		e.ChainID, e.Seq, e.PrevHash, e.EntryHash = "", 0, "", ""
		c.Append(&e)
		a.AppendCanonical(e.Seq, c.Canonical())
		b.Append(&want[i])
	}
	require.NoError(t, a.Sync(a.End()))
	require.NoError(t, b.Sync(b.End()))
	assert.Equal(t, int64(2), a.DurableSeq())
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	name := SegmentName("c", 0)
	dataA, err := os.ReadFile(filepath.Join(dirA, name))
	require.NoError(t, err)
	dataB, err := os.ReadFile(filepath.Join(dirB, name))
	require.NoError(t, err)
	assert.Equal(t, dataB, dataA)
	segs, err := Recover(dirA, "c")
	require.NoError(t, err)
	require.Len(t, segs, 1)
	assert.Equal(t, want, segs[0].Entries)
}

func TestRecoverStopsAtTornTail(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	want := entries(c, 3)
	for i := range want {
		l.Append(&want[i])
	}
	require.NoError(t, l.Close())
	path := filepath.Join(dir, SegmentName("c", 0))
	full, err := os.ReadFile(path)
	require.NoError(t, err)

	for name, data := range map[string][]byte{
		"cut in the last payload": full[:len(full)-3],
		"cut in the last header":  full[:2*len(full)/3+4], // 3 records of equal size
		"garbage appended":        append(append([]byte{}, full...), 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1),
		"bit flip in last record": flip(full, len(full)-10),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, data, 0o640))
			segs, err := Recover(dir, "c")
			require.NoError(t, err)
			require.Len(t, segs, 1)
			s := segs[0]
			assert.True(t, s.Torn)
			assert.Equal(t, want[:len(s.Entries)], s.Entries, "the valid prefix is intact")
			assert.GreaterOrEqual(t, len(s.Entries), 1)
			assert.Equal(t, int64(len(data)), s.ValidBytes+s.TornBytes)

			require.NoError(t, Truncate(dir, s.Name, s.ValidBytes))
			again, err := Recover(dir, "c")
			require.NoError(t, err)
			assert.False(t, again[0].Torn, "truncation drops the torn tail")
			assert.Equal(t, s.Entries, again[0].Entries)
		})
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte{}, b...)
	out[i] ^= 0x40
	return out
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	const writers, each = 16, 50
	all := entries(c, writers*each)
	var mu sync.Mutex // the exporter's lock: appends in chain order
	next := 0
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				mu.Lock()
				l.Append(&all[next])
				next++
				pos := l.End()
				mu.Unlock()
				assert.NoError(t, l.Sync(pos))
			}
		})
	}
	wg.Wait()
	require.NoError(t, l.Close())
	assert.Less(t, l.Syncs(), int64(writers*each), "concurrent requests share fsyncs")
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 1)
	assert.Equal(t, all, segs[0].Entries, "every record, in append order")
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	es := entries(c, 6)
	for i := range es[:4] {
		l.Append(&es[i])
	}
	closed, err := l.Rotate(4)
	require.NoError(t, err)
	assert.Equal(t, SegmentName("c", 0), closed)
	for i := range es[4:] {
		l.Append(&es[4+i])
	}
	require.NoError(t, l.Sync(l.End()))

	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 2)
	assert.Equal(t, es[:4], segs[0].Entries)
	assert.Equal(t, int64(4), segs[1].FirstSeq)
	assert.Equal(t, es[4:], segs[1].Entries)

	require.NoError(t, l.Remove(closed))
	segs, err = Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 1)
	assert.Equal(t, int64(4), segs[0].FirstSeq)
	require.NoError(t, l.Close())
}

func TestCloseRemovesEmptySegment(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, "c", 7)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	assert.Empty(t, segs)
}

func TestOpenRefusesExistingSegment(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	es := entries(c, 1)
	l.Append(&es[0])
	require.NoError(t, l.Close())
	_, err = Open(dir, "c", 0)
	require.Error(t, err, "a segment is never overwritten")
	assert.Contains(t, err.Error(), SegmentName("c", 0))
}

func TestWriteFailureBreaksTheLog(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	es := entries(c, 2)
	l.Append(&es[0])
	require.NoError(t, l.Sync(l.End()))
	// The disk goes away under the log.
	require.NoError(t, l.f.Close())
	l.Append(&es[1])
	err = l.Sync(l.End())
	require.ErrorIs(t, err, ErrBroken)
	assert.Equal(t, int64(0), l.DurableSeq(), "only the first entry is durable")
	assert.ErrorIs(t, l.Err(), ErrBroken)
	assert.Contains(t, err.Error(), filepath.Join(dir, SegmentName("c", 0)), "the error names the file")
	assert.ErrorIs(t, l.Sync(0), ErrBroken, "the failure is sticky")
	_, err = l.Rotate(2)
	assert.ErrorIs(t, err, ErrBroken)
}

func TestRecoverIgnoresOtherChainsAndFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"other-00000000000000000000.wal", "c-1.wal", "c-00000000000000000000.wal.corrupt", "notes.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o640))
	}
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	assert.Empty(t, segs)
	segs, err = Recover(filepath.Join(dir, "missing"), "c")
	require.NoError(t, err)
	assert.Empty(t, segs)
}

func BenchmarkAppendSync(b *testing.B) {
	dir := b.TempDir()
	c := chain.New("c", chain.Genesis())
	es := entries(c, 1)
	l, err := Open(dir, "c", 0)
	require.NoError(b, err)
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Append(&es[0])
		if err := l.Sync(l.End()); err != nil {
			b.Fatal(err)
		}
	}
}

// waitSpare waits until the background goroutine has made the next spare.
func waitSpare(t *testing.T, l *Log) {
	t.Helper()
	for {
		l.mu.Lock()
		ready, busy := l.next != nil, l.preparing
		l.mu.Unlock()
		if ready {
			return
		}
		require.True(t, busy, "no spare is being made")
		time.Sleep(time.Millisecond)
	}
}

// TestPreallocatedSegments: after the first segment, segments start as
// zero-filled spares; records are written into them, recovery reads them
// back exactly and does not take the zeros for a torn record.
func TestPreallocatedSegments(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	es := entries(c, 5)
	for i := range es[:2] {
		l.Append(&es[i])
	}
	require.NoError(t, l.Sync(l.End()))
	waitSpare(t, l)
	_, err = l.Rotate(2)
	require.NoError(t, err)
	name := SegmentName("c", 2)
	info, err := os.Stat(filepath.Join(dir, name))
	require.NoError(t, err)
	assert.Equal(t, int64(initialSpare), info.Size(), "the segment is the spare")
	for i := range es[2:] {
		l.Append(&es[2+i])
	}
	require.NoError(t, l.Sync(l.End()))

	// As after a crash: nothing closed.
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 2)
	assert.Equal(t, es[:2], segs[0].Entries)
	assert.Equal(t, es[2:], segs[1].Entries)
	for _, seg := range segs {
		assert.False(t, seg.Torn, seg.Name)
		assert.Zero(t, seg.TornBytes, seg.Name)
	}
	assert.Less(t, segs[1].ValidBytes, int64(initialSpare))

	// A record torn inside the preallocated space is torn.
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{200, 1, 0, 0, 9, 9}, segs[1].ValidBytes)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	segs, err = Recover(dir, "c")
	require.NoError(t, err)
	assert.True(t, segs[1].Torn)
	assert.Equal(t, int64(initialSpare)-segs[1].ValidBytes, segs[1].TornBytes)
	assert.Equal(t, es[2:], segs[1].Entries)

	require.NoError(t, l.Close())
	spares, err := filepath.Glob(filepath.Join(dir, "*"+spareSuffix))
	require.NoError(t, err)
	assert.Empty(t, spares, "Close removes the spare")
}

// TestSpareSizeFollowsSegments: the next spare is sized from the segment
// just closed, within bounds; a spare never replaces an existing segment.
func TestSpareSizeFollowsSegments(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	es := entries(c, 3)
	for i := range es {
		l.Append(&es[i])
	}
	waitSpare(t, l) // the initial spare
	_, err = l.Rotate(3)
	require.NoError(t, err)
	waitSpare(t, l) // sized from the small first segment: the minimum
	l.mu.Lock()
	size := l.next.size
	l.mu.Unlock()
	assert.Equal(t, int64(minSpare), size)

	// A segment that exists is never replaced, spare or not.
	require.NoError(t, os.WriteFile(filepath.Join(dir, SegmentName("c", 4)), []byte("x"), 0o600))
	_, err = l.Rotate(4)
	require.ErrorIs(t, err, ErrBroken)
	require.ErrorIs(t, err, fs.ErrExist)
	data, err := os.ReadFile(filepath.Join(dir, SegmentName("c", 4)))
	require.NoError(t, err)
	assert.Equal(t, "x", string(data))
	require.ErrorIs(t, l.Close(), ErrBroken)
}

// TestEmptyPreallocatedSegmentIsRemoved: Close removes a segment without
// records even when it is a preallocated spare, and Open removes spares a
// crash left behind (of its own chain only).
func TestEmptyPreallocatedSegmentIsRemoved(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".c-7" + spareSuffix, ".other-1" + spareSuffix, ".c-x-1" + spareSuffix} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte{0}, 0o600))
	}
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, ".c-7"+spareSuffix))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = os.Stat(filepath.Join(dir, ".other-1"+spareSuffix))
	assert.NoError(t, err, "another chain's spare is left alone")
	_, err = os.Stat(filepath.Join(dir, ".c-x-1"+spareSuffix))
	assert.NoError(t, err, "so is the spare of chain c-x")
	waitSpare(t, l)
	_, err = l.Rotate(0 + 1)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, de := range left {
		names = append(names, de.Name())
	}
	// Segment 0 was closed by Rotate (its removal is the caller's, once
	// its batch is durable); segment 1, a spare without records, is gone.
	assert.Equal(t, []string{".c-x-1" + spareSuffix, ".other-1" + spareSuffix, SegmentName("c", 0)}, names)
}

// TestCommitDelay: a flush waits for the commit delay only when the
// previous group held more than one request, and what is appended during
// the wait goes out with it, in one fsync.
func TestCommitDelay(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	all := entries(c, 7)
	var waits []time.Duration
	var during func()
	l.sleep = func(d time.Duration) {
		waits = append(waits, d)
		if during != nil {
			during()
		}
	}
	l.SetCommitDelay(time.Millisecond)
	request := func(es ...entry.Entry) int64 {
		for i := range es {
			l.Append(&es[i])
		}
		return l.End()
	}

	// A lone client: never waits.
	require.NoError(t, l.Sync(request(all[0])))
	require.NoError(t, l.Sync(request(all[1])))
	assert.Empty(t, waits)
	assert.Zero(t, l.Delays())

	// Two requests in one group: this flush does not wait (the previous
	// group held one), the next one does.
	request(all[2])
	require.NoError(t, l.Sync(request(all[3])))
	assert.Empty(t, waits)
	syncs := l.Syncs()
	var late int64
	during = func() { late = request(all[5]) } // arrives during the wait
	first := request(all[4])
	require.NoError(t, l.Sync(first))
	assert.Equal(t, []time.Duration{time.Millisecond}, waits)
	assert.Equal(t, int64(1), l.Delays())
	assert.Equal(t, syncs+1, l.Syncs(), "one fsync for both requests")
	during = nil
	require.NoError(t, l.Sync(late), "durable already")
	assert.Equal(t, syncs+1, l.Syncs())
	assert.Equal(t, int64(5), l.DurableSeq())

	// Zero turns it off (the last group held two).
	l.SetCommitDelay(0)
	require.NoError(t, l.Sync(request(all[6])))
	assert.Len(t, waits, 1)
	require.NoError(t, l.Close())
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 1)
	assert.Equal(t, all, segs[0].Entries)
}
