package parquetfile

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// page is one page of a file as stored: its column, its header and its
// compressed body.
type page struct {
	column string
	header format.PageHeader
	body   []byte
}

// pagesOf returns the pages of every column chunk of data, in file order.
func pagesOf(t *testing.T, data []byte) []page {
	t.Helper()
	var proto thrift.CompactProtocol
	flen := int(binary.LittleEndian.Uint32(data[len(data)-8:]))
	var md format.FileMetaData
	require.NoError(t, thrift.Unmarshal(&proto, data[len(data)-8-flen:len(data)-8], &md))
	var out []page
	for _, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			start := cc.MetaData.DataPageOffset
			if cc.MetaData.DictionaryPageOffset != 0 {
				start = cc.MetaData.DictionaryPageOffset
			}
			chunk := data[start : start+cc.MetaData.TotalCompressedSize]
			for len(chunk) > 0 {
				var h format.PageHeader
				r := proto.NewReaderFromBytes(chunk)
				require.NoError(t, thrift.NewDecoder(r).Decode(&h))
				n := r.BytesRead()
				out = append(out, page{column: cc.MetaData.PathInSchema[0], header: h, body: chunk[n : n+int(h.CompressedPageSize)]})
				chunk = chunk[n+int(h.CompressedPageSize):]
			}
		}
	}
	return out
}

// TestPagesAreStandardZstd: every page of a file Encode writes (realistic
// entries, and others with NULLs, empty and long values) is, byte for byte,
// what klauspost's zstd encoder writes for the page's content with the
// options of its column's codec: nothing in the files is built by hand.
func TestPagesAreStandardZstd(t *testing.T) {
	plain, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer plain.Close()
	for name, es := range map[string][]entry.Entry{"realistic": realistic(10_000), "varied": varied()} {
		data, _ := encode(t, es)
		pages := pagesOf(t, data)
		seen := map[string]bool{}
		for i, p := range pages {
			content, err := plain.DecodeAll(p.body, nil)
			require.NoError(t, err, "%s page %d (%s)", name, i, p.column)
			opts := pageCodec.opts
			if c, ok := columnCodecs[p.column]; ok {
				opts = c.(*zstdCodec).opts
			}
			e, err := zstd.NewWriter(nil, opts...)
			require.NoError(t, err)
			require.Equal(t, e.EncodeAll(content, nil), p.body, "%s page %d (%s)", name, i, p.column)
			seen[p.column] = true
		}
		assert.Len(t, seen, len(schema.Fields()), name)
	}
}

// TestPageHeaderStatistics: the data page headers of the blob, id and hash
// columns carry no statistics; those of the other columns carry their
// page's min and max. The footer's statistics and page index are those
// TestSchema checks either way.
func TestPageHeaderStatistics(t *testing.T) {
	none := map[string]bool{}
	for _, c := range noPageStatistics {
		none[c] = true
	}
	require.Len(t, none, 10)
	data, _ := encode(t, realistic(10_000))
	seen := map[string]bool{}
	for _, p := range pagesOf(t, data) {
		if p.header.Type != format.DataPage {
			continue
		}
		st := p.header.DataPageHeader.V.Statistics
		if none[p.column] {
			assert.Equal(t, format.Statistics{}, st, p.column)
		} else if p.column != "validation" {
			assert.NotNil(t, st.MinValue, p.column)
			assert.NotNil(t, st.MaxValue, p.column)
		}
		seen[p.column] = true
	}
	assert.Len(t, seen, len(schema.Fields()))
}

// TestPagesReferenceDecoder decodes every page of a file Encode writes with
// the reference zstd implementation (the zstd command, libzstd as in DuckDB
// and Athena), when it is installed; under CI=true it must be. The pages'
// frames, one after another, decode to their contents one after another.
func TestPagesReferenceDecoder(t *testing.T) {
	zstdCmd, err := exec.LookPath("zstd")
	if err != nil {
		// CI installs it (.ci/run): there the check must run.
		if os.Getenv("CI") == "true" {
			t.Fatalf("the reference zstd command is needed under CI=true: %v", err)
		}
		t.Skip("no zstd command")
	}
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	for name, es := range map[string][]entry.Entry{"realistic": realistic(10_000), "varied": varied()} {
		data, _ := encode(t, es)
		var frames, want []byte
		for _, p := range pagesOf(t, data) {
			frames = append(frames, p.body...)
			want, err = dec.DecodeAll(p.body, want)
			require.NoError(t, err)
		}
		f := filepath.Join(t.TempDir(), "pages.zst")
		require.NoError(t, os.WriteFile(f, frames, 0o600))
		got, err := exec.Command(zstdCmd, "-d", "-c", f).Output()
		require.NoError(t, err, name)
		assert.True(t, bytes.Equal(want, got), name)
	}
}

// TestTimeCodecIsParquetZstd: timeCodec writes what parquet-go's ZSTD codec
// writes, byte for byte, on the time_unix_nano pages of a batch and on
// other data, before and after its encoders are reused.
func TestTimeCodecIsParquetZstd(t *testing.T) {
	es := realistic(10_000)
	page := make([]byte, 0, 8*len(es))
	for i := range es {
		page = binary.LittleEndian.AppendUint64(page, uint64(es[i].TimeUnixNano))
	}
	text := []byte(strings.Repeat("the agent proposed to change the email of contact 48291; ", 2000))
	for round := range 2 {
		for _, src := range [][]byte{page, text, nil, {1}} {
			want, err := parquet.Zstd.Encode(nil, src)
			require.NoError(t, err)
			got, err := timeCodec.Encode(nil, src)
			require.NoError(t, err)
			require.Equal(t, want, got, "round %d, %d bytes", round, len(src))
		}
	}
}
