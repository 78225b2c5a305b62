package parquetfile

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
)

// TestPageIndexBoundsHoldValues checks what readers that prune pages by
// the page index (Trino and Athena engine 3, Spark, parquet-mr) rely on:
// for every column and every page with a value, the column index's min
// and max bound each of the page's values. A page whose bounds exclude a
// value would be skipped for a filter on that value, and its rows silently
// missing from the answer.
func TestPageIndexBoundsHoldValues(t *testing.T) {
	es := append(realistic(2500), varied()...)
	es = hashed("collector-7f3a-pod-1", es)
	data, _ := encode(t, es)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Len(t, f.RowGroups(), 1)
	rg := f.RowGroups()[0]
	checked := map[string]int{}
	for i, chunk := range rg.ColumnChunks() {
		name := f.Schema().Columns()[i][0]
		ci, err := chunk.ColumnIndex()
		require.NoError(t, err, name)
		typ := chunk.Type()
		pages := chunk.Pages()
		for p := 0; ; p++ {
			page, err := pages.ReadPage()
			if errors.Is(err, io.EOF) {
				require.Equal(t, ci.NumPages(), p, "%s: pages in the column index", name)
				break
			}
			require.NoError(t, err, name)
			vals := make([]parquet.Value, page.NumValues())
			n, err := page.Values().ReadValues(vals)
			if err != nil && !errors.Is(err, io.EOF) {
				require.NoError(t, err, name)
			}
			nonNull := 0
			for _, v := range vals[:n] {
				if v.IsNull() {
					continue
				}
				nonNull++
				require.LessOrEqual(t, typ.Compare(ci.MinValue(p), v), 0, "%s page %d: min %q above a value %q", name, p, ci.MinValue(p), v)
				require.LessOrEqual(t, typ.Compare(v, ci.MaxValue(p)), 0, "%s page %d: max %q below a value %q", name, p, ci.MaxValue(p), v)
			}
			require.Equal(t, nonNull == 0, ci.NullPage(p), "%s page %d: null page", name, p)
			// The page index stays small: parquet-go cuts byte array bounds
			// to 16 bytes (the max then incremented), whatever the values.
			require.LessOrEqual(t, len(ci.MinValue(p).Bytes()), 16, "%s page %d: min length", name, p)
			require.LessOrEqual(t, len(ci.MaxValue(p).Bytes()), 16, "%s page %d: max length", name, p)
			checked[name] += nonNull
			parquet.Release(page)
		}
	}
	for _, c := range blobColumns {
		require.Positive(t, checked[c], "%s: no value checked", c)
	}
}
