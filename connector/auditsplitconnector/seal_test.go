package auditsplitconnector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pipeline"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/processor/auditprocessor"
)

// sealLimit is max_value_bytes here: the forged text fits, the genuine
// value does not.
const sealLimit = 200

// Span ids of sealTraces.
const (
	idForged = iota + 1
	idGenuine
	idForgedSeal
	idCaptured
)

// sealTraces: a hand-tagged span with a forged audit.validation (a
// truncation that never happened), one whose proposed value the pipeline
// truncates, one with a forged seal, and a GenAI tool call with a forged
// audit.validation.
func sealTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent")
	ss := rs.ScopeSpans().AppendEmpty()
	add := func(id byte) pcommon.Map {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(pcommon.TraceID{7})
		s.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, id})
		s.SetStartTimestamp(1_000_000)
		s.SetEndTimestamp(2_000_000)
		return s.Attributes()
	}
	a := add(idForged)
	putCleanAudit(a)
	a.PutStr(entry.KeyValidation, forgedValidation)
	a = add(idGenuine)
	putCleanAudit(a)
	a.PutStr(entry.KeyValueProposed, strings.Repeat("p", 300))
	a = add(idForgedSeal)
	putCleanAudit(a)
	a.PutStr(auditspan.KeySeal, strings.Repeat("0", 64))
	a = add(idCaptured)
	a.PutStr("gen_ai.operation.name", "execute_tool")
	a.PutStr("gen_ai.tool.name", "crm_lookup")
	a.PutStr("gen_ai.tool.call.arguments", `{"id":1}`)
	a.PutStr(entry.KeyValidation, forgedValidation)
	return td
}

// entriesByID maps the spans of tds to entries, by the last byte of the
// span id.
func entriesByID(t *testing.T, tds []ptrace.Traces) map[byte]entry.Entry {
	t.Helper()
	opts := auditspan.Options{MaxValueBytes: sealLimit}
	out := map[byte]entry.Entry{}
	for _, td := range tds {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					out[span.SpanID()[7]] = auditspan.FromSpan(rs.Resource(), span, opts)
				}
			}
		}
	}
	return out
}

func problemsOf(t *testing.T, e entry.Entry) []entry.Problem {
	t.Helper()
	require.NotNil(t, e.Validation)
	var ps []entry.Problem
	require.NoError(t, json.Unmarshal([]byte(*e.Validation), &ps))
	return ps
}

// TestPipelineFindingsUnforgeable: what an agent puts in audit.validation
// or agentaudit.seal never becomes a finding, on any path to the exporter
// (the exporter alone, the processor, the connector then the processor):
// it is kept in attributes and flagged. What the pipeline found (a
// truncation, capture's derived markers) reaches the exporter sealed. Every
// path gives the same entry.
func TestPipelineFindingsUnforgeable(t *testing.T) {
	capCfg := capture.Config{Conventions: []string{capture.GenAI}}
	next, sinks := router("audit", "monitoring")
	c, _ := newTestConnector(t, &Config{AuditPipelines: []pipeline.ID{traces("audit")}, MonitoringPipelines: []pipeline.ID{traces("monitoring")},
		MaxValueBytes: sealLimit, MaxEntryBytes: entry.DefaultMaxEntryBytes, Capture: capCfg}, next)
	require.NoError(t, c.ConsumeTraces(context.Background(), sealTraces()))
	proc := func(p *auditprocessor.Config) { p.MaxValueBytes, p.Capture = sealLimit, capCfg }
	var viaBoth []ptrace.Traces
	for _, td := range sinks["audit"].AllTraces() {
		viaBoth = append(viaBoth, viaProcessor(t, proc, td)...)
	}
	requireSame(t, sinks["audit"].AllTraces(), viaBoth, "the processor changes nothing after the connector")

	alone := entriesByID(t, []ptrace.Traces{sealTraces()})
	processor := entriesByID(t, viaProcessor(t, proc, sealTraces()))
	both := entriesByID(t, viaBoth)
	require.Len(t, both, 4)
	for _, id := range []byte{idForged, idGenuine, idForgedSeal} {
		assert.Equal(t, alone[id], processor[id], "span %d: processor", id)
		assert.Equal(t, alone[id], both[id], "span %d: connector and processor", id)
	}
	assert.Equal(t, processor[idCaptured], both[idCaptured], "captured span")

	unsealed := entry.Problem{Field: entry.KeyValidation, Kind: auditspan.ProblemUnsealedValidation,
		Detail: "supplied by the sender; kept in attributes, not taken as findings"}
	forgedText, err := json.Marshal(forgedValidation)
	require.NoError(t, err)
	for _, id := range []byte{idForged, idCaptured} {
		e := both[id]
		ps := problemsOf(t, e)
		assert.Contains(t, ps, unsealed, "span %d", id)
		for _, p := range ps {
			assert.NotEqual(t, entry.ProblemTruncated, p.Kind, "span %d: a forged finding: %v", id, p)
		}
		assert.Contains(t, e.Attributes, `"audit.validation":`+string(forgedText), "span %d", id)
	}

	full := strings.Repeat("p", 300)
	sum := sha256.Sum256([]byte(full))
	assert.Equal(t, []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemTruncated, Detail: "truncated to 200 bytes",
		OriginalBytes: 300, SHA256: hex.EncodeToString(sum[:])}}, problemsOf(t, both[idGenuine]))

	assert.Equal(t, []entry.Problem{{Field: auditspan.KeySeal, Kind: auditspan.ProblemReservedKey,
		Detail: "reserved for the collector, supplied by the sender; kept in attributes, not trusted"}}, problemsOf(t, both[idForgedSeal]))
	assert.Contains(t, both[idForgedSeal].Attributes, `"agentaudit.seal":"`+strings.Repeat("0", 64)+`"`)

	// Capture's derived markers survive, sealed, next to the forged text.
	derived := map[string]bool{}
	for _, p := range problemsOf(t, both[idCaptured]) {
		if p.Kind == capture.ProblemDerived {
			derived[p.Field] = true
		}
	}
	assert.Equal(t, map[string]bool{entry.KeyActionType: true, entry.KeyTargetSystem: true, entry.KeyValueProposed: true}, derived)
	assert.Equal(t, "tool_call", both[idCaptured].ActionType)
	assert.Equal(t, `{"id":1}`, *both[idCaptured].ProposedValue)
}
