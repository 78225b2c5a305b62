package auditprocessor // import "github.com/agentaudit/agentaudit/processor/auditprocessor"

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/component"

	"github.com/agentaudit/agentaudit/internal/capture"
	"github.com/agentaudit/agentaudit/internal/entry"
)

const (
	modeAudit      = "audit"
	modeMonitoring = "monitoring"

	actionStrip = "strip"
	actionDrop  = "drop"
)

// Config defines the configuration of the agentaudit processor.
type Config struct {
	// Mode is "audit" (default): keep and normalize audit-tagged spans only;
	// or "monitoring": keep every span, without the audit payload.
	Mode string `mapstructure:"mode"`

	// MaxValueBytes limits one attribute value in mode "audit"; longer values
	// are truncated and the SHA-256 of the full value is recorded in
	// audit.validation. Default: 64 KiB. Use the exporter's value.
	MaxValueBytes int `mapstructure:"max_value_bytes"`

	// MaxEntryBytes limits one entry in mode "audit": the sum of its text
	// columns (values, attributes JSON, validation). Past it, the largest
	// values are emptied, each flagged entry_truncated with its length and
	// SHA-256. Default: 1 MiB. Use the exporter's value.
	MaxEntryBytes int `mapstructure:"max_entry_bytes"`

	// Action applies to mode "monitoring" only: "strip" (the default when
	// empty) removes the keys Strip lists from audit spans (hand-tagged or
	// captured), "drop" removes audit spans.
	Action string `mapstructure:"action"`

	// Strip lists the attributes "strip" removes (globs, with
	// exceptions), as the connector's. Default: every audit.* key but
	// audit.action.type, audit.execution.id, audit.target.system and
	// audit.result, and the payload keys of captured framework spans.
	Strip capture.StripConfig `mapstructure:"strip"`

	// Capture turns the tool and agent spans of agent frameworks into
	// audit spans (internal/capture), as the connector's; off by default.
	Capture capture.Config `mapstructure:"capture"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and reports every problem at once.
func (cfg *Config) Validate() error {
	var errs []error
	switch cfg.Mode {
	case modeAudit, modeMonitoring:
	default:
		errs = append(errs, fmt.Errorf("\"mode\" %q is invalid: use %q or %q", cfg.Mode, modeAudit, modeMonitoring))
	}
	switch cfg.Action {
	case "", actionStrip, actionDrop:
	default:
		errs = append(errs, fmt.Errorf("\"action\" %q is invalid: use %q or %q", cfg.Action, actionStrip, actionDrop))
	}
	if cfg.Action != "" && cfg.Mode == modeAudit {
		errs = append(errs, fmt.Errorf("\"action\" applies only to mode %q", modeMonitoring))
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
