package trailcache

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// span is a run of an object's bytes at an offset.
type span struct {
	off  int64
	data []byte
}

func (s span) end() int64 { return s.off + int64(len(s.data)) }

// extent is a byte range [off, end).
type extent struct{ off, end int64 }

// fetchError is a failure to read bytes from where the object lives (the
// network, the disk), as opposed to bytes that do not parse: it fails the
// call instead of marking the file as a Problem.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// errNotHeld: a read of bytes the reader does not hold and cannot fetch.
var errNotHeld = errors.New("trailcache: bytes not held")

// sparseReader is an io.ReaderAt over an object of which it holds some
// byte ranges, fetching the others when read or prefetched. Safe for
// concurrent use.
type sparseReader struct {
	size int64

	mu      sync.Mutex
	fetch   func(off, n int64) ([]byte, error) // nil: nothing but the spans
	spans   []span                             // sorted by Off, disjoint, not adjacent
	fetched int64                              // bytes fetched
}

func newSparseReader(size int64, fetch func(off, n int64) ([]byte, error), spans ...span) *sparseReader {
	r := &sparseReader{size: size, fetch: fetch}
	for _, s := range spans {
		if s.off >= 0 && s.end() <= size && len(s.data) > 0 {
			r.add(s)
		}
	}
	return r
}

// ReadAt implements io.ReaderAt.
func (r *sparseReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("trailcache: read at negative offset %d", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.size-off)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.ensure([]extent{{off, off + n}}, 0); err != nil {
		return 0, err
	}
	r.copyOut(p[:n], off)
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// prefetch fetches what the reader lacks of the given ranges, joining gaps
// of up to joinGap bytes into one fetch.
func (r *sparseReader) prefetch(want []extent, joinGap int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ensure(want, joinGap)
}

// ensure fetches what is missing of want. r.mu is held.
func (r *sparseReader) ensure(want []extent, joinGap int64) error {
	var gaps []extent
	for _, w := range merge(want, 0) {
		w.off, w.end = max(w.off, 0), min(w.end, r.size)
		gaps = append(gaps, r.missing(w)...)
	}
	if len(gaps) == 0 {
		return nil
	}
	if r.fetch == nil {
		return &fetchError{fmt.Errorf("%w: %d bytes at %d", errNotHeld, gaps[0].end-gaps[0].off, gaps[0].off)}
	}
	for _, g := range merge(gaps, joinGap) {
		data, err := r.fetch(g.off, g.end-g.off)
		if err != nil {
			return &fetchError{err}
		}
		if int64(len(data)) != g.end-g.off {
			return &fetchError{fmt.Errorf("trailcache: fetched %d bytes at %d, want %d", len(data), g.off, g.end-g.off)}
		}
		r.fetched += int64(len(data))
		r.add(span{g.off, data})
	}
	return nil
}

// missing returns the parts of w that no span holds, in order.
func (r *sparseReader) missing(w extent) []extent {
	var gaps []extent
	at := w.off
	for _, s := range r.spans {
		if s.end() <= at {
			continue
		}
		if s.off >= w.end {
			break
		}
		if s.off > at {
			gaps = append(gaps, extent{at, s.off})
		}
		at = s.end()
		if at >= w.end {
			break
		}
	}
	if at < w.end {
		gaps = append(gaps, extent{at, w.end})
	}
	return gaps
}

// add inserts s, coalescing it with the spans it overlaps or touches.
func (r *sparseReader) add(s span) {
	spans := append(r.spans, s)
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && s.off <= out[n-1].end() {
			last := &out[n-1]
			if s.end() > last.end() {
				grown := make([]byte, s.end()-last.off)
				copy(grown, last.data)
				copy(grown[s.off-last.off:], s.data)
				last.data = grown
			}
			continue
		}
		out = append(out, s)
	}
	r.spans = out
}

// copyOut copies [off, off+len(p)) from the spans, which hold it.
func (r *sparseReader) copyOut(p []byte, off int64) {
	for _, s := range r.spans {
		if s.end() <= off || s.off >= off+int64(len(p)) {
			continue
		}
		from := max(s.off, off)
		to := min(s.end(), off+int64(len(p)))
		copy(p[from-off:to-off], s.data[from-s.off:to-s.off])
	}
}

// bytesFetched returns how many bytes were fetched.
func (r *sparseReader) bytesFetched() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetched
}

// merge sorts ranges and joins those that overlap or lie within gap bytes
// of each other. Empty ranges are dropped.
func merge(ranges []extent, gap int64) []extent {
	rs := slices.Clone(ranges)
	rs = slices.DeleteFunc(rs, func(e extent) bool { return e.end <= e.off })
	slices.SortFunc(rs, func(a, b extent) int { return cmp.Compare(a.off, b.off) })
	out := rs[:0]
	for _, e := range rs {
		if n := len(out); n > 0 && e.off <= out[n-1].end+gap {
			out[n-1].end = max(out[n-1].end, e.end)
			continue
		}
		out = append(out, e)
	}
	return out
}
