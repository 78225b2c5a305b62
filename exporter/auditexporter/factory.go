package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"context"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/agentaudit/agentaudit/exporter/auditexporter/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/entry"
)

const (
	defaultMaxEntries = 10_000
	defaultMaxBytes   = 16 << 20
	defaultMaxAge     = 10 * time.Second

	defaultSpoolDirectory = "./audit-spool"
	defaultSpoolMaxBytes  = 1 << 30
	defaultCommitDelay    = time.Millisecond // see spool.commit_delay in the README and docs/PERFORMANCE.md
)

// NewFactory returns the factory of the agentaudit exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithTraces(createTraces, metadata.TracesStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		ChainID:       defaultChainID(),
		MaxValueBytes: entry.DefaultMaxValueBytes,
		MaxEntryBytes: entry.DefaultMaxEntryBytes,
		Spool:         SpoolConfig{Directory: defaultSpoolDirectory, MaxBytes: defaultSpoolMaxBytes, CommitDelay: defaultCommitDelay},
		Batch: BatchConfig{
			MaxEntries: defaultMaxEntries,
			MaxBytes:   defaultMaxBytes,
			MaxAge:     defaultMaxAge,
		},
		Approvals: configoptional.Default(defaultApprovalsConfig()),
	}
}

// defaultChainID is the host name, with characters that cannot appear in an
// object key replaced by '_'.
func defaultChainID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "agentaudit"
	}
	id := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, host)
	if len(id) > 128 {
		id = id[:128]
	}
	return id
}

func createTraces(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
	c := cfg.(*Config)
	exp, err := newAuditExporter(c, set, openStore)
	if err != nil {
		return nil, err
	}
	return exp.asTraces(ctx, set)
}

// asTraces wraps e as an exporter.Traces. No queue and no retry: the chain
// fixes the order of entries when they are received, and a batch that
// cannot be stored is retried by the exporter itself with the same bytes.
func (e *auditExporter) asTraces(ctx context.Context, set exporter.Settings) (exporter.Traces, error) {
	return exporterhelper.NewTraces(ctx, set, e.cfg,
		e.consumeTraces,
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}),
		exporterhelper.WithStart(e.start),
		exporterhelper.WithShutdown(e.shutdown),
	)
}
