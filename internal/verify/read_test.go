package verify

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
)

// Tests of how a file's rows are read: through parquet-go, after the
// checks of internal/parquetfile, with a verdict that depends on the file
// alone.

// readTwice reads one file with a fresh reader, then again with a reader
// that has just read another file (other values, in parquet-go's pooled
// buffers too), requires the same result, and returns it. A verdict that
// depended on memory left by an earlier file would differ. (Only the
// words of a decoder's error may differ: klauspost's zstd decoder words
// some errors in a frame after its state.)
func readTwice(t *testing.T, key string, data []byte) *fileResult {
	t.Helper()
	first := newFileReader().read(key, slices.Clone(data))
	r := newFileReader()
	other, err := encode(buildChain("replica-9", 300))
	require.NoError(t, err)
	r.read("dt=2026-03-09/replica-9-00000000000000000000.parquet", other)
	again := r.read(key, slices.Clone(data))
	require.Equal(t, decoderWords(first), decoderWords(again), "the verdict depends on what was read before")
	return first
}

// decoderWords is res with the error of an undecodable page's codec cut
// from its details.
func decoderWords(res *fileResult) *fileResult {
	out := *res
	out.violations = slices.Clone(res.violations)
	for i, v := range out.violations {
		if k := strings.Index(v.Detail, ": undecodable "); k >= 0 && v.Kind == NotAuditFile {
			out.violations[i].Detail = v.Detail[:k]
		}
	}
	return &out
}

// batchKeys lists the .parquet files below dir, as keys, in order.
func batchKeys(t *testing.T, dir string) []string {
	t.Helper()
	var keys []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			keys = append(keys, filepath.ToSlash(rel))
		}
		return err
	})
	require.NoError(t, err)
	slices.Sort(keys)
	return keys
}

// TestTrailWrittenBeforeHexFrames verifies a trail written before the
// hash columns' pages were hexzstd frames (testdata/trail-plain-hashes,
// written by d68db27's writer: 2,300 entries of chain replica-a in two
// files, 300 of replica-b, format version 1): intact.
func TestTrailWrittenBeforeHexFrames(t *testing.T) {
	dir := "testdata/trail-plain-hashes"
	rep := verifyDir(t, dir)
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, int64(2600), rep.Entries)
	assert.Equal(t, 3, rep.Files)
	keys := batchKeys(t, dir)
	require.Len(t, keys, 3)
	for _, k := range keys {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		res := readTwice(t, k, data)
		assert.Empty(t, res.violations, k)
	}
}

// TestTrailWrittenWithHexzstdFrames verifies testdata/trail-hexzstd, written
// by 865b82e's writer, the last whose hash columns' pages were zstd frames
// built by hand (the fixed shape of internal/hexzstd, removed since, from 16
// values on, one raw block below): chain replica-hz, seq 0 to 3999 (each
// hash column in pages of 3,840 and 160 values) and 4000 to 4009 (pages of
// 10), a signed checkpoint after each file and the chain's published
// verifier key. It is intact.
func TestTrailWrittenWithHexzstdFrames(t *testing.T) {
	dir := "testdata/trail-hexzstd"
	rep := verifyDir(t, dir)
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, int64(4010), rep.Entries)
	assert.Equal(t, 2, rep.Files)
	assert.Equal(t, 2, rep.StoredCheckpoints)
	assert.Equal(t, []string{"agentaudit-replica-hz+bfc27509"}, rep.TrustedOnFirstUse)
	require.Len(t, rep.Chains, 1)
	assert.Equal(t, "eab92aae5ef56e9987fc83ecee479456df31608d81ec9dd1b25990e9b6cd8f65", rep.Chains[0].LastHash)
	assert.Equal(t, int64(4010), rep.Chains[0].CheckpointSize)

	keys := batchKeys(t, dir)
	require.Len(t, keys, 2)
	for i, k := range keys {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		res := readTwice(t, k, data)
		assert.Empty(t, res.violations, k)
		// The testdata holds what it is kept for.
		for _, col := range []int{colPrevHash, colEntryHash} {
			var hex, raw int
			rewritePages(t, data, col, func(_ int, _ *format.PageHeader, body []byte) []byte {
				switch handBuiltFrame(body) {
				case "hexzstd":
					hex++
				case "raw":
					raw++
				}
				return body
			})
			if i == 0 {
				assert.Equal(t, 2, hex, "%s %s: hexzstd frames", k, columnNames[col])
			} else {
				assert.Equal(t, 1, raw, "%s %s: frames of one raw block", k, columnNames[col])
			}
		}
	}
}

// handBuiltFrame names the shape of a zstd frame as internal/hexzstd and
// internal/parquetfile's literal frames wrote it up to 865b82e: the frame
// header is the magic number, descriptor 0xA0 (single segment, 4-byte
// content size) and the size; a "hexzstd" frame's first block is raw and
// holds the first value's length prefix, 64 (block header 0x20 0x00 0x00,
// then 40 00 00 00); a "raw" frame is one last raw block of the whole
// content. Anything else is "".
func handBuiltFrame(f []byte) string {
	if len(f) < 12 || binary.LittleEndian.Uint32(f) != 0xFD2FB528 || f[4] != 0xA0 {
		return ""
	}
	size := binary.LittleEndian.Uint32(f[5:])
	block := uint32(f[9]) | uint32(f[10])<<8 | uint32(f[11])<<16
	switch {
	case len(f) >= 16 && string(f[9:16]) == "\x20\x00\x00\x40\x00\x00\x00":
		return "hexzstd"
	case block == size<<3|1 && len(f) == 12+int(size):
		return "raw"
	}
	return ""
}

// TestCorruptBytesSameVerdict flips single bytes of a file: the verdict on
// each is the same whatever was read before, and never a crash.
func TestCorruptBytesSameVerdict(t *testing.T) {
	es := buildChain("replica-0", 30)
	orig, err := encode(es)
	require.NoError(t, err)
	step := max(1, len(orig)/1500)
	caught := 0
	for off := 0; off < len(orig); off += step {
		data := slices.Clone(orig)
		data[off] ^= byte(1 + off%255)
		if res := readTwice(t, "dt=2026-03-09/replica-0-00000000000000000000.parquet", data); len(res.violations) > 0 {
			caught++
		}
	}
	t.Logf("%d of %d flipped bytes reported", caught, (len(orig)+step-1)/step)
	assert.Positive(t, caught)
}

// TestCraftedPages rewrites the decompressed pages of one column chunk
// (recompressed, with a correct CRC, and a footer whose offsets follow),
// the way an attacker would craft a file that passes the checksums: the
// verdict on each is the same whatever was read before, never a crash, and
// a file whose rows changed is never intact.
func TestCraftedPages(t *testing.T) {
	es := buildChain("replica-0", 40)
	es[3].Approver = nil
	es[4].EndTimeUnixNano, es[4].Sender = nil, nil // a row of version 1: end_time_unix_nano has NULLs too
	rehash(es)
	orig, err := encode(es)
	require.NoError(t, err)
	const key = "dt=2026-03-09/replica-0-00000000000000000000.parquet"
	// The rewriting itself changes nothing.
	for col := range numColumns {
		res := readTwice(t, key, rewriteChunk(t, orig, col, func(_ int, _ *format.PageHeader, b []byte) []byte { return b }))
		require.Empty(t, res.violations, columnNames[col])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	caught, cut := 0, 0
	for col := range numColumns {
		changes := []func(int, *format.PageHeader, []byte) []byte{
			// One byte flipped, in every page.
			func(_ int, _ *format.PageHeader, b []byte) []byte {
				if len(b) > 0 {
					b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
				}
				return b
			},
			// A byte flipped in the first 16 (levels, lengths, bit widths).
			func(_ int, _ *format.PageHeader, b []byte) []byte {
				if len(b) > 0 {
					b[rng.IntN(min(16, len(b)))] ^= byte(1 << rng.IntN(8))
				}
				return b
			},
			// Trailing bytes.
			func(_ int, _ *format.PageHeader, b []byte) []byte { return append(b, 0, 0, 0, 0) },
			// Truncated.
			func(_ int, _ *format.PageHeader, b []byte) []byte { return b[:len(b)-min(len(b), 1+rng.IntN(8))] },
			// The value count in the header off by one.
			func(_ int, h *format.PageHeader, b []byte) []byte {
				if h.DataPageHeader.Valid {
					h.DataPageHeader.V.NumValues += int32(1 - 2*rng.IntN(2))
				}
				if h.DictionaryPageHeader.Valid {
					h.DictionaryPageHeader.V.NumValues += int32(1 - 2*rng.IntN(2))
				}
				return b
			},
			// Another value encoding declared.
			func(_ int, h *format.PageHeader, b []byte) []byte {
				if h.DataPageHeader.Valid {
					h.DataPageHeader.V.Encoding = []format.Encoding{format.Plain, format.RLEDictionary, format.DeltaLengthByteArray}[rng.IntN(3)]
				}
				return b
			},
			// Definition levels declared bit-packed.
			func(_ int, h *format.PageHeader, b []byte) []byte {
				if h.DataPageHeader.Valid {
					h.DataPageHeader.V.DefinitionLevelEncoding = format.BitPacked
				}
				return b
			},
		}
		for _, change := range changes {
			for range 6 {
				data := rewriteChunk(t, orig, col, change)
				res := readTwice(t, key, data)
				if len(res.violations) > 0 {
					caught++
				} else {
					got, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
					require.NoError(t, err, "%s: intact, but the file does not read", columnNames[col])
					require.Equal(t, es, got, "%s: intact, but the rows changed", columnNames[col])
				}
				for _, v := range res.violations {
					if strings.Contains(v.Detail, "values cut short") {
						cut++
					}
				}
			}
		}
	}
	t.Logf("%d crafted files, %d with violations, %d with values cut short", numColumns*7*6, caught, cut)
	assert.Positive(t, cut, "some crafted pages must be cut short")
}

// rewriteChunk returns the file data with the pages of column col of the
// first row group passed through change (given the page index, its header
// to edit, and its decompressed bytes), recompressed with a correct CRC,
// and the footer's offsets moved to match.
func rewriteChunk(t *testing.T, data []byte, col int, change func(int, *format.PageHeader, []byte) []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	return rewritePages(t, data, col, func(i int, h *format.PageHeader, body []byte) []byte {
		raw, err := dec.DecodeAll(body, nil)
		require.NoError(t, err)
		raw = change(i, h, raw)
		h.UncompressedPageSize = int32(len(raw))
		return enc.EncodeAll(raw, nil)
	})
}

// rewritePages returns the file data with the pages of column col (one of
// the col* constants, found by name) of the first row group passed through
// change (given the page index, its header to edit, and its compressed
// body), stored with the header change leaves (its compressed size and CRC
// those of the new body), and the footer's offsets moved to match.
func rewritePages(t *testing.T, data []byte, col int, change func(int, *format.PageHeader, []byte) []byte) []byte {
	t.Helper()
	var proto thrift.CompactProtocol
	return rewritePagesRaw(t, data, col, func(i int, h *format.PageHeader, body []byte) ([]byte, []byte) {
		comp := change(i, h, body)
		h.CompressedPageSize = int32(len(comp))
		h.CRC = int32(crc32.ChecksumIEEE(comp))
		hb, err := thrift.Marshal(&proto, h)
		require.NoError(t, err)
		return hb, comp
	})
}

// rewritePagesRaw is rewritePages whose change returns the bytes of the
// page's header and its body.
func rewritePagesRaw(t *testing.T, data []byte, col int, change func(int, *format.PageHeader, []byte) (header, body []byte)) []byte {
	t.Helper()
	var proto thrift.CompactProtocol
	flen := int(binary.LittleEndian.Uint32(data[len(data)-8:]))
	footer := data[len(data)-8-flen : len(data)-8]
	var md format.FileMetaData
	require.NoError(t, thrift.Unmarshal(&proto, footer, &md))
	j := slices.IndexFunc(md.RowGroups[0].Columns, func(c format.ColumnChunk) bool {
		return slices.Equal(c.MetaData.PathInSchema, []string{columnNames[col]})
	})
	require.GreaterOrEqual(t, j, 0, "no column %s", columnNames[col])
	cc := &md.RowGroups[0].Columns[j]
	start := cc.MetaData.DataPageOffset
	if cc.MetaData.DictionaryPageOffset != 0 {
		start = cc.MetaData.DictionaryPageOffset
	}
	end := start + cc.MetaData.TotalCompressedSize
	chunk := data[start:end]
	var out []byte
	dataOffset := int64(-1)
	for i := 0; len(chunk) > 0; i++ {
		var h format.PageHeader
		r := proto.NewReaderFromBytes(chunk)
		require.NoError(t, thrift.NewDecoder(r).Decode(&h))
		body := chunk[r.BytesRead() : r.BytesRead()+int(h.CompressedPageSize)]
		chunk = chunk[r.BytesRead()+int(h.CompressedPageSize):]
		hb, comp := change(i, &h, slices.Clone(body))
		if h.Type == format.DataPage && dataOffset < 0 {
			dataOffset = start + int64(len(out))
		}
		out = append(append(out, hb...), comp...)
	}
	delta := int64(len(out)) - (end - start)
	move := func(off *int64) {
		if *off >= end {
			*off += delta
		}
	}
	for g := range md.RowGroups {
		rg := &md.RowGroups[g]
		move(&rg.FileOffset)
		for j := range rg.Columns {
			c := &rg.Columns[j]
			if c == cc {
				continue
			}
			move(&c.FileOffset)
			move(&c.MetaData.DataPageOffset)
			move(&c.MetaData.DictionaryPageOffset)
			move(&c.MetaData.IndexPageOffset)
			move(&c.MetaData.BloomFilterOffset)
			move(&c.OffsetIndexOffset)
			move(&c.ColumnIndexOffset)
		}
	}
	cc.MetaData.TotalCompressedSize = int64(len(out))
	if dataOffset >= 0 {
		cc.MetaData.DataPageOffset = dataOffset
	}
	meta, err := thrift.Marshal(&proto, &md)
	require.NoError(t, err)
	file := slices.Concat(data[:start], out, data[end:len(data)-8-flen], meta)
	file = binary.LittleEndian.AppendUint32(file, uint32(len(meta)))
	return append(file, "PAR1"...)
}

// TestCraftedTrail: a crafted file inside a trail is reported, and
// the rest of the trail verified.
func TestCraftedTrail(t *testing.T) {
	tr := newTrail(t)
	p := tr.path(tr.keys[c0][2])
	orig, err := os.ReadFile(p)
	require.NoError(t, err)
	for _, col := range []int{colSeq, colTimeUnixNano, colPrevHash, colEntryHash, colExecutionID + 1} {
		data := rewriteChunk(t, orig, col, func(_ int, _ *format.PageHeader, b []byte) []byte {
			b[len(b)-1] ^= 1
			return b
		})
		require.NoError(t, os.WriteFile(p, data, 0o644))
		rep := verifyDir(t, tr.dir)
		assert.False(t, rep.Intact, columnNames[col])
	}
}

// rehash recomputes the chain of es after a change.
func rehash(es []entry.Entry) {
	c := chain.New(es[0].ChainID, chain.Genesis())
	for i := range es {
		c.Append(&es[i])
	}
}
