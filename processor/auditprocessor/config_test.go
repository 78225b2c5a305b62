package auditprocessor

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agentaudit/agentaudit/processor/auditprocessor/internal/metadata"
)

func TestUnmarshalConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	tests := []struct {
		id       component.ID
		expected component.Config
	}{
		{
			id:       component.NewID(metadata.Type),
			expected: &Config{Mode: "audit", MaxValueBytes: 65536, MaxEntryBytes: 1 << 20},
		},
		{
			id:       component.NewIDWithName(metadata.Type, "audit"),
			expected: &Config{Mode: "audit", MaxValueBytes: 1024, MaxEntryBytes: 256 << 10},
		},
		{
			id:       component.NewIDWithName(metadata.Type, "monitoring"),
			expected: &Config{Mode: "monitoring", MaxValueBytes: 65536, MaxEntryBytes: 1 << 20},
		},
		{
			id:       component.NewIDWithName(metadata.Type, "drop"),
			expected: &Config{Mode: "monitoring", MaxValueBytes: 65536, MaxEntryBytes: 1 << 20, Action: "drop"},
		},
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
		{name: "bad_mode", errorMsg: `"mode" "recording" is invalid: use "audit" or "monitoring"`},
		{name: "empty_mode", errorMsg: `"mode" "" is invalid: use "audit" or "monitoring"`},
		{name: "bad_action", errorMsg: `"action" "delete" is invalid: use "strip" or "drop"`},
		{name: "action_in_audit_mode", errorMsg: `"action" applies only to mode "monitoring"`},
		{name: "zero_max_value_bytes", errorMsg: `"max_value_bytes" must be positive`},
		{name: "negative_max_value_bytes", errorMsg: `"max_value_bytes" must be positive`},
		{name: "zero_max_entry_bytes", errorMsg: `"max_entry_bytes" 0 is below the minimum 65536`},
		{name: "entry_below_value", errorMsg: `"max_entry_bytes" 131072 must be at least "max_value_bytes" 262144`},
		{name: "everything_wrong", errorMsg: `"action" "delete" is invalid: use "strip" or "drop"` + "\n" +
			`"action" applies only to mode "monitoring"` + "\n" +
			`"max_value_bytes" must be positive` + "\n" +
			`"max_entry_bytes" -1 is below the minimum 65536`},
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
	assert.Equal(t, &Config{Mode: "audit", MaxValueBytes: 64 << 10, MaxEntryBytes: 1 << 20}, cfg)
}
