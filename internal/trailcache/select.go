package trailcache

import (
	"context"
	"slices"
)

// Filter selects rows. Files are selected that may hold a row matching
// every field that is set.
type Filter struct {
	// ExecutionIDs: a row with any of these execution ids. Checked against
	// the min/max statistics and the bloom filter of every row group.
	ExecutionIDs []string
	// Since and Until: a row with Since <= time_unix_nano < Until
	// (nanoseconds since the epoch), either bound optional.
	Since, Until *int64
	// Chains: a row of one of these chains.
	Chains []string
}

// Select returns the files, among those of the last Files (which it calls
// if there was none), that may hold a row matching f, in the order of
// Files. It never leaves out a file that holds one, as long as the file's
// statistics and bloom filters are true to its rows (auditctl verify
// checks the rows, not these): the filters have false positives only. A
// file with a Problem is always selected.
func (t *Trail) Select(ctx context.Context, f Filter) ([]File, error) {
	t.mu.Lock()
	states := t.files
	t.mu.Unlock()
	if states == nil {
		if _, err := t.Files(ctx); err != nil {
			return nil, err
		}
		t.mu.Lock()
		states = t.files
		t.mu.Unlock()
	}
	out := []File{}
	for _, s := range states {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.mayMatch(&f) {
			out = append(out, s.File)
		}
	}
	return out, nil
}

func (s *fileState) mayMatch(f *Filter) bool {
	if s.Problem != "" {
		return true
	}
	if len(f.Chains) > 0 && !slices.Contains(f.Chains, s.ChainID) {
		return false
	}
	if s.HasTimeStats {
		if f.Since != nil && s.MaxTime < *f.Since {
			return false
		}
		if f.Until != nil && s.MinTime >= *f.Until {
			return false
		}
	}
	if len(f.ExecutionIDs) > 0 {
		return slices.ContainsFunc(f.ExecutionIDs, s.index.mayHoldID)
	}
	return true
}
