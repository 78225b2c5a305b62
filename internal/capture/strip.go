package capture

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

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
	keys, except globs
}

// NewStripper returns the stripper of a valid cfg; the zero StripConfig
// (no strip section) is DefaultStripConfig.
func NewStripper(cfg StripConfig) *Stripper {
	if len(cfg.Keys) == 0 && len(cfg.Except) == 0 {
		cfg = DefaultStripConfig()
	}
	return &Stripper{keys: compileGlobs(cfg.Keys), except: compileGlobs(cfg.Except)}
}

// Strip removes from span's attributes every key the configuration strips.
func (s *Stripper) Strip(span ptrace.Span) {
	span.Attributes().RemoveIf(func(k string, _ pcommon.Value) bool { return s.strips(k) })
}

// held holds a span's attributes while CopyStripped copies the rest of it.
var held = sync.Pool{New: func() any { m := pcommon.NewMap(); return &m }}

// CopyStripped copies span to dst as Strip would leave a copy, without
// copying the values it strips: span is copied without its attributes
// (moved aside meanwhile, then back), then the attributes Strip keeps, one
// by one. span is left as it was.
func (s *Stripper) CopyStripped(span, dst ptrace.Span) {
	attrs := span.Attributes()
	h := held.Get().(*pcommon.Map)
	attrs.MoveTo(*h)
	span.CopyTo(dst)
	h.MoveTo(attrs)
	held.Put(h)
	out := dst.Attributes()
	out.EnsureCapacity(attrs.Len())
	twice := false
	attrs.Range(func(k string, v pcommon.Value) bool {
		if s.strips(k) {
			return true
		}
		n := out.Len()
		v.CopyTo(out.PutEmpty(k))
		twice = out.Len() == n
		return !twice
	})
	if twice {
		// A key sent twice, which PutEmpty would merge: copied as sent,
		// then stripped.
		span.CopyTo(dst)
		s.Strip(dst)
	}
}

func (s *Stripper) strips(k string) bool {
	return s.keys.match(k) && !s.except.match(k)
}

// globs match keys as matchGlob does, each compiled once: a glob without
// wildcards is compared, one ending in a run of '*' after a plain prefix
// (the default's "audit.*") is a prefix test, and only the others go
// through path.Match for each key. When every glob is compared or a
// prefix test, a key whose first byte starts none of them matches none
// (first). Monitoring strips every audit span.
type globs struct {
	list  []glob
	any   bool      // a glob may match a key of any first byte
	first [4]uint64 // the first bytes of the literals, when !any
}

type glob struct {
	kind    globKind
	literal string // the whole glob (globExact), the part before the stars (globPrefix)
	pattern string // the glob as configured (globPattern)
}

type globKind uint8

const (
	globExact globKind = iota
	globPrefix
	globPattern
)

func compileGlobs(patterns []string) globs {
	var gs globs
	for _, p := range patterns {
		stem := strings.TrimRight(p, "*")
		g := glob{kind: globPrefix, literal: stem}
		switch {
		case strings.ContainsAny(stem, plainExcluded):
			g = glob{kind: globPattern, pattern: p}
		case stem == p:
			g.kind = globExact
		}
		gs.list = append(gs.list, g)
		if g.kind == globPattern || g.literal == "" {
			gs.any = true
		} else {
			gs.first[g.literal[0]>>6] |= 1 << (g.literal[0] & 63)
		}
	}
	return gs
}

// plainExcluded are the bytes that keep a glob from the fast paths:
// path.Match's special characters, its separator, and the byte matchGlob
// puts in a key's separators' place.
const plainExcluded = "*?[\\/\x00"

func (gs *globs) match(k string) bool {
	if !gs.any && (k == "" || gs.first[k[0]>>6]&(1<<(k[0]&63)) == 0) {
		return false
	}
	for _, g := range gs.list {
		switch g.kind {
		case globExact:
			if k == g.literal {
				return true
			}
		case globPrefix:
			if strings.HasPrefix(k, g.literal) {
				return true
			}
		default:
			if matchGlob(g.pattern, k) {
				return true
			}
		}
	}
	return false
}

// matchGlob reports whether key k matches glob g: equal to it, or matched
// by path.Match with every '/' of k counted as an ordinary character.
func matchGlob(g, k string) bool {
	if g == k {
		return true
	}
	// path.Match treats '/' specially; attribute keys rarely hold one,
	// and a '*' should match it too.
	ok, _ := path.Match(g, strings.ReplaceAll(k, "/", "\x00"))
	return ok
}
