package auditsplitconnector // import "github.com/agentaudit/agentaudit/connector/auditsplitconnector"

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/agentaudit/agentaudit/connector/auditsplitconnector/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// NewFactory returns the factory of the agentaudit_split connector.
func NewFactory() connector.Factory {
	return connector.NewFactory(
		metadata.Type,
		createDefaultConfig,
		connector.WithTracesToTraces(createTracesToTraces, metadata.TracesToTracesStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{MaxValueBytes: entry.DefaultMaxValueBytes, MaxEntryBytes: entry.DefaultMaxEntryBytes}
}

func createTracesToTraces(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Traces) (connector.Traces, error) {
	c, err := newSplitConnector(cfg.(*Config), set.TelemetrySettings, next)
	if err != nil {
		// The collector does not say which component failed.
		return nil, fmt.Errorf("connectors::%s: %w", set.ID, err)
	}
	return c, nil
}
