// Package batch cuts a stream of chained entries into batches by count,
// bytes, age and UTC day. Each batch becomes one immutable Parquet object.
//
// The batcher only groups: the chain package has already fixed every
// entry's seq and hash, and encoding and storing happen elsewhere.
package batch // import "github.com/agentaudit/agentaudit/internal/batch"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/agentaudit/agentaudit/internal/chain"
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

// Batch is a run of consecutive entries of one chain. It keeps each entry
// as its canonical encoding (chain.AppendCanonical, which the chain hashed
// and the write-ahead log wrote) and its hex entry hash, back to back in
// pointer-free buffers: a batch waiting to be encoded costs the garbage
// collector nothing to scan and about half the memory of decoded entries.
type Batch struct {
	// Opened is when the first entry was added; its UTC date names the
	// batch's dt= partition.
	Opened time.Time
	// Bytes is the sum of the sizes given to Add.
	Bytes int

	firstSeq int64
	enc      []byte // canonical encodings, back to back
	ends     []int  // ends[i]: end of entry i's encoding in enc
	hashes   []byte // hex entry hashes, hashLen bytes each
}

const hashLen = 64

// NewBatch returns a batch of entries, which must be consecutive entries of
// one chain with their hashes set (as the write-ahead log returns them).
func NewBatch(opened time.Time, entries []entry.Entry) (*Batch, error) {
	b := &Batch{Opened: opened}
	var buf []byte
	for i := range entries {
		e := &entries[i]
		if n := b.Len(); n > 0 && e.Seq != b.firstSeq+int64(n) {
			return nil, fmt.Errorf("%w: seq %d after seq %d", ErrNotConsecutive, e.Seq, b.firstSeq+int64(n)-1)
		}
		if len(e.EntryHash) != hashLen {
			return nil, fmt.Errorf("batch: entry seq %d has no entry hash", e.Seq)
		}
		buf = chain.AppendCanonical(buf[:0], e)
		b.add(e, buf)
	}
	return b, nil
}

// ErrNotConsecutive: an entry does not follow the batch's last one.
var ErrNotConsecutive = errors.New("batch: entry does not follow the batch")

// add appends e, which follows the batch's last entry and has its hash.
func (b *Batch) add(e *entry.Entry, canonical []byte) {
	if len(b.ends) == 0 {
		b.firstSeq = e.Seq
	}
	b.enc = append(b.enc, canonical...)
	b.ends = append(b.ends, len(b.enc))
	b.hashes = append(b.hashes, e.EntryHash...)
}

// Len returns the number of entries.
func (b *Batch) Len() int { return len(b.ends) }

// FirstSeq returns the seq of the first entry.
func (b *Batch) FirstSeq() int64 { return b.firstSeq }

// Truncate keeps the first n entries of a sealed batch (nothing is added
// to a batch after it: the bytes it drops may still back decoded entries).
func (b *Batch) Truncate(n int) {
	if n >= len(b.ends) {
		return
	}
	end := 0
	if n > 0 {
		end = b.ends[n-1]
	}
	b.enc, b.ends, b.hashes = b.enc[:end], b.ends[:n], b.hashes[:n*hashLen]
}

// Entries decodes the batch. The entries' strings alias the batch's
// buffers, which never change once written: they stay valid as long as the
// entries are in use, whatever happens to the batch.
func (b *Batch) Entries() ([]entry.Entry, error) {
	out := make([]entry.Entry, len(b.ends))
	opts := make([][chain.NumOptional]string, len(b.ends))
	start := 0
	for i, end := range b.ends {
		e := &out[i]
		rest, err := chain.DecodeView(b.enc[start:end], e, &opts[i])
		if err != nil {
			return nil, fmt.Errorf("batch: entry %d: %w", b.firstSeq+int64(i), err)
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("batch: entry %d: %d bytes after the encoding", b.firstSeq+int64(i), len(rest))
		}
		h := b.hashes[i*hashLen : (i+1)*hashLen]
		e.EntryHash = unsafe.String(&h[0], hashLen)
		start = end
	}
	return out, nil
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

// maxPrealloc and maxPreallocBytes bound the room a new batch has before
// it grows.
const (
	maxPrealloc      = 1 << 14
	maxPreallocBytes = 16 << 20
)

// Add appends e, whose canonical encoding is canonical (copied) and whose
// estimated encoded size is size, at time now, and returns the batch when e
// filled it (nil otherwise). e must be the chain's next entry after the
// last one added, with its hash set (chain.Append does both). Callers first
// seal the open batch when Due(now) says so, which keeps a batch within one
// UTC day.
func (b *Batcher) Add(e *entry.Entry, canonical []byte, size int, now time.Time) *Batch {
	if b.open == nil {
		// Room for a full batch at once (up to a bound): growing the
		// buffers entry by entry copies each entry several times under load.
		n := min(b.limits.MaxEntries, maxPrealloc)
		b.open = &Batch{
			Opened: now,
			// Later entries may be longer than the first: a quarter more.
			enc:    make([]byte, 0, min(n*len(canonical)*5/4, maxPreallocBytes)),
			ends:   make([]int, 0, n),
			hashes: make([]byte, 0, n*hashLen),
		}
	}
	b.open.add(e, canonical)
	b.open.Bytes += size
	if b.open.Len() < b.limits.MaxEntries && (b.limits.MaxBytes <= 0 || b.open.Bytes < b.limits.MaxBytes) {
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
