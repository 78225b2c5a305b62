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
// MaxBytes, when it has been open for MaxAge, or before an entry arrives on
// a later UTC day than the one the batch was opened on (so that a batch lies
// in one dt= partition).
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

// Add appends e, whose estimated encoded size is size, at time now. It
// returns the batches this sealed, oldest first: the open batch when e
// belongs to a later UTC day, and the batch holding e when e filled it.
func (b *Batcher) Add(e entry.Entry, size int, now time.Time) []*Batch {
	var sealed []*Batch
	if b.open != nil && utcDay(now) != utcDay(b.open.Opened) {
		sealed = append(sealed, b.open)
		b.open = nil
	}
	if b.open == nil {
		b.open = &Batch{Opened: now, Entries: make([]entry.Entry, 0, min(b.limits.MaxEntries, 1024))}
	}
	b.open.Entries = append(b.open.Entries, e)
	b.open.Bytes += size
	if len(b.open.Entries) >= b.limits.MaxEntries || (b.limits.MaxBytes > 0 && b.open.Bytes >= b.limits.MaxBytes) {
		sealed = append(sealed, b.open)
		b.open = nil
	}
	return sealed
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
