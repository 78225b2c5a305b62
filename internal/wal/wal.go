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
// entries not yet in a durable batch. A segment (format 2) is a magic
// number followed by records:
//
//	segment = "\x89AAWAL2\n" || record*
//	record  = length (uint32, little endian)
//	          || CRC-32C of payload (uint32, LE)
//	          || CRC-32C of the 8 bytes before (uint32, LE)
//	          || payload
//	          || commit mark A5 5A C3 3C
//	payload = the entry's canonical encoding (chain.AppendCanonical)
//
// The canonical encoding holds every field of the entry, and its SHA-256 is
// the entry hash, so recovery rebuilds entries exactly, hash included.
// Records of one segment hold consecutive seqs from the segment's first,
// each linked to the one before by its prev_hash.
//
// # Torn tails and corruption
//
// A crash in the middle of a write (SIGKILL, power loss) leaves the record
// being written incomplete: the bytes from some point on are never written,
// and read as the zeros of preallocated space (below) or are absent. Such a
// record was never acknowledged, since its fsync had not returned. Recover
// calls an invalid record a torn tail, safe to drop, only when it is in the
// newest segment and nothing but zeros follows its last written byte, and
// either its header is cut short or its header checks out and its commit
// mark was not written to its end (what there is of it is followed by
// nothing but zeros, or by the end of the file). Every
// other invalid byte is corruption (ErrCorrupt, with the file and byte
// offset): a record whose checksums fail although it was written to its
// end, a record of the wrong seq, bytes after the last record of an older
// segment. The header's own checksum and the non-zero commit mark are what
// tell the two apart: a complete record with flipped bits anywhere (bit
// rot, a bad sector, a buggy filesystem) never looks like a write that
// stopped short, so an acknowledged entry is never dropped as a torn tail.
// The costs: a power loss that persists a write's later sectors before its
// earlier ones is refused as corruption too, and the operator decides
// (README, "Recovery"); and no format can tell a write that stopped short
// from the newest record's last bytes zeroed by the disk.
//
// Segments written by agentaudit before format 2 have no magic number and
// records of 8-byte headers (length, CRC-32C of payload) and no commit
// mark; Recover still reads them, and tells a torn tail by its declared
// length alone. They are told apart by their first record, which begins
// with the canonical encoding's format tag: a segment that begins with
// neither is a format 2 segment whose magic was damaged, and corrupt.
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentaudit/agentaudit/internal/atomicfile"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Errors. Check with errors.Is.
var (
	// ErrBroken: a write or fsync of the log failed. Nothing appended after
	// the last successful Sync is known to be durable, and the log accepts
	// nothing more: the process must restart and recover.
	ErrBroken = errors.New("wal: write-ahead log failed")
	// ErrCorrupt: a segment holds invalid bytes that are not a torn tail
	// (see the package doc); the error is a *CorruptError.
	ErrCorrupt = errors.New("wal: corrupt segment")
)

// CorruptError names the file and byte offset of the first invalid record
// of a segment whose invalid bytes are not a torn tail.
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: %s is corrupt at byte offset %d: %s", e.Path, e.Offset, e.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

const (
	// magic begins every segment of format 2. Its first byte is not ASCII,
	// so that a segment of format 1 (which begins with a record length)
	// never starts with it.
	magic      = "\x89AAWAL2\n"
	headerSize = 12
	markSize   = 4
	// headerSizeV1 is the record header of format 1: length, CRC-32C.
	headerSizeV1 = 8
	// maxRecord bounds a record's length so a corrupt header cannot make
	// recovery allocate without limit. Entries are limited far below it.
	maxRecord = 256 << 20
	suffix    = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// commitMark ends every record of format 2. None of its bytes is zero, and
// none becomes zero when one bit flips, so a complete record damaged in one
// byte still ends with a non-zero mark and is never taken for a torn one.
var commitMark = [markSize]byte{0xA5, 0x5A, 0xC3, 0x3C}

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

	mu   sync.Mutex
	cond *sync.Cond
	cur  *segment // the segment appended to
	// closing are the segments Rotate closed whose records are not yet
	// all written, oldest first: the next flush writes them before cur.
	closing []closingSegment
	// rotating: a Rotate is not yet finished by a flush (its closed
	// segment closed, the next segment created).
	rotating bool
	pending  []byte // appended to cur, not yet written
	spare    []byte
	appended int64 // bytes appended since Open (a log sequence number)
	durable  int64 // bytes written and fsynced
	// lastSeq and durableSeq are the seqs of the last entry appended and of
	// the last entry durable.
	lastSeq, durableSeq int64
	syncing             bool  // a flush is writing and fsyncing
	err                 error // sticky, wraps ErrBroken
	syncs               int64 // flushes done (group commits)
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

// segment is one segment of the log. Its file is created by a flush, once
// every segment ahead of it is durable, so that no segment exists on disk
// after one whose last records may still be torn (recovery takes a torn
// tail only in the newest). f and size belong to the flush in progress
// (syncing); otherwise to whoever holds mu.
type segment struct {
	name  string
	f     *os.File // nil until created
	size  int64    // bytes written: the magic and the records flushed
	start int64    // the log position where its records begin
}

// closingSegment is a segment Rotate closed, with the records appended to
// it that no flush has written yet. end and lastSeq are the log position
// and the seq after its last record.
type closingSegment struct {
	seg     *segment
	pending []byte
	end     int64
	lastSeq int64
}

// needsFile reports whether the flush must create c's file: the current
// segment's always, a closed one's only when it has records to write.
func (c *closingSegment) needsFile(current bool) bool {
	return c.seg.f == nil && (len(c.pending) > 0 || current)
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
	l.cur = &segment{name: SegmentName(chainID, firstSeq)}
	if err := l.createFile(l.cur, nil); err != nil {
		return nil, err
	}
	l.prepareSpare()
	return l, nil
}

// createFile creates seg's file: sp, a spare taken from l.next, when there
// is one, else a new empty file. It writes the magic and fsyncs the
// directory. It uses nothing of l but its directory, so that a flush calls
// it without mu; sp is used up either way.
func (l *Log) createFile(seg *segment, sp *spareFile) error {
	path := filepath.Join(l.dir, seg.name)
	var f *os.File
	if sp != nil {
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
	// The magic needs no fsync of its own: the fdatasync of the segment's
	// first records covers it. A crash before then leaves a segment of
	// zeros, which holds no record.
	if _, err := f.WriteAt([]byte(magic), 0); err != nil {
		f.Close()
		return fmt.Errorf("wal: creating segment %s: %w", path, err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return err
	}
	seg.f, seg.size = f, int64(len(magic))
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
	l.pending = appendRecord(l.pending, canonical)
	l.appended += int64(headerSize + len(canonical) + markSize)
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
// writes and fsyncs for all that wait meanwhile. The first Sync after a
// Rotate also finishes the rotation (a flush), whatever pos: the closed
// segment is closed and the next one created.
func (l *Log) Sync(pos int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		switch {
		case l.err != nil:
			return l.err
		case l.durable >= pos && !l.rotating:
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
// that appends go on: first the last records of the segments Rotate
// closed, oldest first, each then closed, then the current segment's. A
// segment's file is created only once every segment before it is durable:
// the current segment's by the first flush after the Rotate that began it,
// a closed one's only when it has records. Callers hold mu and have
// checked !l.syncing.
func (l *Log) flushLocked() {
	l.syncing = true
	l.lastGroup, l.flushedRequests = l.requests-l.flushedRequests, l.requests
	segs := append(l.closing, closingSegment{seg: l.cur, pending: l.pending, end: l.appended, lastSeq: l.lastSeq})
	l.closing = nil
	l.pending, l.spare = l.spare[:0], nil
	var sp *spareFile // the spare, for the first segment created
	for i := range segs {
		if segs[i].needsFile(i == len(segs)-1) {
			sp, l.next = l.next, nil
			break
		}
	}
	l.mu.Unlock()

	var err error
	done := 0 // segments durable
	created := false
	for i := range segs {
		c := &segs[i]
		if err = l.writeSegment(c, i == len(segs)-1, &sp, &created); err != nil {
			break
		}
		done++ // durable
		if i < len(segs)-1 && c.seg.f != nil {
			err = c.seg.f.Close()
			c.seg.f = nil
			if err != nil {
				err = fmt.Errorf("closing %s: %w", filepath.Join(l.dir, c.seg.name), err)
				break
			}
		}
	}

	l.mu.Lock()
	l.syncing = false
	l.syncs++
	if done > 0 {
		last := segs[done-1]
		l.durable, l.durableSeq = last.end, last.lastSeq
	}
	if err == nil && len(l.closing) == 0 && l.cur == segs[len(segs)-1].seg {
		l.rotating = false
	}
	if err != nil {
		if l.err == nil {
			l.err = fmt.Errorf("%w: %w", ErrBroken, err)
		}
		// Close closes what is still open.
		for _, c := range segs[min(done, len(segs)-1) : len(segs)-1] {
			l.closing = append(l.closing, closingSegment{seg: c.seg})
		}
	}
	if sp != nil { // not used: a segment's file failed first
		sp.f.Close()
		_ = os.Remove(sp.path)
	}
	if created {
		l.prepareSpare()
	}
	if buf := segs[len(segs)-1].pending; cap(buf) <= 4<<20 {
		l.spare = buf[:0]
	}
	l.cond.Broadcast()
}

// writeSegment writes and fsyncs c's pending records at the end of its
// segment, first creating the segment's file (from *sp, when there is one)
// when it needs one (needsFile). It runs without mu, in the flush.
func (l *Log) writeSegment(c *closingSegment, current bool, sp **spareFile, created *bool) error {
	seg := c.seg
	if c.needsFile(current) {
		err := l.createFile(seg, *sp)
		*sp = nil
		if err != nil {
			return err
		}
		*created = true
	}
	if len(c.pending) == 0 {
		return nil
	}
	_, err := seg.f.WriteAt(c.pending, seg.size)
	if err == nil {
		err = datasync(seg.f)
	}
	if err != nil {
		// Cut what part reached the file (a disk that filled up
		// mid-write), so that recovery never finds records whose requests
		// were refused: their clients retry them.
		if terr := seg.f.Truncate(seg.size); terr != nil {
			err = fmt.Errorf("%w (and cutting the failed write: %w)", err, terr)
		} else if serr := seg.f.Sync(); serr != nil {
			err = fmt.Errorf("%w (and syncing the cut: %w)", err, serr)
		}
		return fmt.Errorf("%s: %w", filepath.Join(l.dir, seg.name), err)
	}
	seg.size += int64(len(c.pending))
	return nil
}

// Rotate closes the current segment and starts the segment of the batch
// whose first seq is nextSeq. It returns the closed segment's name, for
// Remove once its batch is durable elsewhere, and end, the log position
// after the closed segment's last record: every record of it is durable
// once Sync(end) returns nil. Rotate does no I/O and waits for none, so
// appends go on: the next flush (the first Sync after Rotate runs one)
// writes the closed segment's last records, closes it, and only then
// creates the next segment's file from the spare.
func (l *Log) Rotate(nextSeq int64) (closed string, end int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return "", 0, l.err
	}
	old := l.cur
	size := int64(len(magic)) + l.appended - old.start
	l.spareSize = min(max(size+size/4, minSpare), maxSpare)
	l.closing = append(l.closing, closingSegment{seg: old, pending: l.pending, end: l.appended, lastSeq: l.lastSeq})
	l.pending, l.spare = l.spare[:0], nil
	l.cur = &segment{name: SegmentName(l.chainID, nextSeq), start: l.appended}
	l.rotating = true
	return old.name, l.appended, nil
}

// Remove deletes a closed segment whose entries are durable in a sealed
// batch, and fsyncs the directory.
func (l *Log) Remove(name string) error {
	if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: removing %s: %w", filepath.Join(l.dir, name), err)
	}
	return syncDir(l.dir)
}

// Close makes everything appended durable and closes the log's segments,
// removing the current one when it holds no record.
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
	if l.err == nil && (l.durable < l.appended || l.rotating) {
		l.flushLocked()
	}
	for _, c := range l.closing { // after a failure
		if c.seg.f != nil {
			c.seg.f.Close()
		}
	}
	l.closing = nil
	cur := l.cur
	var closeErr error
	if cur.f != nil {
		closeErr = cur.f.Close()
	}
	if l.err != nil {
		return l.err
	}
	if closeErr != nil {
		return fmt.Errorf("wal: closing %s: %w", filepath.Join(l.dir, cur.name), closeErr)
	}
	if cur.f != nil && cur.size <= int64(len(magic)) {
		return l.Remove(cur.name)
	}
	return nil
}

// appendRecord appends the record of payload to dst. The header's checksum
// is taken over its first 8 bytes where they are, in dst: a header array
// of its own would escape to the heap (one allocation a record).
func appendRecord(dst, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:start+8], castagnoli))
	dst = append(dst, payload...)
	return append(dst, commitMark[:]...)
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

// Syncs returns the number of flushes (group commits) done so far.
func (l *Log) Syncs() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncs
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
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("wal: syncing directory %s: %w", dir, err)
	}
	return nil
}
