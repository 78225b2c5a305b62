package intakeextension // import "github.com/agentaudit/agentaudit/extension/intakeextension"

import (
	"errors"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Config defines the configuration of the agentaudit_intake extension.
type Config struct {
	// MaxInFlight is how many requests, HTTP and gRPC together, the
	// receivers that use this extension take at once; one more is refused
	// with a retryable error. Default: 8.
	MaxInFlight int `mapstructure:"max_in_flight"`

	// MaxJSONDepth is the deepest nesting of objects and arrays an OTLP/JSON
	// body may have; a deeper body is refused with HTTP 400. An attribute
	// value nested n levels deep takes 4n+10 levels (3n+10 for arrays).
	// Default: 512.
	MaxJSONDepth int `mapstructure:"max_json_depth"`

	// MaxRequestDuration is how long a request may hold its place: a client
	// that sends slowly, or opens a gRPC call and stalls, would otherwise
	// keep it for good. Past it, an HTTP body's read fails and a gRPC
	// call's context ends (DEADLINE_EXCEEDED). Default: 30s, which lets a
	// 4 MiB request arrive at 140 KB/s.
	MaxRequestDuration time.Duration `mapstructure:"max_request_duration"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and reports every problem at once.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.MaxInFlight <= 0 {
		errs = append(errs, errors.New(`"max_in_flight" must be positive`))
	}
	if cfg.MaxJSONDepth <= 0 {
		errs = append(errs, errors.New(`"max_json_depth" must be positive`))
	}
	if cfg.MaxRequestDuration <= 0 {
		errs = append(errs, errors.New(`"max_request_duration" must be positive`))
	}
	return errors.Join(errs...)
}
