package checkpoint

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/store"
)

// Keys is a set of verifier keys in the note format ("name+hash+key").
type Keys struct {
	// Given are keys the auditor gave (--key): trusted for every chain.
	Given []string
	// Published are keys found beside the trail, by chain id: trusted on
	// first use, for their own chain only.
	Published map[string][]string
}

// For returns the keys a checkpoint of chainID may be signed with.
func (k Keys) For(chainID string) []string {
	if len(k.Given) > 0 {
		return k.Given
	}
	return k.Published[chainID]
}

// All returns every key, given and published.
func (k Keys) All() []string {
	all := slices.Clone(k.Given)
	for _, ks := range k.Published {
		all = append(all, ks...)
	}
	return all
}

// Empty reports whether there is no key at all.
func (k Keys) Empty() bool { return len(k.Given) == 0 && len(k.Published) == 0 }

// ParseKeys reads verifier keys, one per line; blank lines and lines
// starting with # are skipped. A line that is not a key wraps ErrBadKey.
func ParseKeys(text string) ([]string, error) {
	var keys []string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := note.NewVerifier(line); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrBadKey, line, err)
		}
		keys = append(keys, line)
	}
	return keys, nil
}

// KeyID is the "name+hash" part of a verifier key, which names it.
func KeyID(vkey string) string {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) < 2 {
		return vkey
	}
	return parts[0] + "+" + parts[1]
}

// TOFUNote is the report note for a published key trusted on first use.
func TOFUNote(vkey string) string {
	return fmt.Sprintf("trusting the published key %s on first use: record it, better obtain it from the operator, and pass it with --key", KeyID(vkey))
}

// PublishedKeys reads the verifier keys published beside the trail
// (store.VerifierKeyKey), by chain id. Files that are not keys are
// returned as problems, not errors: they are the trail's content.
func PublishedKeys(ctx context.Context, src store.Reader) (keys map[string][]string, problems []string, err error) {
	names, err := src.List(ctx, store.KeysPrefix)
	if err != nil {
		return nil, nil, err
	}
	keys = map[string][]string{}
	for _, name := range names {
		if !store.IsVerifierKeyKey(name) {
			continue
		}
		chainID, _, err := store.ParseVerifierKeyKey(name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: not named keys/<chain_id>-<key hash>.vkey: ignored", name))
			continue
		}
		data, err := src.Get(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		vkey := strings.TrimSpace(string(data))
		if _, err := note.NewVerifier(vkey); err != nil {
			problems = append(problems, fmt.Sprintf("%s: not a verifier key (%v): ignored", name, err))
			continue
		}
		if !slices.Contains(keys[chainID], vkey) {
			keys[chainID] = append(keys[chainID], vkey)
		}
	}
	return keys, problems, nil
}
