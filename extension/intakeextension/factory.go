package intakeextension // import "github.com/agentaudit/agentaudit/extension/intakeextension"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"

	"github.com/agentaudit/agentaudit/extension/intakeextension/internal/metadata"
)

// NewFactory returns the factory of the agentaudit_intake extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, create, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{MaxInFlight: 8, MaxJSONDepth: 512, MaxRequestDuration: 30 * time.Second}
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newIntake(cfg.(*Config), set.TelemetrySettings)
}
