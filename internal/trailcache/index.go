package trailcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"

	"github.com/parquet-go/parquet-go/bloom"
)

// A footer index is one file per trail in the cache directory,
//
//	<CacheDir>/footers/<hex SHA-256 of the trail's identity>
//
// that holds what Files read of every batch file's footer, so that a
// process reads one file instead of every footer. The identity is
// "dir" NUL <absolute path> for a directory and "s3" NUL <endpoint> NUL
// s3://bucket/prefix for S3. Its bytes, integers as Go's binary.AppendUvarint
// (u) and binary.AppendVarint (v) write them, a byte string as u(length)
// then the bytes:
//
//	indexMagic
//	u(indexVersion) bytes(identity) u(number of entries)
//	per entry:
//	  bytes(key) v(size) bytes(ETag) v(modification time, ns)
//	  bytes(chain id) v(first seq) v(last seq) v(rows)
//	  v(min time) v(max time) v(min end) v(max end)
//	  flags: 1 HasTimeStats, 2 HasEndStats, 4 an index (not a Problem), 8 idKnown
//	  bytes(problem)
//	  u(number of id groups), per group: hasStats (0 or 1) bytes(min) bytes(max) bytes(bloom bits)
//	CRC-32C of all the bytes before it, 4 bytes little endian
//
// An entry is used when the listing has its key, size and ETag (S3) or
// modification time (directory). An index that does not decode, is of
// another version or names another trail is ignored: every footer is read
// again. Processes write it whole, to a temporary file renamed into place,
// so that each reads one writer's index.
const indexMagic = "agentaudit footer index\n"

// indexVersion is the version of the footer index's layout and of what
// analyze derives from a footer; an index of another version is ignored.
const indexVersion = 1

// indexDir is the cache directory's folder of footer indexes.
const indexDir = "footers"

// Entry flags.
const (
	flagTimeStats = 1 << iota
	flagEndStats
	flagIndexed
	flagIDKnown
	flagsAll = flagTimeStats | flagEndStats | flagIndexed | flagIDKnown
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	errIndex   = errors.New("trailcache: malformed footer index")
)

// dirIndexID and s3IndexID are the identities of trails.
func dirIndexID(abs string) string          { return "dir\x00" + abs }
func s3IndexID(endpoint, url string) string { return "s3\x00" + endpoint + "\x00" + url }

// indexPath returns where the footer index of the trail of identity id is
// kept below cacheDir.
func indexPath(cacheDir, id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(cacheDir, indexDir, hex.EncodeToString(sum[:]))
}

// encodeIndex returns the footer index of states for the trail id.
func encodeIndex(id string, states []*fileState) []byte {
	n := len(indexMagic) + len(id) + 32
	for _, fs := range states {
		n += 128 + len(fs.Key) + len(fs.etag) + len(fs.ChainID) + len(fs.Problem)
		if fs.index != nil {
			for _, g := range fs.index.groups {
				n += 16 + len(g.min) + len(g.max) + len(g.bloom)*bloom.BlockSize
			}
		}
	}
	b := make([]byte, 0, n)
	b = append(b, indexMagic...)
	b = binary.AppendUvarint(b, indexVersion)
	b = appendBytes(b, id)
	b = binary.AppendUvarint(b, uint64(len(states)))
	for _, fs := range states {
		f := &fs.File
		b = appendBytes(b, f.Key)
		b = binary.AppendVarint(b, f.Size)
		b = appendBytes(b, f.etag)
		b = binary.AppendVarint(b, fs.mtime)
		b = appendBytes(b, f.ChainID)
		for _, v := range []int64{f.FirstSeq, f.LastSeq, f.Rows, f.MinTime, f.MaxTime, f.MinEnd, f.MaxEnd} {
			b = binary.AppendVarint(b, v)
		}
		var flags byte
		if f.HasTimeStats {
			flags |= flagTimeStats
		}
		if f.HasEndStats {
			flags |= flagEndStats
		}
		x := fs.index
		if x != nil {
			flags |= flagIndexed
			if x.idKnown {
				flags |= flagIDKnown
			}
		}
		b = append(b, flags)
		b = appendBytes(b, f.Problem)
		if x == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(x.groups)))
		for _, g := range x.groups {
			if g.hasStats {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
			b = appendBytes(b, g.min)
			b = appendBytes(b, g.max)
			b = appendBytes(b, g.bloom.Bytes())
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func appendBytes[S string | []byte](b []byte, s S) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decodeIndex returns the entries, by key, of the footer index b of the
// trail id; an error wrapping errIndex if b is not one.
func decodeIndex(id string, b []byte) (map[string]*fileState, error) {
	if len(b) < len(indexMagic)+4 || string(b[:len(indexMagic)]) != indexMagic {
		return nil, fmt.Errorf("%w: no magic", errIndex)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", errIndex)
	}
	r := &indexReader{b: body[len(indexMagic):]}
	if v := r.uvarint(); r.err == nil && v != indexVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errIndex, v, indexVersion)
	}
	if got := r.bytes(); r.err == nil && string(got) != id {
		return nil, fmt.Errorf("%w: of another trail", errIndex)
	}
	n := r.count()
	out := make(map[string]*fileState, n)
	for range n {
		fs := r.entry()
		if r.err != nil {
			return nil, r.err
		}
		if out[fs.Key] != nil {
			return nil, fmt.Errorf("%w: %q twice", errIndex, fs.Key)
		}
		out[fs.Key] = fs
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d bytes after the entries", errIndex, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// indexReader decodes an index's body; the first problem sticks in err,
// after which every read returns a zero value.
type indexReader struct {
	b   []byte
	err error
}

func (r *indexReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or garbled", errIndex)
	}
}

func (r *indexReader) uvarint() uint64 { return readVarint(r, binary.Uvarint) }
func (r *indexReader) varint() int64   { return readVarint(r, binary.Varint) }

// readVarint decodes a number with decode, binary.Uvarint or Varint.
func readVarint[T uint64 | int64](r *indexReader, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *indexReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns a byte string, sharing r's memory.
func (r *indexReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// count returns a number of items, each of which takes at least a byte:
// no more than the bytes left, so that a garbled count allocates nothing.
func (r *indexReader) count() int {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

// entry decodes one entry; r.err says whether it could.
func (r *indexReader) entry() *fileState {
	fs := &fileState{}
	f := &fs.File
	f.Key = string(r.bytes())
	f.Size = r.varint()
	f.etag = string(r.bytes())
	fs.mtime = r.varint()
	f.ChainID = string(r.bytes())
	for _, p := range []*int64{&f.FirstSeq, &f.LastSeq, &f.Rows, &f.MinTime, &f.MaxTime, &f.MinEnd, &f.MaxEnd} {
		*p = r.varint()
	}
	flags := r.byte()
	f.HasTimeStats, f.HasEndStats = flags&flagTimeStats != 0, flags&flagEndStats != 0
	f.Problem = string(r.bytes())
	groups := r.count()
	if r.err != nil {
		return nil
	}
	// Select needs an index for every file without a Problem, and none
	// for one with.
	if flags&^flagsAll != 0 || (flags&flagIndexed != 0) != (f.Problem == "") || (flags&flagIndexed == 0 && (groups > 0 || flags&flagIDKnown != 0)) {
		r.err = fmt.Errorf("%w: %q: inconsistent flags %#x", errIndex, f.Key, flags)
		return nil
	}
	if f.Problem != "" {
		return fs
	}
	fs.index = &index{idKnown: flags&flagIDKnown != 0}
	if groups > 0 {
		fs.index.groups = make([]idGroup, groups)
	}
	for i := range fs.index.groups {
		g := &fs.index.groups[i]
		switch r.byte() {
		case 0:
		case 1:
			g.hasStats = true
		default:
			r.fail()
		}
		g.min, g.max = string(r.bytes()), string(r.bytes())
		if bits := r.bytes(); len(bits) > 0 {
			if len(bits)%bloom.BlockSize != 0 {
				r.err = fmt.Errorf("%w: %q: a bloom filter of %d bytes", errIndex, f.Key, len(bits))
			}
			// A copy: a filter is read as uint32s, which must be aligned.
			g.bloom = bloom.MakeSplitBlockFilter(slices.Clone(bits))
		}
		if r.err != nil {
			return nil
		}
	}
	return fs
}

// loadIndex returns the entries of the footer index at path for the trail
// id, or nil when there is none or it is not one.
func loadIndex(path, id string) map[string]*fileState {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	m, err := decodeIndex(id, b)
	if err != nil {
		return nil
	}
	return m
}

// storeIndex writes the footer index of states to path, through a
// temporary file beside it and a rename.
func storeIndex(path, id string, states []*fileState) error {
	return writeFile(path, encodeIndex(id, states))
}
