package e2e

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// updateFrameworks rewrites e2e/testdata/frameworks/*.json from what the
// agents emit instead of comparing with it: after a deliberate framework
// upgrade, run
//
//	go test -count=1 -run Frameworks ./e2e/ -update-frameworks
//
// and review the diff.
var updateFrameworks = flag.Bool("update-frameworks", false, "rewrite e2e/testdata/frameworks from the agents' spans")

// otlpRecorder is an OTLP/HTTP proxy in front of the collector: it keeps a
// copy of every request an agent sends, exactly as sent, and forwards the
// bytes to the collector, whose answer it returns. What it keeps is what
// arrived, whatever the collector then does with it.
type otlpRecorder struct {
	url string
	mu  sync.Mutex
	got []ptrace.Traces
	// answers are the collector's HTTP status codes, one per request.
	answers []int
}

func newOTLPRecorder(t *testing.T, collectorURL string) *otlpRecorder {
	t.Helper()
	r := &otlpRecorder{}
	client := &http.Client{Timeout: 30 * time.Second}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		td, err := decodeOTLP(body, req.Header.Get("Content-Type"), req.Header.Get("Content-Encoding"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fwd, err := http.NewRequestWithContext(req.Context(), http.MethodPost, collectorURL+req.URL.Path, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, h := range []string{"Content-Type", "Content-Encoding"} {
			if v := req.Header.Get(h); v != "" {
				fwd.Header.Set(h, v)
			}
		}
		resp, err := client.Do(fwd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		r.mu.Lock()
		r.got = append(r.got, td)
		r.answers = append(r.answers, resp.StatusCode)
		r.mu.Unlock()
		for _, h := range []string{"Content-Type", "Retry-After"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(answer)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func decodeOTLP(body []byte, contentType, encoding string) (ptrace.Traces, error) {
	if encoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return ptrace.Traces{}, err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return ptrace.Traces{}, err
		}
	}
	req := ptraceotlp.NewExportRequest()
	var err error
	switch ct, _, _ := strings.Cut(contentType, ";"); ct {
	case "application/x-protobuf":
		err = req.UnmarshalProto(body)
	case "application/json":
		err = req.UnmarshalJSON(body)
	default:
		err = fmt.Errorf("content type %q is not OTLP", contentType)
	}
	return req.Traces(), err
}

// received returns what arrived so far, and the collector's answers.
func (r *otlpRecorder) received() ([]ptrace.Traces, []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got), slices.Clone(r.answers)
}

// The fixtures under e2e/testdata/frameworks are the agents' requests as
// OTLP JSON (ptrace's JSON form, indented), merged into one ResourceSpans
// per resource and one ScopeSpans per scope, and made the same in every
// run (normalizeFixture):
//
//   - spans are in tree order: each root, then its children depth first,
//     siblings by start time, ties (OTel JS and LangChain start times are
//     in milliseconds) by the order they arrived in;
//   - trace ids are 0000…0001, 0000…0002, … and span ids 000…0001, … in
//     that order (parent ids follow);
//   - times are synthetic, 1 ms ticks from 2026-01-01T00:00:00Z along the
//     same walk: a span starts, its children run, its events happen, it
//     ends. Order and nesting are kept; durations and overlaps are not;
//   - in every string (attributes, event attributes, status messages) a
//     stack trace's "    at …" lines become one line "    at <stack>", and
//     each UUID (LangChain message and checkpoint ids) becomes
//     00000000-0000-4000-8000-00000000000N in order of first appearance;
//   - the Vercel AI SDK's stream timings (fixtureTimings) become 0.
//
// Everything else is as the framework sent it: names, kinds, statuses,
// attribute keys, types and values, resources, scopes.

// fixtureEpoch is the synthetic time of the first span's start.
var fixtureEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixtureTimings are attributes that measure wall-clock time.
var fixtureTimings = []string{
	"ai.response.msToFirstChunk", "ai.response.msToFinish", "ai.response.avgOutputTokensPerSecond",
	"ai.stream.msToFirstChunk", "ai.stream.msToFinish",
}

var (
	stackRE = regexp.MustCompile(`(\n[ \t]+at [^\n]*)+`)
	uuidRE  = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
)

// fixtureSpan is one span of the requests, with where it came from.
type fixtureSpan struct {
	arrival  int // its place in the requests: spans are sent as they end
	res      pcommon.Resource
	scope    pcommon.InstrumentationScope
	span     ptrace.Span
	children []*fixtureSpan
}

// normalizeFixture merges reqs into one ptrace.Traces in the fixtures'
// form (see above).
func normalizeFixture(reqs []ptrace.Traces) ptrace.Traces {
	var all []*fixtureSpan
	byID := map[pcommon.SpanID]*fixtureSpan{}
	for _, td := range reqs {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					fs := &fixtureSpan{arrival: len(all), res: rs.Resource(), scope: ss.Scope(), span: ss.Spans().At(k)}
					all = append(all, fs)
					byID[fs.span.SpanID()] = fs
				}
			}
		}
	}
	var roots []*fixtureSpan
	for _, fs := range all {
		if p, ok := byID[fs.span.ParentSpanID()]; ok && !fs.span.ParentSpanID().IsEmpty() {
			p.children = append(p.children, fs)
		} else {
			roots = append(roots, fs)
		}
	}
	// Siblings by start time, then by arrival. OTel JS takes a span's
	// start from Date.now() (and LangChain's runs from their millisecond
	// start_time) but measures its duration finer: two sequential spans
	// that start in the same millisecond may "end" in the wrong order, yet
	// the first ended, so was sent, first.
	bySpanTime := func(a, b *fixtureSpan) int {
		return cmp.Or(cmp.Compare(a.span.StartTimestamp(), b.span.StartTimestamp()), cmp.Compare(a.arrival, b.arrival))
	}

	out := ptrace.NewTraces()
	scopes := map[string]ptrace.ScopeSpans{}
	traceIDs := map[pcommon.TraceID]pcommon.TraceID{}
	spanIDs := map[pcommon.SpanID]pcommon.SpanID{}
	uuids := map[string]string{}
	tick := 0
	at := func() pcommon.Timestamp {
		t := pcommon.NewTimestampFromTime(fixtureEpoch.Add(time.Duration(tick) * time.Millisecond))
		tick++
		return t
	}
	var walk func(fs *fixtureSpan)
	walk = func(fs *fixtureSpan) {
		key := canonicalJSON(fs.res.Attributes().AsRaw()) + "\x00" + fs.scope.Name() + "\x00" + fs.scope.Version()
		ss, ok := scopes[key]
		if !ok {
			rs := out.ResourceSpans().AppendEmpty()
			fs.res.CopyTo(rs.Resource())
			ss = rs.ScopeSpans().AppendEmpty()
			fs.scope.CopyTo(ss.Scope())
			scopes[key] = ss
		}
		s := ss.Spans().AppendEmpty()
		fs.span.CopyTo(s)
		s.SetTraceID(fixtureID(traceIDs, fs.span.TraceID()))
		s.SetSpanID(fixtureSpanID(spanIDs, fs.span.SpanID()))
		if !fs.span.ParentSpanID().IsEmpty() {
			s.SetParentSpanID(fixtureSpanID(spanIDs, fs.span.ParentSpanID()))
		}
		s.SetStartTimestamp(at())
		slices.SortStableFunc(fs.children, bySpanTime)
		for _, c := range fs.children {
			walk(c)
		}
		s.Events().Sort(func(a, b ptrace.SpanEvent) bool { return a.Timestamp() < b.Timestamp() })
		for i := 0; i < s.Events().Len(); i++ {
			ev := s.Events().At(i)
			ev.SetTimestamp(at())
			normalizeAttrs(ev.Attributes(), uuids)
		}
		s.SetEndTimestamp(at())
		normalizeAttrs(s.Attributes(), uuids)
		s.Status().SetMessage(normalizeString(s.Status().Message(), uuids))
		for i := 0; i < s.Links().Len(); i++ {
			l := s.Links().At(i)
			l.SetTraceID(fixtureID(traceIDs, l.TraceID()))
			l.SetSpanID(fixtureSpanID(spanIDs, l.SpanID()))
		}
	}
	slices.SortStableFunc(roots, bySpanTime)
	for _, r := range roots {
		walk(r)
	}
	return out
}

func fixtureID(m map[pcommon.TraceID]pcommon.TraceID, id pcommon.TraceID) pcommon.TraceID {
	if n, ok := m[id]; ok {
		return n
	}
	var n pcommon.TraceID
	binary.BigEndian.PutUint64(n[8:], uint64(len(m)+1))
	m[id] = n
	return n
}

func fixtureSpanID(m map[pcommon.SpanID]pcommon.SpanID, id pcommon.SpanID) pcommon.SpanID {
	if n, ok := m[id]; ok {
		return n
	}
	var n pcommon.SpanID
	binary.BigEndian.PutUint64(n[:], uint64(len(m)+1))
	m[id] = n
	return n
}

// normalizeAttrs normalizes attrs' strings, in maps and slices too, and
// zeroes the timings.
func normalizeAttrs(attrs pcommon.Map, uuids map[string]string) {
	for k, v := range attrs.All() {
		if slices.Contains(fixtureTimings, k) && v.Type() == pcommon.ValueTypeDouble {
			v.SetDouble(0)
			continue
		}
		normalizeValue(v, uuids)
	}
}

func normalizeValue(v pcommon.Value, uuids map[string]string) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		v.SetStr(normalizeString(v.Str(), uuids))
	case pcommon.ValueTypeMap:
		normalizeAttrs(v.Map(), uuids)
	case pcommon.ValueTypeSlice:
		for i := 0; i < v.Slice().Len(); i++ {
			normalizeValue(v.Slice().At(i), uuids)
		}
	}
}

func normalizeString(s string, uuids map[string]string) string {
	s = stackRE.ReplaceAllString(s, "\n    at <stack>")
	return uuidRE.ReplaceAllStringFunc(s, func(u string) string {
		u = strings.ToLower(u)
		if n, ok := uuids[u]; ok {
			return n
		}
		n := fmt.Sprintf("00000000-0000-4000-8000-%012d", len(uuids)+1)
		uuids[u] = n
		return n
	})
}

func canonicalJSON(v any) string {
	b, err := json.Marshal(v) // map keys sorted
	if err != nil {
		panic(err)
	}
	return string(b)
}

// fixtureJSON is td as a fixture file: OTLP JSON, indented.
func fixtureJSON(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	raw, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, json.Indent(&buf, raw, "", "  "))
	buf.WriteByte('\n')
	return buf.Bytes()
}

// checkFixture compares got with the fixture of agent, or rewrites the
// fixture under -update-frameworks.
func checkFixture(t *testing.T, agent string, got ptrace.Traces) {
	t.Helper()
	path := filepath.Join("testdata", "frameworks", agent+".json")
	b := fixtureJSON(t, got)
	if *updateFrameworks {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, b, 0o644))
		t.Logf("wrote %s", path)
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "no fixture: run with -update-frameworks to write it")
	// Read back, so that the fixture stays loadable with ptrace's JSON
	// unmarshaler (which the mapping's unit tests can use).
	_, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(want)
	require.NoError(t, err, "%s is not OTLP JSON", path)
	require.Equal(t, string(want), string(b),
		"%s: the framework emitted other spans than the fixture holds. After a deliberate upgrade, rerun with -update-frameworks and review the diff; otherwise the framework (or the agent) changed what the mapping relies on", path)
}

// TestFrameworkFixtureNormalization checks normalizeFixture on spans made
// by hand: tree order with a millisecond tie broken by arrival, ids and
// times renumbered, stacks, UUIDs and timings replaced; and that two runs
// differing only in ids, times and UUIDs give the same fixture.
func TestFrameworkFixtureNormalization(t *testing.T) {
	run := func(seed byte, base time.Time, uuid string) []ptrace.Traces {
		id := func(n byte) pcommon.SpanID { return pcommon.SpanID{seed, 0, 0, 0, 0, 0, 0, n} }
		tid := pcommon.TraceID{seed, 1}
		at := func(ms float64) pcommon.Timestamp {
			return pcommon.NewTimestampFromTime(base.Add(time.Duration(ms * float64(time.Millisecond))))
		}
		add := func(td ptrace.Traces, name string, self, parent byte, start, end float64) ptrace.Span {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", "svc")
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName("scope")
			s := ss.Spans().AppendEmpty()
			s.SetName(name)
			s.SetTraceID(tid)
			s.SetSpanID(id(self))
			if parent != 0 {
				s.SetParentSpanID(id(parent))
			}
			s.SetStartTimestamp(at(start))
			s.SetEndTimestamp(at(end))
			return s
		}
		first, second := ptrace.NewTraces(), ptrace.NewTraces()
		// a and b start in the same millisecond; b "ends" first (OTel JS
		// measures durations finer than starts) but arrives second.
		a := add(first, "a", 2, 1, 1, 1.9)
		a.Attributes().PutStr("msg", "Error: boom\n    at f (file:///x.mjs:1:2)\n    at g (node:internal/y:3:4)")
		a.Attributes().PutDouble("ai.response.msToFinish", 12.3)
		b := add(first, "b", 3, 1, 1, 1.5)
		b.Attributes().PutEmptyMap("m").PutStr("id", "msg "+uuid)
		b.Status().SetCode(ptrace.StatusCodeError)
		b.Status().SetMessage("boom\n\nError: boom\n    at f (file:///x.mjs:1:2)")
		r := add(second, "root", 1, 0, 0, 3)
		r.Attributes().PutStr("again", uuid+" and "+uuid)
		ev := r.Events().AppendEmpty()
		ev.SetName("exception")
		ev.SetTimestamp(at(2.5))
		return []ptrace.Traces{first, second}
	}
	got := normalizeFixture(run(7, time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), "3f1c2a9e-5b7d-4c1e-9a2b-0123456789ab"))

	var spans []ptrace.Span
	for i := 0; i < got.ResourceSpans().Len(); i++ {
		ss := got.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				spans = append(spans, ss.At(j).Spans().At(k))
			}
		}
	}
	require.Equal(t, 1, got.ResourceSpans().Len(), "one resource, one scope")
	require.Len(t, spans, 3)
	ms := func(n int) pcommon.Timestamp {
		return pcommon.NewTimestampFromTime(fixtureEpoch.Add(time.Duration(n) * time.Millisecond))
	}
	for i, want := range []struct {
		name         string
		span, parent string
		start, end   int
	}{
		{"root", "0000000000000001", "", 0, 6},
		{"a", "0000000000000002", "0000000000000001", 1, 2},
		{"b", "0000000000000003", "0000000000000001", 3, 4},
	} {
		s := spans[i]
		require.Equal(t, want.name, s.Name(), "tree order, the tie by arrival")
		require.Equal(t, "00000000000000000000000000000001", s.TraceID().String())
		require.Equal(t, want.span, s.SpanID().String())
		if want.parent == "" {
			require.True(t, s.ParentSpanID().IsEmpty())
		} else {
			require.Equal(t, want.parent, s.ParentSpanID().String())
		}
		require.Equal(t, ms(want.start), s.StartTimestamp(), "%s start", want.name)
		require.Equal(t, ms(want.end), s.EndTimestamp(), "%s end", want.name)
	}
	require.Equal(t, ms(5), spans[0].Events().At(0).Timestamp(), "events after the children, before the end")
	const u1 = "00000000-0000-4000-8000-000000000001"
	require.Equal(t, map[string]any{"again": u1 + " and " + u1}, spans[0].Attributes().AsRaw())
	require.Equal(t, map[string]any{"msg": "Error: boom\n    at <stack>", "ai.response.msToFinish": 0.0}, spans[1].Attributes().AsRaw())
	require.Equal(t, map[string]any{"m": map[string]any{"id": "msg " + u1}}, spans[2].Attributes().AsRaw())
	require.Equal(t, "boom\n\nError: boom\n    at <stack>", spans[2].Status().Message())

	again := normalizeFixture(run(9, time.Date(2027, 2, 3, 4, 5, 6, 789, time.UTC), "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"))
	require.Equal(t, string(fixtureJSON(t, got)), string(fixtureJSON(t, again)), "another run, the same fixture")
	back, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(fixtureJSON(t, got))
	require.NoError(t, err, "a fixture reads back as OTLP JSON")
	require.Equal(t, 3, back.SpanCount())
}

// TestFrameworkRecorder checks the recording proxy: what an agent sends
// (OTLP/HTTP, protobuf or JSON) is kept as sent and forwarded byte for
// byte, and the collector's answer comes back.
func TestFrameworkRecorder(t *testing.T) {
	var mu sync.Mutex
	var forwarded [][]byte
	var types []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		forwarded = append(forwarded, b)
		types = append(types, r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(collector.Close)
	rec := newOTLPRecorder(t, collector.URL)

	td := ptrace.NewTraces()
	s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName("execute_tool crm_lookup_contact")
	s.Attributes().PutStr("gen_ai.tool.name", "crm_lookup_contact")
	req := ptraceotlp.NewExportRequestFromTraces(td)
	pb, err := req.MarshalProto()
	require.NoError(t, err)
	js, err := req.MarshalJSON()
	require.NoError(t, err)
	for _, body := range []struct {
		ct string
		b  []byte
	}{{"application/x-protobuf", pb}, {"application/json", js}} {
		resp, err := http.Post(rec.url+"/v1/traces", body.ct, bytes.NewReader(body.b))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the collector's answer")
		require.Equal(t, "3", resp.Header.Get("Retry-After"))
	}
	resp, err := http.Post(rec.url+"/v1/traces", "text/plain", strings.NewReader("no"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "not OTLP: refused, not forwarded")

	got, answers := rec.received()
	require.Equal(t, []int{503, 503}, answers)
	require.Len(t, got, 2)
	for _, g := range got {
		require.Equal(t, "execute_tool crm_lookup_contact", g.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name())
	}
	require.Equal(t, [][]byte{pb, js}, forwarded, "forwarded byte for byte")
	require.Equal(t, []string{"/v1/traces application/x-protobuf", "/v1/traces application/json"}, types)
}
