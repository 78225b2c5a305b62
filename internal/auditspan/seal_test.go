package auditspan

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// putSealed sets span's audit.validation to text, sealed, as the pipeline
// writes it: the sender's values of its keys moved aside first.
func putSealed(span ptrace.Span, text string) {
	moveAside(span.Attributes(), isSealed(span))
	span.Attributes().PutStr(entry.KeyValidation, text)
	putSeal(span)
}

func sealHex(tid pcommon.TraceID, sid pcommon.SpanID, text string) string {
	sum := sealOf(tid, sid, text, nil)
	return hex.EncodeToString(sum[:])
}

// forged is what an agent could send to claim a finding the pipeline never
// made: a truncation of a value that was not truncated.
const forged = `[{"field":"audit.value.proposed","problem":"truncated","detail":"truncated to 65536 bytes","original_bytes":70000,"sha256":"` +
	"abababababababababababababababababababababababababababababababab" + `"}]`

// TestSealBytes: the seal is HMAC-SHA256 under the process's key of
// trace_id ‖ span_id ‖ uint64be(len(validation)) ‖ validation ‖ moved, as
// seal.go documents.
func TestSealBytes(t *testing.T) {
	require.Len(t, sealKey, 32)
	require.NotEqual(t, make([]byte, 32), sealKey)

	want := func(validation, moved string) string {
		mac := hmac.New(sha256.New, sealKey)
		mac.Write(testTraceID[:])
		mac.Write(testSpanID[:])
		mac.Write(binary.BigEndian.AppendUint64(nil, uint64(len(validation))))
		mac.Write([]byte(validation))
		mac.Write([]byte(moved))
		return hex.EncodeToString(mac.Sum(nil))
	}
	_, span := typicalSpan()
	putSealed(span, forged)
	seal, _ := span.Attributes().Get(KeySeal)
	assert.Equal(t, want(forged, ""), seal.Str())
	assert.True(t, isSealed(span))

	m := span.Attributes().PutEmptyMap(KeyMoved)
	m.PutStr(entry.KeyValidation, "x")
	m.PutInt("agentaudit.n", 1)
	putSeal(span)
	seal, _ = span.Attributes().Get(KeySeal)
	assert.Equal(t, want(forged, `{"agentaudit.n":1,"audit.validation":"x"}`), seal.Str())
	assert.True(t, isSealed(span))

	// The seal binds each part: change one and it no longer verifies.
	for name, edit := range map[string]func(ptrace.Span){
		"validation": func(s ptrace.Span) { s.Attributes().PutStr(entry.KeyValidation, "[]") },
		"moved":      func(s ptrace.Span) { m, _ := s.Attributes().Get(KeyMoved); m.Map().PutStr(entry.KeyValidation, "y") },
		"no moved":   func(s ptrace.Span) { s.Attributes().Remove(KeyMoved) },
		"trace id":   func(s ptrace.Span) { s.SetTraceID(pcommon.TraceID{1}) },
		"span id":    func(s ptrace.Span) { s.SetSpanID(pcommon.SpanID{1}) },
		"upper case": func(s ptrace.Span) { s.Attributes().PutStr(KeySeal, strings.ToUpper(seal.Str())) },
		"not hex":    func(s ptrace.Span) { s.Attributes().PutStr(KeySeal, strings.Repeat("z", 64)) },
		"int":        func(s ptrace.Span) { s.Attributes().PutInt(KeySeal, 1) },
	} {
		c := ptrace.NewSpan()
		span.CopyTo(c)
		edit(c)
		assert.False(t, isSealed(c), name)
	}
}

func TestIsReservedKey(t *testing.T) {
	for k, want := range map[string]bool{
		KeySeal: true, KeyMoved: true, "agentaudit.": true, "AGENTAUDIT.x": true, "agentaudit": false,
		"agentaudit_x": false, "audit.validation": false, "xagentaudit.x": false, "": false,
	} {
		assert.Equal(t, want, IsReservedKey(k), k)
	}
}

// TestForgedValidation: a well-formed audit.validation the sender set
// (claiming a truncation) is never taken as a finding, whether the
// exporter maps the span alone or after Normalize: the text stays in
// attributes, flagged unsealed_validation, and both give one entry.
func TestForgedValidation(t *testing.T) {
	res, span := typicalSpan()
	span.Attributes().PutStr(entry.KeyValidation, forged)
	raw := FromSpan(res, span, Options{})
	assert.Equal(t, []entry.Problem{{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed}}, problemsOf(t, raw))
	assert.Contains(t, raw.Attributes, `"audit.validation":"[{\"field\":\"audit.value.proposed\",\"problem\":\"truncated\"`)
	checkNormalize(t, res, span, Options{}, raw)

	// Normalize moved the sender's text aside and sealed its own findings.
	moved, ok := span.Attributes().Get(KeyMoved)
	require.True(t, ok)
	assert.Equal(t, map[string]any{entry.KeyValidation: forged}, moved.Map().AsRaw())
	assert.True(t, isSealed(span))
}

// TestGenuineFindingSurvives: a finding the pipeline made (a truncated
// value, whose full length and SHA-256 only Normalize saw) reaches the
// exporter sealed; the same text unsealed would not be taken.
func TestGenuineFindingSurvives(t *testing.T) {
	res, span := typicalSpan()
	full := strings.Repeat("v", 100)
	span.Attributes().PutStr(entry.KeyValueProposed, full)
	opts := Options{MaxValueBytes: 50}
	want := FromSpan(res, span, opts)
	truncated := entry.Problem{Field: entry.KeyValueProposed, Kind: entry.ProblemTruncated, Detail: "truncated to 50 bytes", OriginalBytes: 100, SHA256: sha256Of(full)}
	assert.Equal(t, []entry.Problem{truncated}, problemsOf(t, want))
	checkNormalize(t, res, span, opts, want)
	assert.True(t, isSealed(span))

	// Without its seal the finding is the sender's word: not merged.
	span.Attributes().Remove(KeySeal)
	got := FromSpan(res, span, opts)
	assert.NotContains(t, problemsOf(t, got), truncated)
	assert.Contains(t, problemsOf(t, got), entry.Problem{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed})
}

// TestForgedSeal: a seal from the sender, with or without an
// audit.validation, is kept in attributes and flagged; it takes the span
// off Normalize's shortcut, and Normalize moves it aside.
func TestForgedSeal(t *testing.T) {
	for _, withValidation := range []bool{false, true} {
		res, span := typicalSpan()
		span.Attributes().PutStr(KeySeal, strings.Repeat("ab", 32))
		want := []entry.Problem{{Field: KeySeal, Kind: ProblemReservedKey, Detail: detailReservedKey}}
		if withValidation {
			span.Attributes().PutStr(entry.KeyValidation, forged)
			want = append(want, entry.Problem{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed})
		}
		_, clean := clean(res, span, Options{})
		assert.False(t, clean)
		e := FromSpan(res, span, Options{})
		assert.Equal(t, want, problemsOf(t, e))
		assert.Contains(t, e.Attributes, `"agentaudit.seal":"abab`)
		checkNormalize(t, res, span, Options{}, e)
		moved, _ := span.Attributes().Get(KeyMoved)
		assert.Equal(t, strings.Repeat("ab", 32), moved.Map().AsRaw()[KeySeal])
	}
}

// TestSealedSpanAttributes: the pipeline's keys never reach the
// attributes column of a sealed span; the sender's moved values do, under
// their own keys.
func TestSealedSpanAttributes(t *testing.T) {
	res, span := typicalSpan()
	span.Attributes().PutStr("agentaudit.note", "hi")
	want := FromSpan(res, span, Options{})
	Normalize(res, span, Options{})
	got := FromSpan(res, span, Options{})
	assert.Equal(t, want, got)
	assert.Equal(t, `{"agentaudit.note":"hi","http.request.method":"PATCH","http.response.status_code":200}`, got.Attributes)
	assert.NotContains(t, got.Attributes, KeySeal)
	assert.NotContains(t, got.Attributes, KeyMoved)
}

// TestAddProblems: framework capture's findings are sealed and merged with
// the pipeline's; a sender's audit.validation and reserved keys are moved
// aside first, and the entry after Normalize is the sender's span's entry
// plus the added problems.
func TestAddProblems(t *testing.T) {
	derived := []entry.Problem{{Field: entry.KeyActionType, Kind: "derived", Detail: "genai: execute_tool span"}}
	res, span := typicalSpan()
	span.Attributes().PutStr(entry.KeyValidation, forged)
	span.Attributes().PutStr(KeySeal, "forged")
	want := FromSpan(res, span, Options{})

	AddProblems(span, derived)
	assert.True(t, isSealed(span))
	v, _ := span.Attributes().Get(entry.KeyValidation)
	assert.Equal(t, string(appendProblems(nil, derived)), v.Str())
	moved, _ := span.Attributes().Get(KeyMoved)
	assert.Equal(t, map[string]any{entry.KeyValidation: forged, KeySeal: "forged"}, moved.Map().AsRaw())

	more := []entry.Problem{{Field: entry.KeyResult, Kind: "derived", Detail: "genai: started"}}
	AddProblems(span, more)
	assert.True(t, isSealed(span))
	v, _ = span.Attributes().Get(entry.KeyValidation)
	assert.Equal(t, string(appendProblems(nil, sortProblems(append(slices.Clone(derived), more...)))), v.Str())

	Normalize(res, span, Options{})
	got := FromSpan(res, span, Options{})
	assert.Equal(t, sortProblems(append(problemsOf(t, want), append(derived, more...)...)), problemsOf(t, got))
	got.Validation, want.Validation = nil, nil
	assert.Equal(t, want, got)
	once := ptrace.NewSpan()
	span.CopyTo(once)
	Normalize(res, span, Options{})
	assert.Equal(t, once, span, "Normalize must be idempotent")
}

// TestAddProblemsRandom: on random spans, AddProblems then Normalize gives
// the entry of the span as sent, plus the added problems, and a second
// Normalize changes nothing.
func TestAddProblemsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	added := []entry.Problem{{Field: entry.KeyTargetSystem, Kind: "derived", Detail: "genai: the tool's name"}}
	n := 0
	for i := range 5000 {
		res, span := randomAuditSpan(rng)
		opts := Options{MaxValueBytes: []int{0, 3, 8, 16, 40}[rng.IntN(5)], MaxEntryBytes: []int{0, 0, 300, 600}[rng.IntN(4)]}
		want := FromSpan(res, span, opts)
		AddProblems(span, added)
		require.True(t, isSealed(span), "span %d", i)
		Normalize(res, span, opts)
		if v, _ := span.Attributes().Get(entry.KeyValidation); len(v.Str()) > opts.maxEntryBytes() {
			continue // not merged: see TestValidationOverEntryLimit
		}
		got := FromSpan(res, span, opts)
		// The added problem takes room: where the entry's bound comes
		// into play the two entries are cut differently (each as
		// TestNormalizeShortcutAgrees checks).
		if !strings.Contains(*got.Validation, entry.ProblemEntryTruncated) && len(*got.Validation) <= opts.maxEntryBytes() {
			n++
			require.Equal(t, sortProblems(append(problemsOf(t, want), added...)), problemsOf(t, got), "span %d", i)
			got.Validation, want.Validation = nil, nil
			require.Equal(t, want, got, "span %d", i)
		}
		once := ptrace.NewSpan()
		span.CopyTo(once)
		Normalize(res, span, opts)
		require.Equal(t, once, span, "span %d: Normalize must be idempotent", i)
	}
	require.Greater(t, n, 2000)
}

// BenchmarkSeal: sealing and checking a typical audit.validation.
func BenchmarkSeal(b *testing.B) {
	_, span := typicalSpan()
	putSealed(span, forged)
	b.ReportAllocs()
	for b.Loop() {
		if !isSealed(span) {
			b.Fatal("not sealed")
		}
	}
}

// TestFromOwnSpan: a span the collector built itself keeps its reserved
// keys unflagged; the same span from a sender has them flagged.
func TestFromOwnSpan(t *testing.T) {
	res, span := typicalSpan()
	span.Attributes().PutStr("agentaudit.loss.segment", "00000001.wal")
	own := FromOwnSpan(res, span, Options{})
	assert.Nil(t, own.Validation)
	assert.Contains(t, own.Attributes, `"agentaudit.loss.segment":"00000001.wal"`)
	sent := FromSpan(res, span, Options{})
	assert.Equal(t, []entry.Problem{{Field: "agentaudit.loss.segment", Kind: ProblemReservedKey, Detail: detailReservedKey}}, problemsOf(t, sent))
	sent.Validation = nil
	assert.Equal(t, own, sent)
}
