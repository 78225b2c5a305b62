package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/batch"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/recorder"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// retryAfter is what refused clients are told to wait.
const retryAfter = 5 * time.Second

// storeOpener opens the stores the configuration names. Tests inject their
// own.
type storeOpener func(ctx context.Context, cfg *Config) (recorder.Stores, error)

func openStore(ctx context.Context, cfg *Config) (recorder.Stores, error) {
	walDir := filepath.Join(cfg.Spool.Directory, "wal")
	if cfg.File != nil {
		st, err := store.NewFS(cfg.File.Directory)
		if err != nil {
			return recorder.Stores{}, fmt.Errorf("file: \"directory\" %q: %w", cfg.File.Directory, err)
		}
		return recorder.Stores{WALDir: walDir, Trail: st}, nil
	}
	s3, err := store.NewS3(ctx, cfg.S3.options())
	if err != nil {
		return recorder.Stores{}, fmt.Errorf("s3: %w", err)
	}
	// Fail fast: refused credentials, a missing bucket or one without Object
	// Lock must stop the collector before it accepts anything. An outage
	// need not: start can resume from local state (see start).
	offline := s3.Check(ctx)
	if offline != nil && !errors.Is(offline, store.ErrUnavailable) {
		return recorder.Stores{}, fmt.Errorf("s3: %w", offline)
	}
	spool, err := store.NewFS(filepath.Join(cfg.Spool.Directory, "batches"))
	if err != nil {
		return recorder.Stores{}, fmt.Errorf("spool: \"directory\" %q: %w", cfg.Spool.Directory, err)
	}
	return recorder.Stores{WALDir: walDir, Trail: s3, Spool: spool, Offline: offline}, nil
}

// auditExporter adapts the collector's traces to the recorder
// (internal/recorder), which chains, logs, seals and stores the entries:
// it maps each audit-tagged span to an entry (internal/auditspan), names
// the request's sender (sender.go), counts what happens (telemetry.go),
// and turns the recorder's refusals into the OTLP answers clients retry.
type auditExporter struct {
	cfg    *Config
	logger *zap.Logger
	opts   auditspan.Options
	sender *senders // who sent a request, and the senders policy
	open   storeOpener
	now    func() time.Time
	tel    *telemetry
	host   component.Host
	rec    *recorder.Recorder

	telemetrySettings component.TelemetrySettings
	version           string      // the collector's, for the markers
	started           atomic.Bool // the recorder started and no stop marker was written yet
	// approvals is the approval service, when configured and started: set
	// once by start, read by the recorder's sealer and by consumeTraces.
	approvals atomic.Pointer[approvals]
	// stamps is the timestamp client (timestamps.go), when configured.
	stamps atomic.Pointer[stamper]
	// witnesses get the checkpoints cosigned (witnesses.go), when
	// configured.
	witnesses atomic.Pointer[witnesses]
}

func newAuditExporter(cfg *Config, set exporter.Settings, open storeOpener) (*auditExporter, error) {
	e := &auditExporter{
		cfg:    cfg,
		logger: set.Logger,
		opts:   auditspan.Options{MaxValueBytes: cfg.MaxValueBytes, MaxEntryBytes: cfg.MaxEntryBytes},
		sender: newSenders(cfg.Senders),
		open:   open,
		now:    time.Now,

		telemetrySettings: set.TelemetrySettings,
		version:           set.BuildInfo.Version,
	}
	// The recorder reports to e.tel (recorderMetrics), which is set before
	// the recorder starts.
	e.rec = recorder.New(e.recorderConfig(), e.logger, (*recorderMetrics)(e))
	tel, err := newTelemetry(set.TelemetrySettings, e.rec.Stats)
	if err != nil {
		return nil, err
	}
	e.tel = tel
	return e, nil
}

// recorderConfig is what the recorder needs of the configuration.
func (e *auditExporter) recorderConfig() recorder.Config {
	cfg := e.cfg
	rc := recorder.Config{
		ChainID:       cfg.ChainID,
		SpoolDir:      cfg.Spool.Directory,
		StoreID:       storeID(cfg),
		Batch:         batch.Limits{MaxEntries: cfg.Batch.MaxEntries, MaxBytes: cfg.Batch.MaxBytes, MaxAge: cfg.Batch.MaxAge},
		SpoolMaxBytes: cfg.Spool.MaxBytes,
		CommitDelay:   cfg.Spool.CommitDelay,
		Checkpoint:    recorder.CheckpointConfig{KeyFile: cfg.Checkpoint.KeyFile, KeyEnv: cfg.Checkpoint.KeyEnv},
		LossEntry: func(seg wal.Segment, acc *wal.Acceptance, result string) entry.Entry {
			return lossEntry(cfg.ChainID, seg, acc, result)
		},
		// Tests set e.now after creating the exporter.
		Now:    func() time.Time { return e.now() },
		Failed: e.failed,
		Checkpointed: func(size int64, note []byte) {
			if a := e.approvals.Load(); a != nil {
				a.svc.Checkpointed(size, note)
			}
			if s := e.stamps.Load(); s != nil {
				s.checkpointed(size, note)
			}
			if w := e.witnesses.Load(); w != nil {
				w.offer(note)
			}
		},
	}
	if m := cfg.Checkpoint.Mirror; m != nil {
		rc.Checkpoint.MirrorDir = m.Directory
	}
	return rc
}

// failed reports the write-ahead log's failure to the host: the component
// refuses audit data until a restart.
func (e *auditExporter) failed(err error) {
	if e.host != nil {
		componentstatus.ReportStatus(e.host, componentstatus.NewPermanentErrorEvent(err))
	}
}

// start starts the recorder over the stores the configuration names.
func (e *auditExporter) start(ctx context.Context, host component.Host) error {
	e.host = host
	if err := e.startTimestamps(); err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	if err := e.startWitnesses(); err != nil {
		e.shutdownTimestamps(ctx)
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	err := e.rec.Start(ctx, func(ctx context.Context) (recorder.Stores, error) { return e.open(ctx, e.cfg) })
	if err != nil {
		e.shutdownTimestamps(ctx)
		e.shutdownWitnesses(ctx)
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	e.started.Store(true)
	e.mark(actionRecorderStart, e.rec.Previous())
	if e.cfg.Approvals.HasValue() {
		if err := e.startApprovals(ctx, host); err != nil {
			_ = e.stopRecorder(ctx)
			e.shutdownTimestamps(ctx)
			e.shutdownWitnesses(ctx)
			return fmt.Errorf("agentaudit exporter: %w", err)
		}
	}
	return nil
}

// entriesPool holds the slices requests map their spans into; a slice
// larger than maxPooledEntries (a huge request) is left to the collector.
var entriesPool = sync.Pool{New: func() any { return new([]entry.Entry) }}

const maxPooledEntries = 1 << 12

// consumeTraces turns every audit-tagged span of td into an entry and
// returns once the recorder has them durable in its write-ahead log.
// Spans without audit tags are counted and ignored. Each entry's sender is
// who sent the request, as ctx says (sender.go); without one, under
// require_authenticated_source, the request's audit spans are refused.
func (e *auditExporter) consumeTraces(ctx context.Context, td ptrace.Traces) error {
	// The recorder copies the entries into its batch, so their slice goes
	// back to a pool for the next request.
	ep := entriesPool.Get().(*[]entry.Entry)
	defer func() {
		if cap(*ep) <= maxPooledEntries {
			clear(*ep) // drop references to this request's strings (the rest is still zero)
			entriesPool.Put(ep)
		}
	}()
	entries := (*ep)[:0]
	ignored := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				if !auditspan.IsAudit(span) {
					ignored++
					continue
				}
				if cap(entries) == 0 {
					entries = make([]entry.Entry, 0, td.SpanCount())
				}
				entries = append(entries, auditspan.FromSpan(rs.Resource(), span, e.opts))
			}
		}
	}
	*ep = entries
	e.tel.spansIgnored(ctx, ignored)
	if len(entries) == 0 {
		return nil
	}
	mismatched := 0
	switch sender, ok := e.sender.identify(ctx); {
	case ok:
		mismatched = e.sender.setSenders(entries, sender, e.opts)
	case e.cfg.RequireAuthenticatedSource:
		e.tel.unauthenticated(ctx, len(entries))
		return errUnauthenticated
	}
	if err := e.rec.Append(entries); err != nil {
		var refused *recorder.RefusedError
		if !errors.As(err, &refused) {
			return err
		}
		if !refused.Chained {
			e.tel.refused(ctx, len(entries))
		}
		return unavailable(refused.Msg)
	}
	e.tel.entriesAccepted(ctx, entries, mismatched)
	if a := e.approvals.Load(); a != nil {
		a.svc.Observe(entries) // the runs' timelines the reviewers see
	}
	return nil
}

// unavailable is a retryable refusal: gRPC UNAVAILABLE with a retry delay,
// which the OTLP receiver answers over HTTP with 503 and Retry-After.
func unavailable(msg string) error {
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// shutdown stops the recorder (it seals the open batch and waits for the
// store, within a grace).
func (e *auditExporter) shutdown(ctx context.Context) error {
	_ = e.tel.registration.Unregister()
	if e.tel.approvalsPending != nil {
		_ = e.tel.approvalsPending.Unregister()
	}
	e.shutdownApprovals(ctx)
	err := e.stopRecorder(ctx)
	e.shutdownTimestamps(ctx) // after the recorder's last checkpoint
	e.shutdownWitnesses(ctx)
	if err != nil {
		return fmt.Errorf("agentaudit exporter: %w", err)
	}
	return nil
}

// stopRecorder writes the stop marker, once, and shuts the recorder down:
// a clean shutdown records the clean stop the next start's marker reports,
// so the stop marker must come first for the trail to agree with it.
func (e *auditExporter) stopRecorder(ctx context.Context) error {
	if e.started.Swap(false) {
		e.mark(actionRecorderStop, "")
	}
	return e.rec.Shutdown(ctx)
}

// storeID names the store the configuration points at, for the recorder's
// head marker: the file store's absolute directory, or the S3 endpoint,
// bucket and prefix.
func storeID(cfg *Config) string {
	if cfg.File != nil {
		if abs, err := filepath.Abs(cfg.File.Directory); err == nil {
			return "file:" + abs
		}
		return "file:" + cfg.File.Directory
	}
	if cfg.S3 != nil {
		return "s3:" + cfg.S3.Endpoint + "/" + cfg.S3.Bucket + "/" + strings.Trim(cfg.S3.Prefix, "/")
	}
	return ""
}
