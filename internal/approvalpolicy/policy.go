// Package approvalpolicy holds the approval service's policies
// (docs/APPROVALS.md, "Policies"): which actions need a person's approval
// and which a named policy approves at once, matched by glob on the target
// system, the target resource and the tool.
//
// The service decides with it, and the verifier (internal/verify) checks
// the trail with it: both read the policies in force from the same
// canonical JSON, the proposed_value of an agentaudit.approval_policy
// entry. Like package entry, it imports no OpenTelemetry package.
package approvalpolicy // import "github.com/agentaudit/agentaudit/internal/approvalpolicy"

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Who decides a request a policy matches.
const (
	DecidePerson = "person" // a reviewer
	DecideAuto   = "auto"   // the service, at once, with the policy's name as the approver
)

// Policy names the actions that need approval and who decides them. It
// matches an action when each of its lists that is given (not empty) has a
// glob matching: Systems the target system, Resources the target resource,
// Tools the tool name. A policy with no list matches every action.
//
// The field order is the key order of the canonical JSON: do not reorder.
type Policy struct {
	Name      string   `mapstructure:"name" json:"name"`
	Decide    string   `mapstructure:"decide" json:"decide"`
	Systems   []string `mapstructure:"systems" json:"systems"`
	Resources []string `mapstructure:"resources" json:"resources"`
	Tools     []string `mapstructure:"tools" json:"tools"`
}

// ErrInvalid is wrapped by every error Validate, ValidateAll and Parse
// return for a policy that is not well formed; check with errors.Is.
var ErrInvalid = errors.New("invalid approval policy")

// Validate reports every problem of p at once: an empty name, a decide
// other than DecidePerson or DecideAuto, a glob ValidateGlob refuses.
func (p Policy) Validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, fmt.Errorf("%w: \"name\" must not be empty", ErrInvalid))
	} else if !utf8.ValidString(p.Name) {
		errs = append(errs, fmt.Errorf("%w: \"name\" %q is not valid UTF-8", ErrInvalid, p.Name))
	}
	if p.Decide != DecidePerson && p.Decide != DecideAuto {
		errs = append(errs, fmt.Errorf("%w: policy %q: \"decide\" must be %q or %q, not %q", ErrInvalid, p.Name, DecidePerson, DecideAuto, p.Decide))
	}
	for _, l := range [...]struct {
		key   string
		globs []string
	}{{"systems", p.Systems}, {"resources", p.Resources}, {"tools", p.Tools}} {
		for i, g := range l.globs {
			if err := ValidateGlob(g); err != nil {
				errs = append(errs, fmt.Errorf("%w: policy %q: \"%s[%d]\": %w", ErrInvalid, p.Name, l.key, i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ValidateAll validates each policy and reports, with their problems, two
// policies of the same name (the name is what a decision records).
func ValidateAll(ps []Policy) error {
	var errs []error
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("\"policies[%d]\": %w", i, err))
		}
		if p.Name != "" && seen[p.Name] {
			errs = append(errs, fmt.Errorf("%w: \"policies[%d]\": name %q is used twice", ErrInvalid, i, p.Name))
		}
		seen[p.Name] = true
	}
	return errors.Join(errs...)
}

// Matches reports whether p matches an action on system and resource
// through tool (see Policy).
func (p Policy) Matches(system, resource, tool string) bool {
	return matchesAny(p.Systems, system) && matchesAny(p.Resources, resource) && matchesAny(p.Tools, tool)
}

// matchesAny reports whether a glob of globs matches s; no globs match
// everything (the list is not given).
func matchesAny(globs []string, s string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if Match(g, s) {
			return true
		}
	}
	return false
}

// First returns the first policy of ps that matches an action on system
// and resource through tool, and false when none does (the action then
// needs a person, docs/APPROVALS.md says, but is not covered: a write on
// it needs no approval).
func First(ps []Policy, system, resource, tool string) (Policy, bool) {
	for _, p := range ps {
		if p.Matches(system, resource, tool) {
			return p, true
		}
	}
	return Policy{}, false
}

// Canonical returns ps as the canonical JSON an agentaudit.approval_policy
// entry holds in proposed_value: an array of objects with the keys name,
// decide, systems, resources and tools in that order, every list an array
// ([] when not given), no white space, strings as encoding/json writes
// them without HTML escaping. No policies give "[]".
func Canonical(ps []Policy) string {
	out := make([]Policy, len(ps))
	for i, p := range ps {
		out[i] = Policy{Name: p.Name, Decide: p.Decide, Systems: nonNil(p.Systems), Resources: nonNil(p.Resources), Tools: nonNil(p.Tools)}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		// Strings and slices of strings always encode.
		panic("approvalpolicy: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// Parse reads policies back from their canonical JSON (and from any JSON
// of the same shape: key order and spacing are not checked; a list may be
// null). Lists not given are nil. A key other than the five, a value of another type, text after
// the array or a policy ValidateAll refuses is an error wrapping
// ErrInvalid.
func Parse(s string) ([]Policy, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var ps []Policy
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if ps == nil {
		return nil, fmt.Errorf("%w: not an array", ErrInvalid)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%w: text after the array", ErrInvalid)
	}
	if err := ValidateAll(ps); err != nil {
		return nil, err
	}
	for i := range ps { // as configured: a list not given is nil
		p := &ps[i]
		p.Systems, p.Resources, p.Tools = nilIfEmpty(p.Systems), nilIfEmpty(p.Resources), nilIfEmpty(p.Tools)
	}
	return ps, nil
}
