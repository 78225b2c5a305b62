package e2e

import (
	"context"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func strp(s string) *string { return &s }

// step is one action of the agent's run and the entry it must become.
type step struct {
	name               string
	action             string
	system, resource   string
	proposed, previous *string
	reasoning          *string
	approver           *string
	result             *string // nil: not set, derived by the collector
	extra              []attribute.KeyValue
	status             codes.Code
	statusMsg          string

	wantResult string
	wantAttrs  string
	wantValid  *string
}

const execID = "exec_a7f3b2c1"

// crmRun is the execution from the article: read a CRM contact, draft an
// email, request approval, approved, send the email, log the delivery status.
var crmRun = []step{
	{name: "agent.start", action: "start", system: "agent-runtime", resource: "run " + execID,
		result: strp("started"), wantResult: "started", wantAttrs: `{}`},
	{name: "crm.read_contact", action: "read", system: "HubSpot CRM", resource: "Contact #48291 (email field)",
		previous: strp("jane@olddomain.com"), result: strp("200 OK"),
		extra:      []attribute.KeyValue{attribute.Int("http.response.status_code", 200), attribute.String("http.request.method", "GET")},
		wantResult: "200 OK", wantAttrs: `{"http.request.method":"GET","http.response.status_code":200}`},
	{name: "email.draft", action: "write", system: "Gmail", resource: "Draft to jane@newdomain.com",
		proposed:  strp("Hi Jane, we updated your address — é ü 日本"),
		reasoning: strp("Email bounced; found updated address via Clearbit"), result: strp("draft saved"),
		extra:      []attribute.KeyValue{attribute.Bool("draft.html", false), attribute.Float64("llm.temperature", 0.2)},
		wantResult: "draft saved", wantAttrs: `{"draft.html":false,"llm.temperature":0.2}`},
	{name: "approval.request", action: "request_approval", system: "Slack", resource: "#crm-approvals",
		proposed: strp("jane@newdomain.com"), previous: strp("jane@olddomain.com"),
		reasoning: strp("Changing a contact's email needs a human"), result: strp("pending"),
		wantResult: "pending", wantAttrs: `{}`},
	{name: "approval.granted", action: "approve", system: "Slack", resource: "#crm-approvals",
		approver: strp("ops@company.com"), result: strp("approved"),
		wantResult: "approved", wantAttrs: `{}`},
	{name: "crm.update_contact", action: "write", system: "HubSpot CRM", resource: "Contact #48291 (email field)",
		proposed: strp("jane@newdomain.com"), previous: strp("jane@olddomain.com"),
		reasoning: strp("Email bounced; found updated address via Clearbit"), approver: strp("ops@company.com"),
		result: strp("200 OK (field updated)"), wantResult: "200 OK (field updated)", wantAttrs: `{}`},
	{name: "email.send", action: "write", system: "Gmail API", resource: "users.messages.send",
		proposed: strp("Hi Jane, we updated your address — é ü 日本"), approver: strp("ops@company.com"),
		extra:      []attribute.KeyValue{attribute.Int("http.response.status_code", 200)},
		wantResult: "", // derived from http.response.status_code, filled in below
		wantAttrs:  `{"http.response.status_code":200}`},
	{name: "email.delivery_status", action: "read", system: "Gmail API", resource: "message 18c2f0a",
		result: strp("delivered"), wantResult: "delivered", wantAttrs: `{}`},
	{name: "agent.end", action: "end", system: "agent-runtime", resource: "run " + execID,
		result: strp("completed"), wantResult: "completed", wantAttrs: `{}`},
}

// row is one entry as DuckDB reads it back.
type row struct {
	Timestamp                                                time.Time
	TimeUnixNano                                             int64
	EndTimeUnixNano                                          sql.NullInt64
	ChainID                                                  string
	Seq                                                      int64
	ExecutionID, TraceID, SpanID                             string
	ParentSpanID, AgentID, AgentName, ServiceName, Principal sql.NullString
	Sender                                                   sql.NullString
	ActionType, TargetSystem, TargetResource                 string
	ProposedValue, PreviousValue, Reasoning, Approver        sql.NullString
	Result, StatusCode, Attributes                           string
	Validation                                               sql.NullString
	PrevHash, EntryHash                                      string
}

func readRows(t *testing.T, db *sql.DB, where string) []row {
	t.Helper()
	rows, err := db.Query(`SELECT timestamp, time_unix_nano, end_time_unix_nano, chain_id, seq, execution_id, trace_id, span_id,
		parent_span_id, agent_id, agent_name, service_name, principal, sender, action_type, target_system, target_resource,
		proposed_value, previous_value, reasoning, approver, result, status_code, attributes, validation,
		prev_hash, entry_hash FROM audit_entries ` + where + ` ORDER BY chain_id, seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		require.NoError(t, rows.Scan(&r.Timestamp, &r.TimeUnixNano, &r.EndTimeUnixNano, &r.ChainID, &r.Seq, &r.ExecutionID, &r.TraceID, &r.SpanID,
			&r.ParentSpanID, &r.AgentID, &r.AgentName, &r.ServiceName, &r.Principal, &r.Sender, &r.ActionType, &r.TargetSystem, &r.TargetResource,
			&r.ProposedValue, &r.PreviousValue, &r.Reasoning, &r.Approver, &r.Result, &r.StatusCode, &r.Attributes, &r.Validation,
			&r.PrevHash, &r.EntryHash))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func nullStr(p *string) sql.NullString {
	if p == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *p, Valid: true}
}

// sentSpan records what the SDK sent for one step.
type sentSpan struct {
	step   step
	start  time.Time
	end    time.Time
	sc     trace.SpanContext
	execID string
}

func newTracerProvider(t *testing.T, ctx context.Context, c *collector, res *resource.Resource) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.grpcAddr), otlptracegrpc.WithInsecure())
	require.NoError(t, err)
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
}

// TestAgentExecutionEndToEnd runs once per way to split the stream (see
// splitConfigs): each must give the trail and the monitoring backend the
// same.
func TestAgentExecutionEndToEnd(t *testing.T) {
	eachSplit(t, testAgentExecution)
}

func testAgentExecution(t *testing.T, split string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Three entries per file, so the run spans several files and links
	// across them.
	c := startCollector(t, collectorOptions{chainID: "collector-1", maxEntries: 3, split: split})

	sent, runSC := sendCRMRun(t, ctx, c, execID)

	// The collector counts what it recorded.
	c.waitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(len(crmRun)))
	ignored, _ := c.metric("otelcol_agentaudit_spans_ignored")
	assert.Zero(t, ignored, "only audit spans reach the exporter")

	// The monitoring backend sees every span, for latency and errors, but
	// none of the audit payload.
	mon := c.monitoring.received()
	require.Len(t, mon, 2*len(crmRun)+1, "every LLM, audit and run span reaches monitoring")
	audited := 0
	for _, s := range mon {
		if _, ok := s.Attributes().Get("audit.action.type"); ok {
			audited++
		}
		s.Attributes().Range(func(k string, _ pcommon.Value) bool {
			assert.False(t, k == "audit.reasoning" || strings.HasPrefix(k, "audit.value."),
				"monitoring received payload key %q on span %q", k, s.Name())
			return true
		})
	}
	assert.Equal(t, len(crmRun), audited, "audit spans stay visible to monitoring, stripped")
	c.stop()

	files := parquetFiles(t, c.dataDir)
	require.Len(t, files, 3, "9 entries in batches of 3")
	for _, f := range files {
		rel, err := filepath.Rel(c.dataDir, f)
		require.NoError(t, err)
		assert.Regexp(t, `^dt=\d{4}-\d{2}-\d{2}/collector-1-\d{20}\.parquet$`, filepath.ToSlash(rel))
		info, err := os.Stat(f)
		require.NoError(t, err)
		assert.Zero(t, info.Mode().Perm()&0o222, "%s must be read-only", f)
	}

	db := trailDB(t, c.dataDir)
	got := readRows(t, db, "")
	require.Len(t, got, len(crmRun), "only audit-tagged spans are recorded; LLM spans are not")
	checkCRMRows(t, got, sent, runSC, "collector-1", 0, strings.Repeat("0", 64))

	// "Everything execution X did", the README's query.
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM audit_entries WHERE execution_id = ?`, execID).Scan(&n))
	assert.Equal(t, len(crmRun), n)

	// The footer carries each batch's chain facts.
	var kv int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM parquet_kv_metadata('`+filepath.ToSlash(files[1])+`')
		WHERE decode(key) IN ('agentaudit.chain_id', 'agentaudit.first_seq', 'agentaudit.last_seq',
		'agentaudit.prev_hash', 'agentaudit.last_hash', 'agentaudit.format_version')`).Scan(&kv))
	assert.Equal(t, 6, kv)

	assert.Empty(t, runVerifySQL(t, db), "docs/verify.sql finds nothing wrong in an intact trail")

	// Rewrite one value in place: the approver of the approval entry.
	rewriteValue(t, db, files, 4, "approver", "'mallory@company.com'")
	db2 := trailDB(t, c.dataDir)
	v := runVerifySQL(t, db2)
	require.Len(t, v, 1, "verify.sql reports exactly the rewritten entry: %+v", v)
	assert.Equal(t, violation{ChainID: "collector-1", Seq: 4, Violation: "hash_mismatch", Detail: v[0].Detail}, v[0])
}

// rewriteValue replaces column col of entry seq with the SQL expression
// expr, rewriting the file that holds it the way an attacker with write
// access would.
func rewriteValue(t *testing.T, db *sql.DB, files []string, seq int64, col, expr string) {
	t.Helper()
	for _, f := range files {
		var n int
		src := filepath.ToSlash(f)
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM read_parquet('`+src+`') WHERE seq = ?`, seq).Scan(&n))
		if n == 0 {
			continue
		}
		tmp := f + ".tmp"
		_, err := db.Exec(`COPY (SELECT * REPLACE (CASE WHEN seq = ` + strconv.FormatInt(seq, 10) + ` THEN ` + expr + ` ELSE ` + col + ` END AS ` + col + `)
			FROM read_parquet('` + src + `')) TO '` + filepath.ToSlash(tmp) + `' (FORMAT parquet)`)
		require.NoError(t, err)
		require.NoError(t, os.Remove(f))
		require.NoError(t, os.Rename(tmp, f))
		return
	}
	t.Fatalf("no file holds seq %d", seq)
}

// sendCRMRun sends the article's execution (crmRun), with unaudited LLM
// spans around every step, through the OTel SDK, and returns what was sent.
func sendCRMRun(t *testing.T, ctx context.Context, c *collector, execID string) ([]sentSpan, trace.SpanContext) {
	t.Helper()
	res := resource.NewSchemaless(
		attribute.String("service.name", "crm-agent"),
		attribute.String("gen_ai.agent.id", "agent-7"),
		attribute.String("gen_ai.agent.name", "CRM Assistant"),
	)
	tp := newTracerProvider(t, ctx, c, res)
	tracer := tp.Tracer("crm-agent")

	base := time.Date(2026, 3, 9, 14, 23, 7, 123456789, time.UTC)
	runCtx, run := tracer.Start(ctx, "invoke_agent CRM Assistant", trace.WithTimestamp(base))
	var sent []sentSpan
	for i, s := range crmRun {
		// Unaudited LLM spans around every step: monitoring data only.
		_, llm := tracer.Start(runCtx, "chat gpt-4o", trace.WithAttributes(
			attribute.String("gen_ai.operation.name", "chat"),
			attribute.String("gen_ai.request.model", "gpt-4o"),
			attribute.Int("gen_ai.usage.input_tokens", 812)))
		llm.End()

		start := base.Add(time.Duration(i+1) * 1500 * time.Millisecond)
		attrs := []attribute.KeyValue{
			attribute.String("audit.action.type", s.action),
			attribute.String("audit.execution.id", execID),
			attribute.String("audit.target.system", s.system),
			attribute.String("audit.target.resource", s.resource),
			attribute.String("enduser.id", "user-42"),
		}
		for _, kv := range []struct {
			key string
			v   *string
		}{{"audit.value.proposed", s.proposed}, {"audit.value.previous", s.previous}, {"audit.reasoning", s.reasoning},
			{"audit.approver", s.approver}, {"audit.result", s.result}} {
			if kv.v != nil {
				attrs = append(attrs, attribute.String(kv.key, *kv.v))
			}
		}
		attrs = append(attrs, s.extra...)
		_, span := tracer.Start(runCtx, s.name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
		if s.status != codes.Unset {
			span.SetStatus(s.status, s.statusMsg)
		}
		end := start.Add(300 * time.Millisecond)
		span.End(trace.WithTimestamp(end))
		sent = append(sent, sentSpan{step: s, start: start, end: end, sc: span.SpanContext(), execID: execID})
	}
	run.End()
	require.NoError(t, tp.ForceFlush(ctx))
	require.NoError(t, tp.Shutdown(ctx))
	return sent, run.SpanContext()
}

// checkCRMRows checks every field of the entries of one sendCRMRun, which
// start at firstSeq of chainID after an entry whose hash is prevHash.
func checkCRMRows(t *testing.T, got []row, sent []sentSpan, runSC trace.SpanContext, chainID string, firstSeq int64, prevHash string) {
	t.Helper()
	execID := sent[0].execID
	require.Len(t, got, len(sent))
	prev := prevHash
	for i, r := range got {
		s := sent[i]
		want := s.step
		wantResult := want.wantResult
		if want.result == nil {
			wantResult = "200"
		}
		assert.Equal(t, s.start.UnixNano(), r.TimeUnixNano, "time_unix_nano of %s", want.name)
		assert.Equal(t, sql.NullInt64{Int64: s.end.UnixNano(), Valid: true}, r.EndTimeUnixNano, "end_time_unix_nano of %s", want.name)
		assert.True(t, s.start.Truncate(time.Millisecond).Equal(r.Timestamp), "timestamp of %s: %v", want.name, r.Timestamp)
		assert.Equal(t, chainID, r.ChainID)
		assert.Equal(t, firstSeq+int64(i), r.Seq)
		assert.Equal(t, execID, r.ExecutionID)
		assert.Equal(t, runSC.TraceID().String(), r.TraceID, "trace_id of %s", want.name)
		sid := s.sc.SpanID()
		assert.Equal(t, hex.EncodeToString(sid[:]), r.SpanID, "span_id of %s", want.name)
		psid := runSC.SpanID()
		assert.Equal(t, nullStr(strp(hex.EncodeToString(psid[:]))), r.ParentSpanID, "parent_span_id of %s", want.name)
		assert.Equal(t, nullStr(strp("agent-7")), r.AgentID)
		assert.Equal(t, nullStr(strp("CRM Assistant")), r.AgentName)
		assert.Equal(t, nullStr(strp("crm-agent")), r.ServiceName)
		assert.Equal(t, nullStr(strp("user-42")), r.Principal)
		assert.False(t, r.Sender.Valid, "the embedded default authenticates no one: sender NULL")
		assert.Equal(t, want.action, r.ActionType, "action_type of %s", want.name)
		assert.Equal(t, want.system, r.TargetSystem, "target_system of %s", want.name)
		assert.Equal(t, want.resource, r.TargetResource, "target_resource of %s", want.name)
		assert.Equal(t, nullStr(want.proposed), r.ProposedValue, "proposed_value of %s", want.name)
		assert.Equal(t, nullStr(want.previous), r.PreviousValue, "previous_value of %s", want.name)
		assert.Equal(t, nullStr(want.reasoning), r.Reasoning, "reasoning of %s", want.name)
		assert.Equal(t, nullStr(want.approver), r.Approver, "approver of %s", want.name)
		assert.Equal(t, wantResult, r.Result, "result of %s", want.name)
		assert.Equal(t, "Unset", r.StatusCode, "status_code of %s", want.name)
		assert.Equal(t, want.wantAttrs, r.Attributes, "attributes of %s", want.name)
		assert.Equal(t, nullStr(want.wantValid), r.Validation, "validation of %s", want.name)
		assert.Equal(t, prev, r.PrevHash, "prev_hash of %s links to the previous entry", want.name)
		assert.Regexp(t, `^[0-9a-f]{64}$`, r.EntryHash)
		prev = r.EntryHash
	}

}
