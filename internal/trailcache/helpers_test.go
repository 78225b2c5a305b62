package trailcache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// day is the dt= partition of every test file; times are offsets from it.
var day = time.Date(2026, 3, 9, 9, 30, 0, 0, time.UTC)

func strp(s string) *string { return &s }

// batch is one batch file of a test trail.
type batch struct {
	key     string
	data    []byte
	entries []entry.Entry
}

// file returns what Files should say of b.
func (b *batch) file() File {
	first, last := b.entries[0], b.entries[len(b.entries)-1]
	f := File{
		Key: b.key, Size: int64(len(b.data)),
		ChainID: first.ChainID, FirstSeq: first.Seq, LastSeq: last.Seq, Rows: int64(len(b.entries)),
		MinTime: first.TimeUnixNano, MaxTime: last.TimeUnixNano, HasTimeStats: true,
	}
	for _, e := range b.entries {
		if e.EndTimeUnixNano == nil {
			continue
		}
		end := *e.EndTimeUnixNano
		if !f.HasEndStats {
			f.MinEnd, f.MaxEnd, f.HasEndStats = end, end, true
		}
		f.MinEnd, f.MaxEnd = min(f.MinEnd, end), max(f.MaxEnd, end)
	}
	return f
}

// appendBatch appends n entries to c, the i-th stamped t0+i ms with
// execution id exec(i) and changed by each of more, and encodes them as one
// batch file.
func appendBatch(t testing.TB, c *chain.Chain, n int, t0 time.Time, exec func(i int) string, more ...func(i int, e *entry.Entry)) *batch {
	t.Helper()
	es := make([]entry.Entry, n)
	for i := range es {
		seq := c.Head().Size
		es[i] = entry.Entry{
			TimeUnixNano:   t0.UnixNano() + int64(i)*int64(time.Millisecond),
			ExecutionID:    exec(i),
			TraceID:        fmt.Sprintf("%032x", seq*7919+1),
			SpanID:         fmt.Sprintf("%016x", seq*104729+1),
			AgentName:      strp("CRM Assistant"),
			ActionType:     []string{"start", "read", "write", "end"}[i%4],
			TargetSystem:   "HubSpot CRM",
			TargetResource: "Contact #" + strconv.FormatInt(48291+seq%1000, 10),
			Result:         "200 OK",
			StatusCode:     "Unset",
			Attributes:     fmt.Sprintf(`{"http.request.method":"GET","n":%d}`, seq),
		}
		for _, f := range more {
			f(i, &es[i])
		}
		c.Append(&es[i])
	}
	var buf bytes.Buffer
	if _, err := parquetfile.Encode(&buf, es); err != nil {
		t.Fatal(err)
	}
	return &batch{key: store.BatchKey(es[0].ChainID, es[0].Seq, day), data: buf.Bytes(), entries: es}
}

// ids returns an exec function: the i-th of n entries gets prefix and one
// of the numbers, in runs of equal length.
func ids(prefix string, n int, nums ...int) func(int) string {
	return func(i int) string { return fmt.Sprintf("%s%02d", prefix, nums[i*len(nums)/n]) }
}

// rowsPerFile makes every batch file larger than tailBytes, so that reading
// its footer from S3 is not reading it all.
const rowsPerFile = 2000

// testTrail is the trail the tests query:
//
//	chain-a file 0  09:30  ids a-00 a-02 ... a-18 (even)
//	chain-a file 1  09:31  ids a-18 (continued) a-20 a-22 ... a-38 (even)
//	chain-a file 2  11:00  ids x-00 .. x-04, and shared-1 at row 5
//	chain-b file 0  10:00  ids b-00 .. b-09, and shared-1 at row 100
//	chain-b file 1  10:01  ids b-10 .. b-19
//
// and three .parquet files that are not audit batches.
type testTrail struct {
	a, b     []*batch
	problems map[string][]byte // key -> bytes
}

func (tr *testTrail) batches() []*batch { return append(append([]*batch{}, tr.a...), tr.b...) }

// objects returns every file of the trail by key.
func (tr *testTrail) objects() map[string][]byte {
	m := map[string][]byte{}
	for _, b := range tr.batches() {
		m[b.key] = b.data
	}
	for k, d := range tr.problems {
		m[k] = d
	}
	return m
}

// problemKeys are the keys of the files that are not audit batches, sorted.
func (tr *testTrail) problemKeys() []string {
	var ks []string
	for k := range tr.problems {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func buildTrail(t testing.TB) *testTrail {
	t.Helper()
	tr := &testTrail{}
	ca := chain.New("chain-a", chain.Genesis())
	tr.a = append(tr.a, appendBatch(t, ca, rowsPerFile, day, ids("a-", rowsPerFile, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18)))
	tr.a = append(tr.a, appendBatch(t, ca, rowsPerFile, day.Add(time.Minute), func(i int) string {
		if i < 40 {
			return "a-18"
		}
		return ids("a-", rowsPerFile, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38)(i)
	}))
	tr.a = append(tr.a, appendBatch(t, ca, rowsPerFile, day.Add(90*time.Minute), func(i int) string {
		if i == 5 {
			return "shared-1"
		}
		return ids("x-", rowsPerFile, 0, 1, 2, 3, 4)(i)
	}))
	cb := chain.New("chain-b", chain.Genesis())
	tr.b = append(tr.b, appendBatch(t, cb, rowsPerFile, day.Add(30*time.Minute), func(i int) string {
		if i == 100 {
			return "shared-1"
		}
		return ids("b-", rowsPerFile, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)(i)
	}))
	// Some spans of this file have an end time (format v2).
	tr.b = append(tr.b, appendBatch(t, cb, rowsPerFile, day.Add(31*time.Minute), ids("b-", rowsPerFile, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19),
		func(i int, e *entry.Entry) {
			if i >= 10 && i < 20 && i%3 == 1 {
				end := e.TimeUnixNano + int64(20-i)*int64(time.Second)
				e.EndTimeUnixNano = &end
			}
		}))

	// A readable Parquet file that is not an audit batch, garbage, and a
	// batch file cut in half.
	var plain bytes.Buffer
	type other struct {
		ExecutionID string `parquet:"execution_id"`
	}
	if err := parquet.Write(&plain, []other{{"a-04"}}); err != nil {
		t.Fatal(err)
	}
	tr.problems = map[string][]byte{
		"dt=2026-03-09/plain-00000000000000000000.parquet": plain.Bytes(),
		"dt=2026-03-09/junk-00000000000000000000.parquet":  []byte("not a parquet file at all"),
		".cut.parquet": tr.b[1].data[:len(tr.b[1].data)/2],
	}
	return tr
}

// writeDir writes the trail's files below dir.
func writeDir(t testing.TB, dir string, objs map[string][]byte) {
	t.Helper()
	for k, d := range objs {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// keys returns the keys of files, in order.
func keys(files []File) []string {
	out := []string{}
	for _, f := range files {
		out = append(out, f.Key)
	}
	return out
}

// want returns the keys of the problem files and of bs, sorted as
// Files sorts them: problems (no chain) first, then chain-a, chain-b.
func (tr *testTrail) want(bs ...*batch) []string {
	out := append([]string{}, tr.problemKeys()...)
	var rest []*batch
	for _, b := range tr.batches() {
		for _, w := range bs {
			if w == b {
				rest = append(rest, b)
			}
		}
	}
	for _, b := range rest {
		out = append(out, b.key)
	}
	return out
}
