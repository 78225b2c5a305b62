package verify

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/trailtest"
)

func strp(s string) *string { return &s }

func i64p(v int64) *int64 { return &v }

// day is the dt= partition of every test file.
var day = time.Date(2026, 3, 9, 9, 30, 0, 0, time.UTC)

// testEntry is a realistic entry of about 400 canonical bytes; i varies its
// values. It has an end time (format version 2) and a sender, but every
// sixth (an unauthenticated sender, NULL).
func testEntry(i int64) entry.Entry {
	e := trailtest.Entry(i)
	e.EndTimeUnixNano = i64p(e.TimeUnixNano + (i%5)*50_000_000 + 1)
	e.Sender = strp("svc-crm-agent")
	e.ActionType = []string{"start", "read", "write", "request_approval", "approve", "write", "read", "end"}[i%8]
	if i%7 == 0 {
		e.Validation = strp(`[{"field":"audit.target.system","problem":"missing"}]`)
	}
	if i%6 == 5 {
		e.Sender = nil
	}
	return e
}

// buildChain returns n chained entries of chain id.
func buildChain(id string, n int) []entry.Entry {
	c := chain.New(id, chain.Genesis())
	es := make([]entry.Entry, n)
	for i := range es {
		es[i] = testEntry(int64(i))
		c.Append(&es[i])
	}
	return es
}

// writeBatch writes es as one batch file below dir, named as the exporter
// names it, and returns its key.
func writeBatch(t testing.TB, dir string, es []entry.Entry) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := parquetfile.Encode(&buf, es); err != nil {
		t.Fatal(err)
	}
	key := store.BatchKey(es[0].ChainID, es[0].Seq, day)
	writeFile(t, dir, key, buf.Bytes())
	return key
}

func writeFile(t testing.TB, dir, key string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// trail is a multi-chain, multi-file trail on disk.
type trail struct {
	dir    string
	chains map[string][]entry.Entry
	keys   map[string][]string // per chain, in seq order
	per    int                 // entries per file
}

// writeTrail writes chains of n entries each, per entries to a file.
func writeTrail(t testing.TB, dir string, ids []string, n, per int) *trail {
	t.Helper()
	tr := &trail{dir: dir, chains: map[string][]entry.Entry{}, keys: map[string][]string{}, per: per}
	for _, id := range ids {
		es := buildChain(id, n)
		tr.chains[id] = es
		for start := 0; start < n; start += per {
			tr.keys[id] = append(tr.keys[id], writeBatch(t, dir, es[start:min(start+per, n)]))
		}
	}
	return tr
}

// rawRow mirrors parquetfile's schema, to write files that Encode refuses
// (rows deleted, duplicated, reordered) the way an attacker's tool would.
type rawRow struct {
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
	Sender          *string `parquet:"sender,dict"`
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

// footerOf is the footer Encode would write for es, as key-value pairs.
func footerOf(es []entry.Entry) [][2]string {
	first, last := es[0], es[len(es)-1]
	hashes := make([]string, len(es))
	for i := range es {
		hashes[i] = es[i].EntryHash
	}
	root, err := merkle.RootHex(hashes)
	if err != nil {
		panic(err)
	}
	return [][2]string{
		{parquetfile.KeyFormatVersion, parquetfile.FormatVersion},
		{parquetfile.KeyChainID, first.ChainID},
		{parquetfile.KeyFirstSeq, strconv.FormatInt(first.Seq, 10)},
		{parquetfile.KeyLastSeq, strconv.FormatInt(last.Seq, 10)},
		{parquetfile.KeyEntryCount, strconv.Itoa(len(es))},
		{parquetfile.KeyPrevHash, first.PrevHash},
		{parquetfile.KeyLastHash, last.EntryHash},
		{parquetfile.KeyMerkleRoot, root},
	}
}

// writeRaw writes es as they are, with the given footer pairs.
func writeRaw(t testing.TB, dir, key string, es []entry.Entry, footer [][2]string) {
	t.Helper()
	writeRawWith(t, dir, key, es, footer, nil)
}

// writeRawWith is writeRaw with a change to each row before it is written,
// and writer options after the default zstd.
func writeRawWith(t testing.TB, dir, key string, es []entry.Entry, footer [][2]string, change func(int, *rawRow), more ...parquet.WriterOption) {
	t.Helper()
	opts := append([]parquet.WriterOption{parquet.Compression(&parquet.Zstd)}, more...)
	for _, kv := range footer {
		opts = append(opts, parquet.KeyValueMetadata(kv[0], kv[1]))
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[rawRow](&buf, opts...)
	rows := make([]rawRow, len(es))
	for i, e := range es {
		ms := floorMilli(e.TimeUnixNano)
		rows[i] = rawRow{ms, e.TimeUnixNano, e.EndTimeUnixNano, e.ChainID, e.Seq, e.ExecutionID, e.TraceID, e.SpanID, e.ParentSpanID,
			e.AgentID, e.AgentName, e.ServiceName, e.Principal, e.Sender, e.ActionType, e.TargetSystem, e.TargetResource,
			e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver, e.Result, e.StatusCode, e.Attributes,
			e.Validation, e.PrevHash, e.EntryHash}
		if change != nil {
			change(i, &rows[i])
		}
	}
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, key, buf.Bytes())
}

// file returns the entries of the i-th file of chain id (a copy).
func (tr *trail) file(id string, i int) []entry.Entry {
	es := tr.chains[id]
	return append([]entry.Entry(nil), es[i*tr.per:min((i+1)*tr.per, len(es))]...)
}

func timeOf(e entry.Entry) time.Time { return time.Unix(0, e.TimeUnixNano).UTC() }

func encode(es []entry.Entry) ([]byte, error) {
	var buf bytes.Buffer
	_, err := parquetfile.Encode(&buf, es)
	return buf.Bytes(), err
}

func (tr *trail) path(key string) string { return filepath.Join(tr.dir, filepath.FromSlash(key)) }

// violationKeys renders violations as "chain/seq/kind" for comparison.
func violationKeys(vs []Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ChainID + "/" + strconv.FormatInt(v.Seq, 10) + "/" + string(v.Kind)
	}
	return out
}

func joinLines(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.String())
		b.WriteByte('\n')
	}
	return b.String()
}
