package auditspan

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// appendAttr appends key with value (OTLP JSON, e.g. {"stringValue":"x"})
// to m even when m already has key, as OTLP allows and pcommon's Put
// methods do not: through ptrace's JSON unmarshaler, which keeps every
// key-value pair.
func appendAttr(m pcommon.Map, key, value string) {
	td := ptrace.NewTraces()
	span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	m.CopyTo(span.Attributes())
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		panic(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		panic(err)
	}
	sp := doc["resourceSpans"].([]any)[0].(map[string]any)["scopeSpans"].([]any)[0].(map[string]any)["spans"].([]any)[0].(map[string]any)
	attrs, _ := sp["attributes"].([]any)
	var v any
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		panic(err)
	}
	sp["attributes"] = append(attrs, map[string]any{"key": key, "value": v})
	b, err = json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(b)
	if err != nil {
		panic(err)
	}
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().CopyTo(m)
}

func TestAppendAttrKeepsDuplicates(t *testing.T) {
	m := pcommon.NewMap()
	m.PutStr("k", "first")
	appendAttr(m, "k", `{"stringValue":"second"}`)
	require.Equal(t, 2, m.Len())
	var got []string
	m.Range(func(k string, v pcommon.Value) bool {
		got = append(got, k+"="+v.AsString())
		return true
	})
	require.Equal(t, []string{"k=first", "k=second"}, got)
}

// bigSpan is the typical span with n attributes "big.000" … of size
// bytes each, the i-th of size+i bytes so that "largest first" has one
// answer.
func bigSpan(n, size int) (pcommon.Resource, ptrace.Span) {
	res, span := typicalSpan()
	for i := range n {
		span.Attributes().PutStr(fmt.Sprintf("big.%03d", i), strings.Repeat("x", size+i))
	}
	return res, span
}

// checkNormalize checks that FromSpan of the normalized span gives want,
// that Normalize is idempotent, and that the shortcut agrees with the full
// path.
func checkNormalize(t *testing.T, res pcommon.Resource, span ptrace.Span, opts Options, want entry.Entry) {
	t.Helper()
	slow := ptrace.NewSpan()
	span.CopyTo(slow)
	normalizeFully(res, slow, opts)
	Normalize(res, span, opts)
	require.Equal(t, slow.Attributes().AsRaw(), span.Attributes().AsRaw(), "shortcut and full path")
	require.Equal(t, want, FromSpan(res, span, opts), "FromSpan of the normalized span")
	once := ptrace.NewSpan()
	span.CopyTo(once)
	Normalize(res, span, opts)
	require.Equal(t, once, span, "Normalize must be idempotent")
}

// TestEntryBound: 300 values of 64 KiB (19.5 MB) make an entry within
// the default 1 MiB: the largest values are emptied first, each flagged
// with the length and SHA-256 of the JSON text removed, and the rest stay.
func TestEntryBound(t *testing.T) {
	const n, size = 300, 60 << 10 // under the value limit: only the entry bound cuts
	res, span := bigSpan(n, size)
	e := FromSpan(res, span, Options{})
	require.LessOrEqual(t, entry.EntryBytes(&e), entry.DefaultMaxEntryBytes)
	require.Greater(t, entry.EntryBytes(&e), entry.DefaultMaxEntryBytes-2*(size+n), "no more cut than needed")

	var attrs map[string]any
	require.NoError(t, json.Unmarshal([]byte(e.Attributes), &attrs))
	ps := problemsOf(t, e)
	kept, emptied := 0, 0
	for i := range n { // smallest first
		k := fmt.Sprintf("big.%03d", i)
		full := strings.Repeat("x", size+i)
		p := entry.Problem{Field: k, Kind: entry.ProblemEntryTruncated, Detail: "emptied to fit max_entry_bytes",
			OriginalBytes: int64(size + i + 2), SHA256: sha256Of(`"` + full + `"`)}
		got, ok := attrs[k]
		require.True(t, ok, "key %s is kept", k)
		if got == full {
			// Largest first: every value kept is smaller than every value emptied.
			require.Zero(t, emptied, "%s kept after a smaller one was emptied", k)
			kept++
			assert.NotContains(t, ps, p)
			continue
		}
		require.Equal(t, "", got, k)
		emptied++
		assert.Contains(t, ps, p)
	}
	require.Equal(t, 16, kept, "1 MiB holds 16 values of 60 KiB beside the rest of the entry")
	assert.Len(t, ps, n-kept)
	// The columns are untouched.
	want := typicalEntry()
	assert.Equal(t, want.Reasoning, e.Reasoning)
	assert.Equal(t, want.ProposedValue, e.ProposedValue)

	// The same again: deterministic.
	assert.Equal(t, e, FromSpan(res, span, Options{}))
	checkNormalize(t, res, span, Options{}, e)
}

// TestEntryBoundPayload: when the attributes are not enough, the payload
// columns are emptied next, largest first; identity, result and the other
// contract columns are never cut.
func TestEntryBoundPayload(t *testing.T) {
	res, span := typicalSpan()
	a := span.Attributes()
	a.PutStr("tool.output", strings.Repeat("o", 3000))
	a.PutStr(entry.KeyValueProposed, strings.Repeat("p", 2000))
	a.PutStr(entry.KeyValuePrevious, strings.Repeat("q", 2500))
	a.PutStr(entry.KeyReasoning, strings.Repeat("r", 100))
	opts := Options{MaxEntryBytes: 3000}
	e := FromSpan(res, span, opts)

	assert.Equal(t, `{"http.request.method":"PATCH","http.response.status_code":200,"tool.output":""}`, e.Attributes)
	assert.Equal(t, ptr(""), e.PreviousValue, "the largest payload value goes first")
	assert.Equal(t, ptr(strings.Repeat("p", 2000)), e.ProposedValue, "and no more than needed")
	assert.Equal(t, ptr(strings.Repeat("r", 100)), e.Reasoning)
	assert.Equal(t, []entry.Problem{
		{Field: entry.KeyValuePrevious, Kind: entry.ProblemEntryTruncated, Detail: "emptied to fit max_entry_bytes", OriginalBytes: 2500, SHA256: sha256Of(strings.Repeat("q", 2500))},
		{Field: "tool.output", Kind: entry.ProblemEntryTruncated, Detail: "emptied to fit max_entry_bytes", OriginalBytes: 3002, SHA256: sha256Of(`"` + strings.Repeat("o", 3000) + `"`)},
	}, problemsOf(t, e))
	assert.LessOrEqual(t, entry.EntryBytes(&e), 3000)
	checkNormalize(t, res, span, opts, e)
}

// TestEntryBoundResidue: an entry that emptying values cannot bring under
// the limit (many small attributes) is kept whole, flagged under "entry";
// no value is emptied for nothing.
func TestEntryBoundResidue(t *testing.T) {
	res, span := typicalSpan()
	for i := range 400 {
		span.Attributes().PutStr(fmt.Sprintf("small.%03d", i), strings.Repeat("s", 100))
	}
	opts := Options{MaxEntryBytes: 2000}
	e := FromSpan(res, span, opts)
	assert.Greater(t, entry.EntryBytes(&e), 2000)
	assert.NotContains(t, e.Attributes, `""`)
	assert.Equal(t, []entry.Problem{{Field: "entry", Kind: entry.ProblemEntryTruncated,
		Detail: "still over max_entry_bytes: keys, problems and other columns are not cut"}}, problemsOf(t, e))
	checkNormalize(t, res, span, opts, e)
}

// deepMap puts under key a map nested levels deep ({"a":{"a":…}}), built
// without recursion.
func deepMap(m pcommon.Map, key string, levels int) {
	m = m.PutEmptyMap(key)
	for range levels - 1 {
		m = m.PutEmptyMap("a")
	}
	m.PutStr("leaf", "x")
}

// TestTooDeep: 100,000 levels of nesting are cut at MaxDepth, in FromSpan
// and Normalize, with a stack of 1 MiB at most (the runtime aborts the
// test binary past it): nothing recurses with the value's depth.
func TestTooDeep(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(1 << 20))
	build := func() (pcommon.Resource, ptrace.Span) {
		res, span := typicalSpan()
		deepMap(span.Attributes(), "deep", 100_000)
		deepMap(span.Attributes(), entry.KeyValueProposed, 100_000)
		deepMap(span.Attributes(), entry.KeyErrorType, 100_000) // read by the derived result
		sl := span.Attributes().PutEmptySlice("list")
		for range 100_000 {
			sl = sl.AppendEmpty().SetEmptySlice()
		}
		sl.AppendEmpty().SetInt(1)
		span.Status().SetCode(ptrace.StatusCodeError)
		return res, span
	}
	res, span := build()
	e := FromSpan(res, span, Options{})

	wantDeep := `{"a":` + strings.Repeat(`{"a":`, entry.MaxDepth-1) + `{}` + strings.Repeat("}", entry.MaxDepth)
	wantList := strings.Repeat("[", entry.MaxDepth) + "[]" + strings.Repeat("]", entry.MaxDepth)
	require.Equal(t, `{"deep":`+wantDeep+`,"error.type":`+wantDeep+`,"http.request.method":"PATCH","http.response.status_code":200,"list":`+wantList+`}`, e.Attributes)
	require.Equal(t, ptr(wantDeep), e.ProposedValue)
	require.Equal(t, "error: "+wantDeep, e.Result)
	detail := "nested deeper than 64 levels: stored empty"
	require.Equal(t, []entry.Problem{
		{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Map"},
		{Field: entry.KeyValueProposed, Kind: entry.ProblemTooDeep, Detail: detail},
		{Field: "deep", Kind: entry.ProblemTooDeep, Detail: detail},
		{Field: entry.KeyErrorType, Kind: entry.ProblemTooDeep, Detail: detail},
		{Field: "list", Kind: entry.ProblemTooDeep, Detail: detail},
	}, problemsOf(t, e))

	_, ok := clean(res, span, Options{})
	require.False(t, ok)
	Normalize(res, span, Options{})
	require.Equal(t, e, FromSpan(res, span, Options{}))
	// The span now holds 64 levels of maps and an empty one.
	v, _ := span.Attributes().Get("deep")
	for range entry.MaxDepth {
		require.Equal(t, pcommon.ValueTypeMap, v.Type())
		v, ok = v.Map().Get("a")
		require.True(t, ok)
	}
	require.Equal(t, 0, v.Map().Len())
	Normalize(res, span, Options{})
	require.Equal(t, e, FromSpan(res, span, Options{}))
}

// TestDepthLimit: MaxDepth levels are kept whole and an empty map below
// them is no problem; one level more is cut.
func TestDepthLimit(t *testing.T) {
	for _, tc := range []struct {
		levels int
		cut    bool
	}{{entry.MaxDepth, false}, {entry.MaxDepth + 1, false}, {entry.MaxDepth + 2, true}} {
		t.Run(fmt.Sprint(tc.levels), func(t *testing.T) {
			res, span := typicalSpan()
			m := span.Attributes().PutEmptyMap("deep")
			for range tc.levels - 1 {
				m = m.PutEmptyMap("a")
			}
			// The innermost map, at depth levels, is empty.
			e := FromSpan(res, span, Options{})
			_, clean := clean(res, span, Options{})
			assert.Equal(t, !tc.cut, clean)
			if tc.cut {
				assert.Equal(t, []entry.Problem{{Field: "deep", Kind: entry.ProblemTooDeep, Detail: "nested deeper than 64 levels: stored empty"}}, problemsOf(t, e))
				assert.Equal(t, entry.MaxDepth+1, strings.Count(e.Attributes, "{")-1)
			} else {
				assert.Nil(t, e.Validation)
				assert.Equal(t, tc.levels, strings.Count(e.Attributes, "{")-1)
			}
			checkNormalize(t, res, span, Options{}, e)
		})
	}
}

// TestValidationBounded: a sealed audit.validation longer than
// max_entry_bytes (a pipeline with a larger limit wrote it) is not merged;
// its length and SHA-256 are recorded. One within it is. A sender's is
// never merged: it is an attribute like any other, cut at max_value_bytes.
func TestValidationBounded(t *testing.T) {
	one := `{"field":"x","problem":"missing"},`
	long := "[" + strings.Repeat(one, 40) + `{"field":"y","problem":"empty"}]`
	opts := Options{MaxEntryBytes: len(long) - 1}
	res, span := typicalSpan()
	putSealed(span, long)
	e := FromSpan(res, span, opts)
	assert.Equal(t, []entry.Problem{{Field: entry.KeyValidation, Kind: entry.ProblemTruncated, Detail: "not merged: longer than max_entry_bytes",
		OriginalBytes: int64(len(long)), SHA256: sha256Of(long)}}, problemsOf(t, e))
	checkNormalize(t, res, span, opts, e)

	opts.MaxEntryBytes = len(long) + 2000
	res, span = typicalSpan()
	putSealed(span, long)
	e = FromSpan(res, span, opts)
	assert.Equal(t, []entry.Problem{{Field: "x", Kind: "missing"}, {Field: "y", Kind: "empty"}}, problemsOf(t, e))

	opts = Options{MaxValueBytes: 100}
	res, span = typicalSpan()
	span.Attributes().PutStr(entry.KeyValidation, long)
	e = FromSpan(res, span, opts)
	assert.Equal(t, []entry.Problem{
		{Field: entry.KeyValidation, Kind: entry.ProblemTruncated, Detail: "truncated to 100 bytes", OriginalBytes: int64(len(long)), SHA256: sha256Of(long)},
		{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed},
	}, problemsOf(t, e))
	assert.Contains(t, e.Attributes, `"audit.validation":"[{\"field\":\"x\"`)
	checkNormalize(t, res, span, opts, e)
}

// TestCleanSendsProblemsDown: each new kind of problem keeps a span off
// the shortcut; a NUL byte inside attributes, which JSON escapes, does not.
func TestCleanSendsProblemsDown(t *testing.T) {
	for name, edit := range map[string]func(ptrace.Span){
		"status":           func(s ptrace.Span) { s.Status().SetCode(3) },
		"time":             func(s ptrace.Span) { s.SetStartTimestamp(math.MaxUint64) },
		"end time":         func(s ptrace.Span) { s.SetEndTimestamp(math.MaxUint64) },
		"end before start": func(s ptrace.Span) { s.SetEndTimestamp(s.StartTimestamp() - 1) },
		"end unset":        func(s ptrace.Span) { s.SetEndTimestamp(0) },
		"NUL in a column":  func(s ptrace.Span) { s.Attributes().PutStr(entry.KeyTargetResource, "\x00") },
		"duplicate slot":   func(s ptrace.Span) { appendAttr(s.Attributes(), entry.KeyHTTPStatus, `{"intValue":"201"}`) },
		"duplicate other":  func(s ptrace.Span) { appendAttr(s.Attributes(), "http.request.method", `{"stringValue":"GET"}`) },
		"duplicate nested": func(s ptrace.Span) {
			m := s.Attributes().PutEmptyMap("m")
			m.PutInt("k", 1)
			appendAttr(m, "k", `{"intValue":"1"}`)
		},
		"entry size": func(s ptrace.Span) {
			for i := range 20 {
				s.Attributes().PutStr(fmt.Sprint("k", i), strings.Repeat("v", 60<<10))
			}
		},
	} {
		res, span := typicalSpan()
		_, ok := clean(res, span, Options{})
		require.True(t, ok)
		edit(span)
		_, ok = clean(res, span, Options{})
		assert.False(t, ok, name)
	}
	res, span := typicalSpan()
	span.Attributes().PutStr("tool.input", "\x00")
	_, ok := clean(res, span, Options{})
	assert.True(t, ok, "NUL in attributes")
	// Many distinct keys collide in the 64-bit filter; they stay clean.
	res, span = typicalSpan()
	for i := range 200 {
		span.Attributes().PutInt(fmt.Sprint("key.", i), int64(i))
	}
	_, ok = clean(res, span, Options{})
	assert.True(t, ok, "distinct keys")
}

// TestValidationOverEntryLimit: when a span's problems alone take more
// than max_entry_bytes (thousands of problems: only a hand-made span), the
// exporter does not merge what Normalize wrote into audit.validation; its
// entry records that validation's length and SHA-256 instead, next to the
// problems it finds itself. Nothing is dropped unflagged.
func TestValidationOverEntryLimit(t *testing.T) {
	res, span := typicalSpan()
	for i := range 50 {
		span.Attributes().PutStr(fmt.Sprintf("audit.extra.%02d", i), "x")
	}
	opts := Options{MaxEntryBytes: 2000}
	e := FromSpan(res, span, opts)
	require.Greater(t, len(*e.Validation), 2000)
	Normalize(res, span, opts)
	written, ok := span.Attributes().Get(entry.KeyValidation)
	require.True(t, ok)
	require.Equal(t, *e.Validation, written.Str())

	again := FromSpan(res, span, opts)
	ps := problemsOf(t, again)
	assert.Contains(t, ps, entry.Problem{Field: entry.KeyValidation, Kind: entry.ProblemTruncated, Detail: "not merged: longer than max_entry_bytes",
		OriginalBytes: int64(len(*e.Validation)), SHA256: sha256Of(*e.Validation)})
	assert.Contains(t, ps, entry.Problem{Field: "audit.extra.07", Kind: entry.ProblemUnknownKey, Detail: "kept in attributes"})
	again.Validation, e.Validation = nil, nil
	assert.Equal(t, e, again, "every other column is the same")
}
