// Package batch cuts a stream of chained entries into batches by count,
// bytes, age and UTC day. Each batch becomes one immutable Parquet object.
//
// The batcher only groups: the chain package has already fixed every
// entry's seq and hash, and encoding and storing happen elsewhere.
package batch // import "github.com/agentaudit/agentaudit/internal/batch"

import (
	"time"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Limits bound a batch. A batch is sealed when it reaches MaxEntries or
// MaxBytes, when it has been open for MaxAge, or when a later UTC day begins
// than the one the batch was opened on (so that a batch lies in one dt=
// partition).
type Limits struct {
	MaxEntries int
	MaxBytes   int
	MaxAge     time.Duration
}

// Batch is a run of consecutive entries of one chain.
type Batch struct {
	// Opened is when the first entry was added; its UTC date names the
	// batch's dt= partition.
	Opened  time.Time
	Entries []entry.Entry
	// Bytes is the sum of the sizes given to Add.
	Bytes int
}

// Batcher accumulates entries into the open batch. It is not safe for
// concurrent use; the caller serializes it together with the chain.
type Batcher struct {
	limits Limits
	open   *Batch
}

// New returns a Batcher with the given limits. Zero limits are treated as
// "no limit" for MaxBytes and MaxAge and as 1 for MaxEntries.
func New(limits Limits) *Batcher {
	if limits.MaxEntries < 1 {
		limits.MaxEntries = 1
	}
	return &Batcher{limits: limits}
}

// maxPrealloc bounds the entries a new batch has room for before it grows.
const maxPrealloc = 1 << 14

// Add appends e, whose estimated encoded size is size, at time now, and
// returns the batch when e filled it (nil otherwise). Callers first seal the
// open batch when Due(now) says so, which keeps a batch within one UTC day.
func (b *Batcher) Add(e entry.Entry, size int, now time.Time) *Batch {
	if b.open == nil {
		// Room for a full batch at once (up to a bound): growing the slice
		// entry by entry copies each entry several times under load.
		b.open = &Batch{Opened: now, Entries: make([]entry.Entry, 0, min(b.limits.MaxEntries, maxPrealloc))}
	}
	b.open.Entries = append(b.open.Entries, e)
	b.open.Bytes += size
	if len(b.open.Entries) < b.limits.MaxEntries && (b.limits.MaxBytes <= 0 || b.open.Bytes < b.limits.MaxBytes) {
		return nil
	}
	full := b.open
	b.open = nil
	return full
}

// Due reports whether the open batch has reached MaxAge or been overtaken by
// a new UTC day at time now.
func (b *Batcher) Due(now time.Time) bool {
	if b.open == nil {
		return false
	}
	if utcDay(now) != utcDay(b.open.Opened) {
		return true
	}
	return b.limits.MaxAge > 0 && now.Sub(b.open.Opened) >= b.limits.MaxAge
}

// Flush seals and returns the open batch, or nil when none is open.
func (b *Batcher) Flush() *Batch {
	open := b.open
	b.open = nil
	return open
}

// Len returns the number of entries in the open batch.
func (b *Batcher) Len() int {
	if b.open == nil {
		return 0
	}
	return len(b.open.Entries)
}

func utcDay(t time.Time) int64 {
	return t.UTC().Unix() / 86400
}
