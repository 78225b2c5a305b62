package intakeextension

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentaudit/agentaudit/extension/intakeextension/internal/metadata"
)

func newTestIntake(t *testing.T, cfg *Config) *intake {
	t.Helper()
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	return ext.(*intake)
}

// readAll reads body as the receiver does and returns what it read and
// the error it got.
func readAll(t *testing.T, in *intake, contentType, body string) (string, error) {
	t.Helper()
	var got string
	var readErr error
	wrap, err := in.GetHTTPHandler(context.Background())
	require.NoError(t, err)
	h, err := wrap(context.Background(), http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		got, readErr = string(b), err
	}))
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/v1/traces", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	h.ServeHTTP(httptest.NewRecorder(), req)
	return got, readErr
}

func TestJSONDepth(t *testing.T) {
	in := newTestIntake(t, &Config{MaxInFlight: 1, MaxJSONDepth: 3, MaxRequestDuration: time.Minute})
	tests := []struct {
		name, body string
		tooDeep    bool
	}{
		{name: "at the limit", body: `{"a":[{"b":1}],"c":[[1],[2]]}`},
		{name: "one deeper", body: `{"a":[{"b":[1]}]}`, tooDeep: true},
		{name: "brackets in strings do not count", body: `{"a":"[[[[{{{{","b":["\"[[[["]}`},
		{name: "an escaped backslash ends before the quote", body: `{"a":"\\","b":[[[1]]]}`, tooDeep: true},
		{name: "closing brackets are counted", body: `[[[1]]],[[[2]]],[[[3]]]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, in, "application/json", tt.body)
			if !tt.tooDeep {
				require.NoError(t, err)
				assert.Equal(t, tt.body, got)
				return
			}
			var tde *TooDeepError
			require.ErrorAs(t, err, &tde)
			assert.Equal(t, 3, tde.Max)
			assert.EqualError(t, err, "agentaudit_intake: the JSON body nests deeper than 3 levels (max_json_depth)")
		})
	}

	// Protobuf is not checked: pdata bounds its nesting.
	got, err := readAll(t, in, "application/x-protobuf", "[[[[[[")
	require.NoError(t, err)
	assert.Equal(t, "[[[[[[", got)
	// JSON with parameters is checked.
	_, err = readAll(t, in, "application/json; charset=utf-8", "[[[[[[")
	require.Error(t, err)
}

// TestJSONDepthStopsReading: the body is not read past the level that is
// too deep.
func TestJSONDepthStopsReading(t *testing.T) {
	d := &depthReader{body: io.NopCloser(strings.NewReader("[[[[[[[[")), max: 2, in: newTestIntake(t, &Config{MaxInFlight: 1, MaxJSONDepth: 2, MaxRequestDuration: time.Minute})}
	p := make([]byte, 8)
	n, err := d.Read(p)
	assert.Equal(t, 2, n, "the bytes before the third '[' are returned")
	require.Error(t, err)
	n, err2 := d.Read(p)
	assert.Zero(t, n)
	assert.Same(t, err, err2, "the error sticks")
}

func TestHTTPBusy(t *testing.T) {
	in := newTestIntake(t, &Config{MaxInFlight: 2, MaxJSONDepth: 8, MaxRequestDuration: time.Minute})
	wrap, err := in.GetHTTPHandler(context.Background())
	require.NoError(t, err)
	entered, proceed := make(chan struct{}), make(chan struct{})
	h, err := wrap(context.Background(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-proceed
		w.WriteHeader(http.StatusOK)
	}))
	require.NoError(t, err)
	serve := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/traces", strings.NewReader("{}")))
		return rec
	}
	done := make(chan *httptest.ResponseRecorder, 2)
	for range 2 {
		go func() { done <- serve() }()
		<-entered
	}
	rec := serve()
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "a third request while two are in")
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	close(proceed)
	for range 2 {
		assert.Equal(t, http.StatusOK, (<-done).Code)
	}
	go func() { <-entered }()
	assert.Equal(t, http.StatusOK, serve().Code, "slots are given back")
}

func TestGRPCBusy(t *testing.T) {
	in := newTestIntake(t, &Config{MaxInFlight: 1, MaxJSONDepth: 8, MaxRequestDuration: time.Minute})
	opts, err := in.GetGRPCServerOptions(context.Background())
	require.NoError(t, err)
	require.Len(t, opts, 1)

	// The tap itself, as the transport calls it: under one context,
	// released when that context ends.
	ctx, cancel := context.WithCancel(context.Background())
	_, err = in.tap(ctx, nil)
	require.NoError(t, err)
	_, err = in.tap(context.Background(), nil)
	st, ok := status.FromError(err)
	require.True(t, ok)
	assert.Equal(t, codes.Unavailable, st.Code())
	require.Len(t, st.Details(), 1)
	assert.Equal(t, int64(1), st.Details()[0].(*errdetails.RetryInfo).GetRetryDelay().GetSeconds())
	cancel()
	assert.Eventually(t, func() bool {
		c, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err := in.tap(c, nil)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond, "the slot is released when the call's context ends")
}

// TestGRPCStalledCall: a call that stalls gets a context that ends after
// max_request_duration; its slot is given back when the transport then
// ends the call.
func TestGRPCStalledCall(t *testing.T) {
	in := newTestIntake(t, &Config{MaxInFlight: 1, MaxJSONDepth: 8, MaxRequestDuration: 50 * time.Millisecond})
	call, endCall := context.WithCancel(context.Background())
	ctx, err := in.tap(call, nil)
	require.NoError(t, err)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the call's context did not end after max_request_duration")
	}
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	_, err = in.tap(context.Background(), nil)
	assert.Error(t, err, "the slot is held until the transport ends the call")
	endCall()
	assert.Eventually(t, func() bool {
		c, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err := in.tap(c, nil)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
}

// TestHTTPSlowBody: a body that stops arriving fails to read after
// max_request_duration, and the slot is given back.
func TestHTTPSlowBody(t *testing.T) {
	in := newTestIntake(t, &Config{MaxInFlight: 1, MaxJSONDepth: 8, MaxRequestDuration: 200 * time.Millisecond})
	wrap, err := in.GetHTTPHandler(context.Background())
	require.NoError(t, err)
	readErr := make(chan error, 2)
	h, err := wrap(context.Background(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte(`{"resourceSpans":[`)) }() // and nothing more
	req, err := http.NewRequest(http.MethodPost, srv.URL, pr)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	go func() {
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case err := <-readErr:
		require.Error(t, err, "the stalled body's read fails")
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled body was still being read after 5s")
	}
	resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the slot is given back")
	require.NoError(t, <-readErr)
}

func TestLifecycle(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, metadata.Type, f.Type())
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), f.CreateDefaultConfig())
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, ext.Shutdown(context.Background()))
	var _ component.Component = ext
}

// BenchmarkDepthReader: the JSON depth check's cost per byte of an OTLP/JSON
// body, to be read against pdata's decoding of the same bytes.
func BenchmarkDepthReader(b *testing.B) {
	body := []byte(strings.Repeat(`{"key":"gen_ai.response.id","value":{"stringValue":"chatcmpl-1-2-AbCdEfGhIjKlMnOpQrSt \"quoted\""}},`, 20000))
	in, err := newIntake(&Config{MaxInFlight: 1, MaxJSONDepth: 512, MaxRequestDuration: time.Minute}, componenttest.NewNopTelemetrySettings())
	require.NoError(b, err)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		d := &depthReader{body: io.NopCloser(bytes.NewReader(body)), max: 512, in: in}
		for {
			if _, err := d.Read(buf); err != nil {
				break
			}
		}
	}
}
