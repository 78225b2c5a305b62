package parquetfile

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
)

func ptr(s string) *string { return &s }

func i64(v int64) *int64 { return &v }

// hashed links entries into a fresh chain named id, as the exporter would.
func hashed(id string, es []entry.Entry) []entry.Entry {
	c := chain.New(id, chain.Genesis())
	for i := range es {
		c.Append(&es[i])
	}
	return es
}

// varied returns entries covering nil, "" and non-empty optional fields,
// unicode, a 1 MiB value, and end times at, after and before the start time
// and one NULL (an entry of version 1, as an older collector's write-ahead
// log leaves them, without a sender).
func varied() []entry.Entry {
	base := time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC).UnixNano()
	allSet := entry.Entry{
		TimeUnixNano: base, EndTimeUnixNano: i64(base + 250_000_000), ExecutionID: "exec-1", TraceID: strings.Repeat("ab", 16), SpanID: strings.Repeat("cd", 8),
		ParentSpanID: ptr(strings.Repeat("ef", 8)), AgentID: ptr("agent-7"), AgentName: ptr("billing-bot"),
		ServiceName: ptr("billing"), Principal: ptr("alice@example.com"), Sender: ptr("svc-billing"), ActionType: "write",
		TargetSystem: "postgres", TargetResource: "invoices/42", ProposedValue: ptr(`{"amount":10}`),
		PreviousValue: ptr(`{"amount":9}`), Reasoning: ptr("customer asked"), Approver: ptr("bob"),
		Result: "ok", StatusCode: "Ok", Attributes: `{"k":"v"}`, Validation: ptr(`[{"field":"x","problem":"empty"}]`),
	}
	allNil := entry.Entry{
		TimeUnixNano: base + 1, ExecutionID: "exec-1", TraceID: strings.Repeat("01", 16), SpanID: strings.Repeat("02", 8),
		ActionType: "read", TargetSystem: "s3", TargetResource: "bucket/key", Result: "", StatusCode: "Unset", Attributes: "{}",
	}
	allEmpty := entry.Entry{
		TimeUnixNano: base + 1_000_000, EndTimeUnixNano: i64(0), ExecutionID: "", TraceID: "", SpanID: "",
		ParentSpanID: ptr(""), AgentID: ptr(""), AgentName: ptr(""), ServiceName: ptr(""), Principal: ptr(""), Sender: ptr(""),
		ProposedValue: ptr(""), PreviousValue: ptr(""), Reasoning: ptr(""), Approver: ptr(""), Validation: ptr(""),
	}
	unicode := entry.Entry{
		TimeUnixNano: base + 2_999_999, EndTimeUnixNano: i64(base + 2_999_999), ExecutionID: "exécution-✓", TraceID: strings.Repeat("0f", 16), SpanID: strings.Repeat("f0", 8),
		AgentName: ptr("代理人 🤖"), Principal: ptr("Zoë Ångström"), Sender: ptr("CN=Zoë Ångström ✓,O=Beispiel"), ActionType: "request_approval",
		TargetSystem: "crm", TargetResource: "клиенты/№5", Reasoning: ptr("naïve café — \u2028 \x00 nul byte"),
		Result: "pending", StatusCode: "Error", Attributes: `{"emoji":"😀"}`,
	}
	big := entry.Entry{
		TimeUnixNano: base + 3_000_000, EndTimeUnixNano: i64(math.MaxInt64), ExecutionID: "exec-2", TraceID: strings.Repeat("aa", 16), SpanID: strings.Repeat("bb", 8),
		ActionType: "write", TargetSystem: "fs", TargetResource: "/tmp/big",
		ProposedValue: ptr(strings.Repeat("x", 1<<20)), PreviousValue: ptr(strings.Repeat("y€", 1<<19)),
		Result: "ok", StatusCode: "Ok", Attributes: `{"big":"` + strings.Repeat("z", 1<<20) + `"}`,
	}
	negative := entry.Entry{TimeUnixNano: -1_500_000, EndTimeUnixNano: i64(math.MinInt64), ExecutionID: "exec-3", ActionType: "end"}
	return hashed("chain-a", []entry.Entry{allSet, allNil, allEmpty, unicode, big, negative})
}

// realistic returns n entries shaped like production traffic: 100 entries
// per execution, a handful of agents, JSON attributes, some reasoning.
func realistic(n int) []entry.Entry {
	rng := rand.New(rand.NewPCG(1, 2))
	agents := []string{"billing-bot", "support-agent", "deploy-agent", "research-agent"}
	actions := entry.KnownActionTypes
	systems := []string{"postgres", "s3", "github", "slack", "stripe"}
	hex := func(nbytes int) string {
		b := make([]byte, nbytes)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return fmt.Sprintf("%x", b)
	}
	base := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC).UnixNano()
	es := make([]entry.Entry, n)
	trace := hex(16)
	for i := range es {
		if i%100 == 0 {
			trace = hex(16)
		}
		agent := agents[(i/100)%len(agents)]
		latency := rng.IntN(5000)
		e := entry.Entry{
			TimeUnixNano:    base + int64(i)*1_234_567,
			EndTimeUnixNano: i64(base + int64(i)*1_234_567 + int64(latency)*1_000_000 + int64(rng.IntN(1_000_000))),
			ExecutionID:     fmt.Sprintf("exec-%08d", i/100),
			TraceID:         trace,
			SpanID:          hex(8),
			ParentSpanID:    ptr(hex(8)),
			AgentID:         ptr("id-" + agent),
			AgentName:       ptr(agent),
			ServiceName:     ptr("svc-" + agent),
			Principal:       ptr(fmt.Sprintf("user%d@example.com", (i/100)%50)),
			Sender:          ptr("svc-" + agent),
			ActionType:      actions[rng.IntN(len(actions))],
			TargetSystem:    systems[rng.IntN(len(systems))],
			TargetResource:  fmt.Sprintf("tables/orders/rows/%d", rng.IntN(1_000_000)),
			Result:          "success",
			StatusCode:      "Ok",
			Attributes:      fmt.Sprintf(`{"gen_ai.request.model":"gpt-x","http.method":"POST","latency_ms":%d,"retry":%d}`, latency, rng.IntN(3)),
		}
		if e.ActionType == "write" {
			e.ProposedValue = ptr(fmt.Sprintf(`{"status":"shipped","amount":%d,"currency":"EUR"}`, rng.IntN(100000)))
			e.PreviousValue = ptr(fmt.Sprintf(`{"status":"pending","amount":%d,"currency":"EUR"}`, rng.IntN(100000)))
			e.Reasoning = ptr("The customer confirmed the order in the chat and the payment cleared, so the order can ship. " + hex(16))
		}
		if e.ActionType == "approve" {
			e.Approver = ptr("manager@example.com")
		}
		if (i/100)%7 == 3 {
			e.Sender = nil // an unauthenticated sender
		}
		es[i] = e
	}
	return hashed("collector-7f3a-pod-1", es)
}

func encode(t testing.TB, es []entry.Entry) ([]byte, Footer) {
	t.Helper()
	var buf bytes.Buffer
	f, err := Encode(&buf, es)
	require.NoError(t, err)
	return buf.Bytes(), f
}

func TestRoundTrip(t *testing.T) {
	es := varied()
	data, wrote := encode(t, es)
	got, read, err := ReadEntries(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, wrote, read)
	require.Len(t, got, len(es))
	for i := range es {
		// DeepEqual tells a nil pointer from a pointer to "".
		assert.Equal(t, es[i], got[i], "entry %d", i)
		assert.Equal(t, es[i].EntryHash, chain.Hash(&got[i]), "entry %d rehash", i)
	}
	// Spot-check nil versus "" explicitly, in case Equal ever got lenient.
	assert.Nil(t, got[1].Reasoning)
	require.NotNil(t, got[2].Reasoning)
	assert.Equal(t, "", *got[2].Reasoning)
	// The same for the end time: NULL (version 1) versus 0, and the sender.
	assert.Nil(t, got[1].EndTimeUnixNano)
	require.NotNil(t, got[2].EndTimeUnixNano)
	assert.Equal(t, int64(0), *got[2].EndTimeUnixNano)
	assert.Nil(t, got[1].Sender)
	require.NotNil(t, got[2].Sender)
	assert.Equal(t, "", *got[2].Sender)
	assert.Equal(t, "CN=Zoë Ångström ✓,O=Beispiel", *got[3].Sender)
}

// rowsV1Of is es as rows of format version 1: without their end times.
func rowsV1Of(es []entry.Entry) []rowV1 {
	rows := make([]rowV1, len(es))
	for i := range es {
		var r row
		toRow(&r, &es[i])
		rows[i] = rowV1{r.Timestamp, r.TimeUnixNano, r.ChainID, r.Seq, r.ExecutionID, r.TraceID, r.SpanID, r.ParentSpanID,
			r.AgentID, r.AgentName, r.ServiceName, r.Principal, r.ActionType, r.TargetSystem, r.TargetResource,
			r.ProposedValue, r.PreviousValue, r.Reasoning, r.Approver, r.Result, r.StatusCode, r.Attributes,
			r.Validation, r.PrevHash, r.EntryHash}
	}
	return rows
}

// rowNoSender is row as format version 2 was before the sender column
// (never released): ReadEntries refuses it.
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

func rowsWithoutSender(es []entry.Entry) []rowNoSender {
	rows := make([]rowNoSender, len(es))
	for i := range es {
		var r row
		toRow(&r, &es[i])
		rows[i] = rowNoSender{r.Timestamp, r.TimeUnixNano, r.EndTimeUnixNano, r.ChainID, r.Seq, r.ExecutionID, r.TraceID, r.SpanID,
			r.ParentSpanID, r.AgentID, r.AgentName, r.ServiceName, r.Principal, r.ActionType, r.TargetSystem, r.TargetResource,
			r.ProposedValue, r.PreviousValue, r.Reasoning, r.Approver, r.Result, r.StatusCode, r.Attributes,
			r.Validation, r.PrevHash, r.EntryHash}
	}
	return rows
}

// encodeV1 writes es as a file of format version 1, the way Encode did
// before end times: rowV1's columns, the same writer options, the footer
// naming version 1. The end times of es are not written.
func encodeV1(t testing.TB, es []entry.Entry) []byte {
	t.Helper()
	f, err := rowsFooter(es)
	require.NoError(t, err)
	f.FormatVersion = FormatVersion1
	var buf bytes.Buffer
	pw := parquet.NewGenericWriter[rowV1](&buf, append(writerOptions(f), schemaV1)...)
	_, err = pw.Write(rowsV1Of(es))
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	return buf.Bytes()
}

// withoutEndTimes is es as entries of version 1 (no end times, no
// senders), chained again.
func withoutEndTimes(es []entry.Entry) []entry.Entry {
	out := make([]entry.Entry, len(es))
	for i, e := range es {
		e.EndTimeUnixNano, e.Sender = nil, nil
		out[i] = e
	}
	return hashed(es[0].ChainID, out)
}

// TestReadVersion1: files of format version 1 read as before, their
// entries without end times and their hashes those of version 1: the
// trail testdata/trail-v1 of internal/verify, written by the writer of
// version 1 (7cc4eb8), and a file written here the same way.
func TestReadVersion1(t *testing.T) {
	dir := filepath.Join("..", "verify", "testdata", "trail-v1", "dt=2026-03-09")
	var all []entry.Entry
	for _, name := range []string{"replica-v1-00000000000000000000.parquet", "replica-v1-00000000000000000040.parquet"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		got, f, err := ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, name)
		assert.Equal(t, FormatVersion1, f.FormatVersion, name)
		require.Len(t, got, 40, name)
		all = append(all, got...)
	}
	prev := chain.GenesisHash
	for i, e := range all {
		assert.Nil(t, e.EndTimeUnixNano, "entry %d", i)
		assert.Equal(t, int64(i), e.Seq)
		assert.Equal(t, prev, e.PrevHash, "entry %d links to the one before", i)
		assert.Equal(t, e.EntryHash, chain.Hash(&e), "entry %d: its hash is the version 1 encoding's", i)
		assert.True(t, strings.HasPrefix(string(chain.AppendCanonical(nil, &e)), "19:agentaudit.entry.v1"))
		prev = e.EntryHash
	}

	es := withoutEndTimes(varied())
	data := encodeV1(t, es)
	got, f, err := ReadEntries(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, FormatVersion1, f.FormatVersion)
	assert.Equal(t, es, got)
	assert.Nil(t, got[1].Reasoning)
	require.NotNil(t, got[2].Reasoning)

	// The version 1 rows go through the same timestamp check.
	rows := rowsV1Of(es)
	rows[1].Timestamp++
	kv := goodKV(es)
	kv[KeyFormatVersion] = FormatVersion1
	data = writeRaw(t, rows, kv)
	_, _, err = ReadEntries(bytes.NewReader(data), int64(len(data)))
	require.ErrorIs(t, err, ErrTimestampMismatch)
	assert.Contains(t, err.Error(), "seq 1")
}

// The columns must be those of the footer's version.
func TestReadVersionMismatch(t *testing.T) {
	es := varied()
	v1 := goodKV(es)
	v1[KeyFormatVersion] = FormatVersion1
	for name, data := range map[string][]byte{
		"27 columns, want 25": writeRaw(t, rowsOf(es), v1),
		"25 columns, want 27": writeRaw(t, rowsV1Of(es), goodKV(es)),
		// Version 2 as it was before senders (never released): refused.
		"26 columns, want 27": writeRaw(t, rowsWithoutSender(es), goodKV(es)),
	} {
		_, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, "the footer alone is fine")
		_, _, err = ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.ErrorIs(t, err, ErrNotAuditFile)
		assert.Contains(t, err.Error(), name)
	}
}

func TestRoundTripRealistic(t *testing.T) {
	es := realistic(2500) // more than one write and read chunk
	data, _ := encode(t, es)
	got, f, err := ReadEntries(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, es, got)
	assert.Equal(t, int64(2500), f.EntryCount)
}

func TestEncodeContinuedChain(t *testing.T) {
	es := realistic(30)[10:] // a later batch: seq 10..29
	data, f := encode(t, es)
	assert.Equal(t, Footer{
		FormatVersion: "2", ChainID: "collector-7f3a-pod-1", FirstSeq: 10, LastSeq: 29, EntryCount: 20,
		PrevHash: es[0].PrevHash, LastHash: es[19].EntryHash, MerkleRoot: batchRoot(t, es),
	}, f)
	read, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, f, read)
}

func TestFooterKeysExact(t *testing.T) {
	es := varied()
	data, _ := encode(t, es)
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	got := map[string]string{}
	for _, kv := range pf.Metadata().KeyValueMetadata {
		if strings.HasPrefix(kv.Key, "agentaudit.") {
			got[kv.Key] = kv.Value
		}
	}
	assert.Equal(t, map[string]string{
		"agentaudit.format_version": "2",
		"agentaudit.chain_id":       "chain-a",
		"agentaudit.first_seq":      "0",
		"agentaudit.last_seq":       "5",
		"agentaudit.entry_count":    "6",
		"agentaudit.prev_hash":      chain.GenesisHash,
		"agentaudit.last_hash":      es[5].EntryHash,
		"agentaudit.merkle_root":    batchRoot(t, es),
	}, got)
}

// batchRoot is the Merkle root of the entries' hashes, computed apart from
// Encode.
func batchRoot(t *testing.T, es []entry.Entry) string {
	t.Helper()
	var hs []string
	for _, e := range es {
		hs = append(hs, e.EntryHash)
	}
	root, err := merkle.RootHex(hs)
	require.NoError(t, err)
	return root
}

func TestEncodeInvalid(t *testing.T) {
	var buf bytes.Buffer
	_, err := Encode(&buf, nil)
	assert.ErrorIs(t, err, ErrEmptyBatch)

	mixed := realistic(3)
	mixed[2].ChainID = "other"
	_, err = Encode(&buf, mixed)
	require.ErrorIs(t, err, ErrInvalidBatch)
	var be *BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, BatchError{Index: 2, Field: "chain_id", Got: `"other"`, Want: `"collector-7f3a-pod-1"`}, *be)

	gap := realistic(4)
	gap = append(gap[:1], gap[2:]...) // seq 0, 2, 3
	_, err = Encode(&buf, gap)
	require.ErrorAs(t, err, &be)
	assert.Equal(t, BatchError{Index: 1, Field: "seq", Got: "2", Want: "1"}, *be)
	assert.EqualError(t, err, "parquetfile: invalid batch: entry 1: seq = 2, want 1")

	for _, tc := range []struct {
		name  string
		edit  func(es []entry.Entry)
		field string
		index int
	}{
		{"empty chain id", func(es []entry.Entry) {
			for i := range es {
				es[i].ChainID = ""
			}
		}, "chain_id", 0},
		{"negative seq", func(es []entry.Entry) {
			for i := range es {
				es[i].Seq -= 5
			}
		}, "seq", 0},
		{"unhashed", func(es []entry.Entry) { es[2].EntryHash = "" }, "entry_hash", 2},
		{"upper-case prev hash", func(es []entry.Entry) { es[0].PrevHash = strings.ToUpper(es[1].EntryHash) }, "prev_hash", 0},
		// Version 1 hashes no sender: it would be stored unhashed.
		{"sender without end time", func(es []entry.Entry) { es[1].EndTimeUnixNano = nil }, "sender", 1},
		{"first: sender without end time", func(es []entry.Entry) { es[0].EndTimeUnixNano = nil }, "sender", 0},
	} {
		es := realistic(3)
		tc.edit(es)
		_, err := Encode(&buf, es)
		require.ErrorAs(t, err, &be, tc.name)
		assert.Equal(t, tc.field, be.Field, tc.name)
		assert.Equal(t, tc.index, be.Index, tc.name)
	}
	assert.Zero(t, buf.Len(), "nothing written for an invalid batch")
}

func TestReadFooterCorrupt(t *testing.T) {
	data, _ := encode(t, realistic(50))
	footerLen := binary.LittleEndian.Uint32(data[len(data)-8:])

	hugeLen := bytes.Clone(data)
	binary.LittleEndian.PutUint32(hugeLen[len(hugeLen)-8:], 0xFFFFFFF0)
	garbledFooter := bytes.Clone(data)
	footerStart := len(data) - 8 - int(footerLen)
	for i := footerStart; i < len(data)-8; i++ {
		garbledFooter[i] ^= 0x5a
	}
	rng := rand.New(rand.NewPCG(3, 4))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}

	cases := map[string][]byte{
		"empty":            {},
		"magic only":       []byte("PAR1"),
		"garbage":          garbage,
		"text":             []byte("hello, this is not parquet at all, PAR1"),
		"truncated by one": data[:len(data)-1],
		"truncated half":   data[:len(data)/2],
		"footer cut off":   append(bytes.Clone(data[:footerStart+10]), data[len(data)-8:]...),
		"huge length":      hugeLen,
		"garbled footer":   garbledFooter,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ReadFooter(bytes.NewReader(b), int64(len(b)))
			require.ErrorIs(t, err, ErrCorrupt)
			_, _, err = ReadTailMetadata(bytes.NewReader(b), int64(len(b)))
			require.ErrorIs(t, err, ErrCorrupt)
			_, _, err = ReadEntries(bytes.NewReader(b), int64(len(b)))
			require.ErrorIs(t, err, ErrCorrupt)
		})
	}

	// Every prefix of a valid file: an error, never a panic.
	for n := 0; n < len(data); n += 7 {
		_, err := ReadFooter(bytes.NewReader(data[:n]), int64(n))
		require.Error(t, err, "prefix %d", n)
	}
}

// offsetsReader records the lowest offset read.
type offsetsReader struct {
	r      *bytes.Reader
	lowest int64
}

func (o *offsetsReader) ReadAt(p []byte, off int64) (int, error) {
	o.lowest = min(o.lowest, off)
	return o.r.ReadAt(p, off)
}

func TestReadTailMetadata(t *testing.T) {
	data, want := encode(t, realistic(50))
	f, md, err := ReadMetadata(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Equal(t, want, f)

	r := &offsetsReader{r: bytes.NewReader(data), lowest: int64(len(data))}
	tf, tmd, err := ReadTailMetadata(r, int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, f, tf)
	assert.Equal(t, md, tmd)
	footerLen := int64(binary.LittleEndian.Uint32(data[len(data)-8:]))
	assert.Equal(t, int64(len(data))-8-footerLen, r.lowest, "the footer and nothing before it")

	// The head is not read: a file with another head magic passes here,
	// not in ReadMetadata.
	headless := bytes.Clone(data)
	copy(headless, "XXXX")
	_, _, err = ReadMetadata(bytes.NewReader(headless), int64(len(headless)))
	require.ErrorIs(t, err, ErrCorrupt)
	tf, _, err = ReadTailMetadata(bytes.NewReader(headless), int64(len(headless)))
	require.NoError(t, err)
	assert.Equal(t, f, tf)
}

func TestReadEntriesBitFlipsNeverPanic(t *testing.T) {
	data, _ := encode(t, realistic(200))
	rng := rand.New(rand.NewPCG(5, 6))
	for range 300 {
		b := bytes.Clone(data)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		// A flip may land in a string value and go unnoticed here (the
		// hash chain catches that); the point is no panic escapes.
		_, _, _ = ReadEntries(bytes.NewReader(b), int64(len(b)))
	}
}

// writeRaw writes rows of any type with the given footer keys, bypassing
// Encode's checks, to build files Encode refuses to write.
func writeRaw[T any](t *testing.T, rows []T, kv map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var opts []parquet.WriterOption
	for k, v := range kv {
		opts = append(opts, parquet.KeyValueMetadata(k, v))
	}
	w := parquet.NewGenericWriter[T](&buf, opts...)
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func goodKV(es []entry.Entry) map[string]string {
	return map[string]string{
		KeyFormatVersion: FormatVersion,
		KeyChainID:       es[0].ChainID,
		KeyFirstSeq:      fmt.Sprint(es[0].Seq),
		KeyLastSeq:       fmt.Sprint(es[len(es)-1].Seq),
		KeyEntryCount:    fmt.Sprint(len(es)),
		KeyPrevHash:      es[0].PrevHash,
		KeyLastHash:      es[len(es)-1].EntryHash,
		KeyMerkleRoot:    strings.Repeat("ab", 32),
	}
}

func rowsOf(es []entry.Entry) []row {
	rows := make([]row, len(es))
	for i := range es {
		toRow(&rows[i], &es[i])
	}
	return rows
}

func TestReadFooterNotAuditFile(t *testing.T) {
	es := realistic(3)
	rows := rowsOf(es)

	type plain struct{ A string }
	data := writeRaw(t, []plain{{"x"}}, nil)
	_, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
	require.ErrorIs(t, err, ErrNotAuditFile)
	assert.Contains(t, err.Error(), `"agentaudit.format_version" missing`)

	for _, key := range []string{KeyChainID, KeyFirstSeq, KeyLastSeq, KeyEntryCount, KeyPrevHash, KeyLastHash} {
		t.Run("missing "+key, func(t *testing.T) {
			kv := goodKV(es)
			delete(kv, key)
			data := writeRaw(t, rows, kv)
			_, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
			require.ErrorIs(t, err, ErrNotAuditFile)
			assert.Contains(t, err.Error(), fmt.Sprintf("%q missing", key))
		})
	}

	malformed := []struct{ key, value, msg string }{
		{KeyFirstSeq, "zero", `"agentaudit.first_seq": "zero" is not an integer`},
		{KeyEntryCount, "", `"agentaudit.entry_count": "" is not an integer`},
		{KeyLastSeq, "7", "first=0 last=7 count=3 is inconsistent"},
		{KeyPrevHash, "ABC", `"agentaudit.prev_hash": "ABC" is not 64 lower-case hex digits`},
		{KeyLastHash, strings.ToUpper(es[2].EntryHash), `"agentaudit.last_hash"`},
		{KeyChainID, "", `"agentaudit.chain_id" is empty`},
	}
	for _, m := range malformed {
		t.Run("malformed "+m.key, func(t *testing.T) {
			kv := goodKV(es)
			kv[m.key] = m.value
			data := writeRaw(t, rows, kv)
			_, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
			require.ErrorIs(t, err, ErrNotAuditFile)
			assert.Contains(t, err.Error(), m.msg)
		})
	}

	t.Run("future version", func(t *testing.T) {
		kv := goodKV(es)
		kv[KeyFormatVersion] = "3"
		data := writeRaw(t, rows, kv)
		_, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
		require.ErrorIs(t, err, ErrUnsupportedVersion)
		assert.NotErrorIs(t, err, ErrNotAuditFile)
	})

	t.Run("foreign columns", func(t *testing.T) {
		type other struct {
			ChainID string `parquet:"chain_id"`
			Seq     int64  `parquet:"seq"`
		}
		data := writeRaw(t, []other{{"c", 0}, {"c", 1}, {"c", 2}}, goodKV(es))
		_, err := ReadFooter(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, "the footer alone looks fine")
		_, _, err = ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.ErrorIs(t, err, ErrNotAuditFile)
		assert.Contains(t, err.Error(), "2 columns, want 27")
	})
}

func TestReadEntriesTimestampMismatch(t *testing.T) {
	es := realistic(3)
	rows := rowsOf(es)
	rows[1].Timestamp += 1000 // moved by a second; not covered by the hash
	data := writeRaw(t, rows, goodKV(es))
	_, _, err := ReadEntries(bytes.NewReader(data), int64(len(data)))
	require.ErrorIs(t, err, ErrTimestampMismatch)
	assert.Contains(t, err.Error(), "seq 1")
}

func TestUnixMilliMatchesTime(t *testing.T) {
	for _, n := range []int64{0, 1, 999_999, 1_000_000, -1, -999_999, -1_000_000, -1_000_001, 1764223200123456789} {
		assert.Equal(t, time.Unix(0, n).UnixMilli(), unixMilli(n), "nanos %d", n)
	}
}

// TestColumnsMatchRowWriter: Encode, which hands each column's values to
// parquet-go's column writers, writes the same bytes as parquet-go's row
// writer given the same entries as rows (the encoder before Columns), for
// realistic entries, for entries with NULLs, empty and long values, for a
// batch cut short by Truncate, and with an encoder reused from an earlier
// batch of another size.
func TestColumnsMatchRowWriter(t *testing.T) {
	long := varied()
	long[1].Attributes = strings.Repeat(`{"k":"v"}`, 40_000) // past a page
	long = hashed("collector-7f3a-pod-1", long)
	for round := range 2 {
		for name, es := range map[string][]entry.Entry{
			"realistic": realistic(10_000), "varied": varied(), "long": long, "one": realistic(1),
			"odd": realistic(64*3 + 17),
		} {
			var want, got bytes.Buffer
			wf, err := encodeRows(&want, es)
			require.NoError(t, err, name)
			gf, err := Encode(&got, es)
			require.NoError(t, err, name)
			assert.Equal(t, wf, gf, "%s, round %d", name, round)
			require.True(t, bytes.Equal(want.Bytes(), got.Bytes()), "%s, round %d: %d bytes, want %d", name, round, got.Len(), want.Len())
		}
	}

	// Truncated: the first n entries, as if appended alone.
	es := realistic(300)
	var c Columns
	for i := range es {
		c.Append(&es[i])
	}
	c.Truncate(130)
	require.Equal(t, 130, c.Len())
	var want, got bytes.Buffer
	_, err := encodeRows(&want, es[:130])
	require.NoError(t, err)
	_, err = c.Encode(&got)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want.Bytes(), got.Bytes()), "truncated")

	// Reset keeps nothing of the entries before.
	c.Reset()
	for i := range es[:5] {
		c.Append(&es[i])
	}
	got.Reset()
	want.Reset()
	_, err = c.Encode(&got)
	require.NoError(t, err)
	_, err = encodeRows(&want, es[:5])
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want.Bytes(), got.Bytes()), "after Reset")
}

// TestAppendHashedRoot: the Merkle root of entries appended with the
// chain's sums is the root of their hex entry hashes, and Encode refuses
// an entry_hash that is not hex.
func TestAppendHashedRoot(t *testing.T) {
	es := realistic(100)
	var c Columns
	for i := range es {
		sum, err := hex.DecodeString(es[i].EntryHash)
		require.NoError(t, err)
		c.AppendHashed(&es[i], (*[32]byte)(sum))
	}
	var buf bytes.Buffer
	f, err := c.Encode(&buf)
	require.NoError(t, err)
	assert.Equal(t, batchRoot(t, es), f.MerkleRoot)

	// The leaves Encode hashed for the root are the Merkle leaves of the
	// entry hashes, until the rows change.
	leaves := append([]byte(nil), c.LeafHashes()...) // c's buffer is encoded into again below
	require.Len(t, leaves, 32*len(es))
	for i := range es {
		sum, err := hex.DecodeString(es[i].EntryHash)
		require.NoError(t, err)
		require.Equal(t, merkle.LeafHash(sum), leaves[32*i:32*(i+1)], "leaf %d", i)
	}
	c.Append(&es[0])
	assert.Nil(t, c.LeafHashes(), "after an Append")
	c.Truncate(len(es))
	assert.Nil(t, c.LeafHashes(), "after a Truncate")
	_, err = c.Encode(&buf)
	require.NoError(t, err)
	assert.Equal(t, leaves, c.LeafHashes(), "encoded again")
	c.Reset()
	assert.Nil(t, c.LeafHashes(), "after a Reset")
	var fresh Columns
	fresh.Append(&es[0])
	assert.Nil(t, fresh.LeafHashes(), "before an Encode")

	es[40].EntryHash = strings.Repeat("z", 64)
	_, err = Encode(&buf, es)
	var be *BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, BatchError{Index: 40, Field: "entry_hash", Got: strconv.Quote(es[40].EntryHash), Want: "64 lower-case hex digits"}, *be)
}

func TestSchema(t *testing.T) {
	es := varied()
	data, _ := encode(t, es)
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	md := pf.Metadata()

	type col struct {
		name     string
		physical format.Type
		logical  string // LogicalType.String()
		optional bool
	}
	str := func(name string, optional bool) col { return col{name, format.ByteArray, "STRING", optional} }
	want := []col{
		{"timestamp", format.Int64, "TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)", false},
		{"time_unix_nano", format.Int64, "INT(64,true)", false},
		{"end_time_unix_nano", format.Int64, "INT(64,true)", true},
		str("chain_id", false),
		{"seq", format.Int64, "INT(64,true)", false},
		str("execution_id", false), str("trace_id", false), str("span_id", false),
		str("parent_span_id", true), str("agent_id", true), str("agent_name", true),
		str("service_name", true), str("principal", true), str("sender", true),
		str("action_type", false), str("target_system", false), str("target_resource", false),
		str("proposed_value", true), str("previous_value", true), str("reasoning", true), str("approver", true),
		str("result", false), str("status_code", false), str("attributes", false), str("validation", true),
		str("prev_hash", false), str("entry_hash", false),
	}
	require.Len(t, md.Schema, len(want)+1, "root plus one element per column")
	for i, w := range want {
		el := md.Schema[i+1]
		assert.Equal(t, w.name, el.Name, "column %d", i)
		typ, ok := el.Type.Get()
		assert.True(t, ok)
		assert.Equal(t, w.physical, typ, w.name)
		assert.Equal(t, w.logical, el.LogicalType.String(), w.name)
		rep, _ := el.RepetitionType.Get()
		if w.optional {
			assert.Equal(t, format.Optional, rep, w.name)
		} else {
			assert.Equal(t, format.Required, rep, w.name)
		}
	}
	ts, ok := md.Schema[1].LogicalType.Value.(*format.TimestampType)
	require.True(t, ok)
	assert.True(t, ts.IsAdjustedToUTC)
	assert.IsType(t, &format.MilliSeconds{}, ts.Unit.Value)

	require.Len(t, md.RowGroups, 1)
	chunks := md.RowGroups[0].Columns
	require.Len(t, chunks, len(want))
	dict := map[string]bool{"chain_id": true, "execution_id": true, "agent_id": true, "agent_name": true,
		"service_name": true, "principal": true, "sender": true, "action_type": true, "target_system": true,
		"approver": true, "result": true, "status_code": true}
	for i, c := range chunks {
		name := want[i].name
		m := c.MetaData
		assert.Equal(t, format.Zstd, m.Codec, name)
		if name == "execution_id" {
			assert.Positive(t, m.BloomFilterOffset, "bloom filter on execution_id")
		} else {
			assert.Zero(t, m.BloomFilterOffset, "no bloom filter on %s", name)
		}
		assert.Equal(t, dict[name], hasEncoding(m.Encoding, format.RLEDictionary), "dictionary on %s", name)
		for _, e := range m.Encoding {
			assert.Contains(t, []format.Encoding{format.Plain, format.RLE, format.RLEDictionary}, e,
				"%s: only encodings every reader knows", name)
		}
		assert.NotNil(t, m.Statistics.MinValue, "min on %s", name)
		assert.NotNil(t, m.Statistics.MaxValue, "max on %s", name)
	}
	endStats := chunks[2].MetaData.Statistics
	assert.Equal(t, int64(math.MinInt64), int64(binary.LittleEndian.Uint64(endStats.MinValue)))
	assert.Equal(t, int64(math.MaxInt64), int64(binary.LittleEndian.Uint64(endStats.MaxValue)))
	assert.Equal(t, int64(1), endStats.NullCount, "end_time_unix_nano NULLs")
	seqStats := chunks[4].MetaData.Statistics
	assert.Equal(t, int64(0), int64(binary.LittleEndian.Uint64(seqStats.MinValue)))
	assert.Equal(t, int64(5), int64(binary.LittleEndian.Uint64(seqStats.MaxValue)))
	execStats := chunks[5].MetaData.Statistics
	assert.Equal(t, "", string(execStats.MinValue))
	assert.Equal(t, "exécution-✓", string(execStats.MaxValue))
	assert.Equal(t, int64(4), chunks[8].MetaData.Statistics.NullCount, "parent_span_id NULLs")
	senderStats := chunks[13].MetaData.Statistics
	assert.Equal(t, int64(3), senderStats.NullCount, "sender NULLs")
	assert.Equal(t, "", string(senderStats.MinValue))
	assert.Equal(t, "svc-billing", string(senderStats.MaxValue))

	// The bloom filter answers for a present execution id.
	bf := pf.RowGroups()[0].ColumnChunks()[5].BloomFilter()
	require.NotNil(t, bf)
	found, err := bf.Check(parquet.ValueOf("exec-2"))
	require.NoError(t, err)
	assert.True(t, found)
}

func hasEncoding(es []format.Encoding, e format.Encoding) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

func TestEstimatedSize(t *testing.T) {
	e := entry.Entry{}
	base := EstimatedSize(&e)
	assert.Equal(t, fixedOverhead, base)
	e.Reasoning = ptr(strings.Repeat("r", 1000))
	e.Attributes = "{}"
	e.Sender = ptr("svc-billing")
	assert.Equal(t, base+1013, EstimatedSize(&e))

	es := realistic(1000)
	sum := 0
	for i := range es {
		sum += EstimatedSize(&es[i])
	}
	data, _ := encode(t, es)
	// The estimate is of uncompressed bytes: it must not undercount the file.
	assert.Greater(t, sum, len(data))
	t.Logf("1000 realistic entries: estimated %d bytes, file %d bytes", sum, len(data))
}

func BenchmarkEncode10k(b *testing.B) {
	es := realistic(10_000)
	var buf bytes.Buffer
	var raw int
	for i := range es {
		raw += EstimatedSize(&es[i])
	}
	b.SetBytes(int64(raw))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		if _, err := Encode(&buf, es); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(es))*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(buf.Len())/1e6, "file-MB")
	b.ReportMetric(float64(buf.Len())/float64(len(es)), "bytes/entry")
}

// BenchmarkEncode10kAfterGC is BenchmarkEncode10k with two garbage
// collections (untimed) before each batch, as in a collector under load,
// where many collections run between two batches: what the codecs keep
// from one batch to the next must survive them.
func BenchmarkEncode10kAfterGC(b *testing.B) {
	es := realistic(10_000)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		runtime.GC()
		b.StartTimer()
		buf.Reset()
		if _, err := Encode(&buf, es); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(es))*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkReadEntries10k(b *testing.B) {
	es := realistic(10_000)
	data, _ := encode(b, es)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := ReadEntries(bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(es))*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkReadFooter(b *testing.B) {
	data, _ := encode(b, realistic(10_000))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadFooter(bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}
