package auditprocessor

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/processor/auditprocessor/internal/metadata"
)

const traceHex = "0af7651916cd43dd8448eb211c80319c"

var traceID = pcommon.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}

func addSpan(ss ptrace.ScopeSpans, name string, n byte, attrs map[string]any) ptrace.Span {
	span := ss.Spans().AppendEmpty()
	span.SetName(name)
	span.SetTraceID(traceID)
	span.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, n})
	span.SetStartTimestamp(1_700_000_000_000_000_000)
	span.SetEndTimestamp(1_700_000_000_250_000_000)
	span.Status().SetCode(ptrace.StatusCodeOk)
	if err := span.Attributes().FromRaw(attrs); err != nil {
		panic(err)
	}
	return span
}

func addResource(td ptrace.Traces, service string) ptrace.ResourceSpans {
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	return rs
}

// cleanAudit carries every contract key: normalizing it only adds the
// derived audit.result.
var cleanAudit = map[string]any{
	"audit.action.type":     "write",
	"audit.execution.id":    "run-1",
	"audit.target.system":   "salesforce",
	"audit.target.resource": "Account/001/Phone",
	"audit.value.proposed":  "+1 555 0100",
	"audit.value.previous":  "+1 555 0199",
	"audit.reasoning":       "customer asked",
	"audit.approver":        "auto:low-risk",
	"http.request.method":   "PATCH",
}

// faultyAudit lacks the execution id and target system and has an int value.
var faultyAudit = map[string]any{
	"audit.action.type":    "read",
	"audit.value.previous": int64(42),
	"audit.extra":          "x",
	"tool.input":           "bad \xff",
}

var untagged = map[string]any{"http.request.method": "GET", "url.full": "https://example.com/"}

// testTraces: resource "a" has one scope with an audit span and an
// untagged span and one scope with only an untagged span; resource "b" has
// only an untagged span; resource "c" has a faulty audit span.
func testTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	a := addResource(td, "a")
	s1 := a.ScopeSpans().AppendEmpty()
	s1.Scope().SetName("s1")
	addSpan(s1, "audit-clean", 1, cleanAudit)
	addSpan(s1, "plain-1", 2, untagged)
	s2 := a.ScopeSpans().AppendEmpty()
	s2.Scope().SetName("s2")
	addSpan(s2, "plain-2", 3, untagged)
	b := addResource(td, "b")
	addSpan(b.ScopeSpans().AppendEmpty(), "plain-3", 4, untagged)
	c := addResource(td, "c")
	addSpan(c.ScopeSpans().AppendEmpty(), "audit-faulty", 5, faultyAudit)
	return td
}

// spanView is what the golden comparisons look at: where a span sits and
// everything the processor may change.
type spanView struct {
	Service string
	Scope   string
	Name    string
	Attrs   map[string]any
}

func flatten(td ptrace.Traces) []spanView {
	var out []spanView
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		svc, _ := rs.Resource().Attributes().Get("service.name")
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				span := ss.Spans().At(k)
				out = append(out, spanView{
					Service: svc.Str(), Scope: ss.Scope().Name(), Name: span.Name(), Attrs: span.Attributes().AsRaw(),
				})
			}
		}
	}
	return out
}

// shape is the number of scope spans under each resource spans.
func shape(td ptrace.Traces) []int {
	var out []int
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		out = append(out, td.ResourceSpans().At(i).ScopeSpans().Len())
	}
	return out
}

func with(base map[string]any, set map[string]any, remove ...string) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range set {
		out[k] = v
	}
	for _, k := range remove {
		delete(out, k)
	}
	return out
}

func newTestProcessor(t *testing.T, cfg *Config) (*auditProcessor, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	p, err := newAuditProcessor(cfg, tel.NewTelemetrySettings())
	require.NoError(t, err)
	return p, tel
}

// counts returns the spans counter's value by outcome.
func counts(t *testing.T, tel *componenttest.Telemetry) map[string]int64 {
	t.Helper()
	m, err := tel.GetMetric("otelcol_processor_agentaudit_spans")
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

func TestAuditMode(t *testing.T) {
	p, tel := newTestProcessor(t, &Config{Mode: "audit", MaxValueBytes: 1024})
	td, err := p.processTraces(context.Background(), testTraces())
	require.NoError(t, err)

	assert.Equal(t, []int{1, 1}, shape(td), "empty scope and resource spans are removed")
	view := flatten(td)
	// The seal of the findings is keyed by a secret of this process: its
	// form is checked here, and that it verifies below, by FromSpan.
	for _, v := range view {
		if seal, ok := v.Attrs[auditspan.KeySeal].(string); ok {
			assert.Regexp(t, "^[0-9a-f]{64}$", seal)
			v.Attrs[auditspan.KeySeal] = "(seal)"
		}
	}
	assert.Equal(t, []spanView{
		{Service: "a", Scope: "s1", Name: "audit-clean", Attrs: with(cleanAudit, map[string]any{"audit.result": "ok"})},
		{Service: "c", Name: "audit-faulty", Attrs: map[string]any{
			auditspan.KeySeal:      "(seal)",
			"audit.action.type":    "read",
			"audit.execution.id":   traceHex,
			"audit.target.system":  "",
			"audit.value.previous": "42",
			"audit.result":         "ok",
			"audit.extra":          "x",
			"tool.input":           "bad \uFFFD",
			"audit.validation": `[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},` +
				`{"field":"audit.extra","problem":"unknown_key","detail":"kept in attributes"},` +
				`{"field":"audit.target.system","problem":"missing"},` +
				`{"field":"audit.value.previous","problem":"not_string","detail":"Int"},` +
				`{"field":"tool.input","problem":"invalid_utf8","detail":"replaced with U+FFFD"}]`,
		}},
	}, view)
	assert.Equal(t, map[string]int64{
		"kept_audit": 1, "normalized_with_problems": 1, "dropped_unaudited": 3,
	}, counts(t, tel))

	// What the exporter will record from the normalized span is what it
	// would have recorded from the original.
	orig := testTraces().ResourceSpans().At(2)
	want := auditspan.FromSpan(orig.Resource(), orig.ScopeSpans().At(0).Spans().At(0), auditspan.Options{MaxValueBytes: 1024})
	got := td.ResourceSpans().At(1)
	assert.Equal(t, want, auditspan.FromSpan(got.Resource(), got.ScopeSpans().At(0).Spans().At(0), auditspan.Options{MaxValueBytes: 1024}))
}

// TestAuditModeTakesTheNote: with the agentaudit_split connector's note
// for td and its own limits, the processor counts the note's outcomes and
// passes td on as it is, without checking a span again (the note here
// claims a faulty span clean, to show it is not checked); without a note
// that holds, it normalizes as before.
func TestAuditModeTakesTheNote(t *testing.T) {
	opts := auditspan.Options{MaxValueBytes: 1024}
	faultyOnly := func() ptrace.Traces {
		td := ptrace.NewTraces()
		addSpan(addResource(td, "c").ScopeSpans().AppendEmpty(), "audit-faulty", 5, faultyAudit)
		return td
	}

	p, tel := newTestProcessor(t, &Config{Mode: "audit", MaxValueBytes: 1024})
	td := faultyOnly()
	ctx := auditspan.WithNormalized(context.Background(), td, opts, 1, 0)
	out, err := p.processTraces(ctx, td)
	require.NoError(t, err)
	assert.Equal(t, flatten(faultyOnly()), flatten(out), "passed on as it is")
	assert.Equal(t, map[string]int64{"kept_audit": 1}, counts(t, tel))

	for name, note := range map[string]func(td ptrace.Traces) context.Context{
		"no note": func(ptrace.Traces) context.Context { return context.Background() },
		"other limits": func(td ptrace.Traces) context.Context {
			return auditspan.WithNormalized(context.Background(), td, auditspan.Options{}, 1, 0)
		},
		"other traces": func(ptrace.Traces) context.Context {
			return auditspan.WithNormalized(context.Background(), faultyOnly(), opts, 1, 0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			p, tel := newTestProcessor(t, &Config{Mode: "audit", MaxValueBytes: 1024})
			td := faultyOnly()
			out, err := p.processTraces(note(td), td)
			require.NoError(t, err)
			assert.Contains(t, flatten(out)[0].Attrs, "audit.validation")
			assert.Equal(t, map[string]int64{"normalized_with_problems": 1}, counts(t, tel))
		})
	}
}

func TestAuditModeTruncates(t *testing.T) {
	p, _ := newTestProcessor(t, &Config{Mode: "audit", MaxValueBytes: 4})
	td := ptrace.NewTraces()
	addSpan(addResource(td, "a").ScopeSpans().AppendEmpty(), "big", 1, with(cleanAudit, map[string]any{"tool.output": "123456"}))
	td, err := p.processTraces(context.Background(), td)
	require.NoError(t, err)
	attrs := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
	out, _ := attrs.Get("tool.output")
	assert.Equal(t, "1234", out.Str())
	reasoning, _ := attrs.Get(entry.KeyReasoning)
	assert.Equal(t, "cust", reasoning.Str())
	v, ok := attrs.Get(entry.KeyValidation)
	require.True(t, ok)
	assert.Contains(t, v.Str(), `{"field":"tool.output","problem":"truncated","detail":"truncated to 4 bytes","original_bytes":6,"sha256":"8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"}`)
}

// TestAuditModeBoundsEntry: max_entry_bytes reaches Normalize: the largest
// values of an entry over it are emptied in the span and flagged, and the
// exporter records from the normalized span the entry it would have
// recorded from the original.
func TestAuditModeBoundsEntry(t *testing.T) {
	attrs := with(cleanAudit, nil)
	for i := range 80 {
		attrs[fmt.Sprintf("tool.out.%02d", i)] = strings.Repeat("o", 900+i)
	}
	build := func() ptrace.Traces {
		td := ptrace.NewTraces()
		addSpan(addResource(td, "a").ScopeSpans().AppendEmpty(), "big", 1, attrs)
		return td
	}
	opts := auditspan.Options{MaxValueBytes: 1024, MaxEntryBytes: 64 << 10}
	orig := build().ResourceSpans().At(0)
	want := auditspan.FromSpan(orig.Resource(), orig.ScopeSpans().At(0).Spans().At(0), opts)

	p, tel := newTestProcessor(t, &Config{Mode: "audit", MaxValueBytes: 1024, MaxEntryBytes: 64 << 10})
	td, err := p.processTraces(context.Background(), build())
	require.NoError(t, err)
	got := td.ResourceSpans().At(0)
	span := got.ScopeSpans().At(0).Spans().At(0)
	largest, _ := span.Attributes().Get("tool.out.79")
	assert.Equal(t, "", largest.Str())
	smallest, _ := span.Attributes().Get("tool.out.00")
	assert.Equal(t, strings.Repeat("o", 900), smallest.Str())
	v, ok := span.Attributes().Get(entry.KeyValidation)
	require.True(t, ok)
	assert.Contains(t, v.Str(), `{"field":"tool.out.79","problem":"entry_truncated","detail":"emptied to fit max_entry_bytes","original_bytes":981,`)
	assert.Equal(t, want, auditspan.FromSpan(got.Resource(), span, opts))
	assert.LessOrEqual(t, entry.EntryBytes(&want), 64<<10)
	assert.Equal(t, map[string]int64{"normalized_with_problems": 1}, counts(t, tel))

	// Under the default limit nothing is cut.
	p, _ = newTestProcessor(t, createDefaultConfig().(*Config))
	td, err = p.processTraces(context.Background(), build())
	require.NoError(t, err)
	_, ok = td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().Get(entry.KeyValidation)
	assert.False(t, ok)
}

func TestAuditModeNothingLeft(t *testing.T) {
	p, tel := newTestProcessor(t, &Config{Mode: "audit", MaxValueBytes: 1024})
	td := ptrace.NewTraces()
	addSpan(addResource(td, "a").ScopeSpans().AppendEmpty(), "plain", 1, untagged)
	_, err := p.processTraces(context.Background(), td)
	assert.ErrorIs(t, err, processorhelper.ErrSkipProcessingData)
	assert.Equal(t, map[string]int64{"dropped_unaudited": 1}, counts(t, tel))
}

func TestMonitoringStrip(t *testing.T) {
	p, tel := newTestProcessor(t, &Config{Mode: "monitoring", MaxValueBytes: 1024})
	td, err := p.processTraces(context.Background(), testTraces())
	require.NoError(t, err)

	assert.Equal(t, []int{2, 1, 1}, shape(td))
	assert.Equal(t, []spanView{
		// The default strip list: every audit.* key but the action, run,
		// system and result.
		{Service: "a", Scope: "s1", Name: "audit-clean", Attrs: with(cleanAudit, nil,
			"audit.value.proposed", "audit.value.previous", "audit.reasoning", "audit.approver", "audit.target.resource")},
		{Service: "a", Scope: "s1", Name: "plain-1", Attrs: untagged},
		{Service: "a", Scope: "s2", Name: "plain-2", Attrs: untagged},
		{Service: "b", Name: "plain-3", Attrs: untagged},
		{Service: "c", Name: "audit-faulty", Attrs: with(faultyAudit, nil, "audit.value.previous", "audit.extra")},
	}, flatten(td))
	assert.Equal(t, map[string]int64{"stripped": 2}, counts(t, tel))

	// A configured list.
	p, _ = newTestProcessor(t, &Config{Mode: "monitoring", MaxValueBytes: 1024,
		Strip: capture.StripConfig{Keys: []string{"audit.value.*", "http.*"}}})
	td, err = p.processTraces(context.Background(), testTraces())
	require.NoError(t, err)
	assert.Equal(t, with(cleanAudit, nil, "audit.value.proposed", "audit.value.previous", "http.request.method"), flatten(td)[0].Attrs)
	assert.Equal(t, untagged, flatten(td)[1].Attrs, "only audit spans are stripped")
}

// TestMonitoringStripTakesTheNote: with the connector's note that td's
// audit spans are stripped by an equal strip list and capture
// configuration, the processor counts them as the note says and strips
// nothing again (the note here is given for unstripped spans, with a count
// of its own, to show that neither is looked at); without a note that
// holds, it strips and counts as before.
func TestMonitoringStripTakesTheNote(t *testing.T) {
	cfg := &Config{Mode: "monitoring", MaxValueBytes: 1024}
	p, tel := newTestProcessor(t, cfg)
	td := testTraces()
	ctx := capture.WithStripped(context.Background(), td, capture.NewStripper(capture.StripConfig{}), capture.New(capture.Config{}), 3)
	out, err := p.processTraces(ctx, td)
	require.NoError(t, err)
	assert.Equal(t, flatten(testTraces()), flatten(out), "nothing stripped again")
	assert.Equal(t, map[string]int64{"stripped": 3}, counts(t, tel), "the note's count")

	for name, note := range map[string]func(td ptrace.Traces) context.Context{
		"no note": func(ptrace.Traces) context.Context { return context.Background() },
		"other strip list": func(td ptrace.Traces) context.Context {
			return capture.WithStripped(context.Background(), td, capture.NewStripper(capture.StripConfig{Keys: []string{"audit.value.*"}}), capture.New(capture.Config{}), 3)
		},
		"other capture": func(td ptrace.Traces) context.Context {
			return capture.WithStripped(context.Background(), td, capture.NewStripper(capture.StripConfig{}), capture.New(capture.Config{Conventions: []string{capture.GenAI}}), 3)
		},
		"other traces": func(ptrace.Traces) context.Context {
			return capture.WithStripped(context.Background(), testTraces(), capture.NewStripper(capture.StripConfig{}), capture.New(capture.Config{}), 3)
		},
	} {
		t.Run(name, func(t *testing.T) {
			p, tel := newTestProcessor(t, cfg)
			td := testTraces()
			out, err := p.processTraces(note(td), td)
			require.NoError(t, err)
			assert.NotContains(t, flatten(out)[0].Attrs, "audit.value.proposed")
			assert.Equal(t, map[string]int64{"stripped": 2}, counts(t, tel))
		})
	}
}

func TestMonitoringDrop(t *testing.T) {
	p, tel := newTestProcessor(t, &Config{Mode: "monitoring", Action: "drop", MaxValueBytes: 1024})
	td, err := p.processTraces(context.Background(), testTraces())
	require.NoError(t, err)

	assert.Equal(t, []int{2, 1}, shape(td))
	assert.Equal(t, []spanView{
		{Service: "a", Scope: "s1", Name: "plain-1", Attrs: untagged},
		{Service: "a", Scope: "s2", Name: "plain-2", Attrs: untagged},
		{Service: "b", Name: "plain-3", Attrs: untagged},
	}, flatten(td))
	assert.Equal(t, map[string]int64{"dropped_audit": 2}, counts(t, tel))

	td = ptrace.NewTraces()
	addSpan(addResource(td, "a").ScopeSpans().AppendEmpty(), "audit", 1, cleanAudit)
	_, err = p.processTraces(context.Background(), td)
	assert.ErrorIs(t, err, processorhelper.ErrSkipProcessingData)
}

func TestLifecycle(t *testing.T) {
	oneSpan := func(attrs map[string]any) ptrace.Traces {
		td := ptrace.NewTraces()
		addSpan(addResource(td, "x").ScopeSpans().AppendEmpty(), "second", 9, attrs)
		return td
	}
	tests := []struct {
		name   string
		cfg    func(*Config)
		second ptrace.Traces // a second batch
		spans  []string      // span names the next consumer receives
	}{
		{
			name:   "audit",
			cfg:    func(*Config) {},
			second: oneSpan(untagged), // nothing left: not passed on, no error
			spans:  []string{"audit-clean", "audit-faulty"},
		},
		{
			name:   "monitoring strip",
			cfg:    func(c *Config) { c.Mode = "monitoring" },
			second: oneSpan(untagged),
			spans:  []string{"audit-clean", "plain-1", "plain-2", "plain-3", "audit-faulty", "second"},
		},
		{
			name:   "monitoring drop",
			cfg:    func(c *Config) { c.Mode, c.Action = "monitoring", "drop" },
			second: oneSpan(cleanAudit), // nothing left
			spans:  []string{"plain-1", "plain-2", "plain-3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFactory()
			cfg := f.CreateDefaultConfig().(*Config)
			tt.cfg(cfg)
			require.NoError(t, cfg.Validate())
			sink := new(consumertest.TracesSink)
			proc, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
			require.NoError(t, err)
			assert.True(t, proc.Capabilities().MutatesData)
			require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))

			require.NoError(t, proc.ConsumeTraces(context.Background(), testTraces()))
			require.NoError(t, proc.ConsumeTraces(context.Background(), tt.second))

			var names []string
			for _, td := range sink.AllTraces() {
				for _, s := range flatten(td) {
					names = append(names, s.Name)
				}
			}
			assert.Equal(t, tt.spans, names)
			require.NoError(t, proc.Shutdown(context.Background()))
		})
	}
}

// untaggedTraces is one resource and scope with n spans without audit tags.
func untaggedTraces(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := addResource(td, "bench").ScopeSpans().AppendEmpty()
	for i := 0; i < n; i++ {
		addSpan(ss, "GET /", byte(i), map[string]any{
			"http.request.method":       "GET",
			"url.full":                  "https://example.com/",
			"http.response.status_code": int64(200),
			"server.address":            "example.com",
			"gen_ai.agent.name":         "crm-agent",
		})
	}
	return td
}

// BenchmarkUntaggedSpans compares the monitoring/strip processor on 1000
// untagged spans with a bare loop doing only the one attribute lookup per
// span: the processor's overhead on non-audit traffic.
func BenchmarkUntaggedSpans(b *testing.B) {
	td := untaggedTraces(1000)
	b.Run("processor", func(b *testing.B) {
		tel := componenttest.NewTelemetry()
		defer func() { _ = tel.Shutdown(context.Background()) }()
		p, err := newAuditProcessor(&Config{Mode: "monitoring", MaxValueBytes: 1024}, tel.NewTelemetrySettings())
		require.NoError(b, err)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.processTraces(ctx, td); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lookup only", func(b *testing.B) {
		b.ReportAllocs()
		found := 0
		for b.Loop() {
			rss := td.ResourceSpans()
			for i := 0; i < rss.Len(); i++ {
				sss := rss.At(i).ScopeSpans()
				for j := 0; j < sss.Len(); j++ {
					spans := sss.At(j).Spans()
					for k := 0; k < spans.Len(); k++ {
						if _, ok := spans.At(k).Attributes().Get("audit.action.type"); ok {
							found++
						}
					}
				}
			}
		}
		if found != 0 {
			b.Fatal("tagged span in untagged input")
		}
	})
}
