package auditsplitconnector // import "github.com/agentaudit/agentaudit/connector/auditsplitconnector"

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pipeline"

	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/internal/entry"
)

const (
	actionStrip = "strip"
	actionDrop  = "drop"
)

// Config defines the configuration of the agentaudit_split connector.
type Config struct {
	// AuditPipelines receive the audit-tagged spans, normalized. At least
	// one.
	AuditPipelines []pipeline.ID `mapstructure:"audit_pipelines"`

	// MonitoringPipelines receive every span, audit-tagged ones handled by
	// Action. May be empty: then only audit-tagged spans go on.
	MonitoringPipelines []pipeline.ID `mapstructure:"monitoring_pipelines"`

	// Action is what monitoring pipelines get of an audit-tagged span:
	// "strip" (the default when empty) removes the keys Strip lists, "drop"
	// removes the span.
	Action string `mapstructure:"action"`

	// Strip lists the attributes "strip" removes (globs, with
	// exceptions). Default: every audit.* key but audit.action.type,
	// audit.execution.id, audit.target.system and audit.result, and the
	// payload keys of captured framework spans.
	Strip capture.StripConfig `mapstructure:"strip"`

	// Capture turns the tool and agent spans of agent frameworks into
	// audit spans (internal/capture); off by default.
	Capture capture.Config `mapstructure:"capture"`

	// MaxValueBytes limits one attribute value of an audit-tagged span;
	// longer values are truncated and the SHA-256 of the full value is
	// recorded in audit.validation. Default: 64 KiB. Use the exporter's
	// value.
	MaxValueBytes int `mapstructure:"max_value_bytes"`

	// MaxEntryBytes limits the entry of an audit-tagged span: the sum of
	// its text columns (values, attributes JSON, validation). Past it, the
	// largest values are emptied, each flagged entry_truncated with its
	// length and SHA-256. Default: 1 MiB. Use the exporter's value.
	MaxEntryBytes int `mapstructure:"max_entry_bytes"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and reports every problem at once.
// Whether the pipelines exist is checked when the connector is created,
// where the collector tells which pipelines it feeds.
func (cfg *Config) Validate() error {
	var errs []error
	if len(cfg.AuditPipelines) == 0 {
		errs = append(errs, errors.New(`"audit_pipelines" must list at least one traces pipeline`))
	}
	seen := map[pipeline.ID]string{}
	for _, l := range cfg.pipelineLists() {
		for _, id := range l.ids {
			if id.Signal() != pipeline.SignalTraces {
				errs = append(errs, fmt.Errorf("%q lists %q: only traces pipelines can be fed", l.key, id))
			}
			switch prev, dup := seen[id]; {
			case dup && prev == l.key:
				errs = append(errs, fmt.Errorf("%q lists %q twice", l.key, id))
			case dup:
				errs = append(errs, fmt.Errorf("%q is in both %q and %q: a pipeline gets either the audit trail or monitoring telemetry", id, prev, l.key))
			}
			seen[id] = l.key
		}
	}
	switch cfg.Action {
	case "", actionStrip, actionDrop:
	default:
		errs = append(errs, fmt.Errorf("\"action\" %q is invalid: use %q or %q", cfg.Action, actionStrip, actionDrop))
	}
	if cfg.MaxValueBytes <= 0 {
		errs = append(errs, errors.New("\"max_value_bytes\" must be positive"))
	}
	if cfg.MaxEntryBytes < entry.MinMaxEntryBytes {
		errs = append(errs, fmt.Errorf("\"max_entry_bytes\" %d is below the minimum %d", cfg.MaxEntryBytes, entry.MinMaxEntryBytes))
	} else if cfg.MaxEntryBytes < cfg.MaxValueBytes {
		errs = append(errs, fmt.Errorf("\"max_entry_bytes\" %d must be at least \"max_value_bytes\" %d", cfg.MaxEntryBytes, cfg.MaxValueBytes))
	}
	// Strip and Capture validate themselves: the collector calls the
	// Validate of every nested section.
	return errors.Join(errs...)
}

// pipelineList is one of the config's lists of pipelines, with its key.
type pipelineList struct {
	key string
	ids []pipeline.ID
}

func (cfg *Config) pipelineLists() [2]pipelineList {
	return [2]pipelineList{{"audit_pipelines", cfg.AuditPipelines}, {"monitoring_pipelines", cfg.MonitoringPipelines}}
}
