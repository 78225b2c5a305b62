package parquetfile

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// encodeBaseline is the encoder as of 5effd2b (GenericWriter[row], zstd at
// the default level), kept as a benchmark baseline so that a change to
// Encode can be compared with it side by side, in one run, on a shared
// machine. It is not used by any test of the file format.
func encodeBaseline(w io.Writer, entries []entry.Entry) error {
	f, err := batchFooter(entries)
	if err != nil {
		return err
	}
	opts := []parquet.WriterOption{
		parquet.Compression(&parquet.Zstd),
		parquet.DataPageVersion(1),
		parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.Plain),
		parquet.DataPageStatistics(true),
		parquet.BloomFilters(parquet.SplitBlockFilter(bloomBitsPerValue, "execution_id")),
		parquet.KeyValueMetadata(KeyFormatVersion, f.FormatVersion),
		parquet.KeyValueMetadata(KeyChainID, f.ChainID),
		parquet.KeyValueMetadata(KeyFirstSeq, strconv.FormatInt(f.FirstSeq, 10)),
		parquet.KeyValueMetadata(KeyLastSeq, strconv.FormatInt(f.LastSeq, 10)),
		parquet.KeyValueMetadata(KeyEntryCount, strconv.FormatInt(f.EntryCount, 10)),
		parquet.KeyValueMetadata(KeyPrevHash, f.PrevHash),
		parquet.KeyValueMetadata(KeyLastHash, f.LastHash),
		parquet.KeyValueMetadata(KeyMerkleRoot, f.MerkleRoot),
	}
	for _, c := range blobColumns {
		opts = append(opts, parquet.SkipPageBounds(c))
	}
	pw := parquet.NewGenericWriter[row](w, opts...)
	buf := make([]row, min(len(entries), 512))
	for start := 0; start < len(entries); start += len(buf) {
		chunk := entries[start:min(start+len(buf), len(entries))]
		rows := buf[:len(chunk)]
		for i := range chunk {
			toRow(&rows[i], &chunk[i])
		}
		if _, err := pw.Write(rows); err != nil {
			return fmt.Errorf("parquetfile: write rows: %w", err)
		}
	}
	return pw.Close()
}

// BenchmarkEncodeCompare encodes the same realistic entries with the
// baseline encoder and with Encode, alternating within each iteration, so
// that both see the same machine load; it reports each one's ns/entry and
// bytes/entry and the ratio current/baseline of their times.
func BenchmarkEncodeCompare(b *testing.B) {
	es := realistic(10_000)
	var buf bytes.Buffer
	var baseNS, curNS time.Duration
	var baseLen, curLen int
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		buf.Reset()
		if err := encodeBaseline(&buf, es); err != nil {
			b.Fatal(err)
		}
		baseLen = buf.Len()
		t1 := time.Now()
		buf.Reset()
		if _, err := Encode(&buf, es); err != nil {
			b.Fatal(err)
		}
		curLen = buf.Len()
		baseNS += t1.Sub(t0)
		curNS += time.Since(t1)
	}
	n := float64(b.N) * float64(len(es))
	b.ReportMetric(float64(baseNS)/n, "base-ns/entry")
	b.ReportMetric(float64(curNS)/n, "cur-ns/entry")
	b.ReportMetric(float64(curNS)/float64(baseNS), "time-ratio")
	b.ReportMetric(float64(baseLen)/float64(len(es)), "base-bytes/entry")
	b.ReportMetric(float64(curLen)/float64(len(es)), "cur-bytes/entry")
}
