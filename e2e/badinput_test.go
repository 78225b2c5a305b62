package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sendRaw sends td as one OTLP/gRPC request, bypassing the SDK, which
// refuses some of the malformed input an agent can still produce.
func sendRaw(t *testing.T, ctx context.Context, c *harness.Collector, td ptrace.Traces) {
	t.Helper()
	conn, err := grpc.NewClient(c.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(256<<20)))
	require.NoError(t, err)
	defer conn.Close()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	require.NoError(t, err)
}

type problem struct {
	Field         string `json:"field"`
	Problem       string `json:"problem"`
	Detail        string `json:"detail"`
	OriginalBytes int64  `json:"original_bytes"`
	SHA256        string `json:"sha256"`
}

func problems(t *testing.T, v string) map[string]problem {
	t.Helper()
	var ps []problem
	require.NoError(t, json.Unmarshal([]byte(v), &ps), "validation is a JSON array: %s", v)
	out := map[string]problem{}
	for _, p := range ps {
		out[p.Field+"/"+p.Problem] = p
	}
	return out
}

func TestMalformedInputIsRecordedNotLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := harness.StartCollector(t, harness.CollectorOptions{ChainID: "bad-input", MaxEntries: 5000})

	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "mangled-agent")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	now := pcommon.NewTimestampFromTime(time.Date(2026, 3, 9, 14, 0, 0, 0, time.UTC))
	newSpan := func(marker string) ptrace.Span {
		s := spans.AppendEmpty()
		s.SetName(marker)
		s.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		s.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(spans.Len())})
		s.SetStartTimestamp(now)
		s.SetEndTimestamp(now + 1000)
		s.Attributes().PutStr("audit.target.resource", marker)
		return s
	}

	invalid := newSpan("invalid-utf8")
	invalid.Attributes().PutStr("audit.action.type", "write")
	invalid.Attributes().PutStr("audit.target.system", "CRM")
	invalid.Attributes().PutStr("audit.value.proposed", "jane\xff\xfe@example.com")
	invalid.Attributes().PutStr("note\xc3", "bad key")

	big := strings.Repeat("0123456789abcdef", 10<<20/16) // 10 MiB
	bigSum := sha256.Sum256([]byte(big))
	huge := newSpan("huge-value")
	huge.Attributes().PutStr("audit.action.type", "write")
	huge.Attributes().PutStr("audit.target.system", "Blob store")
	huge.Attributes().PutStr("audit.value.proposed", big)

	typed := newSpan("non-string")
	typed.Attributes().PutStr("audit.action.type", "write")
	typed.Attributes().PutInt("audit.target.system", 42)
	typed.Attributes().PutDouble("audit.value.proposed", 1.5)
	typed.Attributes().PutBool("audit.value.previous", true)
	typed.Attributes().PutEmptyBytes("audit.reasoning").FromRaw([]byte{0, 1, 2})
	typed.Attributes().PutEmptySlice("audit.approver").AppendEmpty().SetStr("ops")

	missing := newSpan("missing-fields")
	missing.Attributes().PutStr("audit.action.type", "frobnicate")

	// One request of 100k spans, every other one audit-tagged.
	const bulk = 100_000
	for i := range bulk {
		s := spans.AppendEmpty()
		s.SetName("bulk")
		s.SetTraceID(pcommon.TraceID{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9})
		s.SetSpanID(pcommon.SpanID{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 1, 1, 1, 1})
		s.SetStartTimestamp(now)
		if i%2 == 0 {
			s.Attributes().PutStr("audit.action.type", "read")
			s.Attributes().PutStr("audit.execution.id", "bulk-run")
			s.Attributes().PutStr("audit.target.system", "CRM")
			s.Attributes().PutInt("bulk.index", int64(i))
		}
	}
	sendRaw(t, ctx, c, td)
	c.Stop()

	files := harness.ParquetFiles(t, c.DataDir)
	require.NotEmpty(t, files)
	db := harness.TrailDB(t, c.DataDir)
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM audit_entries WHERE `+harness.NoMarkers).Scan(&n))
	assert.Equal(t, 4+bulk/2, n, "every audit-tagged span is an entry; no other span is")
	assert.Equal(t, harness.OneCleanRun, harness.TrailMarkers(t, db), "and the collector's start and stop")
	require.NoError(t, db.QueryRow(`SELECT count(DISTINCT json_extract(attributes, '$."bulk.index"')) FROM audit_entries WHERE execution_id = 'bulk-run'`).Scan(&n))
	assert.Equal(t, bulk/2, n, "no bulk entry lost or duplicated")
	assert.Empty(t, harness.VerifySQL(t, db))

	byMarker := map[string]harness.Row{}
	for _, r := range harness.ReadRows(t, db, "WHERE execution_id <> 'bulk-run' AND "+harness.NoMarkers) {
		byMarker[r.TargetResource] = r
	}
	require.Len(t, byMarker, 4)

	r := byMarker["invalid-utf8"]
	assert.True(t, utf8.ValidString(r.ProposedValue.String))
	assert.Equal(t, "jane\uFFFD@example.com", r.ProposedValue.String, "a run of bad bytes becomes one U+FFFD")
	require.True(t, r.Validation.Valid)
	ps := problems(t, r.Validation.String)
	assert.Contains(t, ps, "audit.value.proposed/invalid_utf8")
	assert.Contains(t, ps, "attributes/invalid_utf8")

	r = byMarker["huge-value"]
	assert.LessOrEqual(t, len(r.ProposedValue.String), 64<<10, "truncated to the 64 KiB default")
	assert.True(t, strings.HasPrefix(big, r.ProposedValue.String))
	ps = problems(t, r.Validation.String)
	require.Contains(t, ps, "audit.value.proposed/truncated")
	assert.Equal(t, int64(len(big)), ps["audit.value.proposed/truncated"].OriginalBytes)
	assert.Equal(t, hex.EncodeToString(bigSum[:]), ps["audit.value.proposed/truncated"].SHA256)

	r = byMarker["non-string"]
	assert.Equal(t, "42", r.TargetSystem)
	assert.Equal(t, "1.5", r.ProposedValue.String)
	assert.Equal(t, "true", r.PreviousValue.String)
	assert.Equal(t, "AAEC", r.Reasoning.String)
	assert.Equal(t, `["ops"]`, r.Approver.String)
	ps = problems(t, r.Validation.String)
	for _, k := range []string{"audit.target.system", "audit.value.proposed", "audit.value.previous", "audit.reasoning", "audit.approver"} {
		assert.Contains(t, ps, k+"/not_string")
	}

	r = byMarker["missing-fields"]
	assert.Equal(t, "frobnicate", r.ActionType, "unknown action types are kept verbatim")
	assert.Equal(t, "0102030405060708090a0b0c0d0e0f10", r.ExecutionID, "execution id defaults to the trace id")
	assert.Equal(t, "", r.TargetSystem)
	assert.False(t, r.ProposedValue.Valid)
	ps = problems(t, r.Validation.String)
	assert.Contains(t, ps, "audit.action.type/unknown_value")
	assert.Contains(t, ps, "audit.execution.id/defaulted")
	assert.Contains(t, ps, "audit.target.system/missing")
}
