package intakeextension // import "github.com/agentaudit/agentaudit/extension/intakeextension"

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentaudit/agentaudit/extension/intakeextension/internal/metadata"
)

// retryAfter is what a refused client is told to wait before it retries.
const retryAfter = time.Second

// intake is the extension: a counting semaphore shared by every server that
// lists it among its middlewares, and the JSON depth limit.
type intake struct {
	component.StartFunc
	component.ShutdownFunc

	slots       chan struct{}
	maxDepth    int
	maxDuration time.Duration
	refused     metric.Int64Counter
	busy        *status.Status
}

var (
	_ extensionmiddleware.HTTPServer = (*intake)(nil)
	_ extensionmiddleware.GRPCServer = (*intake)(nil)

	reasonBusy    = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "busy")))
	reasonTooDeep = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "too_deep")))
)

func newIntake(cfg *Config, set component.TelemetrySettings) (*intake, error) {
	refused, err := set.MeterProvider.Meter(metadata.ScopeName).Int64Counter(
		"otelcol_agentaudit_intake_refused",
		metric.WithDescription("OTLP requests refused before decoding, by reason: busy (max_in_flight reached; retryable) or too_deep (max_json_depth exceeded)"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	busy, err := status.New(codes.Unavailable, "agentaudit_intake: too many requests in flight, retry later").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	if err != nil {
		return nil, err
	}
	return &intake{
		slots:       make(chan struct{}, cfg.MaxInFlight),
		maxDepth:    cfg.MaxJSONDepth,
		maxDuration: cfg.MaxRequestDuration,
		refused:     refused,
		busy:        busy,
	}, nil
}

// acquire takes a slot if one is free; it never waits: gRPC calls it under
// its transport's lock.
func (in *intake) acquire() bool {
	select {
	case in.slots <- struct{}{}:
		return true
	default:
		in.refused.Add(context.Background(), 1, reasonBusy)
		return false
	}
}

func (in *intake) release() { <-in.slots }

// GetHTTPHandler wraps the receiver's handler. confighttp runs it after the
// body size limit and decompression are set up, before the body is read.
func (in *intake) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !in.acquire() {
				// Close the connection rather than wait for the unread
				// body: net/http would read up to 256 KiB of it, for as
				// long as the client takes.
				w.Header().Set("Connection", "close")
				_ = http.NewResponseController(w).SetReadDeadline(time.Now())
				w.Header().Set("Retry-After", fmt.Sprint(int(retryAfter/time.Second)))
				http.Error(w, in.busy.Message(), http.StatusServiceUnavailable)
				return
			}
			defer in.release()
			// The slot is held until the handler returns: bound the time
			// the body may take to arrive, and the handler's context. The
			// deadline stays for net/http's read of what the handler left
			// unread; net/http sets its own before the next request.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(in.maxDuration))
			ctx, cancel := context.WithTimeout(r.Context(), in.maxDuration)
			defer cancel()
			r = r.WithContext(ctx)
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-protobuf" {
				r.Body = &depthReader{body: r.Body, max: in.maxDepth, in: in}
			}
			next.ServeHTTP(w, r)
		}), nil
	}, nil
}

// GetGRPCServerOptions installs a tap, which runs when a call's headers
// arrive, before its message is read. The call gets a context that ends
// after max_request_duration (reading its message and the handler both
// stop then); the slot is released when the transport ends the call, which
// it does for every call the tap let through.
func (in *intake) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return []grpc.ServerOption{grpc.InTapHandle(in.tap)}, nil
}

func (in *intake) tap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	if !in.acquire() {
		return nil, in.busy.Err()
	}
	limited, cancel := context.WithTimeout(ctx, in.maxDuration)
	context.AfterFunc(ctx, func() {
		cancel()
		in.release()
	})
	return limited, nil
}

// TooDeepError is the read error of a JSON body nested deeper than allowed;
// the receiver answers it with HTTP 400.
type TooDeepError struct{ Max int }

func (e *TooDeepError) Error() string {
	return fmt.Sprintf("agentaudit_intake: the JSON body nests deeper than %d levels (max_json_depth)", e.Max)
}

// depthReader passes a JSON body through and fails once its objects and
// arrays nest deeper than max. It reads no further than its caller does.
type depthReader struct {
	body       io.ReadCloser
	in         *intake
	max, depth int
	inString   bool
	escaped    bool
	err        error
}

func (d *depthReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.body.Read(p)
	for i, c := range p[:n] {
		if d.inString {
			switch {
			case d.escaped:
				d.escaped = false
			case c == '\\':
				d.escaped = true
			case c == '"':
				d.inString = false
			}
			continue
		}
		switch c {
		case '"':
			d.inString = true
		case '{', '[':
			if d.depth++; d.depth > d.max {
				d.err = &TooDeepError{Max: d.max}
				d.in.refused.Add(context.Background(), 1, reasonTooDeep)
				return i, d.err
			}
		case '}', ']':
			d.depth--
		}
	}
	return n, err
}

func (d *depthReader) Close() error { return d.body.Close() }
