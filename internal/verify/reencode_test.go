package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/trailtest"
)

// Files re-encoded by another writer: docs/FORMAT.md says to trust the
// rows, not their encoding. Every file of a trail (with its signed
// checkpoints) is rewritten by parquet-go with the same rows and footer
// key-values in other encodings, codecs, page versions and sizes, and row
// group splits: the trail is intact; with one value changed, the change is
// a hash_mismatch of its seq and nothing else.

// reencoding is one way of writing a file's rows again.
type reencoding struct {
	name string
	// enc is the encoding of every column of its kind (nil: parquet-go's
	// default, PLAIN).
	strings, ints encoding.Encoding
	opts          []parquet.WriterOption
}

var reencodings = []reencoding{
	{name: "dictionary off, uncompressed", strings: &parquet.Plain,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Uncompressed)}},
	{name: "every string in a dictionary, snappy", strings: &parquet.RLEDictionary,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Snappy)}},
	{name: "data page v2, gzip, delta encodings", strings: &parquet.DeltaLengthByteArray, ints: &parquet.DeltaBinaryPacked,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Gzip), parquet.DataPageVersion(2)}},
	{name: "data page v2, zstd, delta byte arrays", strings: &parquet.DeltaByteArray,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Zstd), parquet.DataPageVersion(2)}},
	{name: "zstd, 1 KiB pages, row groups of 7 rows", strings: &parquet.Plain,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Zstd), parquet.PageBufferSize(1 << 10), parquet.MaxRowsPerRowGroup(7)}},
	{name: "lz4, byte stream split", strings: &parquet.Plain, ints: &parquet.ByteStreamSplit,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Lz4Raw), parquet.DataPageVersion(2)}},
	{name: "brotli, 4 KiB pages, row groups of 16 rows", strings: &parquet.RLEDictionary,
		opts: []parquet.WriterOption{parquet.Compression(&parquet.Brotli), parquet.PageBufferSize(4 << 10), parquet.MaxRowsPerRowGroup(16)}},
}

// reencodedTrail writes a trail of two chains, 3 files of 20 entries and a
// last of 5 each, with signed checkpoints, by internal/trailtest, and
// returns its directory and the chains' writers.
func reencodedTrail(t *testing.T) (string, []*trailtest.Writer) {
	t.Helper()
	dir := t.TempDir()
	var ws []*trailtest.Writer
	for _, id := range []string{"replica-0", "replica-1"} {
		w, err := trailtest.New(dir, id, 20, day)
		require.NoError(t, err)
		for i := range int64(65) {
			require.NoError(t, w.Add(testEntry(i)))
		}
		require.NoError(t, w.Flush())
		require.Len(t, w.Files, 4)
		ws = append(ws, w)
	}
	return dir, ws
}

// reencode rewrites the batch file at path with re's writer, the same rows
// in the same order and the same footer key-values, changing what change
// changes (given the row, its column indices by name).
func reencode(t *testing.T, path string, re reencoding, change func(row parquet.Row, col map[string]int)) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	group := parquet.Group{}
	col := map[string]int{}
	for i, fld := range f.Schema().Fields() {
		col[fld.Name()] = i
		node := parquet.Leaf(fld.Type())
		enc := re.ints
		if fld.Type().Kind() == parquet.ByteArray {
			enc = re.strings
		}
		if enc != nil {
			node = parquet.Encoded(node, enc)
		}
		if fld.Optional() {
			node = parquet.Optional(node)
		}
		group[fld.Name()] = node
	}
	// parquet.Group orders its fields by name: the columns are found by
	// name, their order is one more thing another writer may change.
	schema := parquet.NewSchema("reencoded", group)
	opts := append([]parquet.WriterOption{schema}, re.opts...)
	for _, kv := range f.Metadata().KeyValueMetadata {
		opts = append(opts, parquet.KeyValueMetadata(kv.Key, kv.Value))
	}
	var buf bytes.Buffer
	w := parquet.NewWriter(&buf, opts...)
	names := make([]string, 0, len(col))
	for n := range col {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		batch := make([]parquet.Row, 16)
		for {
			n, err := rows.ReadRows(batch)
			for _, row := range batch[:n] {
				if change != nil {
					change(row, col)
				}
				// Into the new schema's column order.
				out := make(parquet.Row, len(row))
				for j, name := range names {
					v := row[col[name]]
					out[j] = v.Level(v.RepetitionLevel(), v.DefinitionLevel(), j)
				}
				_, err := w.WriteRows([]parquet.Row{out})
				require.NoError(t, err)
			}
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		require.NoError(t, rows.Close())
	}
	require.NoError(t, w.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// TestReencodedTrailIntact: every file of a trail rewritten in each
// re-encoding verifies intact, its signed checkpoints included.
func TestReencodedTrailIntact(t *testing.T) {
	for _, re := range reencodings {
		t.Run(re.name, func(t *testing.T) {
			dir, ws := reencodedTrail(t)
			for _, w := range ws {
				for _, key := range w.Files {
					reencode(t, filepath.Join(dir, filepath.FromSlash(key)), re, nil)
				}
			}
			rep := verifyDir(t, dir)
			require.True(t, rep.Intact, joinLines(rep.Violations))
			assert.Equal(t, int64(130), rep.Entries)
			assert.Equal(t, 8, rep.StoredCheckpoints)
			for _, c := range rep.Chains {
				assert.Equal(t, int64(65), c.CheckpointSize, c.ChainID)
			}
		})
	}
}

// TestReencodedTrailTampered: the same rewrites with one value changed
// (a string and an integer, each in a file of its own) are each a
// hash_mismatch of that seq, and nothing else.
func TestReencodedTrailTampered(t *testing.T) {
	for _, re := range reencodings {
		t.Run(re.name, func(t *testing.T) {
			dir, ws := reencodedTrail(t)
			for fi, key := range ws[0].Files {
				seq := int64(fi*20 + 3)
				reencode(t, filepath.Join(dir, filepath.FromSlash(key)), re, func(row parquet.Row, col map[string]int) {
					s := col["seq"]
					if row[s].Int64() != seq {
						return
					}
					switch fi {
					case 1: // an integer
						c := col["time_unix_nano"]
						row[c] = parquet.Int64Value(row[c].Int64()+1).Level(0, row[c].DefinitionLevel(), c)
						// The timestamp follows, or the change would be a
						// timestamp_mismatch as well.
						ts := col["timestamp"]
						row[ts] = parquet.Int64Value(floorMilli(row[c].Int64())).Level(0, row[ts].DefinitionLevel(), ts)
					default: // a string
						c := col["target_resource"]
						row[c] = parquet.ByteArrayValue([]byte("Contact #1 (email field)")).Level(0, row[c].DefinitionLevel(), c)
					}
				})
			}
			rep := verifyDir(t, dir)
			var want []string
			for fi := range ws[0].Files {
				want = append(want, fmt.Sprintf("replica-0/%d/%s", fi*20+3, HashMismatch))
			}
			assert.Equal(t, want, violationKeys(rep.Violations), joinLines(rep.Violations))
		})
	}
}

// TestDictionaryOffsets: the footer's dictionary page offset as writers
// set it, or fail to. A file whose string columns are all in
// dictionaries verifies intact whether each chunk's dictionary page offset
// names the dictionary page, is 0 (the dictionary page read as the first
// page of the chunk), or names the first data page instead (a page with no
// dictionary header): not an audit file, with the same verdict whatever
// was read before.
func TestDictionaryOffsets(t *testing.T) {
	dir, ws := reencodedTrail(t)
	key := ws[0].Files[0]
	path := filepath.Join(dir, filepath.FromSlash(key))
	reencode(t, path, reencodings[1], nil) // every string in a dictionary, snappy
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dicts := 0
	for _, rg := range decodeFooter(t, data).RowGroups {
		for _, c := range rg.Columns {
			if c.MetaData.DictionaryPageOffset != 0 {
				dicts++
			}
		}
	}
	require.Positive(t, dicts, "chunks with a dictionary page")
	assert.Empty(t, readTwice(t, key, data).violations, "as written")

	noOffset := changeFooter(t, data, func(md *format.FileMetaData) {
		for g := range md.RowGroups {
			for j := range md.RowGroups[g].Columns {
				m := &md.RowGroups[g].Columns[j].MetaData
				if m.DictionaryPageOffset != 0 {
					m.DataPageOffset, m.DictionaryPageOffset = m.DictionaryPageOffset, 0
				}
			}
		}
	})
	assert.Empty(t, readTwice(t, key, noOffset).violations, "dictionary page offsets 0")

	wrong := changeFooter(t, data, func(md *format.FileMetaData) {
		for g := range md.RowGroups {
			for j := range md.RowGroups[g].Columns {
				m := &md.RowGroups[g].Columns[j].MetaData
				if m.DictionaryPageOffset != 0 {
					// The dictionary page is skipped: the data pages find
					// no dictionary.
					m.TotalCompressedSize -= m.DataPageOffset - m.DictionaryPageOffset
					m.DictionaryPageOffset = m.DataPageOffset
				}
			}
		}
	})
	res := readTwice(t, key, wrong)
	require.NotEmpty(t, res.violations, "dictionary page offsets on data pages")
	assert.Equal(t, NotAuditFile, res.violations[0].Kind)
}

// decodeFooter decodes the footer of the Parquet file data.
func decodeFooter(t *testing.T, data []byte) *format.FileMetaData {
	t.Helper()
	flen := int(binary.LittleEndian.Uint32(data[len(data)-8:]))
	var md format.FileMetaData
	require.NoError(t, thrift.Unmarshal(new(thrift.CompactProtocol), data[len(data)-8-flen:len(data)-8], &md))
	return &md
}

// changeFooter returns the Parquet file data with its footer changed by
// change.
func changeFooter(t *testing.T, data []byte, change func(*format.FileMetaData)) []byte {
	t.Helper()
	md := decodeFooter(t, data)
	change(md)
	meta, err := thrift.Marshal(new(thrift.CompactProtocol), md)
	require.NoError(t, err)
	flen := int(binary.LittleEndian.Uint32(data[len(data)-8:]))
	out := slices.Concat(data[:len(data)-8-flen], meta)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(meta)))
	return append(out, "PAR1"...)
}
