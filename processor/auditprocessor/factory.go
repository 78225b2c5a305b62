package auditprocessor // import "github.com/agentaudit/agentaudit/processor/auditprocessor"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/processor/auditprocessor/internal/metadata"
)

// NewFactory returns the factory of the agentaudit processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithTraces(createTraces, metadata.TracesStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		Mode:          modeAudit,
		MaxValueBytes: entry.DefaultMaxValueBytes,
		MaxEntryBytes: entry.DefaultMaxEntryBytes,
	}
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	p, err := newAuditProcessor(cfg.(*Config), set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}))
}
