package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// hostileRSSBoundMiB is the bound README.md states for the embedded
// default: under a flood of hostile requests the collector's resident
// memory stays under it.
const hostileRSSBoundMiB = 512

// TestHostileInputBoundedMemory runs the embedded default configuration
// (testdata/agentaudit.yaml, on free ports) and sends what a hostile client
// would: an 18 MB OTLP/JSON request whose attribute value nests 650,000
// levels deep, six of them at once, deeply nested protobuf over gRPC and
// HTTP, and a flood of large valid requests over gRPC, OTLP/HTTP protobuf
// and OTLP/JSON from more clients than the collector takes at once. The
// collector's resident memory (sampled, and its peak VmHWM) stays under
// hostileRSSBoundMiB; what it refuses, it refuses with a status the client
// can act on: 400 or a gRPC error for malformed input, retryable 503 /
// UNAVAILABLE for the flood. Afterwards it still accepts a normal audit
// span, and the trail holds exactly the spans it acknowledged and verifies.
func TestHostileInputBoundedMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	grpcAddr, httpAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	dir := t.TempDir()
	p := harness.StartProcess(t, harness.CollectorBin(), defaultConfigOn(t, grpcAddr, httpAddr, metricsAddr), dir, nil)
	p.WaitListening(t, grpcAddr, httpAddr, metricsAddr)
	rss := sampleRSS(t, p)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.ForceCodecV2(rawCodec{})))
	require.NoError(t, err)
	defer conn.Close()

	// The deep JSON request is refused as it streams in: 400, not decoded.
	deepJSON := deepJSONRequest(650_000)
	require.Greater(t, len(deepJSON), 18_000_000)
	code, body := postRaw(t, ctx, httpAddr, "application/json", deepJSON)
	assert.Equal(t, http.StatusBadRequest, code, "%s", body)
	assert.Contains(t, body, "max_json_depth")
	t.Logf("one 18 MB JSON request nested 650,000 deep: HTTP %d, RSS %d MiB", code, rss.now()>>20)

	// The same gzipped (42 KB): the check sees the body decompressed.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(deepJSON)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	code, body = postRaw(t, ctx, httpAddr, "application/json", gz.Bytes(), "Content-Encoding", "gzip")
	assert.Equal(t, http.StatusBadRequest, code, "%s", body)
	assert.Contains(t, body, "max_json_depth")
	t.Logf("gzipped (%d bytes): HTTP %d", gz.Len(), code)

	// Six at once.
	var wg sync.WaitGroup
	codes6 := make([]int, 6)
	for i := range codes6 {
		wg.Go(func() { codes6[i], _ = postRaw(t, ctx, httpAddr, "application/json", deepJSON) })
	}
	wg.Wait()
	for _, c := range codes6 {
		// 400 (too deep), or 503 when more arrive at once than the
		// collector takes: both are answers, neither is decoded.
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusServiceUnavailable}, c)
	}
	t.Logf("six at once: %v, RSS %d MiB", codes6, rss.now()>>20)

	// Deep protobuf: pdata refuses messages nested deeper than 100, so the
	// decoder never recurses far. Under max_recv_msg_size_mib it comes back
	// as INTERNAL (gRPC's code for a message it cannot unmarshal), over it
	// as RESOURCE_EXHAUSTED; over HTTP as 400 either way.
	for _, depth := range []int{300_000, 650_000} {
		deepProto := deepProtoRequest(depth)
		err := conn.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", deepProto, new([]byte))
		st, ok := status.FromError(err)
		require.True(t, ok, "%v", err)
		assert.Contains(t, []codes.Code{codes.Internal, codes.ResourceExhausted}, st.Code(), "%v", err)
		t.Logf("gRPC protobuf nested %d deep (%d bytes): %v, RSS %d MiB", depth, len(deepProto), st.Code(), rss.now()>>20)
	}
	code, body = postRaw(t, ctx, httpAddr, "application/x-protobuf", deepProtoRequest(300_000))
	assert.Equal(t, http.StatusBadRequest, code, "%s", body)
	assert.Contains(t, body, "recursion depth")
	// Over max_request_body_size: 400 too.
	code, body = postRaw(t, ctx, httpAddr, "application/x-protobuf", deepProtoRequest(650_000))
	assert.Equal(t, http.StatusBadRequest, code, "%s", body)
	assert.Contains(t, body, "request body too large")

	// A flood of large valid requests, from more clients than
	// max_in_flight, for a few seconds.
	protoReqs, auditPerProto, protoBytes := tpPayloads(t, 4, 6000, 10)
	jsonTraces, auditPerJSON, _ := tpPayloads(t, 2, 2400, 10)
	var jsonReqs [][]byte
	for _, raw := range jsonTraces {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(raw)
		require.NoError(t, err)
		js, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		require.NoError(t, err)
		jsonReqs = append(jsonReqs, js)
	}
	require.Less(t, protoBytes, 4<<20)
	require.Less(t, len(jsonReqs[0]), 4<<20)
	t.Logf("flood: protobuf requests of %d bytes, JSON requests of %d bytes", protoBytes, len(jsonReqs[0]))

	var accepted, refused atomic.Int64 // audit spans acknowledged; requests refused (retryable)
	var sent atomic.Int64
	floodCtx, stopFlood := context.WithTimeout(ctx, 8*time.Second)
	defer stopFlood()
	const clients = 48
	for i := range clients {
		wg.Go(func() {
			for n := 0; floodCtx.Err() == nil; n++ {
				var err error
				audit := auditPerProto
				switch i % 3 {
				case 0:
					err = conn.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", protoReqs[n%len(protoReqs)], new([]byte))
				case 1:
					err = httpResult(postRaw(t, ctx, httpAddr, "application/x-protobuf", protoReqs[n%len(protoReqs)]))
				case 2:
					audit = auditPerJSON
					err = httpResult(postRaw(t, ctx, httpAddr, "application/json", jsonReqs[n%len(jsonReqs)]))
				}
				sent.Add(1)
				switch {
				case err == nil:
					accepted.Add(int64(audit))
				case retryable(err):
					refused.Add(1)
					time.Sleep(50 * time.Millisecond) // a client backs off
				default:
					t.Errorf("client %d: not a retryable refusal: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("flood: %d requests from %d clients, %d refused (retryable), %d audit spans acknowledged", sent.Load(), clients, refused.Load(), accepted.Load())
	assert.Positive(t, accepted.Load(), "the flood is not refused whole")
	assert.Positive(t, refused.Load(), "%d clients are more than the collector takes at once", clients)

	// Still alive, still recording, once the heap the flood left is
	// collected: until then memory_limiter refuses, retryably, and a
	// client retries as it would.
	one := auditSpanRequest(t, "after-the-flood")
	var last error
	assert.Eventually(t, func() bool {
		last = conn.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", one, new([]byte))
		return last == nil || !retryable(last)
	}, 20*time.Second, 200*time.Millisecond)
	require.NoError(t, last, "accepted after the flood; refusals meanwhile only retryable")
	for _, smp := range harness.ScrapeSamples(t, metricsAddr) {
		if strings.Contains(smp.Name, "intake_refused") || strings.Contains(smp.Name, "refused_spans") {
			t.Logf("%s%s %v", smp.Name, smp.Labels, smp.Value)
		}
	}
	peak := rss.stop()
	t.Logf("RSS: peak (VmHWM) %d MiB, highest sample %d MiB over %d samples", peak>>20, rss.max>>20, rss.n)
	assert.Less(t, peak, uint64(hostileRSSBoundMiB)<<20, "peak RSS %d MiB", peak>>20)

	p.Terminate(t)
	rep := harness.Verify(t, filepath.Join(dir, "audit-data"))
	assert.True(t, rep.Intact, "%+v", rep.Violations)
	assert.EqualValues(t, accepted.Load()+1+2, rep.Entries, "the trail holds every acknowledged audit span, nothing refused, and the start and stop markers")
	assert.Equal(t, harness.OneCleanRun, harness.TrailMarkers(t, harness.TrailDB(t, filepath.Join(dir, "audit-data"))))
}

// TestStalledClientsLoseTheirPlace: clients that take every place in the
// receiver and then stall (an HTTP body that stops arriving, a gRPC call
// whose message never comes) hold it for max_request_duration, not for
// good. The embedded default, with max_in_flight 4 and max_request_duration
// 10s: on a loaded machine the stalled clients may take a second or more
// to reach the server, and must still hold their places when checked.
func TestStalledClientsLoseTheirPlace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	grpcAddr, httpAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	cfg := defaultConfigOn(t, grpcAddr, httpAddr, metricsAddr,
		"max_in_flight: 8", "max_in_flight: 4", "max_request_duration: 30s", "max_request_duration: 10s")
	p := harness.StartProcess(t, harness.CollectorBin(), cfg, t.TempDir(), nil)
	p.WaitListening(t, grpcAddr, httpAddr, metricsAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	require.NoError(t, err)
	defer conn.Close()
	const export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

	// Two HTTP requests whose body stops after its first bytes, four gRPC
	// calls that send their headers and nothing more: more than the places.
	// (In a full CI=true run of this package the stalled HTTP requests
	// sometimes hold no place, for a reason not found yet; the gRPC calls
	// alone fill them.)
	var stalledHTTP []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", httpAddr)
		require.NoError(t, err)
		defer c.Close()
		_, err = fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n\x0a")
		require.NoError(t, err)
		stalledHTTP = append(stalledHTTP, c)
	}
	var stalledGRPC []grpc.ClientStream
	for range 4 {
		cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, export)
		require.NoError(t, err)
		stalledGRPC = append(stalledGRPC, cs)
	}
	one := auditSpanRequest(t, "behind-the-stalled")
	started := time.Now()
	var last error
	if !assert.Eventually(t, func() bool {
		last = conn.Invoke(ctx, export, one, new([]byte))
		return status.Code(last) == codes.Unavailable
	}, 8*time.Second, 20*time.Millisecond) {
		t.Fatalf("the stalled clients do not hold every place: a request got %v", last)
	}
	refusedAt := time.Since(started)

	// Within max_request_duration and a little, the places are free again.
	require.Eventually(t, func() bool {
		return conn.Invoke(ctx, export, one, new([]byte)) == nil
	}, 25*time.Second, 100*time.Millisecond, "a normal request gets through once the stalled ones are cut")
	t.Logf("refused %v after the stalled clients came, accepted after %v", refusedAt, time.Since(started))
	code, body := postRaw(t, ctx, httpAddr, "application/x-protobuf", one)
	assert.Equal(t, http.StatusOK, code, "%s", body)

	// The collector closed the stalled HTTP connections and ended the
	// stalled calls.
	for _, c := range stalledHTTP {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := io.ReadAll(c)
		assert.NoError(t, err, "the connection is closed (EOF), not left open")
	}
	// A stalled call that held a place was cut at max_request_duration;
	// one that came when the places were full was refused at once.
	cut := 0
	for _, cs := range stalledGRPC {
		err := cs.RecvMsg(new([]byte))
		switch status.Code(err) {
		case codes.DeadlineExceeded:
			cut++
		case codes.Unavailable:
		default:
			t.Errorf("a stalled call ended with %v", err)
		}
	}
	assert.Positive(t, cut, "at least one stalled call held a place and was cut")
}

// defaultConfigOn writes testdata/agentaudit.yaml with its OTLP endpoints
// on grpcAddr and httpAddr and its own metrics on metricsAddr and returns
// its path, after replacing each replace[i] by replace[i+1] once.
// HOSTILE_CONFIG names another configuration of the same shape to
// measure instead (docs/PERFORMANCE.md measures the former default so).
func defaultConfigOn(t *testing.T, grpcAddr, httpAddr, metricsAddr string, replace ...string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "agentaudit.yaml")
	if v := os.Getenv("HOSTILE_CONFIG"); v != "" {
		src = v
	}
	raw, err := os.ReadFile(src)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(metricsAddr)
	require.NoError(t, err)
	cfg := strings.NewReplacer(
		"endpoint: 127.0.0.1:4317", "endpoint: "+grpcAddr,
		"endpoint: 127.0.0.1:4318", "endpoint: "+httpAddr,
		"\nservice:\n", fmt.Sprintf("\nservice:\n  telemetry:\n    metrics:\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: %s\n                port: %s\n", host, port),
	).Replace(string(raw))
	for i := 0; i+1 < len(replace); i += 2 {
		require.Contains(t, cfg, replace[i])
		cfg = strings.Replace(cfg, replace[i], replace[i+1], 1)
	}
	require.Equal(t, 1, strings.Count(cfg, grpcAddr), "testdata/agentaudit.yaml no longer listens on 127.0.0.1:4317")
	require.Equal(t, 1, strings.Count(cfg, httpAddr), "testdata/agentaudit.yaml no longer listens on 127.0.0.1:4318")
	path := filepath.Join(t.TempDir(), "agentaudit.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// rssSampler reads a process's resident set size every 10 ms.
type rssSampler struct {
	pid       int
	done      chan struct{}
	stopped   sync.WaitGroup
	mu        sync.Mutex
	max, last uint64
	n         int
}

func sampleRSS(t *testing.T, p *harness.Process) *rssSampler {
	t.Helper()
	s := &rssSampler{pid: p.Pid(), done: make(chan struct{})}
	_, err := s.read("VmRSS")
	require.NoError(t, err, "reading the collector's resident memory")
	s.stopped.Go(func() {
		for {
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			v, err := s.read("VmRSS")
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.last, s.max, s.n = v, max(s.max, v), s.n+1
			s.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
		s.stopped.Wait()
	})
	return s
}

// read returns the field of /proc/<pid>/status (VmRSS, VmHWM) in bytes.
func (s *rssSampler) read(field string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, s.pid)
}

// now returns the last sample.
func (s *rssSampler) now() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// stop ends the sampling and returns the kernel's record of the peak
// (VmHWM), which also sees spikes between samples.
func (s *rssSampler) stop() uint64 {
	close(s.done)
	s.stopped.Wait()
	hwm, err := s.read("VmHWM")
	if err != nil {
		return s.max
	}
	return max(hwm, s.max)
}

// rawCodec sends and receives messages as the bytes given, so that a test
// can send protobuf that pdata would refuse to build.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// postRaw posts body to the OTLP/HTTP traces endpoint at addr, with the
// headers given as name, value pairs, and returns the status code and the
// response body.
func postRaw(t *testing.T, ctx context.Context, addr, contentType string, body []byte, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/traces", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// httpStatusError is an HTTP answer other than 200.
type httpStatusError struct {
	code int
	body string
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

func httpResult(code int, body string) error {
	if code == http.StatusOK {
		return nil
	}
	return &httpStatusError{code, body}
}

// retryable reports whether err is a refusal an OTLP client retries: gRPC
// UNAVAILABLE, HTTP 503 or 429. (RESOURCE_EXHAUSTED is retried only with
// RetryInfo; neither the collector nor agentaudit sends it so.)
func retryable(err error) bool {
	var he *httpStatusError
	if errors.As(err, &he) {
		return he.code == http.StatusServiceUnavailable || he.code == http.StatusTooManyRequests
	}
	return status.Code(err) == codes.Unavailable
}

// deepJSONRequest is an OTLP/JSON request of one audit-tagged span whose
// audit.value.proposed is an array nested depth levels deep: 28 bytes a
// level, so 650,000 levels make 18 MB.
func deepJSONRequest(depth int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"hostile"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"deep","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"audit.action.type","value":{"stringValue":"write"}},{"key":"audit.target.system","value":{"stringValue":"CRM"}},{"key":"audit.value.proposed","value":`)
	b.WriteString(strings.Repeat(`{"arrayValue":{"values":[`, depth))
	b.WriteString(`{"stringValue":"x"}`)
	b.WriteString(strings.Repeat(`]}}`, depth))
	b.WriteString(`}]}]}]}]}`)
	return b.Bytes()
}

// deepProtoRequest is the same request as protobuf: an
// ExportTraceServiceRequest whose span's audit.value.proposed is an
// AnyValue{array_value: ArrayValue{values: [AnyValue{...}]}} nested depth
// levels deep, encoded inside out.
func deepProtoRequest(depth int) []byte {
	field := func(num int, b []byte) []byte { // a length-delimited field
		out := appendVarint([]byte{byte(num<<3 | 2)}, uint64(len(b)))
		return append(out, b...)
	}
	value := []byte{0x0a, 1, 'x'} // AnyValue{string_value: "x"}
	// Each level is 0x2a len(ArrayValue) 0x0a len(AnyValue): write the
	// prefixes outermost first, the innermost value last.
	lens := make([]uint64, depth+1)
	lens[0] = uint64(len(value))
	for i := 1; i <= depth; i++ {
		arr := 1 + varintLen(lens[i-1]) + lens[i-1]
		lens[i] = 1 + varintLen(arr) + arr
	}
	var deep []byte
	for i := depth; i >= 1; i-- {
		arr := 1 + varintLen(lens[i-1]) + lens[i-1]
		deep = appendVarint(append(deep, 0x2a), arr)
		deep = appendVarint(append(deep, 0x0a), lens[i-1])
	}
	deep = append(deep, value...)
	kv := func(k string, v []byte) []byte { return append(field(1, []byte(k)), field(2, v)...) }
	str := func(s string) []byte { return field(1, []byte(s)) }
	var span []byte
	span = append(span, field(1, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})...)
	span = append(span, field(2, []byte{1, 2, 3, 4, 5, 6, 7, 8})...)
	span = append(span, field(5, []byte("deep"))...)
	span = append(span, field(9, kv("audit.action.type", str("write")))...)
	span = append(span, field(9, kv("audit.target.system", str("CRM")))...)
	span = append(span, field(9, kv("audit.value.proposed", deep))...)
	rs := append(field(1, field(1, kv("service.name", str("hostile")))), field(2, field(2, span))...)
	return field(1, rs)
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func varintLen(v uint64) uint64 { return uint64(len(appendVarint(nil, v))) }

// auditSpanRequest is a marshalled export request of one ordinary
// audit-tagged span.
func auditSpanRequest(t *testing.T, resource string) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName("crm.update_contact")
	s.SetTraceID([16]byte{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7})
	s.SetSpanID([8]byte{7, 7, 7, 7, 7, 7, 7, 7})
	s.Attributes().PutStr("audit.action.type", "write")
	s.Attributes().PutStr("audit.target.system", "HubSpot CRM")
	s.Attributes().PutStr("audit.target.resource", resource)
	raw, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return raw
}
