package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

// The timestamp client (checkpoint.timestamp, docs/TRANSPARENCY.md,
// internal/tsa): after each checkpoint the recorder writes, it asks an
// RFC 3161 timestamp authority for a token over the signed checkpoint
// note, checks the token with the configured TSA certificate, and stores
// it beside the checkpoint (store.TimestampKey), where `auditctl verify
// --tsa-cert` checks it.
//
// A TSA down never blocks intake: the recorder's sealer only queues the
// checkpoint; one goroutine asks for tokens, the newest checkpoint first
// (it commits to the whole chain before it), retrying with backoff, and
// the metrics show what waits. Checkpoints still waiting at shutdown get
// one attempt each until the first failure; those left (or dropped past
// maxPendingTimestamps) stay without a token, which the next
// checkpoint's covers.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tsa"
)

const (
	defaultTimestampTimeout = 10 * time.Second
	// maxPendingTimestamps bounds the checkpoints waiting for a token;
	// past it the oldest is dropped (and counted): the newer ones cover it.
	maxPendingTimestamps = 1024
	// timestampClockSkew is how far a fresh token's time may be from
	// this collector's clock: a TSA whose clock is further off gives
	// tokens that say little, and they are refused (and retried).
	timestampClockSkew = 5 * time.Minute
)

// The backoff between failed attempts, doubling from min to max: variables
// for the tests.
var (
	timestampMinBackoff = time.Second
	timestampMaxBackoff = time.Minute
)

// TimestampConfig turns on RFC 3161 timestamps of the checkpoints: off
// when the section is absent.
type TimestampConfig struct {
	// URL is the TSA's RFC 3161 endpoint (HTTP POST of
	// application/timestamp-query).
	URL string `mapstructure:"url"`
	// CertificateFile is a PEM file of the TSA's signing certificate, or
	// of the root (and intermediates) it chains to: tokens signed by
	// another key are refused. Auditors check with the same file.
	CertificateFile string `mapstructure:"certificate_file"`
	// Timeout bounds one request. Default: 10s.
	Timeout time.Duration `mapstructure:"timeout"`

	_ struct{}
}

// Validate checks the timestamp settings; the certificate file is read at
// start.
func (cfg *TimestampConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("\"url\" %q must be an http or https URL", cfg.URL))
	}
	if cfg.CertificateFile == "" {
		errs = append(errs, errors.New("\"certificate_file\" must name the PEM file of the TSA's certificate"))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("\"timeout\" %v must not be negative", cfg.Timeout))
	}
	return errors.Join(errs...)
}

// stampJob is a checkpoint waiting for its token.
type stampJob struct {
	size    int64
	note    []byte
	written time.Time // when the recorder told it
	token   []byte    // got and checked, not yet stored
}

// stamper is the timestamp client of one chain.
type stamper struct {
	chainID string
	url     string
	trusted []*x509.Certificate
	timeout time.Duration
	hc      *http.Client
	put     func(ctx context.Context, key string, data []byte) error
	now     func() time.Time
	logger  *zap.Logger
	tel     *stampMetrics

	minBackoff, maxBackoff time.Duration

	mu       sync.Mutex
	pending  []stampJob // in chain order; the last is asked first
	newest   stampJob   // the newest checkpoint stamped (note and token unset)
	failures int        // in a row, for one log line per outage
	wake     chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// newStamper reads the TSA certificate of cfg; put stores beside the
// trail (recorder.PutBeside).
func newStamper(cfg *TimestampConfig, chainID string, put func(context.Context, string, []byte) error, logger *zap.Logger) (*stamper, error) {
	pem, err := os.ReadFile(cfg.CertificateFile)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: timestamp: \"certificate_file\": %w", err)
	}
	certs, err := tsa.ParseCertificates(pem)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: timestamp: \"certificate_file\" %s: %w", cfg.CertificateFile, err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = defaultTimestampTimeout
	}
	return &stamper{
		chainID: chainID, url: cfg.URL, trusted: certs, timeout: timeout,
		hc: &http.Client{Timeout: timeout}, put: put, now: time.Now, logger: logger,
		minBackoff: timestampMinBackoff, maxBackoff: timestampMaxBackoff,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}, nil
}

// checkpointed queues a checkpoint (recorder.Config.Checkpointed): it
// never blocks.
func (s *stamper) checkpointed(size int64, note []byte) {
	now := s.now()
	s.mu.Lock()
	s.pending = append(s.pending, stampJob{size: size, note: bytes.Clone(note), written: now})
	dropped := len(s.pending) > maxPendingTimestamps
	if dropped {
		s.pending = s.pending[1:]
	}
	s.mu.Unlock()
	if dropped {
		s.tel.failed(stampDropped)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// start runs the client until shutdown.
func (s *stamper) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(ctx)
}

func (s *stamper) run(ctx context.Context) {
	defer close(s.done)
	backoff := s.minBackoff
	for {
		job, ok := s.next()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if err := s.stamp(ctx, job); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.logFailure(err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, s.maxBackoff)
			continue
		}
		backoff = s.minBackoff
	}
}

// next returns the newest checkpoint waiting.
func (s *stamper) next() (stampJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return stampJob{}, false
	}
	return s.pending[len(s.pending)-1], true
}

// Kinds of otelcol_agentaudit_timestamp_errors.
const (
	stampUnavailable = "unavailable" // no answer, or an HTTP error
	stampInvalid     = "invalid"     // an answer that is not a good token of the TSA
	stampStore       = "store"       // the token could not be stored
	stampDropped     = "dropped"     // a checkpoint given up on: too many waiting
)

// stamp gets (unless it has) a token for job, checks it, and stores it.
func (s *stamper) stamp(ctx context.Context, job stampJob) error {
	if job.token == nil {
		token, err := s.request(ctx, job.note)
		if err != nil {
			return err
		}
		job.token = token
		s.update(job.size, func(j *stampJob) { j.token = token })
	}
	err := s.put(ctx, store.TimestampKey(s.chainID, job.size), job.token)
	if err != nil && !errors.Is(err, store.ErrConflict) { // a token already there is as good
		if ctx.Err() == nil { // not a write cut short by shutdown, which tries again
			s.tel.failed(stampStore)
		}
		return fmt.Errorf("storing the token of checkpoint %d: %w", job.size, err)
	}
	s.stamped(job)
	return nil
}

// request asks the TSA for a token over note and checks it. A request
// cut short by shutdown is not counted as an error.
func (s *stamper) request(parent context.Context, note []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, s.timeout)
	defer cancel()
	sent := s.now()
	token, err := tsa.RequestWith(ctx, s.hc, s.url, note)
	if err != nil {
		switch {
		case parent.Err() != nil: // shutdown, not the TSA
		case isTokenError(err):
			s.tel.failed(stampInvalid)
		default:
			s.tel.failed(stampUnavailable)
		}
		return nil, err
	}
	if _, err := tsa.Verify(token, note, tsa.VerifyOptions{
		TSA:       s.trusted,
		NotBefore: sent.Add(-timestampClockSkew),
		NotAfter:  s.now().Add(timestampClockSkew),
	}); err != nil {
		s.tel.failed(stampInvalid)
		return nil, fmt.Errorf("the TSA at %s answered a token that does not verify: %w", s.url, err)
	}
	return token, nil
}

// isTokenError reports whether err is about the TSA's answer rather than
// reaching it.
func isTokenError(err error) bool {
	for _, e := range []error{tsa.ErrMalformed, tsa.ErrRefused, tsa.ErrSignature, tsa.ErrUntrustedTSA, tsa.ErrImprint, tsa.ErrNonce} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// update changes the waiting job of size, if it still waits.
func (s *stamper) update(size int64, change func(*stampJob)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.pending {
		if s.pending[i].size == size {
			change(&s.pending[i])
		}
	}
}

// stamped removes job from the waiting ones and counts it.
func (s *stamper) stamped(job stampJob) {
	s.mu.Lock()
	for i := range s.pending {
		if s.pending[i].size == job.size {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			break
		}
	}
	if job.size > s.newest.size {
		s.newest = stampJob{size: job.size, written: job.written}
	}
	failures := s.failures
	s.failures = 0
	s.mu.Unlock()
	s.tel.stored.Add(context.Background(), 1)
	if failures > 0 {
		s.logger.Info("Timestamps are stored again", zap.String("tsa", s.url), zap.Int("failed_attempts", failures))
	}
}

// logFailure logs the first failure of an outage; the metrics count the
// rest.
func (s *stamper) logFailure(err error) {
	s.mu.Lock()
	s.failures++
	first := s.failures == 1
	s.mu.Unlock()
	if first {
		s.logger.Warn("Timestamping a checkpoint failed; retrying with backoff, intake continues", zap.String("tsa", s.url), zap.Error(err))
	}
}

// stampGauges are what the gauges report.
type stampGauges struct {
	age     time.Duration // since the newest timestamped checkpoint was written
	stamped bool          // one was, this run: age is set
	lag     time.Duration // since the oldest checkpoint waiting was; 0: none waits
	pending int
}

func (s *stamper) gauges() stampGauges {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	g := stampGauges{pending: len(s.pending), stamped: !s.newest.written.IsZero()}
	if g.stamped {
		g.age = now.Sub(s.newest.written)
	}
	if len(s.pending) > 0 {
		g.lag = now.Sub(s.pending[0].written)
	}
	return g
}

// shutdown stops the client, then tries each checkpoint still waiting,
// newest first, once, until the first failure or ctx's end.
func (s *stamper) shutdown(ctx context.Context) {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	defer s.hc.CloseIdleConnections()
	for ctx.Err() == nil {
		job, ok := s.next()
		if !ok {
			return
		}
		if err := s.stamp(ctx, job); err != nil {
			s.mu.Lock()
			left := len(s.pending)
			s.mu.Unlock()
			s.logger.Warn("Checkpoints left without a timestamp at shutdown; the next run's checkpoints cover them",
				zap.Int("checkpoints", left), zap.String("tsa", s.url), zap.Error(err))
			return
		}
	}
}

// stampMetrics are the timestamp client's metrics.
type stampMetrics struct {
	stored       metric.Int64Counter
	errors       metric.Int64Counter
	attrs        map[string]metric.MeasurementOption
	registration metric.Registration
}

func (m *stampMetrics) failed(kind string) {
	m.errors.Add(context.Background(), 1, m.attrs[kind])
}

// newStampMetrics creates the client's metrics; the gauges read s.
func newStampMetrics(mp metric.MeterProvider, s *stamper) (*stampMetrics, error) {
	meter := mp.Meter(metadata.ScopeName)
	m := &stampMetrics{attrs: map[string]metric.MeasurementOption{}}
	for _, k := range []string{stampUnavailable, stampInvalid, stampStore, stampDropped} {
		m.attrs[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", k)))
	}
	var err error
	if m.stored, err = meter.Int64Counter("otelcol_agentaudit_timestamps_stored",
		metric.WithDescription("RFC 3161 timestamp tokens of checkpoints checked and stored beside them."), metric.WithUnit("{token}")); err != nil {
		return nil, err
	}
	if m.errors, err = meter.Int64Counter("otelcol_agentaudit_timestamp_errors",
		metric.WithDescription("Failed attempts to timestamp a checkpoint, by kind: unavailable (no answer or an HTTP error), invalid (not a good token of the configured TSA), store, dropped (a checkpoint given up on)."),
		metric.WithUnit("{error}")); err != nil {
		return nil, err
	}
	pending, err := meter.Int64ObservableGauge("otelcol_agentaudit_timestamps_pending",
		metric.WithDescription("Checkpoints waiting for a timestamp token."), metric.WithUnit("{checkpoint}"))
	if err != nil {
		return nil, err
	}
	age, err := meter.Float64ObservableGauge("otelcol_agentaudit_timestamp_age_seconds",
		metric.WithDescription("Age of the newest checkpoint with a timestamp token; absent until the first since the collector started."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	lag, err := meter.Float64ObservableGauge("otelcol_agentaudit_timestamp_lag_seconds",
		metric.WithDescription("How long the oldest checkpoint waiting for a timestamp token has waited; 0 when none waits."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	m.registration, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		g := s.gauges()
		if g.stamped {
			o.ObserveFloat64(age, g.age.Seconds())
		}
		o.ObserveFloat64(lag, g.lag.Seconds())
		o.ObserveInt64(pending, int64(g.pending))
		return nil
	}, pending, age, lag)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// startTimestamps starts the timestamp client when configured. It runs
// before the recorder starts, so that it hears every checkpoint.
func (e *auditExporter) startTimestamps() error {
	cfg := e.cfg.Checkpoint.Timestamp
	if cfg == nil {
		return nil
	}
	s, err := newStamper(cfg, e.cfg.ChainID, e.rec.PutBeside, e.logger)
	if err != nil {
		return err
	}
	if s.tel, err = newStampMetrics(e.telemetrySettings.MeterProvider, s); err != nil {
		return err
	}
	s.start()
	e.stamps.Store(s)
	return nil
}

// shutdownTimestamps stops the timestamp client, after the recorder (whose
// last checkpoint it then tries to timestamp).
func (e *auditExporter) shutdownTimestamps(ctx context.Context) {
	s := e.stamps.Swap(nil)
	if s == nil {
		return
	}
	s.shutdown(ctx)
	_ = s.tel.registration.Unregister()
}
