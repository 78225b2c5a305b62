package auditprocessor // import "github.com/agentaudit/agentaudit/processor/auditprocessor"

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/component"
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

	// Action applies to mode "monitoring" only: "strip" (the default when
	// empty) removes audit.value.* and audit.reasoning from audit-tagged
	// spans, "drop" removes audit-tagged spans.
	Action string `mapstructure:"action"`

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
	return errors.Join(errs...)
}
