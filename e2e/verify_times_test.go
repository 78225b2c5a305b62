package e2e

// The timestamp column and the two verifiers: auditctl verify and
// docs/verify.sql must report exactly the same rows for every stored
// time_unix_nano, negative times and the int64 extremes included, and
// genuine rows must be intact in both. Every identifier here starts with
// "vt" (this package is shared).

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/verify"
)

// vtTimes is the contract of docs/FORMAT.md, written out: each
// time_unix_nano and the timestamp (ms) the writer stores for it,
// floor(time_unix_nano / 1e6), rounded towards negative infinity.
var vtTimes = []struct{ ns, ms int64 }{
	{math.MinInt64, -9223372036855},
	{math.MinInt64 + 1, -9223372036855},
	{-9223372036854000001, -9223372036855},
	{-9223372036854000000, -9223372036854},
	{-1_000_000_000_000_000_001, -1_000_000_000_001},
	{-1000001, -2},
	{-1000000, -1},
	{-999999, -1},
	{-1, -1},
	{0, 0},
	{1, 0},
	{999999, 0},
	{1000000, 1},
	{1000001, 1},
	{1773048600123456789, 1773048600123},
	{9223372036854000000, 9223372036854},
	{math.MaxInt64 - 1, 9223372036854},
	{math.MaxInt64, 9223372036854},
}

// vtEntries chains one entry per time.
func vtEntries(chainID string, times []int64) []entry.Entry {
	c := chain.New(chainID, chain.Genesis())
	es := make([]entry.Entry, len(times))
	for i, ns := range times {
		es[i] = entry.Entry{
			TimeUnixNano: ns, ExecutionID: "exec-vt", TraceID: fmt.Sprintf("%032x", i+1), SpanID: fmt.Sprintf("%016x", i+1),
			ActionType: "write", TargetSystem: "ledger", TargetResource: fmt.Sprintf("konto/%d", i),
			Result: "ok", StatusCode: "Ok", Attributes: "{}",
		}
		c.Append(&es[i])
	}
	return es
}

// TestVtWriterStoresFloor: the writer (internal/parquetfile) stores
// exactly vtTimes' ms in the timestamp column, DuckDB reads it as that
// instant, and such a trail is intact for auditctl and verify.sql alike.
func TestVtWriterStoresFloor(t *testing.T) {
	var times []int64
	for _, tc := range vtTimes {
		times = append(times, tc.ns)
	}
	es := vtEntries("vt-writer", times)
	var buf bytes.Buffer
	_, err := parquetfile.Encode(&buf, es)
	require.NoError(t, err)
	dir := t.TempDir()
	p := filepath.Join(dir, filepath.FromSlash(store.BatchKey("vt-writer", 0, harness.Day)))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))

	type tsRow struct {
		Timestamp    int64 `parquet:"timestamp"`
		TimeUnixNano int64 `parquet:"time_unix_nano"`
	}
	rows, err := parquet.Read[tsRow](bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	require.Len(t, rows, len(vtTimes))
	db := harness.TrailDB(t, dir)
	for i, tc := range vtTimes {
		assert.Equal(t, tc.ns, rows[i].TimeUnixNano)
		assert.Equal(t, tc.ms, rows[i].Timestamp, "stored timestamp of time_unix_nano %d", tc.ns)
		var ms int64
		require.NoError(t, db.QueryRow(`SELECT epoch_ms("timestamp") FROM audit_entries WHERE seq = ?`, i).Scan(&ms))
		assert.Equal(t, tc.ms, ms, "DuckDB's reading of time_unix_nano %d", tc.ns)
	}

	rep := harness.Verify(t, dir)
	assert.True(t, rep.Intact, "auditctl: %v", rep.Violations)
	assert.Empty(t, harness.VerifySQL(t, db))
}

// vtRowMS mirrors parquetfile's schema, to write timestamps the writer
// never would; vtRowUS and vtRowNS are the same rows with the timestamp in
// micro- and nanoseconds, as another tool may rewrite a file. parquet-go
// inlines the embedded vtCols, so the columns keep their order.
type vtRowMS struct {
	Timestamp int64 `parquet:"timestamp,timestamp(millisecond:utc)"`
	vtCols
}

type vtRowUS struct {
	Timestamp int64 `parquet:"timestamp,timestamp(microsecond:utc)"`
	vtCols
}

type vtRowNS struct {
	Timestamp int64 `parquet:"timestamp,timestamp(nanosecond:utc)"`
	vtCols
}

// vtCols are the columns after timestamp.
type vtCols struct {
	TimeUnixNano   int64   `parquet:"time_unix_nano"`
	ChainID        string  `parquet:"chain_id"`
	Seq            int64   `parquet:"seq"`
	ExecutionID    string  `parquet:"execution_id"`
	TraceID        string  `parquet:"trace_id"`
	SpanID         string  `parquet:"span_id"`
	ParentSpanID   *string `parquet:"parent_span_id"`
	AgentID        *string `parquet:"agent_id"`
	AgentName      *string `parquet:"agent_name"`
	ServiceName    *string `parquet:"service_name"`
	Principal      *string `parquet:"principal"`
	ActionType     string  `parquet:"action_type"`
	TargetSystem   string  `parquet:"target_system"`
	TargetResource string  `parquet:"target_resource"`
	ProposedValue  *string `parquet:"proposed_value"`
	PreviousValue  *string `parquet:"previous_value"`
	Reasoning      *string `parquet:"reasoning"`
	Approver       *string `parquet:"approver"`
	Result         string  `parquet:"result"`
	StatusCode     string  `parquet:"status_code"`
	Attributes     string  `parquet:"attributes"`
	Validation     *string `parquet:"validation"`
	PrevHash       string  `parquet:"prev_hash"`
	EntryHash      string  `parquet:"entry_hash"`
}

// vtWrite writes rows as one Parquet file of dir under the batch key of
// chainID.
func vtWrite[T any](t *testing.T, dir, chainID string, rows []T) {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, parquet.Compression(&parquet.Zstd))
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	p := filepath.Join(dir, filepath.FromSlash(store.BatchKey(chainID, 0, harness.Day)))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
}

func vtRow(e entry.Entry, ts int64) vtRowMS {
	return vtRowMS{ts, vtCols{e.TimeUnixNano, e.ChainID, e.Seq, e.ExecutionID, e.TraceID, e.SpanID, e.ParentSpanID,
		e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.ActionType, e.TargetSystem, e.TargetResource,
		e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Result, e.StatusCode, e.Attributes,
		e.Validation, e.PrevHash, e.EntryHash}}
}

// vtMul is a*b, and whether it fits an int64.
func vtMul(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	p := a * b
	return p, p/b == a && !(a == -1 && b == math.MinInt64) && !(b == -1 && a == math.MinInt64)
}

// TestVtVerifiersAgreeOnTimestamps: for each time of vtTimes, a row with
// the genuine timestamp and rows whose timestamp was moved by one
// millisecond (and, where the unit has them, one microsecond and one
// nanosecond), plus forged timestamps at the int64 extremes, in files whose
// timestamp column is in milli-, micro- and nanoseconds. auditctl and
// verify.sql report exactly the same (chain_id, seq, kind) set: every
// tampered row, no genuine one. A verifier that rounded negative times
// towards zero (verify.sql did) fails here.
func TestVtVerifiersAgreeOnTimestamps(t *testing.T) {
	type unit struct {
		name  string
		perMs int64
	}
	units := []unit{{"ms", 1}, {"us", 1000}, {"ns", 1_000_000}}
	dir := t.TempDir()
	var want []string // chain/seq/kind of the rows both must report
	var genuine int
	for _, u := range units {
		chainID := "vt-" + u.name
		type planned struct {
			ns, ts  int64
			genuine bool
		}
		var plan []planned
		for _, tc := range vtTimes {
			want0, ok := vtMul(tc.ms, u.perMs)
			if !ok {
				continue // a nanosecond column cannot hold this instant
			}
			plan = append(plan, planned{tc.ns, want0, true})
			// One unit of the column's precision at a time, up to 1 ms.
			for d := u.perMs; d >= 1; d /= 1000 {
				if want0 >= math.MinInt64+d {
					plan = append(plan, planned{tc.ns, want0 - d, false})
				}
				if want0 <= math.MaxInt64-d {
					plan = append(plan, planned{tc.ns, want0 + d, false})
				}
			}
		}
		// Forged timestamps, whatever time_unix_nano: ±MaxInt64 is
		// ±infinity to DuckDB; MinInt64 and, in ms, values past
		// ±9223372036854775 ms are beyond its TIMESTAMP (see
		// TestVtTimestampBeyondDuckDB).
		forged := []int64{math.MaxInt64, -math.MaxInt64, 9223372036854775, -9223372036854775}
		if u.perMs > 1 {
			forged = append(forged, math.MinInt64)
		}
		for _, ts := range forged {
			plan = append(plan, planned{0, ts, false})
		}

		times := make([]int64, len(plan))
		for i, p := range plan {
			times[i] = p.ns
		}
		es := vtEntries(chainID, times)
		rows := make([]vtRowMS, len(plan))
		for i, p := range plan {
			rows[i] = vtRow(es[i], p.ts)
			// DuckDB reads nanoseconds as microseconds, truncated towards
			// zero: a change below that neither verifier sees.
			seen := !p.genuine
			if u.perMs == 1_000_000 {
				seen = p.ts/1000 != vtFloorMs(p.ns)*1000
			}
			if seen {
				want = append(want, fmt.Sprintf("%s/%d/%s", chainID, i, verify.TimestampMismatch))
			} else if p.genuine {
				genuine++
			}
		}
		switch u.name {
		case "ms":
			vtWrite(t, dir, chainID, rows)
		case "us":
			vtWrite(t, dir, chainID, vtConvert[vtRowUS](rows))
		case "ns":
			vtWrite(t, dir, chainID, vtConvert[vtRowNS](rows))
		}
	}
	slices.Sort(want)
	require.Greater(t, genuine, 3*12)

	db := harness.TrailDB(t, dir)
	db.SetMaxOpenConns(1)
	_, err := db.Exec(`SET TimeZone = 'Asia/Kolkata'`) // 1677 there is local mean time, +05:53:28
	require.NoError(t, err)
	sqlRows := harness.VerifySQL(t, db)
	for _, v := range sqlRows {
		assert.NotEmpty(t, v.Detail, "%+v", v)
	}
	sqlKeys := harness.SQLKeys(sqlRows)
	rep := harness.Verify(t, dir)
	auditKeys := harness.ReportKeys(rep)
	assert.Equal(t, want, sqlKeys, "verify.sql")
	assert.Equal(t, want, auditKeys, "auditctl verify")
	assert.Equal(t, sqlKeys, auditKeys, "the two verifiers agree")
}

// vtFloorMs is floor(ns / 1e6), looked up in vtTimes (the contract) rather
// than computed, for times of vtTimes, and 0 for the forged rows' 0.
func vtFloorMs(ns int64) int64 {
	for _, tc := range vtTimes {
		if tc.ns == ns {
			return tc.ms
		}
	}
	panic(fmt.Sprintf("time %d not in vtTimes", ns))
}

// vtConvert converts rows to a struct type that differs only in tags.
func vtConvert[T vtRowUS | vtRowNS](rows []vtRowMS) []T {
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = T(r)
	}
	return out
}

// TestVtTimestampBeyondDuckDB: a forged millisecond timestamp whose
// microseconds overflow an int64 (beyond ±9223372036854775 ms, but not
// ±MaxInt64, which DuckDB reads as ±infinity) makes DuckDB's Parquet reader
// refuse the file: verify.sql fails with an error (which FORMAT.md says is
// not a pass) instead of reporting the row; auditctl reports it.
func TestVtTimestampBeyondDuckDB(t *testing.T) {
	for _, ts := range []int64{math.MinInt64, -9223372036854776, 9223372036854776, math.MaxInt64 - 1} {
		t.Run(fmt.Sprint(ts), func(t *testing.T) {
			dir := t.TempDir()
			es := vtEntries("vt-far", []int64{0, 1})
			vtWrite(t, dir, "vt-far", []vtRowMS{vtRow(es[0], 0), vtRow(es[1], ts)})
			rep := harness.Verify(t, dir)
			assert.Equal(t, []string{"vt-far/1/timestamp_mismatch"}, harness.ReportKeys(rep))

			q, err := os.ReadFile(filepath.Join("..", "docs", "verify.sql"))
			require.NoError(t, err)
			_, err = harness.TrailDB(t, dir).Query(strings.TrimSpace(string(q)))
			require.ErrorContains(t, err, "Could not convert Timestamp(MS) to Timestamp(US)")
		})
	}
}
