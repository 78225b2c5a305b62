package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/zstdtest"
)

// allocated returns the bytes f allocates (the heap's cumulative count, so
// that memory freed again still counts).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxBombAlloc is what reading a crafted file of 30 entries may allocate:
// a clean one takes about 1 MiB.
const maxBombAlloc = 64 << 20

// bombs are pages crafted to make a reader allocate far more than the file
// holds. Each changes the first page of a column chunk (header and
// compressed body).
var bombs = []struct {
	name   string
	change func(h *format.PageHeader, body []byte) []byte
}{
	{"frame declares 4 GiB", func(h *format.PageHeader, _ []byte) []byte {
		return zstdtest.RLEFrame(int64(h.UncompressedPageSize), 4<<30)
	}},
	{"frame makes 1 GiB, declares none", func(_ *format.PageHeader, _ []byte) []byte {
		return zstdtest.RLEFrame(1<<30, -1)
	}},
	{"header declares 2 GiB", func(h *format.PageHeader, body []byte) []byte {
		h.UncompressedPageSize = math.MaxInt32
		return body
	}},
	{"header and frame agree on 1 GiB", func(h *format.PageHeader, _ []byte) []byte {
		h.UncompressedPageSize = 1 << 30
		return zstdtest.RLEFrame(1<<30, 1<<30)
	}},
	{"header declares 2^31 values", func(h *format.PageHeader, body []byte) []byte {
		if h.DataPageHeader.Valid {
			h.DataPageHeader.V.NumValues = math.MaxInt32
		}
		if h.DictionaryPageHeader.Valid {
			h.DictionaryPageHeader.V.NumValues = math.MaxInt32
		}
		return body
	}},
}

// TestBombPagesRefused: a page crafted to exhaust memory makes its file a
// not_audit_file, without the memory being allocated.
func TestBombPagesRefused(t *testing.T) {
	orig, err := encode(buildChain("replica-0", 30))
	require.NoError(t, err)
	const key = "dt=2026-03-09/replica-0-00000000000000000000.parquet"
	for _, col := range []int{colSeq, colTimeUnixNano, colEndTimeUnixNano, colAgentName, colEntryHash} {
		for _, bomb := range bombs {
			data := rewritePages(t, orig, col, func(i int, h *format.PageHeader, body []byte) []byte {
				if i > 0 {
					return body
				}
				return bomb.change(h, body)
			})
			t.Run(columnNames[col]+"/"+bomb.name, func(t *testing.T) {
				r := newFileReader()
				var res *fileResult
				n := allocated(func() { res = r.read(key, slices.Clone(data)) })
				assert.Less(t, n, uint64(maxBombAlloc), "bytes allocated")
				require.False(t, res.ok)
				require.Len(t, res.violations, 1, joinLines(res.violations))
				assert.Equal(t, NotAuditFile, res.violations[0].Kind)
				assert.Contains(t, res.violations[0].Detail, "decompression bound exceeded")
				// The reader reads a clean file next, as before.
				res = r.read(key, slices.Clone(orig))
				assert.Empty(t, res.violations)
			})
		}
	}
}

// colAgentName is a dictionary-encoded column.
const colAgentName = colExecutionID + 5

// TestBombInTrail: a file with a bomb page is reported and the rest of the
// trail verified.
func TestBombInTrail(t *testing.T) {
	for _, bomb := range bombs {
		t.Run(bomb.name, func(t *testing.T) {
			tr := newTrail(t)
			key := tr.keys[c0][2]
			orig, err := os.ReadFile(tr.path(key))
			require.NoError(t, err)
			data := rewritePages(t, orig, colEntryHash, func(i int, h *format.PageHeader, body []byte) []byte {
				if i > 0 {
					return body
				}
				return bomb.change(h, body)
			})
			require.NoError(t, os.WriteFile(tr.path(key), data, 0o644))
			var rep *Report
			n := allocated(func() { rep = verifyDir(t, tr.dir) })
			assert.Less(t, n, uint64(2*maxBombAlloc), "bytes allocated")
			assert.False(t, rep.Intact)
			assert.Equal(t, int64(2*chainLen-perFile), rep.Entries, "every other file read")
			assertNotAuditFile(t, rep, key, "decompression bound exceeded")
			for _, c := range rep.Chains {
				assert.Equal(t, c.ChainID != c0, c.Intact, c.ChainID)
			}
		})
	}
}

// TestForeignShapesIntact: files as other tools write them (every codec
// parquet-go reads, data pages v1 and v2) pass the checks, and a clean
// trail of them is intact.
func TestForeignShapesIntact(t *testing.T) {
	for _, c := range []compress.Codec{&parquet.Uncompressed, &parquet.Snappy, &parquet.Gzip, &parquet.Brotli, &parquet.Lz4Raw, &parquet.Zstd} {
		for _, v := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/v%d", c.CompressionCodec(), v), func(t *testing.T) {
				tr := newTrail(t)
				for i := range tr.keys[c0] {
					es := tr.file(c0, i)
					writeRawWith(t, tr.dir, tr.keys[c0][i], es, footerOf(es), nil, parquet.Compression(c), parquet.DataPageVersion(v))
				}
				rep := verifyDir(t, tr.dir)
				assert.True(t, rep.Intact, joinLines(rep.Violations))
			})
		}
	}
}

// TestGzipBombRefused: a gzip page that inflates past its declared size
// (256 MiB of zeros in 256 KiB) is refused before parquet-go inflates it.
func TestGzipBombRefused(t *testing.T) {
	var bomb bytes.Buffer
	zw, err := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	require.NoError(t, err)
	zeros := make([]byte, 1<<20)
	for range 256 {
		_, err := zw.Write(zeros)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	tr := newTrail(t)
	es := tr.file(c0, 0)
	dir := t.TempDir()
	writeRawWith(t, dir, tr.keys[c0][0], es, footerOf(es), nil, parquet.Compression(&parquet.Gzip))
	orig, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tr.keys[c0][0])))
	require.NoError(t, err)
	data := rewritePages(t, orig, colEntryHash, func(i int, _ *format.PageHeader, body []byte) []byte {
		if i > 0 {
			return body
		}
		return bomb.Bytes()
	})
	r := newFileReader()
	var res *fileResult
	n := allocated(func() { res = r.read(tr.keys[c0][0], data) })
	assert.Less(t, n, uint64(maxBombAlloc), "bytes allocated")
	require.Len(t, res.violations, 1, joinLines(res.violations))
	assert.Equal(t, NotAuditFile, res.violations[0].Kind)
	assert.Contains(t, res.violations[0].Detail, "decompression bound exceeded")
}

// TestCheckFile: one file checked on its own (auditctl prove does this
// before it reads a batch) gets the verifier's verdict and bounds.
func TestCheckFile(t *testing.T) {
	orig, err := encode(buildChain("replica-0", 30))
	require.NoError(t, err)
	const key = "dt=2026-03-09/replica-0-00000000000000000000.parquet"
	assert.Empty(t, CheckFile(key, slices.Clone(orig)))

	vs := CheckFile("dt=2026-03-09/replica-0-00000000000000000005.parquet", slices.Clone(orig))
	require.Len(t, vs, 1, joinLines(vs))
	assert.Equal(t, FileNameMismatch, vs[0].Kind)

	bomb := rewritePages(t, orig, colEntryHash, func(i int, h *format.PageHeader, body []byte) []byte {
		if i > 0 {
			return body
		}
		return bombs[0].change(h, body)
	})
	n := allocated(func() { vs = CheckFile(key, bomb) })
	assert.Less(t, n, uint64(maxBombAlloc), "bytes allocated")
	require.Len(t, vs, 1, joinLines(vs))
	assert.Equal(t, NotAuditFile, vs[0].Kind)
	assert.Contains(t, vs[0].Detail, "decompression bound exceeded")
}

// footerBombs are footers (thrift compact FileMetaData) that declare far
// more than they hold, or nest too deep for parquet-go's recursive decoder.
var footerBombs = []struct {
	name   string
	footer []byte
}{
	// field 2 (schema): a list of two billion structs; parquet-go
	// allocated 190 GB for it (a fatal out-of-memory error).
	{"schema list", append([]byte{0x15, 0x02, 0x19, 0xfc}, binary.AppendUvarint(nil, 2_000_000_000)...)},
	// field 5 (key_value_metadata): 40 million, a few GB.
	{"key-value list", append([]byte{0x15, 0x02, 0x39, 0xfc}, binary.AppendUvarint(nil, 40_000_000)...)},
	// field 1 as a map of a billion string pairs (skipped by parquet-go,
	// but declared).
	{"map", append(append([]byte{0x1b}, binary.AppendUvarint(nil, 1_000_000_000)...), 0x88, 0, 0)},
	// field 6 (created_by): a string of two billion bytes.
	{"string", append([]byte{0x15, 0x02, 0x48}, binary.AppendUvarint(nil, 2_000_000_000)...)},
	// field 1 as a struct in a struct, 200,000 deep.
	{"nesting", bytes.Repeat([]byte{0x1c}, 200_000)},
}

// withFooter returns a Parquet file of nothing but footer.
func withFooter(footer []byte) []byte {
	data := append([]byte("PAR1"), footer...)
	data = binary.LittleEndian.AppendUint32(data, uint32(len(footer)))
	return append(data, "PAR1"...)
}

// TestFooterBombsRefused: a file whose footer is a bomb is a
// not_audit_file, reported without the memory being allocated, and the
// rest of the trail is verified.
func TestFooterBombsRefused(t *testing.T) {
	for _, bomb := range footerBombs {
		t.Run(bomb.name, func(t *testing.T) {
			tr := newTrail(t)
			key := tr.keys[c0][2]
			require.NoError(t, os.WriteFile(tr.path(key), withFooter(bomb.footer), 0o644))
			var rep *Report
			n := allocated(func() { rep = verifyDir(t, tr.dir) })
			assert.Less(t, n, uint64(maxBombAlloc), "bytes allocated")
			assert.False(t, rep.Intact)
			assert.Equal(t, int64(2*chainLen-perFile), rep.Entries, "every other file read")
			assertNotAuditFile(t, rep, key, "undecodable footer")
			assert.NotEmpty(t, CheckFile(key, withFooter(bomb.footer)), "CheckFile (auditctl prove)")
		})
	}
}

// assertNotAuditFile asserts that rep reports file key as a not_audit_file
// whose detail contains detail, and nothing else of it.
func assertNotAuditFile(t *testing.T, rep *Report, key, detail string) {
	t.Helper()
	var found bool
	for _, v := range rep.Violations {
		if v.File == key {
			found = true
			assert.Equal(t, NotAuditFile, v.Kind)
			assert.Contains(t, v.Detail, detail)
		}
	}
	assert.True(t, found, joinLines(rep.Violations))
}

// TestPlainCutShortRefused: PLAIN pages in other tools' shapes (every
// codec, data pages v1 and v2) whose last value is cut short are refused:
// INT64 values before parquet-go reads them past their end, strings by
// parquet-go itself, whose PLAIN decoder stops at the page's end.
func TestPlainCutShortRefused(t *testing.T) {
	for _, c := range []compress.Codec{&parquet.Uncompressed, &parquet.Snappy, &parquet.Gzip, &parquet.Zstd} {
		for _, v := range []int{1, 2} {
			for _, col := range []int{colEntryHash, colExecutionID + 12, colSeq} { // required, optional (previous_value), INT64
				t.Run(fmt.Sprintf("%s/v%d/%s", c.CompressionCodec(), v, columnNames[col]), func(t *testing.T) {
					tr := newTrail(t)
					key := tr.keys[c0][2]
					es := tr.file(c0, 2)
					writeRawWith(t, tr.dir, key, es, footerOf(es), nil, parquet.Compression(c), parquet.DataPageVersion(v),
						parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.Plain))
					orig, err := os.ReadFile(tr.path(key))
					require.NoError(t, err)
					data := rewritePages(t, orig, col, func(_ int, h *format.PageHeader, body []byte) []byte {
						return cutLastBytes(t, c, h, body, 4)
					})
					require.NoError(t, os.WriteFile(tr.path(key), data, 0o644))
					rep := verifyDir(t, tr.dir)
					assertCutShort(t, rep, key)
				})
			}
		}
	}
}

// cutLastBytes removes the last n bytes of the values of a data page
// compressed with c, and says so in its header.
func cutLastBytes(t *testing.T, c compress.Codec, h *format.PageHeader, body []byte, n int) []byte {
	t.Helper()
	var levels []byte
	switch {
	case h.Type == format.DataPage:
	case h.Type == format.DataPageV2:
		l := int(h.DataPageHeaderV2.V.RepetitionLevelsByteLength + h.DataPageHeaderV2.V.DefinitionLevelsByteLength)
		levels, body = body[:l], body[l:]
	default:
		return body
	}
	vals, err := c.Decode(nil, body)
	require.NoError(t, err)
	vals = vals[:len(vals)-n]
	comp, err := c.Encode(nil, vals)
	require.NoError(t, err)
	h.UncompressedPageSize = int32(len(levels) + len(vals))
	return append(slices.Clone(levels), comp...)
}

// assertCutShort asserts that rep reports file key as a not_audit_file
// whose PLAIN values are cut short: in the words of the checks
// (internal/parquetfile) or of parquet-go's PLAIN decoder.
func assertCutShort(t *testing.T, rep *Report, key string) {
	t.Helper()
	var found bool
	for _, v := range rep.Violations {
		if v.File == key {
			found = true
			assert.Equal(t, NotAuditFile, v.Kind)
			if !strings.Contains(v.Detail, "PLAIN values cut short") {
				assert.Contains(t, v.Detail, "too short to contain a PLAIN encoded byte array")
			}
		}
	}
	assert.True(t, found, joinLines(rep.Violations))
}

// TestPageHeaderBombRefused: a page header (thrift, like the footer) whose
// statistics declare a string of two billion bytes it does not hold is
// refused before parquet-go allocates it.
func TestPageHeaderBombRefused(t *testing.T) {
	orig, err := encode(buildChain("replica-0", 30))
	require.NoError(t, err)
	const key = "dt=2026-03-09/replica-0-00000000000000000000.parquet"
	var proto thrift.CompactProtocol
	marker := bytes.Repeat([]byte{'A'}, 100)
	data := rewritePagesRaw(t, orig, colEntryHash, func(i int, h *format.PageHeader, body []byte) ([]byte, []byte) {
		h.CompressedPageSize = int32(len(body))
		h.CRC = int32(crc32.ChecksumIEEE(body))
		if i == 0 {
			h.DataPageHeader.V.Statistics.MaxValue = marker
		}
		hb, err := thrift.Marshal(&proto, h)
		require.NoError(t, err)
		if i == 0 {
			// The string's length says two billion; its bytes go.
			at := bytes.Index(hb, append([]byte{100}, marker...))
			require.GreaterOrEqual(t, at, 0)
			hb = slices.Concat(hb[:at], binary.AppendUvarint(nil, 2_000_000_000), hb[at+1+len(marker):])
		}
		return hb, body
	})
	r := newFileReader()
	var res *fileResult
	n := allocated(func() { res = r.read(key, data) })
	assert.Less(t, n, uint64(maxBombAlloc), "bytes allocated")
	require.Len(t, res.violations, 1, joinLines(res.violations))
	assert.Equal(t, NotAuditFile, res.violations[0].Kind)
	assert.Contains(t, res.violations[0].Detail, "decompression bound exceeded: page header")
}
