package wal // import "github.com/agentaudit/agentaudit/internal/wal"

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// LostDir is where Retire moves the segments a recorded loss replaced, and
// the acceptance, under the log's directory: they are kept as evidence and
// never read again.
const LostDir = "lost"

// Acceptance is an operator's decision to go on past a corrupt segment:
// the collector then records the loss in the trail itself and salvages
// what can be read after the damage (README, "Recovery"). It names every
// corruption it covers exactly, so that it never covers another one.
type Acceptance struct {
	Segment    string `json:"segment"`    // file name of the first corrupt segment
	Offset     int64  `json:"offset"`     // where its first invalid record begins
	Corruption string `json:"corruption"` // what was found there (CorruptError.Reason)
	// Also are the later corrupt segments, each at its first invalid record,
	// past which the salvage reads too.
	Also   []Damage  `json:"also,omitempty"`
	By     string    `json:"accepted_by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"accepted_at"`
}

// Damage is where a segment's first invalid record begins.
type Damage struct {
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
}

// Covers reports whether a names exactly the corruptions of segs, the
// segments from the first corrupt one on.
func (a *Acceptance) Covers(segs []Segment) bool {
	if len(segs) == 0 || segs[0].Corrupt == nil || a.Segment != segs[0].Name || a.Offset != segs[0].Corrupt.Offset {
		return false
	}
	var also []Damage
	for _, s := range segs[1:] {
		if s.Corrupt != nil {
			also = append(also, Damage{s.Name, s.Corrupt.Offset})
		}
	}
	return slices.Equal(also, a.Also)
}

// AcceptanceName is the file name of chainID's acceptance in the log's
// directory.
func AcceptanceName(chainID string) string { return chainID + ".accept-loss" }

// ReadAcceptance returns chainID's acceptance in dir, or nil when there is
// none.
func ReadAcceptance(dir, chainID string) (*Acceptance, error) {
	path := filepath.Join(dir, AcceptanceName(chainID))
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", path, err)
	}
	var a Acceptance
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("wal: %s is malformed: %w", path, err)
	}
	if a.Segment == "" || a.By == "" || a.Reason == "" || a.At.IsZero() {
		return nil, fmt.Errorf("wal: %s is malformed: segment, accepted_by, reason and accepted_at are required", path)
	}
	return &a, nil
}

// WriteAcceptance records a for chainID in dir: a temporary file, fsync,
// rename, fsync of the directory. It refuses to replace an acceptance that
// is there.
func WriteAcceptance(dir, chainID string, a Acceptance) error {
	path := filepath.Join(dir, AcceptanceName(chainID))
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	err = writeSynced(tmp, append(b, '\n'))
	if err == nil {
		// A link, unlike a rename, never replaces.
		err = os.Link(tmp, path)
	}
	_ = os.Remove(tmp)
	if err != nil {
		return fmt.Errorf("wal: writing %s: %w", path, err)
	}
	return syncDir(dir)
}

// Salvage returns the entries of chainID that can still be read in the
// segment at path after its corruption at offset from: from every position
// after it at which a whole record checks out (in format 2 its header
// checksum, payload checksum and commit mark; in format 1 its payload
// checksum) and holds an entry of chainID, in file order.
func Salvage(path, chainID string, from int64) ([]entry.Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", path, err)
	}
	v2 := bytes.HasPrefix(data, []byte(magic))
	hs, ms := headerSizeV1, 0
	if v2 {
		hs, ms = headerSize, markSize
	}
	var out []entry.Entry
	// From the refused record itself: a whole one of the wrong seq, say.
	for off := int(from); off+hs+ms <= len(data); off++ {
		rest := data[off:]
		if v2 && crc32.Checksum(rest[:8], castagnoli) != binary.LittleEndian.Uint32(rest[8:12]) {
			continue
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		if n > maxRecord || hs+n+ms > len(rest) {
			continue
		}
		payload := rest[hs : hs+n]
		if v2 && [markSize]byte(rest[hs+n:hs+n+ms]) != commitMark {
			continue
		}
		if n == 0 || crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:8]) {
			continue
		}
		e, tail, err := chain.DecodeCanonical(payload)
		if err != nil || len(tail) != 0 || e.ChainID != chainID {
			continue
		}
		out = append(out, e)
		off += hs + n + ms - 1
	}
	return out, nil
}

// AfterDamage returns the entries of chainID that can still be read in dir
// after the corruption of segs[0], in file order: those Salvage finds after
// it, then, for each later segment, its valid records and what Salvage
// finds after its own corruption, if any. segs are what Recover returned,
// from the corrupt segment on.
func AfterDamage(dir, chainID string, segs []Segment) ([]entry.Entry, error) {
	var out []entry.Entry
	for i, s := range segs {
		if i > 0 {
			out = append(out, s.Entries...)
		}
		if s.Corrupt != nil {
			more, err := Salvage(filepath.Join(dir, s.Name), chainID, s.Corrupt.Offset)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
	}
	return out, nil
}

// Survivors returns, of found (in file order), each seq after last once and
// in ascending order: the entries a salvage keeps; and the seq ranges
// missing between them, first and last: the entries lost. Seqs missing
// after the last one kept are not known, and not among them.
func Survivors(found []entry.Entry, last int64) (kept []entry.Entry, lost [][2]int64) {
	for _, f := range found {
		if f.Seq <= last {
			continue
		}
		if f.Seq > last+1 {
			lost = append(lost, [2]int64{last + 1, f.Seq - 1})
		}
		kept = append(kept, f)
		last = f.Seq
	}
	return kept, lost
}

// Replace puts entries, which continue the chain at firstSeq, in place of
// the named segments of chainID in dir, and retires those segments and the
// acceptance acc into dir/lost/<chain_id>-<first seq>-<acceptance time>
// (LostDir), where they are kept as evidence and never read again. Nothing
// acknowledged
// is at risk at any point: the new segment is written and fsynced under a
// temporary name first, the old files are moved (the acceptance last), and
// only then does the new segment take its name. FinishReplace, called
// before Recover, completes or undoes a replacement a crash interrupted.
func Replace(dir, chainID string, firstSeq int64, acc *Acceptance, entries []entry.Entry, segments []string) error {
	token := fmt.Sprintf("%s-%020d-%d", chainID, firstSeq, acc.At.UnixNano())
	tmp := filepath.Join(dir, "."+token+replaceSuffix)
	var buf []byte
	buf = append(buf, magic...)
	var enc []byte
	for i := range entries {
		enc = chain.AppendCanonical(enc[:0], &entries[i])
		buf = appendRecord(buf, enc)
	}
	err := writeSynced(tmp, buf)
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("wal: writing %s: %w", tmp, err)
	}
	lost := filepath.Join(dir, LostDir, token)
	if err := os.MkdirAll(lost, 0o750); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	for _, d := range []string{filepath.Dir(lost), dir} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	// The acceptance goes last: while it is in dir, the move is not done.
	for _, name := range append(segments, AcceptanceName(chainID)) {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(lost, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: retiring %s: %w", filepath.Join(dir, name), err)
		}
		if err := syncDir(lost); err != nil {
			return err
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return finishReplace(dir, tmp, SegmentName(chainID, firstSeq))
}

const replaceSuffix = ".walreplace"

// writeSynced writes data to a new or truncated file at path and fsyncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func finishReplace(dir, tmp, name string) error {
	// A link, unlike a rename, never replaces a segment. One that is there
	// already is this link, made before a crash.
	final := filepath.Join(dir, name)
	if err := os.Link(tmp, final); err != nil {
		a, aerr := os.Stat(tmp)
		b, berr := os.Stat(final)
		if !errors.Is(err, fs.ErrExist) || aerr != nil || berr != nil || !os.SameFile(a, b) {
			return fmt.Errorf("wal: %w", err)
		}
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return syncDir(dir)
}

// ReplacePending reports whether dir holds a Replace that a crash
// interrupted, which the collector's next start completes or undoes.
func ReplacePending(dir string) (bool, error) {
	names, err := filepath.Glob(filepath.Join(dir, ".*"+replaceSuffix))
	return len(names) > 0, err
}

// FinishReplace completes a Replace of chainID in dir that a crash
// interrupted, or undoes it: when the acceptance was retired, the new
// segment takes its name; otherwise the retired files go back and the
// temporary segment is removed, so that the next Replace starts afresh.
func FinishReplace(dir, chainID string) error {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wal: reading %s: %w", dir, err)
	}
	for _, de := range des {
		// ".<chain_id>-<first seq, 20 digits>-<time>.walreplace"
		token, ok := strings.CutSuffix(strings.TrimPrefix(de.Name(), "."), replaceSuffix)
		rest, mine := strings.CutPrefix(token, chainID+"-")
		digits, _, _ := strings.Cut(rest, "-")
		first, err := strconv.ParseInt(digits, 10, 64)
		if !ok || !mine || len(digits) != 20 || err != nil || de.Name()[0] != '.' {
			continue
		}
		tmp := filepath.Join(dir, de.Name())
		lost := filepath.Join(dir, LostDir, token)
		if _, err := os.Lstat(filepath.Join(lost, AcceptanceName(chainID))); err == nil {
			if err := finishReplace(dir, tmp, SegmentName(chainID, first)); err != nil {
				return err
			}
			continue
		}
		moved, err := os.ReadDir(lost)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: %w", err)
		}
		for _, m := range moved {
			if err := os.Rename(filepath.Join(lost, m.Name()), filepath.Join(dir, m.Name())); err != nil {
				return fmt.Errorf("wal: undoing an interrupted replacement: %w", err)
			}
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		if err := os.Remove(tmp); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		_ = os.Remove(lost)
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// Retire moves the segment name of dir into dir/lost (LostDir), where it
// is kept and never read again, and fsyncs both directories. A name taken
// there by an earlier retirement gets a numeric suffix.
func Retire(dir, name string) error {
	lost := filepath.Join(dir, LostDir)
	if err := os.MkdirAll(lost, 0o750); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	target := filepath.Join(lost, name)
	for i := 1; ; i++ {
		if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
			break
		}
		target = filepath.Join(lost, name+"."+strconv.Itoa(i))
	}
	if err := os.Rename(filepath.Join(dir, name), target); err != nil {
		return fmt.Errorf("wal: retiring %s: %w", filepath.Join(dir, name), err)
	}
	if err := syncDir(lost); err != nil {
		return err
	}
	return syncDir(dir)
}

// Chains returns the chain ids of the segments in dir, sorted.
func Chains(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", dir, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, de := range des {
		// "<chain_id>-<first seq, 20 digits>.wal"
		n := len(de.Name()) - len(suffix) - 21
		if n < 1 {
			continue
		}
		id := de.Name()[:n]
		if _, ok := parseName(de.Name(), id); ok && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}
