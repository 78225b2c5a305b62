package harness

import (
	"context"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// CRMStep is one action of the agent's run and the entry it must become.
type CRMStep struct {
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

// ExecID is the execution id of the article's run.
const ExecID = "exec_a7f3b2c1"

// CRMRun is the execution from the article: read a CRM contact, draft an
// email, request approval, approved, send the email, log the delivery status.
var CRMRun = []CRMStep{
	{name: "agent.start", action: "start", system: "agent-runtime", resource: "run " + ExecID,
		result: Strp("started"), wantResult: "started", wantAttrs: `{}`},
	{name: "crm.read_contact", action: "read", system: "HubSpot CRM", resource: "Contact #48291 (email field)",
		previous: Strp("jane@olddomain.com"), result: Strp("200 OK"),
		extra:      []attribute.KeyValue{attribute.Int("http.response.status_code", 200), attribute.String("http.request.method", "GET")},
		wantResult: "200 OK", wantAttrs: `{"http.request.method":"GET","http.response.status_code":200}`},
	{name: "email.draft", action: "write", system: "Gmail", resource: "Draft to jane@newdomain.com",
		proposed:  Strp("Hi Jane, we updated your address — é ü 日本"),
		reasoning: Strp("Email bounced; found updated address via Clearbit"), result: Strp("draft saved"),
		extra:      []attribute.KeyValue{attribute.Bool("draft.html", false), attribute.Float64("llm.temperature", 0.2)},
		wantResult: "draft saved", wantAttrs: `{"draft.html":false,"llm.temperature":0.2}`},
	{name: "approval.request", action: "request_approval", system: "Slack", resource: "#crm-approvals",
		proposed: Strp("jane@newdomain.com"), previous: Strp("jane@olddomain.com"),
		reasoning: Strp("Changing a contact's email needs a human"), result: Strp("pending"),
		wantResult: "pending", wantAttrs: `{}`},
	{name: "approval.granted", action: "approve", system: "Slack", resource: "#crm-approvals",
		approver: Strp("ops@company.com"), result: Strp("approved"),
		wantResult: "approved", wantAttrs: `{}`},
	{name: "crm.update_contact", action: "write", system: "HubSpot CRM", resource: "Contact #48291 (email field)",
		proposed: Strp("jane@newdomain.com"), previous: Strp("jane@olddomain.com"),
		reasoning: Strp("Email bounced; found updated address via Clearbit"), approver: Strp("ops@company.com"),
		result: Strp("200 OK (field updated)"), wantResult: "200 OK (field updated)", wantAttrs: `{}`},
	{name: "email.send", action: "write", system: "Gmail API", resource: "users.messages.send",
		proposed: Strp("Hi Jane, we updated your address — é ü 日本"), approver: Strp("ops@company.com"),
		extra:      []attribute.KeyValue{attribute.Int("http.response.status_code", 200)},
		wantResult: "", // derived from http.response.status_code, filled in below
		wantAttrs:  `{"http.response.status_code":200}`},
	{name: "email.delivery_status", action: "read", system: "Gmail API", resource: "message 18c2f0a",
		result: Strp("delivered"), wantResult: "delivered", wantAttrs: `{}`},
	{name: "agent.end", action: "end", system: "agent-runtime", resource: "run " + ExecID,
		result: Strp("completed"), wantResult: "completed", wantAttrs: `{}`},
}

// SentSpan records what the SDK sent for one step.
type SentSpan struct {
	step   CRMStep
	start  time.Time
	end    time.Time
	sc     trace.SpanContext
	execID string
}

func newTracerProvider(t *testing.T, ctx context.Context, c *Collector, res *resource.Resource) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.GRPCAddr), otlptracegrpc.WithInsecure())
	require.NoError(t, err)
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
}

// SendCRMRun sends the article's execution (CRMRun), with unaudited LLM
// spans around every step, through the OTel SDK, and returns what was sent.
func SendCRMRun(t *testing.T, ctx context.Context, c *Collector, execID string) ([]SentSpan, trace.SpanContext) {
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
	var sent []SentSpan
	for i, s := range CRMRun {
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
		sent = append(sent, SentSpan{step: s, start: start, end: end, sc: span.SpanContext(), execID: execID})
	}
	run.End()
	require.NoError(t, tp.ForceFlush(ctx))
	require.NoError(t, tp.Shutdown(ctx))
	return sent, run.SpanContext()
}

// CheckCRMRows checks every field of the entries of one SendCRMRun, which
// start at firstSeq of chainID after an entry whose hash is prevHash.
func CheckCRMRows(t *testing.T, got []Row, sent []SentSpan, runSC trace.SpanContext, chainID string, firstSeq int64, prevHash string) {
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
		assert.Equal(t, NullString(Strp(hex.EncodeToString(psid[:]))), r.ParentSpanID, "parent_span_id of %s", want.name)
		assert.Equal(t, NullString(Strp("agent-7")), r.AgentID)
		assert.Equal(t, NullString(Strp("CRM Assistant")), r.AgentName)
		assert.Equal(t, NullString(Strp("crm-agent")), r.ServiceName)
		assert.Equal(t, NullString(Strp("user-42")), r.Principal)
		assert.False(t, r.Sender.Valid, "the embedded default authenticates no one: sender NULL")
		assert.Equal(t, want.action, r.ActionType, "action_type of %s", want.name)
		assert.Equal(t, want.system, r.TargetSystem, "target_system of %s", want.name)
		assert.Equal(t, want.resource, r.TargetResource, "target_resource of %s", want.name)
		assert.Equal(t, NullString(want.proposed), r.ProposedValue, "proposed_value of %s", want.name)
		assert.Equal(t, NullString(want.previous), r.PreviousValue, "previous_value of %s", want.name)
		assert.Equal(t, NullString(want.reasoning), r.Reasoning, "reasoning of %s", want.name)
		assert.Equal(t, NullString(want.approver), r.Approver, "approver of %s", want.name)
		assert.Equal(t, wantResult, r.Result, "result of %s", want.name)
		assert.Equal(t, "Unset", r.StatusCode, "status_code of %s", want.name)
		assert.Equal(t, want.wantAttrs, r.Attributes, "attributes of %s", want.name)
		assert.Equal(t, NullString(want.wantValid), r.Validation, "validation of %s", want.name)
		assert.Equal(t, prev, r.PrevHash, "prev_hash of %s links to the previous entry", want.name)
		assert.Regexp(t, `^[0-9a-f]{64}$`, r.EntryHash)
		prev = r.EntryHash
	}

}
