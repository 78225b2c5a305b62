// Package wal is the write-ahead log of chained audit entries.
//
// The exporter acknowledges an OTLP request only after the request's
// entries are appended here and fsynced. Concurrent requests share fsyncs
// (group commit): while one fsync runs, later appends accumulate, and the
// next fsync covers them all. Under concurrent load a group may also wait a
// little for more requests before it is written (SetCommitDelay).
//
// The log is a sequence of segments, one per batch:
// <dir>/<chain_id>-<first seq, 20 digits>.wal. A segment is deleted once its
// batch is sealed into a Parquet object on disk, so the log holds only
// entries not yet in a durable batch. Each segment is a sequence of records:
//
//	record  = length (uint32, little endian) || CRC-32C of payload (uint32, LE) || payload
//	payload = the entry's canonical encoding (chain.AppendCanonical)
//
// The canonical encoding holds every field of the entry, and its SHA-256 is
// the entry hash, so recovery rebuilds entries exactly, hash included. The
// CRC finds a record torn by a crash in the middle of a write.
//
// Segments are preallocated: a background goroutine writes the next
// segment's expected size in zeros and fsyncs it before the segment is
// needed, so records are written into space the file already has and each
// group commit is an fdatasync that updates no metadata (on ext4 about a
// third less CPU and latency than extending the file with every fsync). A
// segment therefore ends with zeros after its last record, which recovery
// tells apart from a torn record. Spare files are named
// .<chain_id>-<n>.walspare until they become a segment.
package wal // import "github.com/agentaudit/agentaudit/internal/wal"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Errors. Check with errors.Is.
var (
	// ErrBroken: a write or fsync of the log failed. Nothing appended after
	// the last successful Sync is known to be durable, and the log accepts
	// nothing more: the process must restart and recover.
	ErrBroken = errors.New("wal: write-ahead log failed")
	// ErrCorrupt: a segment holds a record that is not a valid entry
	// before its end (see Segment.Corrupt).
	ErrCorrupt = errors.New("wal: corrupt segment")
)

const (
	headerSize = 8
	// maxRecord bounds a record's length so a corrupt header cannot make
	// recovery allocate without limit. Entries are limited far below it.
	maxRecord = 256 << 20
	suffix    = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SegmentName returns the file name of the segment of chainID whose first
// entry has seq firstSeq.
func SegmentName(chainID string, firstSeq int64) string {
	return fmt.Sprintf("%s-%020d%s", chainID, firstSeq, suffix)
}

// Log appends records to the current segment. Append, Rotate and End are
// called by one goroutine at a time (the exporter serializes them with the
// chain); Sync may be called from any goroutine.
type Log struct {
	dir     string
	chainID string

	mu       sync.Mutex
	cond     *sync.Cond
	f        *os.File // the current segment
	name     string   // its file name
	pending  []byte   // appended, not yet written
	spare    []byte
	appended int64 // bytes appended since Open (a log sequence number)
	durable  int64 // bytes written and fsynced
	// lastSeq and durableSeq are the seqs of the last entry appended and of
	// the last entry durable.
	lastSeq, durableSeq int64
	size                int64 // durable length of the current segment
	syncing             bool  // a Sync is writing and fsyncing
	err                 error // sticky, wraps ErrBroken
	syncs               int64 // fsyncs done
	scratch             []byte

	// Commit delay (SetCommitDelay): requests counts the End calls (one
	// per request) since Open; flushedRequests is its value at the last
	// flush, lastGroup how many requests that flush covered.
	delay                     time.Duration
	requests, flushedRequests int64
	lastGroup                 int64
	delays                    int64 // flushes that waited
	sleep                     func(time.Duration)

	// next is a zero-filled file ready to become the next segment, made
	// by a background goroutine (preparing) of spareSize bytes.
	next      *spareFile
	preparing bool
	spareSize int64
	spares    int // spares made, for unique names
	closed    bool
	prep      sync.WaitGroup
}

// spareFile is a preallocated file waiting to become a segment.
type spareFile struct {
	path string
	f    *os.File
	size int64
}

// Spare sizes: the next segment is expected to be about as large as the
// last one; a quarter more, within these bounds.
const (
	minSpare     = 64 << 10
	maxSpare     = 64 << 20
	initialSpare = 4 << 20
	spareSuffix  = ".walspare"
)

// Open creates the segment of chainID that starts at firstSeq in dir
// (creating dir) and returns a log appending to it. The segment must not
// exist: recover and remove old segments first.
func Open(dir, chainID string, firstSeq int64) (*Log, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: creating %s: %w", dir, err)
	}
	l := &Log{dir: dir, chainID: chainID, lastSeq: firstSeq - 1, durableSeq: firstSeq - 1, spareSize: initialSpare, sleep: time.Sleep}
	l.cond = sync.NewCond(&l.mu)
	// Spares a crash left behind were never segments: they hold nothing.
	if des, err := os.ReadDir(dir); err == nil {
		for _, de := range des {
			// Only this chain's: ".<chain_id>-<digits>.walspare".
			n, mine := strings.CutPrefix(de.Name(), "."+chainID+"-")
			n, spare := strings.CutSuffix(n, spareSuffix)
			if _, err := strconv.ParseUint(n, 10, 64); mine && spare && err == nil {
				_ = os.Remove(filepath.Join(dir, de.Name()))
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.create(firstSeq); err != nil {
		return nil, err
	}
	return l, nil
}

// create starts the segment whose first entry has seq firstSeq: the spare
// when one is ready, else a new empty file. Callers hold mu.
func (l *Log) create(firstSeq int64) error {
	name := SegmentName(l.chainID, firstSeq)
	path := filepath.Join(l.dir, name)
	var f *os.File
	if sp := l.next; sp != nil {
		l.next = nil
		// A link, unlike a rename, never replaces an existing segment.
		err := os.Link(sp.path, path)
		if errors.Is(err, fs.ErrExist) {
			sp.f.Close()
			_ = os.Remove(sp.path)
			return fmt.Errorf("wal: creating segment %s: %w", path, err)
		}
		if err == nil {
			f = sp.f
		} else {
			sp.f.Close() // no hard links here: an empty file instead
		}
		_ = os.Remove(sp.path)
	}
	if f == nil {
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return fmt.Errorf("wal: creating segment %s: %w", path, err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return err
	}
	l.f, l.name, l.size = f, name, 0
	l.prepareSpare()
	return nil
}

// prepareSpare starts making the next segment's spare in the background
// unless one is ready or on its way. Callers hold mu. A spare that cannot be
// made (a full disk) is no error: the next segment is then an empty file
// that grows with each write, as without spares.
func (l *Log) prepareSpare() {
	if l.next != nil || l.preparing || l.closed {
		return
	}
	l.preparing = true
	l.spares++
	path := filepath.Join(l.dir, fmt.Sprintf(".%s-%d%s", l.chainID, l.spares, spareSuffix))
	size := l.spareSize
	l.prep.Add(1)
	go func() {
		defer l.prep.Done()
		sp, err := makeSpare(path, size)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.preparing = false
		if err != nil || l.closed {
			if sp != nil {
				sp.f.Close()
				_ = os.Remove(sp.path)
			}
			return
		}
		l.next = sp
	}()
}

// makeSpare writes size zero bytes to a new file at path and fsyncs it.
func makeSpare(path string, size int64) (*spareFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	sp := &spareFile{path: path, f: f, size: size}
	zeros := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(int64(len(zeros)), size-off)]); err != nil {
			return sp, err
		}
	}
	return sp, f.Sync()
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// Append adds e's record to the current segment, in memory. It is durable
// once Sync(End()) returns nil.
func (l *Log) Append(e *entry.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scratch = chain.AppendCanonical(l.scratch[:0], e)
	l.appendLocked(e.Seq, l.scratch)
}

// AppendCanonical is Append for an entry whose canonical encoding
// (chain.AppendCanonical) the caller already has: seq is the entry's seq.
func (l *Log) AppendCanonical(seq int64, canonical []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appendLocked(seq, canonical)
}

func (l *Log) appendLocked(seq int64, canonical []byte) {
	var hdr [headerSize]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(canonical)))
	binary.LittleEndian.PutUint32(hdr[4:8], crc32.Checksum(canonical, castagnoli))
	l.pending = append(l.pending, hdr[:]...)
	l.pending = append(l.pending, canonical...)
	l.appended += int64(headerSize + len(canonical))
	l.lastSeq = seq
}

// End returns the position after the last record appended. A request
// calls it once, after its appends and before Sync: the commit delay counts
// requests by it.
func (l *Log) End() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	return l.appended
}

// SetCommitDelay makes the request that writes and fsyncs a group first wait
// d for other requests to join it, when the previous group held more than
// one request: under concurrent load fewer, larger groups share the cost of
// an fsync (about 95 µs of CPU on ext4 here), and a lone client never waits.
// Zero (the default) never waits.
func (l *Log) SetCommitDelay(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delay = d
}

// Delays returns how many group commits waited for the commit delay.
func (l *Log) Delays() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.delays
}

// Sync returns once every record before position pos is written and
// fsynced, or the error (wrapping ErrBroken) that stopped it. One caller
// writes and fsyncs for all that wait meanwhile.
func (l *Log) Sync(pos int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		switch {
		case l.err != nil:
			return l.err
		case l.durable >= pos:
			return nil
		case l.syncing:
			l.cond.Wait()
			continue
		}
		if l.delay > 0 && l.lastGroup > 1 {
			// Others append meanwhile; those that call Sync wait for
			// this flush.
			l.syncing = true
			l.delays++
			d, sleep := l.delay, l.sleep
			l.mu.Unlock()
			sleep(d)
			l.mu.Lock()
			l.syncing = false
		}
		l.flushLocked()
	}
}

// flushLocked writes and fsyncs what is pending, releasing mu meanwhile so
// that appends go on. Callers hold mu and have checked !l.syncing.
func (l *Log) flushLocked() {
	l.syncing = true
	l.lastGroup, l.flushedRequests = l.requests-l.flushedRequests, l.requests
	buf, target, targetSeq, f, size := l.pending, l.appended, l.lastSeq, l.f, l.size
	l.pending, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	_, err := f.WriteAt(buf, size)
	if err == nil {
		err = datasync(f)
	}
	if err != nil {
		// Cut what part of buf reached the file (a disk that filled up
		// mid-write), so that recovery never finds records whose requests
		// were refused: their clients retry them.
		if terr := f.Truncate(size); terr != nil {
			err = fmt.Errorf("%w (and cutting the failed write: %w)", err, terr)
		} else if serr := f.Sync(); serr != nil {
			err = fmt.Errorf("%w (and syncing the cut: %w)", err, serr)
		}
	}
	l.mu.Lock()
	l.syncing = false
	l.syncs++
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("%w: %s: %w", ErrBroken, filepath.Join(l.dir, l.name), err)
	}
	if err == nil {
		l.durable, l.durableSeq = target, targetSeq
		l.size += int64(len(buf))
	}
	if cap(buf) <= 4<<20 {
		l.spare = buf[:0]
	}
	l.cond.Broadcast()
}

// Rotate makes everything appended durable, closes the current segment and
// starts the segment of the batch whose first seq is nextSeq. It returns the
// closed segment's name, for Remove once its batch is durable elsewhere.
func (l *Log) Rotate(nextSeq int64) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing {
		l.cond.Wait()
	}
	if l.err == nil && l.durable < l.appended {
		l.flushLocked()
	}
	if l.err != nil {
		return "", l.err
	}
	closed := l.name
	l.spareSize = min(max(l.size+l.size/4, minSpare), maxSpare)
	if err := l.f.Close(); err != nil {
		l.err = fmt.Errorf("%w: closing %s: %w", ErrBroken, filepath.Join(l.dir, closed), err)
		return "", l.err
	}
	if err := l.create(nextSeq); err != nil {
		l.err = fmt.Errorf("%w: %w", ErrBroken, err)
		return "", l.err
	}
	return closed, nil
}

// Remove deletes a closed segment whose entries are durable in a sealed
// batch, and fsyncs the directory.
func (l *Log) Remove(name string) error {
	if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: removing %s: %w", filepath.Join(l.dir, name), err)
	}
	return syncDir(l.dir)
}

// Close makes everything appended durable and closes the current segment,
// removing it when it holds no record.
func (l *Log) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.prep.Wait() // no spare is on its way after this

	l.mu.Lock()
	defer l.mu.Unlock()
	if sp := l.next; sp != nil {
		l.next = nil
		sp.f.Close()
		_ = os.Remove(sp.path)
	}
	for l.syncing {
		l.cond.Wait()
	}
	if l.err == nil && l.durable < l.appended {
		l.flushLocked()
	}
	closeErr := l.f.Close()
	if l.err != nil {
		return l.err
	}
	if closeErr != nil {
		return fmt.Errorf("wal: closing %s: %w", filepath.Join(l.dir, l.name), closeErr)
	}
	if l.size == 0 {
		return l.Remove(l.name)
	}
	return nil
}

// DurableSeq returns the seq of the last entry known durable. After the log
// broke, entries past it were never acknowledged.
func (l *Log) DurableSeq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durableSeq
}

// Err returns the failure that broke the log (wrapping ErrBroken), or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Syncs returns the number of fsyncs done so far.
func (l *Log) Syncs() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncs
}

// Segment is what Recover found in one segment file.
type Segment struct {
	Name     string // file name in the log's directory
	FirstSeq int64  // from the file name
	// Entries are the records before the first invalid one, decoded, with
	// their entry hashes recomputed.
	Entries []entry.Entry
	// Torn reports bytes after the last valid record that are not the
	// zeros of preallocated space: the tail of a write a crash interrupted
	// (never acknowledged), or corruption.
	Torn bool
	// ValidBytes is the length of the valid records; TornBytes the rest
	// when Torn (0 otherwise).
	ValidBytes, TornBytes int64
}

// Recover reads every segment of chainID in dir, oldest first. A missing
// dir holds no segments. Segments of other chains are left alone.
func Recover(dir, chainID string) ([]Segment, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", dir, err)
	}
	var segs []Segment
	for _, de := range des {
		name := de.Name()
		first, ok := parseName(name, chainID)
		if !ok || !de.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("wal: reading %s: %w", filepath.Join(dir, name), err)
		}
		seg := Segment{Name: name, FirstSeq: first}
		seg.Entries, seg.ValidBytes = decodeRecords(data)
		if rest := data[seg.ValidBytes:]; !allZero(rest) {
			seg.Torn, seg.TornBytes = true, int64(len(rest))
		}
		segs = append(segs, seg)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].FirstSeq < segs[j].FirstSeq })
	return segs, nil
}

// Truncate cuts segment name in dir to n bytes and fsyncs it: it drops a
// torn tail so that appends never follow garbage.
func Truncate(dir, name string, n int64) error {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: truncating %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(n); err != nil {
		return fmt.Errorf("wal: truncating %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: truncating %s: %w", path, err)
	}
	return nil
}

// decodeRecords decodes records until the data ends or a record is invalid,
// and returns the entries and the length of the valid prefix.
func decodeRecords(data []byte) ([]entry.Entry, int64) {
	var entries []entry.Entry
	off := 0
	for len(data)-off >= headerSize {
		n := int(binary.LittleEndian.Uint32(data[off : off+4]))
		sum := binary.LittleEndian.Uint32(data[off+4 : off+8])
		if n > maxRecord || len(data)-off-headerSize < n {
			break
		}
		payload := data[off+headerSize : off+headerSize+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		e, rest, err := chain.DecodeCanonical(payload)
		if err != nil || len(rest) != 0 {
			break
		}
		entries = append(entries, e)
		off += headerSize + n
	}
	return entries, int64(off)
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func parseName(name, chainID string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, chainID+"-")
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, suffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: syncing directory %s: %w", dir, err)
	}
	return nil
}
