package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Config defines the configuration of the agentaudit exporter.
type Config struct {
	// ChainID names this collector's hash chain. Every replica writing to
	// the same store needs its own. Default: the host name.
	ChainID string `mapstructure:"chain_id"`

	// MaxValueBytes limits one attribute value; longer values are truncated
	// and the SHA-256 of the full value is recorded. Default: 64 KiB.
	MaxValueBytes int `mapstructure:"max_value_bytes"`

	// Batch controls when the open batch is sealed into a Parquet object.
	Batch BatchConfig `mapstructure:"batch"`

	// File selects the local filesystem store.
	File *FileConfig `mapstructure:"file"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// BatchConfig bounds a batch. The first limit reached seals it.
type BatchConfig struct {
	MaxEntries int           `mapstructure:"max_entries"`
	MaxBytes   int           `mapstructure:"max_bytes"`
	MaxAge     time.Duration `mapstructure:"max_age"`

	_ struct{}
}

// FileConfig configures the local filesystem store.
type FileConfig struct {
	// Directory is the root of the trail: batches are written below it as
	// dt=YYYY-MM-DD/<chain_id>-<first seq>.parquet.
	Directory string `mapstructure:"directory"`

	_ struct{}
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and reports every problem at once.
func (cfg *Config) Validate() error {
	var errs []error
	if !store.ValidChainID(cfg.ChainID) {
		errs = append(errs, fmt.Errorf("\"chain_id\" %q is invalid: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'", cfg.ChainID))
	}
	if cfg.MaxValueBytes <= 0 {
		errs = append(errs, errors.New("\"max_value_bytes\" must be positive"))
	}
	if cfg.File == nil {
		errs = append(errs, errors.New("no store is configured: set \"file\""))
	}
	return errors.Join(errs...)
}

// Validate checks the batch limits.
func (cfg *BatchConfig) Validate() error {
	var errs []error
	if cfg.MaxEntries <= 0 {
		errs = append(errs, errors.New("\"max_entries\" must be positive"))
	}
	if cfg.MaxBytes <= 0 {
		errs = append(errs, errors.New("\"max_bytes\" must be positive"))
	}
	if cfg.MaxAge <= 0 {
		errs = append(errs, errors.New("\"max_age\" must be positive"))
	}
	return errors.Join(errs...)
}

// Validate checks the file store settings.
func (cfg *FileConfig) Validate() error {
	if cfg.Directory == "" {
		return errors.New("\"directory\" must not be empty")
	}
	return nil
}
