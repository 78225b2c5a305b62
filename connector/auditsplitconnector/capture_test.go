package auditsplitconnector

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/processor/auditprocessor"
)

// frameworkTraces: an agent run (GenAI invoke_agent) with two tool calls,
// an OpenInference tool call, a hand-tagged span and an untagged one.
func frameworkTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "support-agent")
	ss := rs.ScopeSpans().AppendEmpty()
	add := func(name string, id byte, parent byte, attrs map[string]any) ptrace.Span {
		s := ss.Spans().AppendEmpty()
		s.SetName(name)
		s.SetTraceID(pcommon.TraceID{9, 9, 9})
		s.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, id})
		if parent != 0 {
			s.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, parent})
		}
		s.SetStartTimestamp(pcommon.Timestamp(1_000_000 * uint64(id)))
		s.SetEndTimestamp(pcommon.Timestamp(1_000_000*uint64(id) + 500_000))
		// In key order: FromRaw would follow the map's random order, and
		// the two pipelines are compared byte for byte.
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			if err := s.Attributes().PutEmpty(k).FromRaw(attrs[k]); err != nil {
				panic(err)
			}
		}
		return s
	}
	add("execute_tool crm_lookup", 2, 1, map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm_lookup",
		"gen_ai.tool.call.arguments": `{"id":48291}`, "gen_ai.tool.call.result": `{"email":"jane@old.example"}`, "gen_ai.conversation.id": "conv-1"})
	failed := add("execute_tool crm_update_contact", 3, 1, map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm_update_contact",
		"gen_ai.tool.call.arguments": `{"email":"jane@new.example"}`, "error.type": "Conflict", "gen_ai.conversation.id": "conv-1"})
	failed.Status().SetCode(ptrace.StatusCodeError)
	add("invoke_agent Support", 1, 0, map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Support", "gen_ai.conversation.id": "conv-1"})
	add("search", 4, 0, map[string]any{"openinference.span.kind": "TOOL", "tool.name": "search_docs", "input.value": "refund policy", "output.value": "30 days"})
	add("hand", 5, 0, map[string]any{"audit.action.type": "read", "audit.target.system": "crm", "audit.value.previous": "x"})
	add("GET /", 6, 0, map[string]any{"http.request.method": "GET"})
	return td
}

func TestCaptureSameAsTwoPipelines(t *testing.T) {
	capCfg := capture.Config{Conventions: []string{capture.GenAI}, Tools: []capture.ToolRule{{Match: "crm_update_*", Action: "write"}}}
	next, sinks := router("audit", "monitoring")
	cfg := &Config{AuditPipelines: []pipeline.ID{traces("audit")}, MonitoringPipelines: []pipeline.ID{traces("monitoring")},
		MaxValueBytes: entry.DefaultMaxValueBytes, MaxEntryBytes: entry.DefaultMaxEntryBytes, Capture: capCfg}
	c, tel := newTestConnector(t, cfg, next)
	require.NoError(t, c.ConsumeTraces(context.Background(), frameworkTraces()))

	wantAudit := viaProcessor(t, func(p *auditprocessor.Config) { p.Capture = capCfg }, frameworkTraces())
	wantMon := viaProcessor(t, func(p *auditprocessor.Config) { p.Mode = "monitoring"; p.Capture = capCfg }, frameworkTraces())
	requireSame(t, wantAudit, sinks["audit"].AllTraces(), "audit pipeline")
	requireSame(t, wantMon, sinks["monitoring"].AllTraces(), "monitoring pipeline")

	// The audit side: two tool calls, the hand-tagged span, the run's end
	// and then its start; the OpenInference span is not captured (its
	// convention is off), only counted.
	audit := sinks["audit"].AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	res := sinks["audit"].AllTraces()[0].ResourceSpans().At(0).Resource()
	var got []string
	for i := 0; i < audit.Len(); i++ {
		e := auditspan.FromSpan(res, audit.At(i), auditspan.Options{})
		got = append(got, e.ActionType+" "+e.TargetSystem+" "+e.ExecutionID+" "+e.Result)
	}
	assert.Equal(t, []string{
		"tool_call crm_lookup conv-1 " + `{"email":"jane@old.example"}`,
		"write crm_update_contact conv-1 error: Conflict",
		"end Support conv-1 unset",
		"read crm " + pcommon.TraceID{9, 9, 9}.String() + " unset",
		"start Support conv-1 started",
	}, got)

	// Monitoring keeps every span, the payloads of the captured ones gone.
	mon := sinks["monitoring"].AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	require.Equal(t, 6, mon.Len())
	for i := 0; i < mon.Len(); i++ {
		for _, k := range []string{"gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "audit.value.previous"} {
			_, ok := mon.At(i).Attributes().Get(k)
			assert.False(t, ok, "%s: %s", mon.At(i).Name(), k)
		}
	}
	v, _ := mon.At(3).Attributes().Get("input.value")
	assert.Equal(t, "refund policy", v.Str(), "an uncaptured convention's span is not an audit span: left as it is")

	m, err := tel.GetMetric("otelcol_agentaudit_uncaptured_spans")
	require.NoError(t, err)
	dps := m.Data.(metricdata.Sum[int64]).DataPoints
	require.Len(t, dps, 1)
	conv, _ := dps[0].Attributes.Value("convention")
	assert.Equal(t, "openinference", conv.AsString())
	assert.Equal(t, int64(1), dps[0].Value)
}
