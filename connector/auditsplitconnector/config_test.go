package auditsplitconnector

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/pipeline"

	"github.com/agentaudit/agentaudit/connector/auditsplitconnector/internal/metadata"
	"github.com/agentaudit/agentaudit/internal/capture"
)

func traces(name string) pipeline.ID { return pipeline.NewIDWithName(pipeline.SignalTraces, name) }

func TestUnmarshalConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	tests := []struct {
		id       component.ID
		expected component.Config
	}{
		{
			id: component.NewID(metadata.Type),
			expected: &Config{
				AuditPipelines:      []pipeline.ID{traces("audit")},
				MonitoringPipelines: []pipeline.ID{traces("monitoring")},
				MaxValueBytes:       65536,
				MaxEntryBytes:       1 << 20,
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "drop"),
			expected: &Config{
				AuditPipelines:      []pipeline.ID{traces("audit"), traces("audit2")},
				MonitoringPipelines: []pipeline.ID{traces("monitoring")},
				Action:              "drop",
				MaxValueBytes:       1024,
				MaxEntryBytes:       256 << 10,
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "capture"),
			expected: &Config{
				AuditPipelines:      []pipeline.ID{traces("audit")},
				MonitoringPipelines: []pipeline.ID{traces("monitoring")},
				MaxValueBytes:       65536,
				MaxEntryBytes:       1 << 20,
				Capture: capture.Config{Conventions: []string{"genai", "openinference", "vercel_ai"},
					Tools: []capture.ToolRule{{Match: "crm_update_*", Action: "write"}, {Match: "search_*", Action: "ignore"}}},
				Strip: capture.StripConfig{Keys: []string{"audit.*", "gen_ai.tool.call.*"}, Except: []string{"audit.action.type"}},
			},
		},
		{
			id:       component.NewIDWithName(metadata.Type, "audit_only"),
			expected: &Config{AuditPipelines: []pipeline.ID{traces("audit")}, MaxValueBytes: 65536, MaxEntryBytes: 1 << 20},
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
		{name: "no_audit", errorMsg: `"audit_pipelines" must list at least one traces pipeline`},
		{name: "both", errorMsg: `"traces/x" is in both "audit_pipelines" and "monitoring_pipelines": a pipeline gets either the audit trail or monitoring telemetry`},
		{name: "twice", errorMsg: `"audit_pipelines" lists "traces/audit" twice`},
		{name: "metrics", errorMsg: `"audit_pipelines" lists "metrics/audit": only traces pipelines can be fed`},
		{name: "bad_action", errorMsg: `"action" "delete" is invalid: use "strip" or "drop"`},
		{name: "zero_max_value_bytes", errorMsg: `"max_value_bytes" must be positive`},
		{name: "zero_max_entry_bytes", errorMsg: `"max_entry_bytes" 0 is below the minimum 65536`},
		{name: "entry_below_value", errorMsg: `"max_entry_bytes" 131072 must be at least "max_value_bytes" 262144`},
		{name: "bad_capture", errorMsg: `strip: "keys": "audit.[" is not a glob` + "\n" +
			`capture: "conventions": "langsmith" is not a convention: use genai, openinference, vercel_ai` + "\n" +
			`"tools" rule 1: "match" "crm_[" is not a glob: syntax error in pattern` + "\n" +
			`"tools" rule 1: "action" "delete": use ignore or one of start, read, write, request_approval, approve, reject, error, end, tool_call`},
		{name: "everything_wrong", errorMsg: `"audit_pipelines" must list at least one traces pipeline` + "\n" +
			`"monitoring_pipelines" lists "logs/m": only traces pipelines can be fed` + "\n" +
			`"action" "keep" is invalid: use "strip" or "drop"` + "\n" +
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
	assert.Equal(t, &Config{MaxValueBytes: 64 << 10, MaxEntryBytes: 1 << 20}, cfg)
	// The default lists no pipeline: the operator must say which get the
	// audit trail.
	assert.EqualError(t, confmap.Validate(cfg), `"audit_pipelines" must list at least one traces pipeline`)
}
