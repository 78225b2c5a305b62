package auditsplitconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentaudit/agentaudit/connector/auditsplitconnector/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/processor/auditprocessor"
)

// randomTraces returns a request of 1 to 3 resources of 1 to 3 scopes of 0
// to 6 spans: clean audit spans, faulty ones (missing keys, non-string
// values, invalid UTF-8, values over 64 bytes, and some of: duplicate keys,
// a status code outside the enum, a start time past int64, a NUL byte,
// nesting past entry.MaxDepth, a reserved action type, a forged
// audit.validation, seal or other agentaudit.* key, entries over
// testMaxEntryBytes) and untagged ones, with
// events, links and schema URLs, so that every part of a request must be
// carried over.
func randomTraces(r *rand.Rand) ptrace.Traces {
	td := ptrace.NewTraces()
	for i := range 1 + r.IntN(3) {
		rs := td.ResourceSpans().AppendEmpty()
		if r.IntN(2) == 0 {
			rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
		}
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", i))
		if r.IntN(2) == 0 {
			rs.Resource().Attributes().PutStr("gen_ai.agent.name", "billing-agent")
		}
		rs.Resource().SetDroppedAttributesCount(uint32(r.IntN(2)))
		for j := range 1 + r.IntN(3) {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(fmt.Sprintf("scope-%d", j))
			ss.Scope().SetVersion("1.2.3")
			if r.IntN(2) == 0 {
				ss.SetSchemaUrl("https://example.com/scope")
			}
			for k := range r.IntN(7) {
				addRandomSpan(r, ss, fmt.Sprintf("span-%d-%d-%d", i, j, k))
			}
		}
	}
	return td
}

func addRandomSpan(r *rand.Rand, ss ptrace.ScopeSpans, name string) {
	span := ss.Spans().AppendEmpty()
	span.SetName(name)
	var tid [16]byte
	var sid [8]byte
	for i := range tid {
		tid[i] = byte(r.IntN(256))
	}
	for i := range sid {
		sid[i] = byte(r.IntN(256))
	}
	span.SetTraceID(tid)
	span.SetSpanID(sid)
	if r.IntN(2) == 0 {
		span.SetParentSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	}
	span.SetKind(ptrace.SpanKindClient)
	span.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + r.Int64N(1e12)))
	span.SetEndTimestamp(span.StartTimestamp() + 1e6)
	span.Status().SetCode(ptrace.StatusCode(r.IntN(3)))
	attrs := span.Attributes()
	attrs.PutStr("http.request.method", "PATCH")
	switch r.IntN(3) {
	case 0: // untagged
	case 1: // clean audit span
		putCleanAudit(attrs)
		attrs.PutStr(entry.KeyApprover, "jane@example.com")
		if r.IntN(2) == 0 {
			attrs.PutStr(entry.KeyResult, "ok")
		}
	case 2: // faulty audit span
		attrs.PutInt(entry.KeyActionType, 7)
		if r.IntN(4) == 0 {
			attrs.PutStr(entry.KeyActionType, entry.ActionLoss)
		}
		attrs.PutStr(entry.KeyValueProposed, "bad \xff utf-8")
		attrs.PutStr(entry.KeyReasoning, string(make([]byte, 100)))
		attrs.PutEmptySlice(entry.KeyValuePrevious).AppendEmpty().SetStr("x")
		attrs.PutStr("audit.extra", "not in the contract")
		if r.IntN(4) == 0 {
			span.Status().SetCode(7)
			span.SetStartTimestamp(1<<63 + 1)
			attrs.PutStr(entry.KeyTargetResource, "a\x00b")
		}
		if r.IntN(16) == 0 {
			for i := range 1100 {
				attrs.PutStr(fmt.Sprintf("tool.output.%d", i), strings.Repeat("o", 40+i%20))
			}
		}
		if r.IntN(4) == 0 {
			m := attrs.PutEmptyMap("deep")
			for range entry.MaxDepth + 2 {
				m = m.PutEmptyMap("a")
			}
			m.PutStr("leaf", "x")
		}
		if r.IntN(4) == 0 {
			appendAttr(attrs, entry.KeyApprover, `{"stringValue":"second"}`)
			appendAttr(attrs, "http.request.method", `{"stringValue":"GET"}`)
		}
		// What only the pipeline may write, sent by the agent.
		switch r.IntN(6) {
		case 0:
			attrs.PutStr(entry.KeyValidation, forgedValidation)
		case 1:
			attrs.PutStr(entry.KeyValidation, forgedValidation)
			attrs.PutStr(auditspan.KeySeal, strings.Repeat("0", 64))
		case 2:
			attrs.PutEmptyMap(auditspan.KeyMoved).PutStr(entry.KeyValidation, forgedValidation)
			attrs.PutStr("agentaudit.note", "x")
		}
	}
	if r.IntN(2) == 0 {
		ev := span.Events().AppendEmpty()
		ev.SetName("tool.call")
		ev.Attributes().PutStr("tool.name", "update_contact")
	}
	if r.IntN(3) == 0 {
		l := span.Links().AppendEmpty()
		l.SetTraceID(tid)
		l.SetSpanID(pcommon.SpanID{9})
	}
}

// appendAttr appends key with value (OTLP JSON, e.g. {"stringValue":"x"})
// to m even when m already has key, as OTLP allows and pcommon's Put
// methods do not: through ptrace's JSON unmarshaler.
func appendAttr(m pcommon.Map, key, value string) {
	td := ptrace.NewTraces()
	m.CopyTo(td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Attributes())
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		panic(err)
	}
	var doc struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []struct {
					Attributes []json.RawMessage `json:"attributes"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		panic(err)
	}
	sp := &doc.ResourceSpans[0].ScopeSpans[0].Spans[0]
	sp.Attributes = append(sp.Attributes, json.RawMessage(`{"key":`+strconv.Quote(key)+`,"value":`+value+`}`))
	if b, err = json.Marshal(doc); err != nil {
		panic(err)
	}
	td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(b)
	if err != nil {
		panic(err)
	}
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().CopyTo(m)
}

// testMaxEntryBytes is small enough that some faulty spans of randomTraces
// are cut.
const testMaxEntryBytes = entry.MinMaxEntryBytes

// putCleanAudit tags attrs as a well-formed audit span with a payload.
func putCleanAudit(attrs pcommon.Map) {
	attrs.PutStr(entry.KeyActionType, "write")
	attrs.PutStr(entry.KeyExecutionID, "run-1")
	attrs.PutStr(entry.KeyTargetSystem, "crm")
	attrs.PutStr(entry.KeyTargetResource, "Contact/48291/email")
	attrs.PutStr(entry.KeyValueProposed, "b@example.com")
	attrs.PutStr(entry.KeyValuePrevious, "a@example.com")
	attrs.PutStr(entry.KeyReasoning, "the customer asked for it")
}

// router returns the connector's next consumer for the named traces
// pipelines, each a sink.
func router(names ...string) (connector.TracesRouterAndConsumer, map[string]*consumertest.TracesSink) {
	sinks := map[string]*consumertest.TracesSink{}
	cm := map[pipeline.ID]consumer.Traces{}
	for _, n := range names {
		sinks[n] = new(consumertest.TracesSink)
		cm[traces(n)] = sinks[n]
	}
	return connector.NewTracesRouter(cm), sinks
}

// newSinkConnector returns a connector with the given action and value
// limit feeding traces/audit and, when monitoring, traces/monitoring, each
// a sink.
func newSinkConnector(t *testing.T, action string, monitoring bool, maxValueBytes int) (*splitConnector, map[string]*consumertest.TracesSink, *componenttest.Telemetry) {
	t.Helper()
	cfg := &Config{AuditPipelines: []pipeline.ID{traces("audit")}, Action: action, MaxValueBytes: maxValueBytes, MaxEntryBytes: testMaxEntryBytes}
	names := []string{"audit"}
	if monitoring {
		cfg.MonitoringPipelines = []pipeline.ID{traces("monitoring")}
		names = append(names, "monitoring")
	}
	next, sinks := router(names...)
	c, tel := newTestConnector(t, cfg, next)
	return c, sinks, tel
}

func newTestConnector(t *testing.T, cfg *Config, next consumer.Traces) (*splitConnector, *componenttest.Telemetry) {
	t.Helper()
	require.NoError(t, cfg.Validate())
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	c, err := newSplitConnector(cfg, tel.NewTelemetrySettings(), next)
	require.NoError(t, err)
	return c, tel
}

// viaProcessor runs td through the agentaudit processor configured by
// set, as two pipelines would, and returns what comes out (nothing when the
// processor skips the request).
func viaProcessor(t *testing.T, set func(*auditprocessor.Config), td ptrace.Traces) []ptrace.Traces {
	t.Helper()
	f := auditprocessor.NewFactory()
	cfg := f.CreateDefaultConfig().(*auditprocessor.Config)
	set(cfg)
	sink := new(consumertest.TracesSink)
	p, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeTraces(context.Background(), td))
	require.NoError(t, p.Shutdown(context.Background()))
	return sink.AllTraces()
}

func clone(td ptrace.Traces) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	return out
}

// requireSame compares requests byte for byte in OTLP protobuf, and shows
// them as OTLP JSON when they differ.
func requireSame(t *testing.T, want, got []ptrace.Traces, msg string) {
	t.Helper()
	var pm ptrace.ProtoMarshaler
	var jm ptrace.JSONMarshaler
	require.Len(t, got, len(want), msg)
	for i := range want {
		w, err := pm.MarshalTraces(want[i])
		require.NoError(t, err)
		g, err := pm.MarshalTraces(got[i])
		require.NoError(t, err)
		if string(w) != string(g) {
			wj, _ := jm.MarshalTraces(want[i])
			gj, _ := jm.MarshalTraces(got[i])
			require.JSONEq(t, string(wj), string(gj), msg)
			require.Fail(t, "same JSON, different protobuf", msg)
		}
	}
}

// TestSameAsTwoPipelines checks that the connector gives its audit and
// monitoring pipelines exactly what two pipelines with the agentaudit
// processor get (modes audit and monitoring), on random requests, for
// strip, drop and no monitoring at all; and that the exporter maps each
// audit span it gets to the entry it would make of the span as sent.
func TestSameAsTwoPipelines(t *testing.T) {
	for _, tc := range []struct {
		name       string
		action     string
		monitoring bool
	}{
		{"strip", "", true},
		{"strip-explicit", actionStrip, true},
		{"drop", actionDrop, true},
		{"audit-only", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sinks, _ := newSinkConnector(t, tc.action, tc.monitoring, 64)
			r := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			var auditSeen, monitoringSeen, compared int
			for i := range 300 {
				td := randomTraces(r)
				wantAudit := viaProcessor(t, func(p *auditprocessor.Config) { p.MaxValueBytes, p.MaxEntryBytes = 64, testMaxEntryBytes }, clone(td))
				var wantMonitoring []ptrace.Traces
				if tc.monitoring {
					wantMonitoring = viaProcessor(t, func(p *auditprocessor.Config) {
						p.Mode, p.Action, p.MaxValueBytes, p.MaxEntryBytes = "monitoring", tc.action, 64, testMaxEntryBytes
					}, clone(td))
				}
				for _, s := range sinks {
					s.Reset()
				}
				raw := clone(td)
				require.NoError(t, c.ConsumeTraces(context.Background(), td))
				requireSame(t, wantAudit, sinks["audit"].AllTraces(), fmt.Sprintf("audit pipeline, request %d", i))
				compared += requireExporterAgrees(t, raw, sinks["audit"].AllTraces(), fmt.Sprintf("request %d", i))
				auditSeen += sinks["audit"].SpanCount()
				if tc.monitoring {
					requireSame(t, wantMonitoring, sinks["monitoring"].AllTraces(), fmt.Sprintf("monitoring pipeline, request %d", i))
					monitoringSeen += sinks["monitoring"].SpanCount()
				}
			}
			// The random requests must have exercised both sides.
			assert.Greater(t, auditSeen, 100)
			assert.Greater(t, compared, auditSeen*9/10, "audit spans whose entry is compared with the exporter's alone")
			if tc.monitoring {
				assert.Greater(t, monitoringSeen, 100)
			}
		})
	}
}

// forgedValidation is a well-formed audit.validation an agent sends to
// claim a finding the pipeline never made.
const forgedValidation = `[{"field":"audit.value.proposed","problem":"truncated","detail":"truncated to 64 bytes","original_bytes":7000,"sha256":"abab"}]`

// requireExporterAgrees: the exporter maps each audit span the pipeline
// gives it (out) to the entry it would make of the span as the agent sent
// it (in raw, found by span id), as when a receiver feeds the exporter
// directly. Findings over max_entry_bytes are the exception (see
// auditspan.TestValidationOverEntryLimit).
func requireExporterAgrees(t *testing.T, raw ptrace.Traces, out []ptrace.Traces, msg string) (compared int) {
	t.Helper()
	opts := auditspan.Options{MaxValueBytes: 64, MaxEntryBytes: testMaxEntryBytes}
	type sent struct {
		res  pcommon.Resource
		span ptrace.Span
	}
	byID := map[pcommon.SpanID]sent{}
	for _, rs := range raw.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				byID[span.SpanID()] = sent{rs.Resource(), span}
			}
		}
	}
	for _, td := range out {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					if v, ok := span.Attributes().Get(entry.KeyValidation); ok && len(v.Str()) > testMaxEntryBytes {
						continue
					}
					in, ok := byID[span.SpanID()]
					require.True(t, ok, msg)
					require.Equal(t, auditspan.FromSpan(in.res, in.span, opts), auditspan.FromSpan(rs.Resource(), span, opts), msg)
					compared++
				}
			}
		}
	}
	return compared
}

// TestProcessorsAfterConnectorChangeNothing: the embedded default keeps the
// agentaudit processor in traces/audit (mode audit) and traces/monitoring
// (mode monitoring) behind the connector, as a second guard for data that
// reaches those pipelines some other way. On what the connector sends them
// the processors must change nothing: not a repaired value, a truncation or
// a line of audit.validation added twice.
func TestProcessorsAfterConnectorChangeNothing(t *testing.T) {
	for _, action := range []string{actionStrip, actionDrop} {
		t.Run(action, func(t *testing.T) {
			c, sinks, _ := newSinkConnector(t, action, true, 64)
			r := rand.New(rand.NewPCG(2, uint64(len(action))))
			var auditSeen, faulty int
			kinds := map[string]int{}
			for i := range 300 {
				for _, s := range sinks {
					s.Reset()
				}
				require.NoError(t, c.ConsumeTraces(context.Background(), randomTraces(r)))
				var again []ptrace.Traces
				for _, td := range sinks["audit"].AllTraces() {
					auditSeen += td.SpanCount()
					faulty += withValidation(td, kinds)
					again = append(again, viaProcessor(t, func(p *auditprocessor.Config) { p.MaxValueBytes, p.MaxEntryBytes = 64, testMaxEntryBytes }, clone(td))...)
				}
				requireSame(t, sinks["audit"].AllTraces(), again, fmt.Sprintf("audit pipeline, request %d", i))
				again = again[:0]
				for _, td := range sinks["monitoring"].AllTraces() {
					again = append(again, viaProcessor(t, func(p *auditprocessor.Config) {
						p.Mode, p.Action, p.MaxValueBytes, p.MaxEntryBytes = "monitoring", action, 64, testMaxEntryBytes
					}, clone(td))...)
				}
				requireSame(t, sinks["monitoring"].AllTraces(), again, fmt.Sprintf("monitoring pipeline, request %d", i))
			}
			// Both clean and faulty audit spans went through, with every
			// kind of problem of issue 13.
			assert.Greater(t, auditSeen, 100)
			assert.Greater(t, faulty, 30)
			for _, k := range []string{entry.ProblemEntryTruncated, entry.ProblemTooDeep, entry.ProblemDuplicateKey,
				entry.ProblemNULByte, entry.ProblemOutOfRange, entry.ProblemReservedValue,
				auditspan.ProblemUnsealedValidation, auditspan.ProblemReservedKey} {
				assert.Positive(t, kinds[k], k)
			}
		})
	}
}

// TestProcessorsBehindTakeTheNotes: the connector notes what it did to the
// spans it sends (auditspan.WithNormalized, capture.WithStripped), so that
// the agentaudit processors behind it (modes audit and monitoring) do not
// check or strip them again. On random requests (and framework spans, with
// capture on) each note holds for what reaches its pipeline, and each
// processor behind the connector passes on what the same processor passes
// on without the note, with the same outcomes: with the default strip list
// and one that strips audit.action.type (the stripped spans are no longer
// audit spans to the monitoring processor).
func TestProcessorsBehindTakeTheNotes(t *testing.T) {
	capCfg := capture.Config{Conventions: []string{capture.GenAI}, Tools: []capture.ToolRule{{Match: "crm_update_*", Action: "write"}}}
	for _, tc := range []struct {
		name    string
		strip   capture.StripConfig
		capture capture.Config
	}{
		{"default", capture.StripConfig{}, capture.Config{}},
		{"action type stripped", capture.StripConfig{Keys: []string{"audit.*"}}, capture.Config{}},
		{"capture", capture.StripConfig{}, capCfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			opts := auditspan.Options{MaxValueBytes: 64, MaxEntryBytes: testMaxEntryBytes}
			auditMode := func(p *auditprocessor.Config) {
				p.MaxValueBytes, p.MaxEntryBytes, p.Strip, p.Capture = 64, testMaxEntryBytes, tc.strip, tc.capture
			}
			monitoringMode := func(p *auditprocessor.Config) { auditMode(p); p.Mode = "monitoring" }
			newProcessor := func(set func(*auditprocessor.Config)) (consumer.Traces, *consumertest.TracesSink, *componenttest.Telemetry) {
				f := auditprocessor.NewFactory()
				cfg := f.CreateDefaultConfig().(*auditprocessor.Config)
				set(cfg)
				tel := componenttest.NewTelemetry()
				t.Cleanup(func() { require.NoError(t, tel.Shutdown(ctx)) })
				settings := processortest.NewNopSettings(f.Type())
				settings.TelemetrySettings = tel.NewTelemetrySettings()
				sink := new(consumertest.TracesSink)
				p, err := f.CreateTraces(ctx, settings, cfg, sink)
				require.NoError(t, err)
				require.NoError(t, p.Start(ctx, componenttest.NewNopHost()))
				t.Cleanup(func() { require.NoError(t, p.Shutdown(ctx)) })
				return p, sink, tel
			}
			// Behind the connector, and alone (the same data, no note).
			audit, auditSink, auditTel := newProcessor(auditMode)
			monitoring, monitoringSink, monitoringTel := newProcessor(monitoringMode)
			auditAlone, auditAloneSink, auditAloneTel := newProcessor(auditMode)
			monitoringAlone, monitoringAloneSink, monitoringAloneTel := newProcessor(monitoringMode)

			noted := 0
			auditProbe, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
				_, _, ok := auditspan.NormalizedIn(ctx, td, opts)
				require.True(t, ok, "the note holds for what the connector sends")
				require.NoError(t, auditAlone.ConsumeTraces(context.Background(), clone(td)))
				noted++
				return audit.ConsumeTraces(ctx, td)
			})
			require.NoError(t, err)
			monitoringProbe, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
				_, ok := capture.StrippedIn(ctx, td, capture.NewStripper(tc.strip), capture.New(tc.capture))
				require.True(t, ok, "the note holds for what the connector sends")
				require.NoError(t, monitoringAlone.ConsumeTraces(context.Background(), clone(td)))
				return monitoring.ConsumeTraces(ctx, td)
			})
			require.NoError(t, err)
			c, _ := newTestConnector(t, &Config{
				AuditPipelines: []pipeline.ID{traces("audit")}, MonitoringPipelines: []pipeline.ID{traces("monitoring")},
				MaxValueBytes: 64, MaxEntryBytes: testMaxEntryBytes, Strip: tc.strip, Capture: tc.capture,
			}, connector.NewTracesRouter(map[pipeline.ID]consumer.Traces{traces("audit"): auditProbe, traces("monitoring"): monitoringProbe}))
			r := rand.New(rand.NewPCG(3, 4))
			for i := range 300 {
				td := randomTraces(r)
				if i%10 == 0 {
					frameworkTraces().ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
				}
				require.NoError(t, c.ConsumeTraces(ctx, td))
			}
			assert.Greater(t, noted, 100)
			requireSame(t, auditAloneSink.AllTraces(), auditSink.AllTraces(), "the audit processor behind the connector")
			requireSame(t, monitoringAloneSink.AllTraces(), monitoringSink.AllTraces(), "the monitoring processor behind the connector")
			want := processorCounts(t, auditAloneTel)
			assert.Positive(t, want["kept_audit"])
			assert.Positive(t, want["normalized_with_problems"])
			assert.Equal(t, want, processorCounts(t, auditTel), "the audit processor's outcomes")
			want = processorCounts(t, monitoringAloneTel)
			if tc.strip.Keys == nil {
				assert.Positive(t, want["stripped"])
			}
			assert.Equal(t, want, processorCounts(t, monitoringTel), "the monitoring processor's outcomes")
		})
	}
}

// processorCounts returns the agentaudit processor's spans counter by
// outcome.
func processorCounts(t *testing.T, tel *componenttest.Telemetry) map[string]int64 {
	t.Helper()
	m, err := tel.GetMetric("otelcol_processor_agentaudit_spans")
	if err != nil {
		return map[string]int64{}
	}
	out := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		o, _ := dp.Attributes.Value("outcome")
		out[o.AsString()] = dp.Value
	}
	return out
}

// withValidation counts the spans of td that carry audit.validation, and
// the spans with each kind of problem in kinds.
func withValidation(td ptrace.Traces, kinds map[string]int) int {
	n := 0
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				v, ok := span.Attributes().Get(entry.KeyValidation)
				if !ok {
					continue
				}
				n++
				var ps []entry.Problem
				if json.Unmarshal([]byte(v.Str()), &ps) == nil {
					seen := map[string]bool{}
					for _, p := range ps {
						if !seen[p.Kind] {
							seen[p.Kind] = true
							kinds[p.Kind]++
						}
					}
				}
			}
		}
	}
	return n
}

// TestUntaggedRequest: a request without audit-tagged spans reaches the
// monitoring pipelines as it is, and the audit pipelines not at all.
func TestUntaggedRequest(t *testing.T) {
	c, sinks, tel := newSinkConnector(t, "", true, 1024)
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for i := range 5 {
		addRandomSpan(rand.New(rand.NewPCG(0, 0)), ss, fmt.Sprint(i))
		ss.Spans().At(i).Attributes().RemoveIf(func(k string, _ pcommon.Value) bool { return k != "http.request.method" })
	}
	want := clone(td)
	require.NoError(t, c.ConsumeTraces(context.Background(), td))
	assert.Empty(t, sinks["audit"].AllTraces())
	requireSame(t, []ptrace.Traces{want}, sinks["monitoring"].AllTraces(), "monitoring")
	assert.Empty(t, counts(t, tel))
}

// oneAuditSpan is a request with one clean and one faulty audit-tagged span
// and one untagged span.
func oneAuditSpan() ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for _, kind := range []func(pcommon.Map){
		func(m pcommon.Map) {
			m.PutStr(entry.KeyActionType, "write")
			m.PutStr(entry.KeyExecutionID, "run-1")
			m.PutStr(entry.KeyTargetSystem, "crm")
			m.PutStr(entry.KeyValueProposed, "secret")
		},
		func(m pcommon.Map) { m.PutStr(entry.KeyActionType, "read") },
		func(m pcommon.Map) { m.PutStr("http.request.method", "GET") },
	} {
		span := ss.Spans().AppendEmpty()
		span.SetTraceID(pcommon.TraceID{1})
		span.SetSpanID(pcommon.SpanID{byte(ss.Spans().Len())})
		kind(span.Attributes())
	}
	return td
}

// counts returns the spans counter's value by outcome.
func counts(t *testing.T, tel *componenttest.Telemetry) map[string]int64 {
	t.Helper()
	m, err := tel.GetMetric("otelcol_connector_agentaudit_split_spans")
	if err != nil {
		return map[string]int64{}
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok)
	assert.True(t, sum.IsMonotonic)
	out := map[string]int64{}
	for _, dp := range sum.DataPoints {
		o, _ := dp.Attributes.Value("outcome")
		out[o.AsString()] = dp.Value
	}
	return out
}

func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		action     string
		monitoring bool
		want       map[string]int64
	}{
		{actionStrip, true, map[string]int64{"kept_audit": 2, "normalized_with_problems": 2, "stripped": 4}},
		{actionDrop, true, map[string]int64{"kept_audit": 2, "normalized_with_problems": 2, "dropped_audit": 4}},
		{actionStrip, false, map[string]int64{"kept_audit": 2, "normalized_with_problems": 2}},
	} {
		t.Run(fmt.Sprint(tc.action, tc.monitoring), func(t *testing.T) {
			c, sinks, tel := newSinkConnector(t, tc.action, tc.monitoring, 1024)
			for range 2 {
				require.NoError(t, c.ConsumeTraces(context.Background(), oneAuditSpan()))
			}
			assert.Equal(t, tc.want, counts(t, tel))
			assert.Equal(t, 4, sinks["audit"].SpanCount())
		})
	}
}

// TestErrors: a refusal by either side reaches the caller unchanged (so
// that its gRPC or HTTP status reaches the client), and the other side
// still gets the data.
func TestErrors(t *testing.T) {
	auditErr := errors.New("spool full")
	monitoringErr := errors.New("backend down")
	for _, tc := range []struct {
		name                  string
		audit, monitoring     error
		wantIs                []error
		wantSame              error
		auditGot, monitorsGot int
	}{
		{name: "audit refuses", audit: auditErr, wantSame: auditErr, monitorsGot: 3},
		{name: "monitoring refuses", monitoring: monitoringErr, wantSame: monitoringErr, auditGot: 2},
		{name: "both refuse", audit: auditErr, monitoring: monitoringErr, wantIs: []error{auditErr, monitoringErr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := func(err error, got *int) consumer.Traces {
				c, _ := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
					if err != nil {
						return err
					}
					*got += td.SpanCount()
					return nil
				})
				return c
			}
			var auditGot, monitoringGot int
			next := connector.NewTracesRouter(map[pipeline.ID]consumer.Traces{
				traces("audit"):      sink(tc.audit, &auditGot),
				traces("monitoring"): sink(tc.monitoring, &monitoringGot),
			})
			c, _ := newTestConnector(t, &Config{
				AuditPipelines: []pipeline.ID{traces("audit")}, MonitoringPipelines: []pipeline.ID{traces("monitoring")}, MaxValueBytes: 1024, MaxEntryBytes: entry.DefaultMaxEntryBytes,
			}, next)
			err := c.ConsumeTraces(context.Background(), oneAuditSpan())
			if tc.wantSame != nil {
				assert.Same(t, tc.wantSame, err)
			}
			for _, e := range tc.wantIs {
				assert.ErrorIs(t, err, e)
			}
			assert.Equal(t, tc.auditGot, auditGot)
			assert.Equal(t, tc.monitorsGot, monitoringGot)
		})
	}
}

// TestPipelinesChecked: the connector refuses to start when a listed
// pipeline does not read from it, or a pipeline reads from it without
// being listed (it would get nothing).
func TestPipelinesChecked(t *testing.T) {
	next, _ := router("audit", "monitoring", "extra")
	_, err := newSplitConnector(&Config{
		AuditPipelines:      []pipeline.ID{traces("audit"), traces("missing")},
		MonitoringPipelines: []pipeline.ID{traces("monitoring")},
		MaxValueBytes:       1024,
	}, componenttest.NewNopTelemetrySettings(), next)
	require.EqualError(t, err, `"audit_pipelines" lists "traces/missing", which does not have this connector among its receivers`+"\n"+
		`pipelines traces/extra receive from this connector but are in neither "audit_pipelines" nor "monitoring_pipelines"`)
}

// TestFactory creates the connector as the collector does, and checks it
// declares that it changes data (the collector then gives it its own copy
// when another consumer shares the request).
func TestFactory(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, metadata.Type, f.Type())
	assert.Equal(t, metadata.TracesToTracesStability, f.TracesToTracesStability())
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.AuditPipelines = []pipeline.ID{traces("audit")}
	next, sinks := router("audit")
	c, err := f.CreateTracesToTraces(context.Background(), connectortest.NewNopSettings(metadata.Type), cfg, next)
	require.NoError(t, err)
	assert.True(t, c.Capabilities().MutatesData)
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, c.ConsumeTraces(context.Background(), oneAuditSpan()))
	require.NoError(t, c.Shutdown(context.Background()))
	assert.Equal(t, 2, sinks["audit"].SpanCount())
}

// BenchmarkConsumeTraces measures the connector alone (both sides nop) on
// requests of 100 spans, every span or one in ten audit-tagged. Each
// iteration splits a fresh copy of the request; "copy" does only the copy,
// so the connector's own cost is the difference:
//
//	go test -run '^$' -bench ConsumeTraces -benchmem -count 5 ./connector/auditsplitconnector/
func BenchmarkConsumeTraces(b *testing.B) {
	for _, every := range []int{1, 10} {
		in := ptrace.NewTraces()
		rs := in.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "crm-agent")
		ss := rs.ScopeSpans().AppendEmpty()
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 100 {
			addRandomSpan(r, ss, "s")
			attrs := ss.Spans().At(i).Attributes()
			attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return k != "http.request.method" })
			attrs.PutStr("gen_ai.request.model", "gpt-4o")
			if i%every == 0 {
				putCleanAudit(attrs)
			}
		}
		next := connector.NewTracesRouter(map[pipeline.ID]consumer.Traces{
			traces("audit"): consumertest.NewNop(), traces("monitoring"): consumertest.NewNop(),
		})
		c, err := newSplitConnector(&Config{
			AuditPipelines: []pipeline.ID{traces("audit")}, MonitoringPipelines: []pipeline.ID{traces("monitoring")}, MaxValueBytes: 1024, MaxEntryBytes: entry.DefaultMaxEntryBytes,
		}, componenttest.NewNopTelemetrySettings(), next)
		require.NoError(b, err)
		for _, split := range []bool{false, true} {
			name := fmt.Sprintf("audit-1-in-%d/copy", every)
			if split {
				name += "+split"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					td := clone(in)
					if split {
						if err := c.ConsumeTraces(context.Background(), td); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/span")
			})
		}
	}
}
