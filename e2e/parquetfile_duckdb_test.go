package e2e

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

func pqI64(v int64) *int64 { return &v }

// pqEntries is one batch with every optional column both NULL and set, ""
// distinct from NULL, and non-ASCII text; seq 0..n-1 of chain "pq-chain-1".
// One entry has no end time nor sender (one of format version 1), one a
// version 2 entry without a sender.
func pqEntries() []entry.Entry {
	base := time.Date(2026, 11, 27, 6, 30, 0, 987654321, time.UTC).UnixNano()
	es := []entry.Entry{
		{
			TimeUnixNano: base, EndTimeUnixNano: pqI64(base + 1_250_000_000), ExecutionID: "exec-1", TraceID: strings.Repeat("ab", 16), SpanID: strings.Repeat("cd", 8),
			ParentSpanID: harness.Strp(strings.Repeat("ef", 8)), AgentID: harness.Strp("agent-7"), AgentName: harness.Strp("billing-bot"),
			ServiceName: harness.Strp("billing"), Principal: harness.Strp("alice@example.com"), Sender: harness.Strp("svc-billing"), ActionType: "write",
			TargetSystem: "postgres", TargetResource: "invoices/42", ProposedValue: harness.Strp(`{"amount":10}`),
			PreviousValue: harness.Strp(`{"amount":9}`), Reasoning: harness.Strp("customer asked"), Approver: harness.Strp("bob"),
			Result: "ok", StatusCode: "Ok", Attributes: `{"k":"v"}`, Validation: harness.Strp(`[{"field":"x","problem":"empty"}]`),
		},
		{
			TimeUnixNano: base + 1, ExecutionID: "exec-1", TraceID: strings.Repeat("01", 16), SpanID: strings.Repeat("02", 8),
			ActionType: "read", TargetSystem: "s3", TargetResource: "bucket/key", StatusCode: "Unset", Attributes: "{}",
		},
		{
			TimeUnixNano: base + 1_500_000, EndTimeUnixNano: pqI64(0), ExecutionID: "exec-2",
			ParentSpanID: harness.Strp(""), AgentID: harness.Strp(""), AgentName: harness.Strp(""), ServiceName: harness.Strp(""), Principal: harness.Strp(""), Sender: harness.Strp(""),
			ProposedValue: harness.Strp(""), PreviousValue: harness.Strp(""), Reasoning: harness.Strp(""), Approver: harness.Strp(""), Validation: harness.Strp(""),
		},
		{
			TimeUnixNano: base + 2_999_999_999, EndTimeUnixNano: pqI64(base + 2_999_999_999), ExecutionID: "exécution-✓", TraceID: strings.Repeat("0f", 16), SpanID: strings.Repeat("f0", 8),
			AgentName: harness.Strp("代理人 🤖"), Principal: harness.Strp("Zoë Ångström"), ActionType: "request_approval",
			TargetSystem: "crm", TargetResource: "клиенты/№5", Reasoning: harness.Strp("naïve café — line\nbreak"),
			Result: "pending", StatusCode: "Error", Attributes: `{"emoji":"😀"}`,
		},
	}
	c := chain.New("pq-chain-1", chain.Genesis())
	for i := range es {
		c.Append(&es[i])
	}
	return es
}

// pqWriteBatch encodes es into dir/batch.parquet and returns the path.
func pqWriteBatch(t *testing.T, dir string, es []entry.Entry) string {
	t.Helper()
	var buf bytes.Buffer
	_, err := parquetfile.Encode(&buf, es)
	require.NoError(t, err)
	p := filepath.Join(dir, "batch.parquet")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o444))
	return filepath.ToSlash(p)
}

func TestPqDuckDBReadsBatchFile(t *testing.T) {
	es := pqEntries()
	file := pqWriteBatch(t, t.TempDir(), es)
	db := harness.OpenDB(t)

	t.Run("column types", func(t *testing.T) {
		rows, err := db.Query(`DESCRIBE SELECT * FROM read_parquet('` + file + `')`)
		require.NoError(t, err)
		defer rows.Close()
		cols, err := rows.Columns()
		require.NoError(t, err)
		var got [][2]string
		for rows.Next() {
			vals := make([]any, len(cols))
			var name, typ string
			vals[0], vals[1] = &name, &typ
			for i := 2; i < len(vals); i++ {
				vals[i] = new(any)
			}
			require.NoError(t, rows.Scan(vals...))
			got = append(got, [2]string{name, typ})
		}
		require.NoError(t, rows.Err())
		// isAdjustedToUTC=true is what makes DuckDB (and Athena) read an
		// instant rather than a wall-clock time.
		want := [][2]string{{"timestamp", "TIMESTAMP WITH TIME ZONE"}, {"time_unix_nano", "BIGINT"}, {"end_time_unix_nano", "BIGINT"}, {"chain_id", "VARCHAR"}, {"seq", "BIGINT"}}
		for _, name := range []string{"execution_id", "trace_id", "span_id", "parent_span_id", "agent_id", "agent_name",
			"service_name", "principal", "sender", "action_type", "target_system", "target_resource", "proposed_value",
			"previous_value", "reasoning", "approver", "result", "status_code", "attributes", "validation",
			"prev_hash", "entry_hash"} {
			want = append(want, [2]string{name, "VARCHAR"})
		}
		assert.Equal(t, want, got)
	})

	t.Run("rows", func(t *testing.T) {
		rows, err := db.Query(`SELECT * FROM read_parquet('` + file + `') ORDER BY seq`)
		require.NoError(t, err)
		defer rows.Close()
		i := 0
		for rows.Next() {
			require.Less(t, i, len(es))
			want := es[i]
			var (
				ts                                                              time.Time
				tun, seq                                                        int64
				end                                                             sql.NullInt64
				chainID, execID, traceID, spanID                                string
				actionType, targetSystem, targetResource, result, status, attrs string
				prevHash, entryHash                                             string
				parent, agentID, agentName, service, principal, sender          sql.NullString
				proposed, previous, reasoning, approver, validation             sql.NullString
			)
			require.NoError(t, rows.Scan(&ts, &tun, &end, &chainID, &seq, &execID, &traceID, &spanID,
				&parent, &agentID, &agentName, &service, &principal, &sender,
				&actionType, &targetSystem, &targetResource, &proposed, &previous, &reasoning, &approver,
				&result, &status, &attrs, &validation, &prevHash, &entryHash))
			got := entry.Entry{
				TimeUnixNano: tun, ChainID: chainID, Seq: seq, ExecutionID: execID, TraceID: traceID, SpanID: spanID,
				ActionType: actionType, TargetSystem: targetSystem, TargetResource: targetResource,
				Result: result, StatusCode: status, Attributes: attrs, PrevHash: prevHash, EntryHash: entryHash,
			}
			assert.Equal(t, want.TimeUnixNano, got.TimeUnixNano)
			if want.EndTimeUnixNano == nil {
				assert.False(t, end.Valid, "seq %d: end_time_unix_nano NULL", seq)
			} else {
				assert.Equal(t, sql.NullInt64{Int64: *want.EndTimeUnixNano, Valid: true}, end, "seq %d", seq)
			}
			want.EndTimeUnixNano = nil
			wantTS := time.Unix(0, want.TimeUnixNano).Truncate(time.Millisecond).UTC()
			assert.True(t, wantTS.Equal(ts), "seq %d: timestamp %v, want %v", seq, ts, wantTS)
			for name, pair := range map[string][2]sql.NullString{
				"parent_span_id": {harness.NullString(want.ParentSpanID), parent},
				"agent_id":       {harness.NullString(want.AgentID), agentID},
				"agent_name":     {harness.NullString(want.AgentName), agentName},
				"service_name":   {harness.NullString(want.ServiceName), service},
				"principal":      {harness.NullString(want.Principal), principal},
				"sender":         {harness.NullString(want.Sender), sender},
				"proposed_value": {harness.NullString(want.ProposedValue), proposed},
				"previous_value": {harness.NullString(want.PreviousValue), previous},
				"reasoning":      {harness.NullString(want.Reasoning), reasoning},
				"approver":       {harness.NullString(want.Approver), approver},
				"validation":     {harness.NullString(want.Validation), validation},
			} {
				assert.Equal(t, pair[0], pair[1], "seq %d column %s", seq, name)
			}
			// With the optional columns compared, the rest must match exactly.
			want.ParentSpanID, want.AgentID, want.AgentName, want.ServiceName, want.Principal, want.Sender = nil, nil, nil, nil, nil, nil
			want.ProposedValue, want.PreviousValue, want.Reasoning, want.Approver, want.Validation = nil, nil, nil, nil, nil
			assert.Equal(t, want, got, "seq %d", seq)
			i++
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, len(es), i)
	})

	t.Run("nulls are nulls", func(t *testing.T) {
		var nullReasoning, emptyReasoning int
		require.NoError(t, db.QueryRow(`SELECT count(*) FILTER (WHERE reasoning IS NULL), count(*) FILTER (WHERE reasoning = '')
			FROM read_parquet('`+file+`')`).Scan(&nullReasoning, &emptyReasoning))
		assert.Equal(t, 1, nullReasoning, "seq 1 has no reasoning")
		assert.Equal(t, 1, emptyReasoning, "seq 2 has an empty one")
	})

	t.Run("footer metadata", func(t *testing.T) {
		rows, err := db.Query(`SELECT key, value FROM parquet_kv_metadata('` + file + `')`)
		require.NoError(t, err)
		defer rows.Close()
		got := map[string]string{}
		for rows.Next() {
			var k, v []byte
			require.NoError(t, rows.Scan(&k, &v))
			if strings.HasPrefix(string(k), "agentaudit.") {
				got[string(k)] = string(v)
			}
		}
		require.NoError(t, rows.Err())
		var hashes []string
		for _, e := range es {
			hashes = append(hashes, e.EntryHash)
		}
		root, err := merkle.RootHex(hashes)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{
			parquetfile.KeyMerkleRoot:    root,
			parquetfile.KeyFormatVersion: parquetfile.FormatVersion,
			parquetfile.KeyChainID:       "pq-chain-1",
			parquetfile.KeyFirstSeq:      "0",
			parquetfile.KeyLastSeq:       "3",
			parquetfile.KeyEntryCount:    "4",
			parquetfile.KeyPrevHash:      chain.GenesisHash,
			parquetfile.KeyLastHash:      es[3].EntryHash,
		}, got)
	})

	t.Run("statistics and compression", func(t *testing.T) {
		rows, err := db.Query(`SELECT path_in_schema, stats_min_value, stats_max_value, compression
			FROM parquet_metadata('` + file + `') WHERE path_in_schema IN ('seq', 'execution_id') ORDER BY column_id`)
		require.NoError(t, err)
		defer rows.Close()
		var got [][4]string
		for rows.Next() {
			var r [4]sql.NullString
			require.NoError(t, rows.Scan(&r[0], &r[1], &r[2], &r[3]))
			got = append(got, [4]string{r[0].String, r[1].String, r[2].String, r[3].String})
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, [][4]string{
			{"seq", "0", "3", "ZSTD"},
			{"execution_id", "exec-1", "exécution-✓", "ZSTD"},
		}, got)
	})

	t.Run("bloom filter", func(t *testing.T) {
		probe := func(value string) bool {
			var excludes bool
			require.NoError(t, db.QueryRow(`SELECT bloom_filter_excludes FROM parquet_bloom_probe('`+file+`', 'execution_id', ?)`,
				value).Scan(&excludes))
			return excludes
		}
		assert.False(t, probe("exec-2"), "a present execution id is never excluded")
		assert.True(t, probe("exec-absent-0123456789"), "an absent one is (20 bits per value: well under 0.1% false positives)")
	})
}
