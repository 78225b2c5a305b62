// Package batch cuts a stream of chained entries into batches by count,
// bytes, age and UTC day. Each batch becomes one immutable Parquet object.
//
// The batcher only groups: the chain package has already fixed every
// entry's seq and hash. A batch holds its entries column by column
// (parquetfile.Columns) from the moment each is chained, so that sealing
// it writes those columns as they are: nothing is encoded and decoded back
// on the way to the file.
package batch // import "github.com/agentaudit/agentaudit/internal/batch"

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
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

// maxBatchBytes caps MaxBytes: a column's buffer holds at most 4 GiB
// (parquetfile.Columns), and a batch's estimated size bounds each column's.
const maxBatchBytes = 1 << 31

// Batch is a run of consecutive entries of one chain, kept column by
// column in pointer-free buffers (nothing for the garbage collector to
// scan), with each entry's hash as the chain computed it.
type Batch struct {
	// Opened is when the first entry was added; its UTC date names the
	// batch's dt= partition.
	Opened time.Time
	// Bytes is the sum of the sizes given to Add.
	Bytes int

	cols *parquetfile.Columns
}

// NewBatch returns a batch of entries, which must be consecutive entries of
// one chain with their hashes set (as the write-ahead log returns them).
func NewBatch(opened time.Time, entries []entry.Entry) (*Batch, error) {
	b := &Batch{Opened: opened, cols: spareColumns()}
	for i := range entries {
		e := &entries[i]
		if n := b.Len(); n > 0 && e.Seq != b.FirstSeq()+int64(n) {
			last := b.FirstSeq() + int64(n) - 1
			b.Release()
			return nil, fmt.Errorf("%w: seq %d after seq %d", ErrNotConsecutive, e.Seq, last)
		}
		var sum [32]byte
		if len(e.EntryHash) != hex.EncodedLen(len(sum)) {
			b.Release()
			return nil, fmt.Errorf("batch: entry seq %d has no entry hash", e.Seq)
		}
		if _, err := hex.Decode(sum[:], []byte(e.EntryHash)); err != nil {
			b.Release()
			return nil, fmt.Errorf("batch: entry seq %d: entry hash %q is not hex", e.Seq, e.EntryHash)
		}
		b.cols.AppendHashed(e, &sum)
	}
	return b, nil
}

// ErrNotConsecutive: an entry does not follow the batch's last one.
var ErrNotConsecutive = errors.New("batch: entry does not follow the batch")

// Len returns the number of entries.
func (b *Batch) Len() int { return b.cols.Len() }

// FirstSeq returns the seq of the first entry.
func (b *Batch) FirstSeq() int64 { return b.cols.FirstSeq() }

// EntryHashes returns the raw entry hashes of the entries, in seq order.
func (b *Batch) EntryHashes() [][32]byte { return b.cols.EntryHashes(make([][32]byte, 0, b.Len())) }

// LeafHashes returns the leaf hashes of the entries as Encode computed them
// for the file's Merkle root, or nil before Encode
// (parquetfile.Columns.LeafHashes): the leaves of the chain's tree.
func (b *Batch) LeafHashes() []byte { return b.cols.LeafHashes() }

// Truncate keeps the first n entries of a sealed batch.
func (b *Batch) Truncate(n int) { b.cols.Truncate(n) }

// Encode writes the batch as one Parquet file into w and returns its
// footer (parquetfile.Columns.Encode).
func (b *Batch) Encode(w io.Writer) (parquetfile.Footer, error) { return b.cols.Encode(w) }

// Release gives the batch's buffers back for a later batch to fill. The
// batch must not be used after.
func (b *Batch) Release() {
	if b.cols == nil {
		return
	}
	c := b.cols
	b.cols = nil
	c.Reset()
	spare.mu.Lock()
	defer spare.mu.Unlock()
	if len(spare.idle) < keepIdle {
		spare.idle = append(spare.idle, c)
	}
}

// keepIdle is how many released batches' buffers are kept for the next
// batches: one being filled while another is sealed is the steady state.
const keepIdle = 2

// spare holds released buffers. Unlike a sync.Pool, garbage collections do
// not empty it: under load many run between two batches, and a batch's
// buffers (megabytes) would be allocated and cleared again for each.
var spare struct {
	mu   sync.Mutex
	idle []*parquetfile.Columns
}

func spareColumns() *parquetfile.Columns {
	spare.mu.Lock()
	defer spare.mu.Unlock()
	if n := len(spare.idle); n > 0 {
		c := spare.idle[n-1]
		spare.idle = spare.idle[:n-1]
		return c
	}
	return new(parquetfile.Columns)
}

// Batcher accumulates entries into the open batch. It is not safe for
// concurrent use; the caller serializes it together with the chain.
type Batcher struct {
	limits Limits
	open   *Batch
}

// New returns a Batcher with the given limits. Zero limits are treated as
// "no limit" for MaxBytes (up to 2 GiB) and MaxAge and as 1 for
// MaxEntries.
func New(limits Limits) *Batcher {
	if limits.MaxEntries < 1 {
		limits.MaxEntries = 1
	}
	if limits.MaxBytes <= 0 || limits.MaxBytes > maxBatchBytes {
		limits.MaxBytes = maxBatchBytes
	}
	return &Batcher{limits: limits}
}

// Add appends e, whose entry hash is sum (the raw SHA-256 the chain
// computed, chain.Sum) and whose estimated encoded size is size, at time
// now, and returns the batch when e filled it (nil otherwise). e must be
// the chain's next entry after the last one added, with its hash set
// (chain.Append does both); its values are copied. Callers first seal the
// open batch when Due(now) says so, which keeps a batch within one UTC day.
func (b *Batcher) Add(e *entry.Entry, sum *[32]byte, size int, now time.Time) *Batch {
	if b.open == nil {
		// A released batch's buffers have room for a full batch already:
		// growing them entry by entry would copy each entry several times.
		b.open = &Batch{Opened: now, cols: spareColumns()}
	}
	b.open.cols.AppendHashed(e, sum)
	b.open.Bytes += size
	if b.open.Len() < b.limits.MaxEntries && b.open.Bytes < b.limits.MaxBytes {
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
	return b.open.Len()
}

func utcDay(t time.Time) int64 {
	return t.UTC().Unix() / 86400
}
