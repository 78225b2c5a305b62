package verify

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
)

// readBoth reads one file with the direct page reader and with parquet-go
// alone, requires the same result, and returns it with the number of column
// chunks the direct reader accepted.
func readBoth(t *testing.T, key string, data []byte) (*fileResult, int) {
	t.Helper()
	fast, slow := newFileReader(), newFileReader()
	slow.slow = true
	got := fast.read(key, slices.Clone(data))
	want := slow.read(key, slices.Clone(data))
	if fast.malformed != nil {
		// A page in the writer's shape whose values do not add up:
		// parquet-go reads past its end (into stale pooled memory, so
		// its result is not even repeatable); the direct reader refuses
		// the file.
		require.False(t, got.ok)
		require.Len(t, got.violations, 1)
		require.Equal(t, NotAuditFile, got.violations[0].Kind)
		require.Contains(t, got.violations[0].Detail, "undecodable rows")
		return got, -1
	}
	require.Equal(t, want, got, "direct page reader and parquet-go disagree")
	require.Zero(t, slow.fastChunks)
	return got, fast.fastChunks
}

// verifyBoth verifies dir with and without the direct page reader and
// requires the same report.
func verifyBoth(t *testing.T, dir string) *Report {
	t.Helper()
	got := verifyDir(t, dir)
	slowPages = true
	defer func() { slowPages = false }()
	want := verifyDir(t, dir)
	require.Equal(t, want, got, "direct page reader and parquet-go disagree")
	return got
}

// TestDirectPagesTakenForWriterFiles: files as internal/parquetfile writes
// them are read by the direct reader, every column chunk, with the result
// parquet-go gives (so that the comparisons below compare something).
func TestDirectPagesTakenForWriterFiles(t *testing.T) {
	for _, n := range []int{1, 2, 7, 100, 3000} {
		es := buildChain("replica-0", n)
		if n == 7 { // every optional column all NULL
			for i := range es {
				e := &es[i]
				e.ParentSpanID, e.AgentID, e.AgentName, e.ServiceName, e.Principal = nil, nil, nil, nil, nil
				e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Validation = nil, nil, nil, nil, nil
			}
			rehash(es)
		}
		data, err := encode(es)
		require.NoError(t, err)
		res, fast := readBoth(t, "dt=2026-03-09/replica-0-00000000000000000000.parquet", data)
		assert.Empty(t, res.violations, "%d entries", n)
		assert.Equal(t, int64(n), res.rows)
		assert.Equal(t, numColumns, fast, "%d entries: every column chunk read directly", n)
	}
}

// TestTrailWrittenBeforeHexFrames verifies a trail written before the
// hash columns' pages were hexzstd frames (testdata/trail-plain-hashes,
// written by d68db27's writer: 2,300 entries of chain replica-a in two
// files, 300 of replica-b, format version 1): intact, every column chunk
// read directly.
func TestTrailWrittenBeforeHexFrames(t *testing.T) {
	dir := "testdata/trail-plain-hashes"
	rep := verifyBoth(t, dir)
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, int64(2600), rep.Entries)
	assert.Equal(t, 3, rep.Files)
	keys, err := store.Dir(dir).Batches(context.Background())
	require.NoError(t, err)
	require.Len(t, keys, 3)
	for _, k := range keys {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		res, fast := readBoth(t, k, data)
		assert.Empty(t, res.violations, k)
		assert.Equal(t, numColumns-2, fast, "%s: every column chunk read directly (no end_time_unix_nano nor sender in version 1)", k)
	}
}

// TestTrailWrittenWithHexzstdFrames verifies testdata/trail-hexzstd, written
// by 865b82e's writer, the last whose hash columns' pages were zstd frames
// built by hand (the fixed shape of internal/hexzstd, removed since, from 16
// values on, one raw block below): chain replica-hz, seq 0 to 3999 (each
// hash column in pages of 3,840 and 160 values) and 4000 to 4009 (pages of
// 10), a signed checkpoint after each file and the chain's published
// verifier key. It is intact, for both readers, every column chunk read
// directly.
func TestTrailWrittenWithHexzstdFrames(t *testing.T) {
	dir := "testdata/trail-hexzstd"
	rep := verifyBoth(t, dir)
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Equal(t, int64(4010), rep.Entries)
	assert.Equal(t, 2, rep.Files)
	assert.Equal(t, 2, rep.StoredCheckpoints)
	assert.Equal(t, []string{"agentaudit-replica-hz+bfc27509"}, rep.TrustedOnFirstUse)
	require.Len(t, rep.Chains, 1)
	assert.Equal(t, "eab92aae5ef56e9987fc83ecee479456df31608d81ec9dd1b25990e9b6cd8f65", rep.Chains[0].LastHash)
	assert.Equal(t, int64(4010), rep.Chains[0].CheckpointSize)

	keys, err := store.Dir(dir).Batches(context.Background())
	require.NoError(t, err)
	require.Len(t, keys, 2)
	for i, k := range keys {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		res, fast := readBoth(t, k, data)
		assert.Empty(t, res.violations, k)
		assert.Equal(t, numColumns, fast, "%s: every column chunk read directly", k)
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

// TestDirectPagesTamperMatrix runs every case of the tamper matrix through
// both readers.
func TestDirectPagesTamperMatrix(t *testing.T) {
	for _, tt := range tamperMatrix {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTrail(t)
			tt.tamper(t, tr)
			rep := verifyBoth(t, tr.dir)
			assert.False(t, rep.Intact)
		})
	}
	t.Run("clean", func(t *testing.T) {
		assert.True(t, verifyBoth(t, newTrail(t).dir).Intact)
	})
}

// TestDirectPagesCorruptBytes flips single bytes of a file: both readers
// give the same result for each.
func TestDirectPagesCorruptBytes(t *testing.T) {
	es := buildChain("replica-0", 30)
	orig, err := encode(es)
	require.NoError(t, err)
	step := max(1, len(orig)/1500)
	for off := 0; off < len(orig); off += step {
		data := slices.Clone(orig)
		data[off] ^= byte(1 + off%255)
		readBoth(t, "dt=2026-03-09/replica-0-00000000000000000000.parquet", data)
	}
}

// TestDirectPagesCraftedPages rewrites the decompressed pages of one
// column chunk (recompressed, with a correct CRC, and a footer whose
// offsets follow), the way an attacker would craft a file that passes the
// checksums: both readers give the same result for each.
func TestDirectPagesCraftedPages(t *testing.T) {
	es := buildChain("replica-0", 40)
	es[3].Approver = nil
	es[4].EndTimeUnixNano, es[4].Sender = nil, nil // a row of version 1: end_time_unix_nano has NULLs too
	rehash(es)
	orig, err := encode(es)
	require.NoError(t, err)
	const key = "dt=2026-03-09/replica-0-00000000000000000000.parquet"
	// The rewriting itself changes nothing.
	for col := range numColumns {
		res, fast := readBoth(t, key, rewriteChunk(t, orig, col, func(_ int, _ *format.PageHeader, b []byte) []byte { return b }))
		require.Empty(t, res.violations, columnNames[col])
		require.Equal(t, numColumns, fast, columnNames[col])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	caught, direct, refused := 0, 0, 0
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
				res, fast := readBoth(t, key, data)
				if len(res.violations) > 0 {
					caught++
				}
				switch fast {
				case numColumns:
					direct++
				case -1:
					refused++
				}
			}
		}
	}
	t.Logf("%d crafted files, %d with violations, %d read wholly by the direct reader, %d refused by it as malformed", numColumns*7*6, caught, direct, refused)
	assert.Positive(t, direct, "some crafted files must take the direct path")
}

// rewriteChunk returns the file data with the pages of column col of the
// first row group passed through change (given the page index, its header
// to edit, and its decompressed bytes), recompressed with a correct CRC,
// and the footer's offsets moved to match.
func rewriteChunk(t *testing.T, data []byte, col int, change func(int, *format.PageHeader, []byte) []byte) []byte {
	t.Helper()
	return rewritePages(t, data, col, func(i int, h *format.PageHeader, body []byte) []byte {
		raw, err := zstdCodec.Decode(nil, body)
		require.NoError(t, err)
		raw = change(i, h, raw)
		comp, err := zstdCodec.Encode(nil, raw)
		require.NoError(t, err)
		h.UncompressedPageSize = int32(len(raw))
		return comp
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
		comp := change(i, &h, slices.Clone(body))
		h.CompressedPageSize = int32(len(comp))
		h.CRC = int32(crc32.ChecksumIEEE(comp))
		hb, err := thrift.Marshal(&proto, &h)
		require.NoError(t, err)
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

// TestDirectPagesCraftedTrail: a crafted file inside a trail gives the same
// report both ways.
func TestDirectPagesCraftedTrail(t *testing.T) {
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
		rep := verifyBoth(t, tr.dir)
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

// TestDecodeIndicesPacked: bit-packed dictionary indices of widths up to 8,
// read a word per group, decode as the value-by-value unpack does, and any
// index past the dictionary is refused.
func TestDecodeIndicesPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 2000 {
		width := uint(1 + rng.IntN(8))
		groups := 1 + rng.IntN(5)
		packed := make([]byte, groups*int(width))
		for i := range packed {
			packed[i] = byte(rng.Uint32())
		}
		n := groups*8 - rng.IntN(8)
		b := append(binary.AppendUvarint(nil, uint64(groups)<<1|1), packed...)
		var want []uint32
		for i := range n {
			want = append(want, unpack(packed, width, i))
		}
		maxIdx := slices.Max(want)
		for i := n; i < groups*8; i++ { // the padding counts too
			maxIdx = max(maxIdx, unpack(packed, width, i))
		}
		dictLen := 1 + rng.IntN(1<<width)
		got, ok := decodeIndices(nil, b, width, n, dictLen)
		require.Equal(t, int(maxIdx) < dictLen, ok, "width %d, dictionary of %d", width, dictLen)
		if ok {
			require.Equal(t, want, got[:n])
		}
	}
}
