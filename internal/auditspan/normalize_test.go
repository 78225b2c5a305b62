package auditspan

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// TestNormalizeShortcutAgrees checks Normalize's shortcut for clean spans
// against the full path on random spans: the same attributes afterwards,
// hence the same entry. The generator mixes every contract key with values
// of every type, invalid UTF-8, values at and over the limit, nested
// containers, unknown audit.* keys, audit.validation (forged, well-formed
// or not), seals and other keys of the collector's namespace, empty ids, every
// status and codes outside the enum, start and end times past int64, end
// times before the start or unset, NUL bytes,
// reserved action types, duplicate keys, nesting past MaxDepth and entry
// limits small enough to cut, so that both paths are taken often.
func TestNormalizeShortcutAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var shortcut, full, kept int
	for i := range 20000 {
		res, span := randomAuditSpan(rng)
		opts := Options{MaxValueBytes: []int{0, 3, 8, 16, 40}[rng.IntN(5)], MaxEntryBytes: []int{0, 0, 300, 600}[rng.IntN(4)]}

		fast := ptrace.NewSpan()
		span.CopyTo(fast)
		slow := ptrace.NewSpan()
		span.CopyTo(slow)
		fastProblems := Normalize(res, fast, opts)
		slowProblems := normalizeFully(res, slow, opts)
		_, hasValidation := fast.Attributes().Get(entry.KeyValidation)
		require.Equal(t, hasValidation, fastProblems, "span %d: Normalize reports whether audit.validation is left", i)
		require.Equal(t, hasValidation, slowProblems, "span %d: normalizeFully reports whether audit.validation is left", i)
		if _, ok := clean(res, span, opts); ok {
			shortcut++
		} else {
			full++
		}
		require.Equal(t, slow.Attributes().AsRaw(), fast.Attributes().AsRaw(), "span %d: %v", i, span.Attributes().AsRaw())
		require.Equal(t, FromSpan(res, slow, opts), FromSpan(res, fast, opts), "span %d", i)
		want := FromSpan(res, span, opts)
		require.False(t, entry.IsReservedActionType(want.ActionType), "span %d", i)
		if want.Validation == nil || len(*want.Validation) <= opts.maxEntryBytes() {
			// Beyond that, see TestValidationOverEntryLimit.
			require.Equal(t, want, FromSpan(res, fast, opts), "span %d: FromSpan(Normalize(span)) = FromSpan(span)", i)
			kept++
		}
	}
	// Both paths must be exercised for the comparison to mean anything.
	require.Greater(t, shortcut, 1000, "clean spans")
	require.Greater(t, full, 2000, "spans with problems")
	require.Greater(t, kept, 10000, "spans whose entry Normalize keeps")
}

// TestNormalizeShortcutTypical: a well-formed span takes the shortcut, and
// the shortcut fills in the derived result.
func TestNormalizeShortcutTypical(t *testing.T) {
	res, span := typicalSpan()
	result, ok := clean(res, span, Options{})
	require.True(t, ok)
	require.Equal(t, "200", result)
	Normalize(res, span, Options{})
	v, found := span.Attributes().Get(entry.KeyResult)
	require.True(t, found)
	require.Equal(t, "200", v.Str())
	_, found = span.Attributes().Get(entry.KeyValidation)
	require.False(t, found)
}

// TestApprovalIDKnown: audit.approval.id, the approval a write names
// (docs/APPROVALS.md), is a key of the contract kept in attributes: the
// span stays clean and its entry has no problem, where another audit.* key
// is flagged unknown_key.
func TestApprovalIDKnown(t *testing.T) {
	res, span := typicalSpan()
	span.Attributes().PutStr(entry.KeyApprovalID, "apr_01jf3k")
	_, ok := clean(res, span, Options{})
	require.True(t, ok)
	Normalize(res, span, Options{})
	e := FromSpan(res, span, Options{})
	require.Nil(t, e.Validation)
	require.Contains(t, e.Attributes, `"audit.approval.id":"apr_01jf3k"`)

	span.Attributes().PutStr("audit.approval.idx", "x")
	_, ok = clean(res, span, Options{})
	require.False(t, ok)
	e = FromSpan(res, span, Options{})
	require.NotNil(t, e.Validation)
	require.JSONEq(t, `[{"field":"audit.approval.idx","problem":"unknown_key","detail":"kept in attributes"}]`, *e.Validation)
}

func randomAuditSpan(rng *rand.Rand) (pcommon.Resource, ptrace.Span) {
	res := pcommon.NewResource()
	span := ptrace.NewSpan()
	if rng.IntN(20) != 0 {
		span.SetTraceID(testTraceID)
	}
	if rng.IntN(20) != 0 {
		span.SetSpanID(testSpanID)
	}
	if rng.IntN(2) == 0 {
		span.SetParentSpanID(testParentID)
	}
	span.Status().SetCode(ptrace.StatusCode([]int32{0, 1, 2, 0, 1, 2, 7}[rng.IntN(7)]))
	start := rng.Uint64N(1 << 62)
	if rng.IntN(20) == 0 {
		start = 1<<63 + rng.Uint64N(1<<63)
	}
	span.SetStartTimestamp(pcommon.Timestamp(start))
	switch rng.IntN(20) {
	case 0: // unset
	case 1:
		span.SetEndTimestamp(pcommon.Timestamp(rng.Uint64N(start + 1))) // at or before the start
	case 2:
		span.SetEndTimestamp(pcommon.Timestamp(1<<63 + rng.Uint64N(1<<63)))
	default:
		span.SetEndTimestamp(pcommon.Timestamp(start + rng.Uint64N(1<<30)))
	}
	if rng.IntN(3) == 0 {
		span.Status().SetMessage(randomString(rng))
	}
	a := span.Attributes()
	// The shape of a good span, most of the time, so that clean ones occur.
	a.PutStr(entry.KeyActionType, pick(rng, entry.KnownActionTypes...))
	if rng.IntN(10) != 0 {
		a.PutStr(entry.KeyExecutionID, pick(rng, "run-1", "r"))
	}
	if rng.IntN(10) != 0 {
		a.PutStr(entry.KeyTargetSystem, pick(rng, "crm", "salesforce"))
	}
	keys := []string{
		entry.KeyActionType, entry.KeyExecutionID, entry.KeyTargetSystem, entry.KeyTargetResource, entry.KeyValueProposed,
		entry.KeyValuePrevious, entry.KeyReasoning, entry.KeyApprover, entry.KeyResult, entry.KeyValidation, entry.KeyAgentID,
		entry.KeyAgentName, entry.KeyEndUserID, entry.KeyServiceName, entry.KeyErrorType, entry.KeyHTTPStatus,
		"audit.unknown", entry.KeyApprovalID, "tool.input", "k\xff", "list", "obj",
		KeySeal, KeyMoved, "agentaudit.x", "AgentAudit.x\xff",
	}
	for range rng.IntN(4) {
		putRandom(rng, a, pick(rng, keys...), 0)
	}
	for range rng.IntN(2) {
		putRandom(rng, res.Attributes(), pick(rng, entry.KeyAgentID, entry.KeyAgentName, entry.KeyServiceName, entry.KeyEndUserID), 0)
	}
	if rng.IntN(10) == 0 {
		appendAttr(a, pick(rng, keys...), pick(rng, `{"stringValue":"dup"}`, `{"intValue":"3"}`, `{"kvlistValue":{"values":[{"key":"k","value":{}},{"key":"k","value":{}}]}}`))
	}
	if rng.IntN(30) == 0 {
		deepMap(a, pick(rng, "deep", entry.KeyValueProposed), entry.MaxDepth-1+rng.IntN(4))
	}
	return res, span
}

func putRandom(rng *rand.Rand, m pcommon.Map, key string, depth int) {
	switch n := rng.IntN(12); {
	case n < 6:
		m.PutStr(key, randomString(rng))
	case n == 6:
		m.PutInt(key, rng.Int64N(1000)-500)
	case n == 7:
		m.PutDouble(key, []float64{0.5, -2, 1e21}[rng.IntN(3)])
	case n == 8:
		m.PutBool(key, rng.IntN(2) == 0)
	case n == 9:
		m.PutEmptyBytes(key).FromRaw([]byte{0xff, 0})
	case n == 10 && depth < 2:
		sl := m.PutEmptySlice(key)
		for range rng.IntN(3) {
			putRandom(rng, sl.AppendEmpty().SetEmptyMap(), "x", depth+1)
		}
		if rng.IntN(2) == 0 {
			sl.AppendEmpty().SetStr(randomString(rng))
		}
	case n == 11 && depth < 2:
		mm := m.PutEmptyMap(key)
		for range rng.IntN(3) {
			putRandom(rng, mm, pick(rng, "a", "b\xfe", "audit.nested"), depth+1)
		}
	default:
		m.PutEmpty(key)
	}
}

func randomString(rng *rand.Rand) string {
	switch rng.IntN(8) {
	case 0:
		return ""
	case 1:
		return "bad\xffutf8"
	case 2:
		return strings.Repeat("é", rng.IntN(30))
	case 3:
		return pick(rng, entry.KnownActionTypes...)
	case 4:
		return pick(rng, `[{"field":"x","problem":"missing"}]`, forged, "nul\x00", entry.ActionLoss, "AgentAudit.x")
	default:
		return strings.Repeat("v", rng.IntN(50))
	}
}

func pick(rng *rand.Rand, s ...string) string { return s[rng.IntN(len(s))] }

// BenchmarkNormalize compares Normalize on a well-formed span (the
// shortcut) with the full path on the same span, side by side:
//
//	go test -run '^$' -bench Normalize -benchmem ./internal/auditspan/
func BenchmarkNormalize(b *testing.B) {
	res, span := typicalSpan()
	// The check of a span as the connector gets it: without audit.result,
	// which is derived.
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if result, ok := clean(res, span, Options{}); !ok || result != "200" {
				b.Fatal("not clean")
			}
		}
	})
	Normalize(res, span, Options{}) // fills in audit.result once
	b.Run("clean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Normalize(res, span, Options{})
		}
	})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			normalizeFully(res, span, Options{})
		}
	})
	// A span with a problem, normalized again: its audit.validation is
	// checked (and sealed) each time.
	res, span = typicalSpan()
	span.Attributes().Remove(entry.KeyTargetSystem)
	Normalize(res, span, Options{})
	b.Run("faulty", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Normalize(res, span, Options{})
		}
	})
}

// BenchmarkFromSpanFaulty maps a normalized span with a problem, as the
// exporter does.
func BenchmarkFromSpanFaulty(b *testing.B) {
	res, span := typicalSpan()
	span.Attributes().Remove(entry.KeyTargetSystem)
	Normalize(res, span, Options{})
	b.ReportAllocs()
	for b.Loop() {
		FromSpan(res, span, Options{})
	}
}
