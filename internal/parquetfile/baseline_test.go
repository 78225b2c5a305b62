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
	"github.com/agentaudit/agentaudit/internal/merkle"
)

// encodeBaseline is the encoder as of 5effd2b (GenericWriter[row], zstd at
// the default level), kept as a benchmark baseline so that a change to
// Encode can be compared with it side by side, in one run, on a shared
// machine. It is not used by any test of the file format.
func encodeBaseline(w io.Writer, entries []entry.Entry) error {
	f, err := rowsFooter(entries)
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

// rowsFooter checks entries as Encode does and returns their footer.
func rowsFooter(entries []entry.Entry) (Footer, error) {
	var c Columns
	for i := range entries {
		c.Append(&entries[i])
	}
	return c.footer(new(merkle.Fold))
}

// encodeRows is Encode as it was before Columns (2026-12, issue 16): the
// entries converted to rows and handed to parquet-go's row writer, 512 at
// a time. Encode must write the same bytes (TestColumnsMatchRowWriter).
func encodeRows(w io.Writer, entries []entry.Entry) (Footer, error) {
	f, err := rowsFooter(entries)
	if err != nil {
		return Footer{}, err
	}
	pw := parquet.NewGenericWriter[row](w, append(writerOptions(f), schema)...)
	buf := make([]row, min(len(entries), 512))
	for start := 0; start < len(entries); start += len(buf) {
		chunk := entries[start:min(start+len(buf), len(entries))]
		rows := buf[:len(chunk)]
		for i := range chunk {
			toRow(&rows[i], &chunk[i])
		}
		if _, err := pw.Write(rows); err != nil {
			return Footer{}, err
		}
	}
	return f, pw.Close()
}

func toRow(r *row, e *entry.Entry) {
	*r = row{
		Timestamp:       unixMilli(e.TimeUnixNano),
		TimeUnixNano:    e.TimeUnixNano,
		EndTimeUnixNano: e.EndTimeUnixNano,
		ChainID:         e.ChainID,
		Seq:             e.Seq,
		ExecutionID:     e.ExecutionID,
		TraceID:         e.TraceID,
		SpanID:          e.SpanID,
		ParentSpanID:    e.ParentSpanID,
		AgentID:         e.AgentID,
		AgentName:       e.AgentName,
		ServiceName:     e.ServiceName,
		Principal:       e.Principal,
		Sender:          e.Sender,
		ActionType:      e.ActionType,
		TargetSystem:    e.TargetSystem,
		TargetResource:  e.TargetResource,
		ProposedValue:   e.ProposedValue,
		PreviousValue:   e.PreviousValue,
		Reasoning:       e.Reasoning,
		Approver:        e.Approver,
		Result:          e.Result,
		StatusCode:      e.StatusCode,
		Attributes:      e.Attributes,
		Validation:      e.Validation,
		PrevHash:        e.PrevHash,
		EntryHash:       e.EntryHash,
	}
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

// BenchmarkColumnsVsRows writes the same realistic batch with the row
// writer before Columns (encodeRows, from entries) and with Columns.Encode
// (from columns appended beforehand, as the collector's batches are),
// alternating within each iteration, and reports each one's ns/entry and
// the ratio columns/rows of their times. The row writer's figure leaves
// out what it cost the collector to get entries back from its batch.
func BenchmarkColumnsVsRows(b *testing.B) {
	es := realistic(10_000)
	var c Columns
	for i := range es {
		c.Append(&es[i])
	}
	var buf bytes.Buffer
	var rowsNS, colsNS time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		buf.Reset()
		if _, err := encodeRows(&buf, es); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		buf.Reset()
		if _, err := c.Encode(&buf); err != nil {
			b.Fatal(err)
		}
		rowsNS += t1.Sub(t0)
		colsNS += time.Since(t1)
	}
	n := float64(b.N) * float64(len(es))
	b.ReportMetric(float64(rowsNS)/n, "rows-ns/entry")
	b.ReportMetric(float64(colsNS)/n, "columns-ns/entry")
	b.ReportMetric(float64(colsNS)/float64(rowsNS), "time-ratio")
}
