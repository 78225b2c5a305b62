package wal

import (
	"encoding/binary"
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

// TestRecoverBothEntryVersions: a log holds entries of version 1 (without
// end times, as an older collector appended them, in segments of either
// format) and, after an upgrade, entries of version 2 (with end times) that
// continue the chain; Recover gives each back exactly, its version and so
// its hash kept.
func TestRecoverBothEntryVersions(t *testing.T) {
	c := chain.New("c", chain.Genesis())
	old := entries(c, 3) // version 1
	cur := entries(chain.New("x", chain.Genesis()), 3)
	for i := range cur {
		end := cur[i].TimeUnixNano + 1_000_000
		cur[i].ChainID, cur[i].Seq, cur[i].PrevHash, cur[i].EntryHash = "", 0, "", ""
		cur[i].EndTimeUnixNano = &end
		if i != 1 {
			cur[i].Sender = &[]string{"svc-a", "", "CN=Zoë,O=Beispiel"}[i]
		}
		c.Append(&cur[i])
	}
	for _, e := range old {
		require.Nil(t, e.EndTimeUnixNano)
		require.Contains(t, string(chain.AppendCanonical(nil, &e)), "19:agentaudit.entry.v1")
	}

	for _, format := range []string{"format 1", "format 2"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			// The older collector's segment, seq 0 to 2.
			var data []byte
			if format == "format 2" {
				data = []byte(magic)
			}
			for i := range old {
				enc := chain.AppendCanonical(nil, &old[i])
				if format == "format 2" {
					data = appendRecord(data, enc)
				} else {
					data = appendV1(data, enc)
				}
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, SegmentName("c", 0)), data, 0o640))
			// The upgraded collector's segment, seq 3 to 5.
			l, err := Open(dir, "c", 3)
			require.NoError(t, err)
			for i := range cur {
				l.Append(&cur[i])
			}
			require.NoError(t, l.Sync(l.End()))
			require.NoError(t, l.Close())

			segs, err := Recover(dir, "c")
			require.NoError(t, err)
			require.Len(t, segs, 2)
			assert.Equal(t, old, segs[0].Entries)
			assert.Equal(t, cur, segs[1].Entries)
			for _, s := range segs {
				assert.Nil(t, s.Corrupt)
				for _, e := range s.Entries {
					assert.Equal(t, chain.Hash(&e), e.EntryHash, "seq %d", e.Seq)
				}
			}
			assert.Equal(t, old[2].EntryHash, segs[1].Entries[0].PrevHash)
		})
	}
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
	rec := (len(full) - len(magic)) / 3 // 3 records of equal size

	for name, data := range map[string][]byte{
		"cut in the last commit mark": full[:len(full)-3],
		"cut in the last payload":     full[:len(full)-markSize-5],
		"cut in the last header":      full[:len(magic)+2*rec+7],
		"short garbage appended":      append(append([]byte{}, full...), 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1),
		"zeros after the cut":         append(append([]byte{}, full[:len(full)-50]...), make([]byte, 4096)...),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, data, 0o640))
			segs, err := Recover(dir, "c")
			require.NoError(t, err)
			require.Len(t, segs, 1)
			s := segs[0]
			require.Nil(t, s.Corrupt)
			assert.True(t, s.Torn)
			assert.Equal(t, want[:len(s.Entries)], s.Entries, "the valid prefix is intact")
			assert.GreaterOrEqual(t, len(s.Entries), 2)
			assert.Equal(t, int64(len(data)), s.ValidBytes+s.TornBytes)

			require.NoError(t, Truncate(dir, s.Name, s.ValidBytes))
			again, err := Recover(dir, "c")
			require.NoError(t, err)
			assert.False(t, again[0].Torn, "truncation drops the torn tail")
			assert.Equal(t, s.Entries, again[0].Entries)
		})
	}
}

// TestRecoverFindsCorruption: invalid bytes that are not a torn tail are
// corruption, named with the file and byte offset.
func TestRecoverFindsCorruption(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	want := entries(c, 6)
	for i := range want[:3] {
		l.Append(&want[i])
	}
	_, _, err = l.Rotate(3)
	require.NoError(t, err)
	for i := range want[3:] {
		l.Append(&want[3+i])
	}
	require.NoError(t, l.Close())
	older, newest := filepath.Join(dir, SegmentName("c", 0)), filepath.Join(dir, SegmentName("c", 3))
	olderData, err := os.ReadFile(older)
	require.NoError(t, err)
	full := written(t, newest, 3)
	rec := (len(full) - len(magic)) / 3
	other := entries(chain.New("c", chain.Genesis()), 1)[0]
	other.ExecutionID = "another writer"
	foreign := appendRecord(nil, chain.AppendCanonical(nil, &other))

	for _, tc := range []struct {
		name   string
		path   string
		data   []byte
		offset int
		reason string
	}{
		{"bit flip in the last payload", newest, flip(full, len(full)-10), len(magic) + 2*rec, "payload checksum mismatch"},
		{"bit flip in the last length", newest, flip(full, len(magic)+2*rec+1), len(magic) + 2*rec, "header checksum mismatch"},
		{"bit flip in the last commit mark", newest, flip(full, len(full)-1), len(magic) + 2*rec, "commit mark missing"},
		{"zeroed commit mark of a middle record", newest, zero(full, len(magic)+2*rec-markSize, markSize), len(magic) + rec, "commit mark missing"},
		{"garbage after the last record", newest, append(append([]byte{}, full...), make([]byte, 20)...), -1, ""},
		{"a record of another seq", newest, append(append([]byte{}, full...), foreign...), len(full), "holds seq 0, want 6"},
		{"cut in an older segment", older, olderData[:len(olderData)-5], len(magic) + 2*rec, "runs past the end of the file, in a segment that is not the newest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig, err := os.ReadFile(tc.path)
			require.NoError(t, err)
			defer func() { require.NoError(t, os.WriteFile(tc.path, orig, 0o640)) }()
			data := tc.data
			if tc.offset < 0 {
				// Garbage that is longer than a header, after zeros.
				data = append(data, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7)
				tc.offset, tc.reason = len(full), "record header checksum mismatch"
			}
			require.NoError(t, os.WriteFile(tc.path, data, 0o640))
			segs, err := Recover(dir, "c")
			require.NoError(t, err)
			require.Len(t, segs, 2)
			var bad Segment
			for _, s := range segs {
				assert.False(t, s.Torn, s.Name)
				if filepath.Join(dir, s.Name) == tc.path {
					bad = s
				} else {
					assert.Nil(t, s.Corrupt, s.Name)
				}
			}
			require.NotNil(t, bad.Corrupt)
			assert.ErrorIs(t, bad.Corrupt, ErrCorrupt)
			assert.Equal(t, tc.path, bad.Corrupt.Path)
			assert.Equal(t, int64(tc.offset), bad.Corrupt.Offset)
			assert.Contains(t, bad.Corrupt.Reason, tc.reason)
			assert.Contains(t, bad.Corrupt.Error(), fmt.Sprintf("%s is corrupt at byte offset %d", tc.path, tc.offset))
			after, err := os.ReadFile(tc.path)
			require.NoError(t, err)
			assert.Equal(t, data, after, "Recover changes nothing")
		})
	}
}

// written returns the magic and records of the segment at path, without
// the zeros of preallocated space, and leaves the file so.
func written(t *testing.T, path string, first int64) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	p := parse(data, "c", first)
	require.Empty(t, p.why)
	data = data[:p.valid]
	require.NoError(t, os.WriteFile(path, data, 0o640))
	return data
}

// TestEveryByteValue sets every byte of a segment of three records,
// magic included, to every other value in turn: the records before it are
// kept, and nothing is ever taken for a torn tail but the one damage no
// format can tell from a cut, the last byte of the newest record zeroed.
func TestEveryByteValue(t *testing.T) {
	want := entries(chain.New("c", chain.Genesis()), 3)
	data := []byte(magic)
	var ends []int
	for i := range want {
		data = appendRecord(data, chain.AppendCanonical(nil, &want[i]))
		ends = append(ends, len(data))
	}
	require.Empty(t, parse(data, "c", 0).why)
	mod := append([]byte{}, data...)
	torn := 0
	for i := range data {
		before := 0 // records that end before byte i, which must be kept
		for before < len(ends) && ends[before] <= i {
			before++
		}
		for v := range 256 {
			if byte(v) == data[i] {
				continue
			}
			mod[i] = byte(v)
			p := parse(mod, "c", 0)
			require.NotEmpty(t, p.why, "byte %d = %#x goes unnoticed", i, v)
			require.GreaterOrEqual(t, len(p.entries), before, "byte %d = %#x: a record before it is lost", i, v)
			if p.torn {
				torn++
				require.Equal(t, []int{len(data) - 1, 0}, []int{i, v}, "byte %d = %#x is taken for a torn tail", i, v)
			}
		}
		mod[i] = data[i]
	}
	assert.Equal(t, 1, torn)
}

func zero(b []byte, i, n int) []byte {
	out := append([]byte{}, b...)
	clear(out[i : i+n])
	return out
}

// TestFaultInjection flips every byte of an older and of the newest
// segment in turn, with three masks: each outcome is either the recovery of
// every entry (the flip hit zeros after the last record) or corruption; no
// flip ever makes an acknowledged entry disappear as a torn tail. And every
// cut of the newest segment, at every offset, recovers every record written
// before the cut, with or without the zeros of preallocated space after it.
func TestFaultInjection(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	want := entries(c, 5)
	for i := range want[:2] {
		l.Append(&want[i])
	}
	_, _, err = l.Rotate(2)
	require.NoError(t, err)
	for i := range want[2:] {
		l.Append(&want[2+i])
	}
	require.NoError(t, l.Close())
	older, newest := filepath.Join(dir, SegmentName("c", 0)), filepath.Join(dir, SegmentName("c", 2))
	newestData := written(t, newest, 2)
	// Zeros after the records, as preallocated space leaves them.
	const pad = 64
	require.NoError(t, os.WriteFile(newest, append(append([]byte{}, newestData...), make([]byte, pad)...), 0o640))

	recover := func() (entries []entry.Entry, corrupt *CorruptError) {
		segs, err := Recover(dir, "c")
		require.NoError(t, err)
		for _, s := range segs {
			entries = append(entries, s.Entries...)
			if s.Corrupt != nil {
				require.Nil(t, corrupt, "one corrupt segment")
				corrupt = s.Corrupt
			}
			if s.Name != SegmentName("c", 2) {
				assert.False(t, s.Torn, "only the newest segment can have a torn tail")
			}
		}
		return entries, corrupt
	}

	for _, path := range []string{older, newest} {
		orig, err := os.ReadFile(path)
		require.NoError(t, err)
		written := len(orig)
		if path == newest {
			written -= pad
		}
		refused, recovered := 0, 0
		for i := range orig {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				data := append([]byte{}, orig...)
				data[i] ^= mask
				require.NoError(t, os.WriteFile(path, data, 0o640))
				got, corrupt := recover()
				if corrupt != nil {
					require.Equal(t, path, corrupt.Path)
					refused++
					continue
				}
				require.GreaterOrEqual(t, i, written, "byte %d ^ %#x of %s: a flip inside the records is refused, never recovered as valid or torn", i, mask, filepath.Base(path))
				require.Equal(t, want, got, "byte %d ^ %#x of %s: every entry recovered", i, mask, filepath.Base(path))
				recovered++
			}
		}
		t.Logf("%s: %d flips refused, %d recovered every entry", filepath.Base(path), refused, recovered)
		require.NoError(t, os.WriteFile(path, orig, 0o640))
	}

	// Cuts of the newest segment, as a crash leaves a write that stopped
	// short: at every offset, and with zeros after.
	var ends []int // where each record of the newest segment ends
	for off := len(magic); off < len(newestData); {
		n := int(binary.LittleEndian.Uint32(newestData[off:]))
		off += headerSize + n + markSize
		ends = append(ends, off)
	}
	require.Len(t, ends, 3)
	for cut := 0; cut <= len(newestData); cut++ {
		k := 0
		for k < len(ends) && ends[k] <= cut {
			k++
		}
		for _, data := range [][]byte{
			newestData[:cut],
			append(append([]byte{}, newestData[:cut]...), make([]byte, len(newestData)-cut+pad)...),
		} {
			require.NoError(t, os.WriteFile(newest, data, 0o640))
			got, corrupt := recover()
			require.Nil(t, corrupt, "cut at %d", cut)
			require.Equal(t, want[:2+k], got, "cut at %d: every record before the cut", cut)
		}
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
	appendConcurrently(t, l, all, writers, 0, nil)
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
	closed, end, err := l.Rotate(4)
	require.NoError(t, err)
	assert.Equal(t, SegmentName("c", 0), closed)
	assert.Equal(t, l.appended, end)
	// Rotate wrote nothing: the closed segment's records wait for a
	// flush, and the next segment has no file yet.
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 1)
	assert.Empty(t, segs[0].Entries)
	for i := range es[4:] {
		l.Append(&es[4+i])
	}
	next := l.End()
	require.NoError(t, l.Sync(end))
	segs, err = Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, 2, "one flush wrote the closed segment, then created the next with its records")
	assert.Equal(t, es[:4], segs[0].Entries)
	assert.Equal(t, es[4:], segs[1].Entries)
	require.NoError(t, l.Sync(next))

	segs, err = Recover(dir, "c")
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

	// Everything durable: the first Sync after a rotation still finishes
	// it, so that the next segment exists, as recovery expects of a
	// closed segment's successor.
	_, end, err = l.Rotate(6)
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(dir, SegmentName("c", 6)))
	require.NoError(t, l.Sync(end))
	assert.FileExists(t, filepath.Join(dir, SegmentName("c", 6)))
	require.NoError(t, l.Close())
}

// appendConcurrently appends all to l from writers goroutines, each
// syncing after its append, in chain order under one lock as the exporter
// appends, and with rotateEvery > 0, rotating after every rotateEvery
// entries and telling rotated the closed segment's end. Each Sync's
// position must be durable when it returns.
func appendConcurrently(t *testing.T, l *Log, all []entry.Entry, writers, rotateEvery int, rotated func(end int64)) {
	t.Helper()
	var mu sync.Mutex // the exporter's lock
	next := 0
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range len(all) / writers {
				mu.Lock()
				l.Append(&all[next])
				next++
				if rotateEvery > 0 && next%rotateEvery == 0 {
					_, end, err := l.Rotate(int64(next))
					assert.NoError(t, err)
					rotated(end)
				}
				pos := l.End()
				mu.Unlock()
				assert.NoError(t, l.Sync(pos))
				l.mu.Lock()
				assert.GreaterOrEqual(t, l.durable, pos)
				l.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestRotateUnderLoad: requests append and sync while batches rotate the
// log every few entries, as the exporter does, and the sealer syncs each
// closed segment's end; every segment then holds its own entries, in
// order, none torn, and every Sync's position was durable when it returned.
func TestRotateUnderLoad(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	const writers, each, perSegment = 8, 60, 37
	all := entries(c, writers*each)
	ends := make(chan int64, writers*each)
	sealer := make(chan struct{})
	go func() { // the sealer: each closed segment durable before its batch is written
		defer close(sealer)
		for end := range ends {
			assert.NoError(t, l.Sync(end))
		}
	}()
	appendConcurrently(t, l, all, writers, perSegment, func(end int64) { ends <- end })
	close(ends)
	<-sealer
	require.NoError(t, l.Close())
	segs, err := Recover(dir, "c")
	require.NoError(t, err)
	require.Len(t, segs, (writers*each+perSegment-1)/perSegment)
	var got []entry.Entry
	for i, s := range segs {
		assert.Equal(t, int64(i*perSegment), s.FirstSeq)
		assert.False(t, s.Torn, s.Name)
		got = append(got, s.Entries...)
	}
	assert.Equal(t, all, got, "every record, in append order")
}

// TestRotateFailureCreatesNoSegment: when the closed segment's last records
// cannot be written, the flush stops there: nothing after them is durable
// and the next segment is never created.
func TestRotateFailureCreatesNoSegment(t *testing.T) {
	dir := t.TempDir()
	c := chain.New("c", chain.Genesis())
	l, err := Open(dir, "c", 0)
	require.NoError(t, err)
	es := entries(c, 3)
	l.Append(&es[0])
	require.NoError(t, l.Sync(l.End()))
	l.Append(&es[1])
	_, end, err := l.Rotate(2)
	require.NoError(t, err)
	l.Append(&es[2])
	require.NoError(t, l.closing[0].seg.f.Close()) // the disk goes away under the closed segment
	err = l.Sync(end)
	require.ErrorIs(t, err, ErrBroken)
	assert.Contains(t, err.Error(), filepath.Join(dir, SegmentName("c", 0)))
	assert.Equal(t, int64(0), l.DurableSeq())
	_, err = os.Stat(filepath.Join(dir, SegmentName("c", 2)))
	assert.ErrorIs(t, err, fs.ErrNotExist, "no segment after the one that failed")
	_, _, err = l.Rotate(3)
	assert.ErrorIs(t, err, ErrBroken)
	assert.ErrorIs(t, l.Close(), ErrBroken)
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
	require.NoError(t, l.cur.f.Close())
	l.Append(&es[1])
	err = l.Sync(l.End())
	require.ErrorIs(t, err, ErrBroken)
	assert.Equal(t, int64(0), l.DurableSeq(), "only the first entry is durable")
	assert.ErrorIs(t, l.Err(), ErrBroken)
	assert.Contains(t, err.Error(), filepath.Join(dir, SegmentName("c", 0)), "the error names the file")
	assert.ErrorIs(t, l.Sync(0), ErrBroken, "the failure is sticky")
	_, _, err = l.Rotate(2)
	assert.ErrorIs(t, err, ErrBroken)
	// Close also waits for the spare segment made in the background, which
	// could otherwise land in the directory while the test removes it.
	assert.ErrorIs(t, l.Close(), ErrBroken)
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
	_, _, err = l.Rotate(2)
	require.NoError(t, err)
	name := SegmentName("c", 2)
	for i := range es[2:] {
		l.Append(&es[2+i])
	}
	require.NoError(t, l.Sync(l.End()))
	info, err := os.Stat(filepath.Join(dir, name))
	require.NoError(t, err)
	assert.Equal(t, int64(initialSpare), info.Size(), "the segment is the spare")

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
	_, _, err = l.Rotate(3)
	require.NoError(t, err)
	more := entries(c, 1)
	l.Append(&more[0])
	require.NoError(t, l.Sync(l.End())) // segment 3 takes the spare
	waitSpare(t, l)                     // sized from the small first segment: the minimum
	l.mu.Lock()
	size := l.next.size
	l.mu.Unlock()
	assert.Equal(t, int64(minSpare), size)

	// A segment that exists is never replaced, spare or not: the flush
	// that would create it fails, and the log with it.
	require.NoError(t, os.WriteFile(filepath.Join(dir, SegmentName("c", 4)), []byte("x"), 0o600))
	_, _, err = l.Rotate(4)
	require.NoError(t, err)
	more = entries(c, 1)
	l.Append(&more[0])
	err = l.Sync(l.End())
	require.ErrorIs(t, err, ErrBroken)
	require.ErrorIs(t, err, fs.ErrExist)
	assert.Equal(t, int64(3), l.DurableSeq(), "segment 3 is durable, written before segment 4 was to be created")
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
	_, _, err = l.Rotate(0 + 1)
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
