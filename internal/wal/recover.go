package wal // import "github.com/agentaudit/agentaudit/internal/wal"

// Recovery: reading the segments a crash left, and telling a torn tail
// from corruption (the package doc says how).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Segment is what Recover found in one segment file.
type Segment struct {
	Name     string // file name in the log's directory
	FirstSeq int64  // from the file name
	// Entries are the records before the first invalid one, decoded, with
	// their entry hashes recomputed.
	Entries []entry.Entry
	// ValidBytes is the length of the magic and the valid records.
	ValidBytes int64
	// Torn reports a torn tail after the valid records (see the package
	// doc): the newest segment's record that a crash interrupted, never
	// acknowledged. TornBytes is the rest of the file then (0 otherwise).
	Torn      bool
	TornBytes int64
	// Corrupt is set when invalid bytes follow the valid records and are
	// not a torn tail. It wraps ErrCorrupt.
	Corrupt *CorruptError
}

// Recover reads every segment of chainID in dir, oldest first. A missing
// dir holds no segments. Segments of other chains are left alone. Recover
// changes nothing on disk: a torn tail is dropped with Truncate, and a
// corrupt segment (Segment.Corrupt) is the caller's to refuse.
func Recover(dir, chainID string) ([]Segment, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: reading %s: %w", dir, err)
	}
	type found struct {
		seg  Segment
		torn bool // what follows the valid records may be a torn tail
		why  string
	}
	var segs []found
	for _, de := range des {
		name := de.Name()
		first, ok := parseName(name, chainID)
		if !ok {
			continue
		}
		path := filepath.Join(dir, name)
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("wal: %s is not a regular file", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("wal: reading %s: %w", path, err)
		}
		p := parse(data, chainID, first)
		segs = append(segs, found{
			seg:  Segment{Name: name, FirstSeq: first, Entries: p.entries, ValidBytes: p.valid},
			torn: p.torn, why: p.why,
		})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seg.FirstSeq < segs[j].seg.FirstSeq })
	out := make([]Segment, len(segs))
	for i, f := range segs {
		seg := f.seg
		switch {
		case f.why == "":
		case f.torn && i == len(segs)-1:
			info, err := os.Stat(filepath.Join(dir, seg.Name))
			if err != nil {
				return nil, fmt.Errorf("wal: %w", err)
			}
			seg.Torn, seg.TornBytes = true, info.Size()-seg.ValidBytes
		default:
			seg.Corrupt = &CorruptError{Path: filepath.Join(dir, seg.Name), Offset: seg.ValidBytes, Reason: f.why}
			if f.torn {
				seg.Corrupt.Reason += ", in a segment that is not the newest"
			}
		}
		out[i] = seg
	}
	return out, nil
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

// v1Start is how every segment of format 1 begins after its first
// record's 8-byte header: the canonical encoding's format tag. Segments of
// format 1 were written before entries had end times, so the tag is
// always that of an entry of version 1.
var v1Start = []byte(fmt.Sprintf("%d:%s", len(chain.FormatTagV1), chain.FormatTagV1))

// isV1 reports whether data is a segment of format 1: it begins with a
// record header and an entry's canonical encoding, or with as much of them
// as a crash let through.
func isV1(data []byte) bool {
	if len(data) <= headerSizeV1 {
		return true
	}
	rest := data[headerSizeV1:]
	n := min(len(rest), len(v1Start))
	return bytes.Equal(rest[:n], v1Start[:n])
}

// parsed is what parse found in a segment.
type parsed struct {
	entries []entry.Entry
	valid   int64 // length of the magic and the valid records
	// why says what is wrong with the bytes at valid; "" when nothing but
	// zeros follows the valid records.
	why string
	// torn: those bytes look like a write that stopped short (package
	// doc); a torn tail if the segment is the newest.
	torn bool
}

// parse decodes the records of data, a segment of chainID whose first entry
// has seq first, until the first invalid byte, and says what is there.
func parse(data []byte, chainID string, first int64) parsed {
	var p parsed
	// z is where the trailing zeros begin: the end of what was written.
	z := len(data)
	for z > 0 && data[z-1] == 0 {
		z--
	}
	v2 := bytes.HasPrefix(data, []byte(magic))
	hs, ms, off := headerSizeV1, 0, 0
	switch {
	case v2:
		hs, ms, off = headerSize, markSize, len(magic)
	case z <= len(magic) && bytes.HasPrefix([]byte(magic), data[:z]):
		// Nothing but (part of) the magic was written: it goes to disk
		// with the first group commit.
		return p
	case !isV1(data[:z]):
		// A damaged magic must not make a segment of format 2 read as
		// one of format 1, whose rules are weaker.
		p.why = "segment begins with neither the magic number nor a record of format 1"
		return p
	}
	for {
		p.valid = int64(off)
		if off >= z {
			return p
		}
		rest := data[off:]
		if z-off < hs {
			// Only the start of a header was written.
			p.why, p.torn = "record header cut short", true
			return p
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		if v2 && crc32.Checksum(rest[:8], castagnoli) != binary.LittleEndian.Uint32(rest[8:12]) {
			p.why = "record header checksum mismatch"
			return p
		}
		if n > maxRecord {
			p.why = fmt.Sprintf("record length %d over the limit of %d", n, maxRecord)
			return p
		}
		// The header checks out. The record was not written to its end
		// if nothing but zeros follows the part of its commit mark that
		// is there (in format 1, its last payload byte).
		end := hs + n + ms
		written, k := off+hs+n, 0
		if !v2 {
			written--
		}
		for ; k < ms && written < len(data) && data[written] == commitMark[k]; k++ {
			written++
		}
		p.torn = z <= written && (!v2 || k < ms)
		if end > len(rest) {
			p.why = "record runs past the end of the file"
			return p
		}
		payload := rest[hs : hs+n]
		if v2 && [markSize]byte(rest[hs+n:end]) != commitMark {
			p.why = "record commit mark missing"
			return p
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:8]) {
			p.why = "record payload checksum mismatch"
			return p
		}
		p.torn = false
		e, tail, err := chain.DecodeCanonical(payload)
		want := first + int64(len(p.entries))
		switch {
		case err != nil:
			p.why = fmt.Sprintf("record is not an entry: %v", err)
		case len(tail) != 0:
			p.why = fmt.Sprintf("record has %d bytes after its entry", len(tail))
		case e.ChainID != chainID:
			p.why = fmt.Sprintf("record is an entry of chain %q, want %q", e.ChainID, chainID)
		case e.Seq != want:
			p.why = fmt.Sprintf("record holds seq %d, want %d", e.Seq, want)
		case len(p.entries) > 0 && e.PrevHash != p.entries[len(p.entries)-1].EntryHash:
			p.why = fmt.Sprintf("record of seq %d does not link to the entry before it", e.Seq)
		}
		if p.why != "" {
			return p
		}
		p.entries = append(p.entries, e)
		off += end
	}
}
