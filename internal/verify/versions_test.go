package verify

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// Trails of format version 1 (no end_time_unix_nano), of version 2, and
// chains that go on from the one into the other.

// v1Trail is testdata/trail-v1, written by the writer of format version 1
// (7cc4eb8): chain replica-v1, seq 0 to 39 and 40 to 79.
const (
	v1Trail = "testdata/trail-v1"
	v1Chain = "replica-v1"
	v1Len   = 80
)

// rawRowV1 is rawRow of format version 1: without end_time_unix_nano.
type rawRowV1 struct {
	Timestamp      int64   `parquet:"timestamp,timestamp(millisecond:utc)"`
	TimeUnixNano   int64   `parquet:"time_unix_nano"`
	ChainID        string  `parquet:"chain_id,dict"`
	Seq            int64   `parquet:"seq"`
	ExecutionID    string  `parquet:"execution_id,dict"`
	TraceID        string  `parquet:"trace_id"`
	SpanID         string  `parquet:"span_id"`
	ParentSpanID   *string `parquet:"parent_span_id"`
	AgentID        *string `parquet:"agent_id,dict"`
	AgentName      *string `parquet:"agent_name,dict"`
	ServiceName    *string `parquet:"service_name,dict"`
	Principal      *string `parquet:"principal,dict"`
	ActionType     string  `parquet:"action_type,dict"`
	TargetSystem   string  `parquet:"target_system,dict"`
	TargetResource string  `parquet:"target_resource"`
	ProposedValue  *string `parquet:"proposed_value"`
	PreviousValue  *string `parquet:"previous_value"`
	Reasoning      *string `parquet:"reasoning"`
	Approver       *string `parquet:"approver,dict"`
	Result         string  `parquet:"result,dict"`
	StatusCode     string  `parquet:"status_code,dict"`
	Attributes     string  `parquet:"attributes"`
	Validation     *string `parquet:"validation"`
	PrevHash       string  `parquet:"prev_hash"`
	EntryHash      string  `parquet:"entry_hash"`
}

// writeRawV1 writes es as they are in the columns of format version 1 (their
// end times dropped), zstd-compressed, with the given footer pairs.
func writeRawV1(t *testing.T, dir, key string, es []entry.Entry, footer [][2]string) {
	t.Helper()
	opts := []parquet.WriterOption{parquet.Compression(&parquet.Zstd)}
	for _, kv := range footer {
		opts = append(opts, parquet.KeyValueMetadata(kv[0], kv[1]))
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[rawRowV1](&buf, opts...)
	rows := make([]rawRowV1, len(es))
	for i, e := range es {
		rows[i] = rawRowV1{floorMilli(e.TimeUnixNano), e.TimeUnixNano, e.ChainID, e.Seq, e.ExecutionID, e.TraceID, e.SpanID,
			e.ParentSpanID, e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.ActionType, e.TargetSystem,
			e.TargetResource, e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Result, e.StatusCode,
			e.Attributes, e.Validation, e.PrevHash, e.EntryHash}
	}
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	writeFile(t, dir, key, buf.Bytes())
}

// writeRawNoSender writes es as they are in the columns of format version
// 2 but sender, zstd-compressed, with the given footer pairs.
func writeRawNoSender(t *testing.T, dir, key string, es []entry.Entry, footer [][2]string) {
	t.Helper()
	type rowNoSender struct {
		Timestamp       int64   `parquet:"timestamp,timestamp(millisecond:utc)"`
		TimeUnixNano    int64   `parquet:"time_unix_nano"`
		EndTimeUnixNano *int64  `parquet:"end_time_unix_nano"`
		ChainID         string  `parquet:"chain_id,dict"`
		Seq             int64   `parquet:"seq"`
		ExecutionID     string  `parquet:"execution_id,dict"`
		TraceID         string  `parquet:"trace_id"`
		SpanID          string  `parquet:"span_id"`
		ParentSpanID    *string `parquet:"parent_span_id"`
		AgentID         *string `parquet:"agent_id,dict"`
		AgentName       *string `parquet:"agent_name,dict"`
		ServiceName     *string `parquet:"service_name,dict"`
		Principal       *string `parquet:"principal,dict"`
		ActionType      string  `parquet:"action_type,dict"`
		TargetSystem    string  `parquet:"target_system,dict"`
		TargetResource  string  `parquet:"target_resource"`
		ProposedValue   *string `parquet:"proposed_value"`
		PreviousValue   *string `parquet:"previous_value"`
		Reasoning       *string `parquet:"reasoning"`
		Approver        *string `parquet:"approver,dict"`
		Result          string  `parquet:"result,dict"`
		StatusCode      string  `parquet:"status_code,dict"`
		Attributes      string  `parquet:"attributes"`
		Validation      *string `parquet:"validation"`
		PrevHash        string  `parquet:"prev_hash"`
		EntryHash       string  `parquet:"entry_hash"`
	}
	opts := []parquet.WriterOption{parquet.Compression(&parquet.Zstd)}
	for _, kv := range footer {
		opts = append(opts, parquet.KeyValueMetadata(kv[0], kv[1]))
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[rowNoSender](&buf, opts...)
	rows := make([]rowNoSender, len(es))
	for i, e := range es {
		rows[i] = rowNoSender{floorMilli(e.TimeUnixNano), e.TimeUnixNano, e.EndTimeUnixNano, e.ChainID, e.Seq, e.ExecutionID, e.TraceID, e.SpanID,
			e.ParentSpanID, e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.ActionType, e.TargetSystem,
			e.TargetResource, e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Result, e.StatusCode,
			e.Attributes, e.Validation, e.PrevHash, e.EntryHash}
	}
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	writeFile(t, dir, key, buf.Bytes())
}

// withVersion is footer with agentaudit.format_version set to v.
func withVersion(footer [][2]string, v string) [][2]string {
	out := slices.Clone(footer)
	for i := range out {
		if out[i][0] == parquetfile.KeyFormatVersion {
			out[i][1] = v
		}
	}
	return out
}

// readTrailEntries reads every entry of the batch files below dir, in key
// order, with internal/parquetfile.
func readTrailEntries(t *testing.T, dir string) []entry.Entry {
	t.Helper()
	var out []entry.Entry
	for _, k := range batchKeys(t, dir) {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, k)
		out = append(out, es...)
	}
	return out
}

// copyTrail copies the batch files of src below a new directory.
func copyTrail(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, k := range batchKeys(t, src) {
		data, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(k)))
		require.NoError(t, err)
		writeFile(t, dst, k, data)
	}
	return dst
}

// TestVersion1Trail: a trail the writer of format version 1 wrote verifies
// as before, every row hashed as version 1.
func TestVersion1Trail(t *testing.T) {
	rep := verifyDir(t, v1Trail)
	require.True(t, rep.Intact, joinLines(rep.Violations))
	assert.Equal(t, int64(v1Len), rep.Entries)
	assert.Equal(t, 2, rep.Files)
	require.Len(t, rep.Chains, 1)
	es := readTrailEntries(t, v1Trail)
	require.Len(t, es, v1Len)
	assert.Equal(t, es[v1Len-1].EntryHash, rep.Chains[0].LastHash)
	for _, e := range es {
		require.Nil(t, e.EndTimeUnixNano)
	}
	for _, k := range batchKeys(t, v1Trail) {
		data, err := os.ReadFile(filepath.Join(v1Trail, filepath.FromSlash(k)))
		require.NoError(t, err)
		res := readTwice(t, k, data)
		assert.Empty(t, res.violations, k)
		r := newFileReader()
		r.read(k, data)
		assert.False(t, r.hasEnd, k)
	}
}

// mixedTrail copies testdata/trail-v1 and continues its chain with two
// files of format version 2, seq 80 to 99 and 100 to 119; seq 105 to 109
// are entries of version 1 (no end time, no sender), as a write-ahead log
// an older collector wrote leaves them to be sealed after an upgrade. Of
// the others, seq 83, 89, 95, 101, 113 and 119 have no sender (NULL). It
// returns the directory, the new entries and their files' keys.
func mixedTrail(t *testing.T) (string, []entry.Entry, []string) {
	t.Helper()
	dir := copyTrail(t, v1Trail)
	old := readTrailEntries(t, v1Trail)
	last := old[len(old)-1]
	c := chain.New(v1Chain, chain.Head{Size: last.Seq + 1, Hash: last.EntryHash})
	es := make([]entry.Entry, 40)
	for i := range es {
		es[i] = testEntry(int64(v1Len + i))
		if s := v1Len + i; s >= 105 && s < 110 {
			es[i].EndTimeUnixNano, es[i].Sender = nil, nil
		}
		c.Append(&es[i])
	}
	keys := []string{writeBatch(t, dir, es[:20]), writeBatch(t, dir, es[20:])}
	return dir, es, keys
}

// TestMixedChain: a chain that goes on from files of version 1 into files of
// version 2, one of which holds rows of version 1, is intact; every change to an end time is a hash_mismatch of its row: one
// nanosecond, a NULL for it (a row downgraded to version 1), one added to a
// row of version 1, the column removed from a file; and so is every change
// to a sender: rewritten, set to NULL, given to a row without one, given to
// a row of version 1 (which hashes none), the column removed.
func TestMixedChain(t *testing.T) {
	dir, es, keys := mixedTrail(t)
	rep := verifyDir(t, dir)
	require.True(t, rep.Intact, joinLines(rep.Violations))
	assert.Equal(t, int64(v1Len+len(es)), rep.Entries)
	assert.Equal(t, 4, rep.Files)
	require.Len(t, rep.Chains, 1)
	assert.Equal(t, es[len(es)-1].EntryHash, rep.Chains[0].LastHash)
	assert.Equal(t, int64(v1Len+len(es)-1), rep.Chains[0].LastSeq)

	mismatches := func(from, to int) []string {
		var out []string
		for s := from; s <= to; s++ {
			out = append(out, fmt.Sprintf("%s/%d/%s", v1Chain, s, HashMismatch))
		}
		return out
	}
	v1Key := store.BatchKey(v1Chain, 0, day)
	v1Rows := readTrailEntries(t, v1Trail)[:40]
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   []string
	}{
		{"end time moved by one nanosecond", func(t *testing.T, dir string) {
			f := slices.Clone(es[:20])
			writeRawWith(t, dir, keys[0], f, footerOf(f), func(i int, r *rawRow) {
				if i == 10 {
					r.EndTimeUnixNano = i64p(*r.EndTimeUnixNano + 1)
				}
			})
		}, mismatches(90, 90)},
		{"end time of a version 2 row set to NULL", func(t *testing.T, dir string) {
			f := slices.Clone(es[:20])
			writeRawWith(t, dir, keys[0], f, footerOf(f), func(i int, r *rawRow) {
				if i == 11 {
					r.EndTimeUnixNano = nil
				}
			})
		}, mismatches(91, 91)},
		{"end time given to a version 1 row", func(t *testing.T, dir string) {
			f := slices.Clone(es[20:])
			writeRawWith(t, dir, keys[1], f, footerOf(f), func(i int, r *rawRow) {
				if i == 6 {
					r.EndTimeUnixNano = i64p(r.TimeUnixNano)
				}
			})
		}, mismatches(106, 106)},
		{"end time column removed, the footer saying version 1", func(t *testing.T, dir string) {
			f := es[:20]
			writeRawV1(t, dir, keys[0], f, withVersion(footerOf(f), parquetfile.FormatVersion1))
		}, mismatches(80, 99)},
		{"end time column removed, the footer left at version 2", func(t *testing.T, dir string) {
			f := es[20:]
			writeRawV1(t, dir, keys[1], f, footerOf(f))
		}, append(mismatches(100, 104), append(mismatches(110, 119), v1Chain+"/100/"+string(FooterMismatch))...)},
		{"sender rewritten", func(t *testing.T, dir string) {
			f := slices.Clone(es[:20])
			writeRawWith(t, dir, keys[0], f, footerOf(f), func(i int, r *rawRow) {
				if i == 2 {
					r.Sender = strp("svc-other-agent")
				}
			})
		}, mismatches(82, 82)},
		{"sender set to NULL", func(t *testing.T, dir string) {
			f := slices.Clone(es[:20])
			writeRawWith(t, dir, keys[0], f, footerOf(f), func(i int, r *rawRow) {
				if i == 4 {
					r.Sender = nil
				}
			})
		}, mismatches(84, 84)},
		{"sender given to a version 2 row without one", func(t *testing.T, dir string) {
			f := slices.Clone(es[:20])
			writeRawWith(t, dir, keys[0], f, footerOf(f), func(i int, r *rawRow) {
				if i == 3 {
					r.Sender = strp("svc-crm-agent")
				}
			})
		}, mismatches(83, 83)},
		{"sender given to a version 1 row", func(t *testing.T, dir string) {
			f := slices.Clone(es[20:])
			writeRawWith(t, dir, keys[1], f, footerOf(f), func(i int, r *rawRow) {
				if i == 6 {
					r.Sender = strp("svc-crm-agent")
				}
			})
		}, mismatches(106, 106)},
		{"sender column removed", func(t *testing.T, dir string) {
			f := es[:20]
			writeRawNoSender(t, dir, keys[0], f, footerOf(f))
		}, slices.DeleteFunc(mismatches(80, 99), func(k string) bool {
			// The rows whose sender was NULL read the same.
			return k == v1Chain+"/83/hash_mismatch" || k == v1Chain+"/89/hash_mismatch" || k == v1Chain+"/95/hash_mismatch"
		})},
		{"a value of a version 1 file rewritten", func(t *testing.T, dir string) {
			f := slices.Clone(v1Rows)
			f[7].TargetResource += "x"
			writeRawV1(t, dir, v1Key, f, withVersion(footerOf(v1Rows), parquetfile.FormatVersion1))
		}, mismatches(7, 7)},
		{"a version 1 file whose footer says version 2", func(t *testing.T, dir string) {
			writeRawV1(t, dir, v1Key, v1Rows, footerOf(v1Rows))
		}, []string{v1Chain + "/0/" + string(FooterMismatch)}},
		{"a version 2 file whose footer says version 1", func(t *testing.T, dir string) {
			f := es[:20]
			writeRawWith(t, dir, keys[0], f, withVersion(footerOf(f), parquetfile.FormatVersion1), nil)
		}, []string{v1Chain + "/80/" + string(FooterMismatch)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _, _ := mixedTrail(t)
			tc.tamper(t, dir)
			rep := verifyDir(t, dir)
			got := violationKeys(rep.Violations)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			assert.Equal(t, want, got, joinLines(rep.Violations))
		})
	}
}

// TestEndTimeMismatchDetail: the hash a tampered end time is reported with
// is that of the version 2 encoding of the row as it is, and a row
// downgraded to NULL is reported with its version 1 hash.
func TestEndTimeMismatchDetail(t *testing.T) {
	dir, es, keys := mixedTrail(t)
	f := slices.Clone(es[:20])
	writeRawWith(t, dir, keys[0], f, footerOf(f), func(i int, r *rawRow) {
		switch i {
		case 3:
			r.EndTimeUnixNano = i64p(*r.EndTimeUnixNano - 1)
		case 4:
			r.EndTimeUnixNano = nil
		}
	})
	moved, dropped := es[3], es[4]
	moved.EndTimeUnixNano = i64p(*moved.EndTimeUnixNano - 1)
	dropped.EndTimeUnixNano = nil
	require.Nil(t, moved.Sender, "seq 83 has no sender")
	require.NotNil(t, dropped.Sender, "seq 84 has a sender")
	rep := verifyDir(t, dir)
	require.Len(t, rep.Violations, 2, joinLines(rep.Violations))
	assert.Equal(t, fmt.Sprintf("got entry_hash %s, want %s", es[3].EntryHash, chain.Hash(&moved)), rep.Violations[0].Detail)
	// Hashed as version 1, which has no sender: the sender is named.
	assert.Equal(t, fmt.Sprintf(`got entry_hash %s, want %s and no sender: sender "svc-crm-agent" on a row without end_time_unix_nano (version 1), which no hash covers`,
		es[4].EntryHash, chain.Hash(&dropped)), rep.Violations[1].Detail)
}
