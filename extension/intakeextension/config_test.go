package intakeextension

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agentaudit/agentaudit/extension/intakeextension/internal/metadata"
)

func TestUnmarshalConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	tests := []struct {
		id       component.ID
		expected component.Config
	}{
		{id: component.NewID(metadata.Type), expected: &Config{MaxInFlight: 8, MaxJSONDepth: 512, MaxRequestDuration: 30 * time.Second}},
		{id: component.NewIDWithName(metadata.Type, "custom"), expected: &Config{MaxInFlight: 2, MaxJSONDepth: 64, MaxRequestDuration: 5 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			assert.NoError(t, confmap.Validate(cfg))
			assert.Equal(t, tt.expected, cfg)
		})
	}
}

func TestUnmarshalInvalidConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "invalid_configs.yaml"))
	require.NoError(t, err)
	tests := []struct {
		name     string
		errorMsg string
	}{
		{name: "zero_max_in_flight", errorMsg: `"max_in_flight" must be positive`},
		{name: "negative_max_json_depth", errorMsg: `"max_json_depth" must be positive`},
		{name: "zero_max_request_duration", errorMsg: `"max_request_duration" must be positive`},
		{name: "everything_wrong", errorMsg: `"max_in_flight" must be positive` + "\n" + `"max_json_depth" must be positive` + "\n" + `"max_request_duration" must be positive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, tt.name).String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			assert.EqualError(t, confmap.Validate(cfg), tt.errorMsg)
		})
	}
}

func TestCreateDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig()
	assert.NoError(t, componenttest.CheckConfigStruct(cfg))
	assert.NoError(t, confmap.Validate(cfg))
}
