package capture

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// StripConfig says which attributes the monitoring side removes from the
// spans that go to the audit trail (hand-tagged or captured): those
// matching a glob of Keys and none of Except. Both empty (no strip
// section) means DefaultStripConfig.
type StripConfig struct {
	Keys   []string `mapstructure:"keys"`
	Except []string `mapstructure:"except"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// DefaultStripKeys: every audit.* key, and what a captured tool call was
// given and returned. A privacy reviewer's default: the values read and
// written, the reasoning, the approver (a person), the target resource (a
// customer's record), the pipeline's findings (which hold lengths and
// SHA-256 of values) and unknown audit.* keys stay in the audit trail.
var DefaultStripKeys = append([]string{"audit.*"}, PayloadKeys...)

// DefaultStripExcept: what monitoring keeps of an audit span's audit.*
// keys, to count, group and alert: the action, the run, the system called
// and the outcome.
var DefaultStripExcept = []string{"audit.action.type", "audit.execution.id", "audit.target.system", "audit.result"}

// DefaultStripConfig is the default strip list.
func DefaultStripConfig() StripConfig {
	return StripConfig{Keys: slices.Clone(DefaultStripKeys), Except: slices.Clone(DefaultStripExcept)}
}

// Validate checks the globs.
func (c *StripConfig) Validate() error {
	var errs []error
	for _, l := range []struct {
		key   string
		globs []string
	}{{"keys", c.Keys}, {"except", c.Except}} {
		for _, g := range l.globs {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				errs = append(errs, fmt.Errorf("%q: %q is not a glob", l.key, g))
			}
		}
	}
	return errors.Join(errs...)
}

// Stripper removes the configured keys. The zero value strips nothing.
type Stripper struct {
	keys, except []string
}

// NewStripper returns the stripper of a valid cfg; the zero StripConfig
// (no strip section) is DefaultStripConfig.
func NewStripper(cfg StripConfig) *Stripper {
	if len(cfg.Keys) == 0 && len(cfg.Except) == 0 {
		cfg = DefaultStripConfig()
	}
	return &Stripper{keys: slices.Clone(cfg.Keys), except: slices.Clone(cfg.Except)}
}

// Strip removes from span's attributes every key the configuration strips.
func (s *Stripper) Strip(span ptrace.Span) {
	span.Attributes().RemoveIf(func(k string, _ pcommon.Value) bool { return s.strips(k) })
}

func (s *Stripper) strips(k string) bool {
	return matchAny(s.keys, k) && !matchAny(s.except, k)
}

func matchAny(globs []string, k string) bool {
	for _, g := range globs {
		if g == k {
			return true
		}
		// path.Match treats '/' specially; attribute keys rarely hold one,
		// and a '*' should match it too.
		if ok, _ := path.Match(g, strings.ReplaceAll(k, "/", "\x00")); ok {
			return true
		}
	}
	return false
}
