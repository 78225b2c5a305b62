package chain_test

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// roundTripEntries are entries of both versions, one after another in a
// chain, as a write-ahead log written across an upgrade holds them.
func roundTripEntries() []entry.Entry {
	emptyV2 := entry.Entry{TraceID: "00", SpanID: "00", Attributes: "{}", EndTimeUnixNano: i64p(0)}
	return []entry.Entry{fullEntry(), {TraceID: "00", SpanID: "00", Attributes: "{}"}, fullEntryV2(), emptyV2, fullEntry()}
}

func TestDecodeCanonicalRoundTrip(t *testing.T) {
	c := chain.New("chain-ä", chain.Genesis())
	var buf []byte
	var want []entry.Entry
	for _, e := range roundTripEntries() {
		c.Append(&e)
		want = append(want, e)
		buf = chain.AppendCanonical(buf, &e)
	}
	rest := buf
	for i := range want {
		got, r, err := chain.DecodeCanonical(rest)
		require.NoError(t, err, "entry %d", i)
		assert.Equal(t, want[i], got, "entry %d, entry_hash recomputed", i)
		assert.Equal(t, want[i].EndTimeUnixNano == nil, strings.HasPrefix(string(rest), "19:agentaudit.entry.v1"), "entry %d: the version follows the end time", i)
		rest = r
	}
	assert.Empty(t, rest)
}

// TestDecodeViewAgrees: DecodeView gives what DecodeCanonical gives, but
// for the entry hash, without copying: its strings alias the input.
func TestDecodeViewAgrees(t *testing.T) {
	c := chain.New("chain-ä", chain.Genesis())
	var buf []byte
	for _, e := range roundTripEntries() {
		c.Append(&e)
		buf = chain.AppendCanonical(buf, &e)
	}
	rest := buf
	for i := 0; len(rest) > 0; i++ {
		want, r, err := chain.DecodeCanonical(rest)
		require.NoError(t, err)
		var got entry.Entry
		var opts [chain.NumOptional]string
		r2, err := chain.DecodeView(rest, &got, &opts)
		require.NoError(t, err)
		require.Len(t, r2, len(r), "entry %d", i)
		want.EntryHash = ""
		assert.Equal(t, want, got, "entry %d", i)
		if got.Attributes != "" {
			assert.Same(t, &buf[len(buf)-len(rest)+strings.Index(string(rest), got.Attributes)], unsafe.StringData(got.Attributes), "aliases the input")
		}
		rest = r
	}
	for _, b := range [][]byte{nil, []byte("19:agentaudit.entry.v17:chain-a-"), []byte("19:agentaudit.entry.v27:chain-a1:01:0-"), []byte("\xff")} {
		var e entry.Entry
		var opts [chain.NumOptional]string
		_, err := chain.DecodeView(b, &e, &opts)
		assert.ErrorIs(t, err, chain.ErrMalformed)
	}
}

func TestDecodeCanonicalRejects(t *testing.T) {
	e := fullEntry()
	good := chain.AppendCanonical(nil, &e)
	e2 := fullEntryV2()
	good2 := chain.AppendCanonical(nil, &e2)
	for name, b := range map[string][]byte{
		"empty":        nil,
		"truncated":    good[:len(good)-1],
		"truncated v2": good2[:len(good2)-1],
		"other tag":    append([]byte("19:agentaudit.entry.v3"), good[len("19:agentaudit.entry.v1"):]...),
		// The tag decides the fields: a version 1 encoding under the tag
		// of version 2 has no end time where it must (execution_id is no
		// integer).
		"v1 fields, v2 tag":  append([]byte("19:agentaudit.entry.v2"), good[len("19:agentaudit.entry.v1"):]...),
		"v2 with a NULL end": []byte("19:agentaudit.entry.v27:chain-a1:01:0-6:exec-1"),
		"v2 bad end":         []byte("19:agentaudit.entry.v27:chain-a1:01:02:01"),
		"null seq":           []byte("19:agentaudit.entry.v17:chain-a-"),
		"bad integer":        []byte("19:agentaudit.entry.v17:chain-a2:01"),
		"leading zero":       []byte("19:agentaudit.entry.v107:chain-a"),
		"length past end":    []byte("19:agentaudit.entry.v199:x"),
		"garbage":            []byte("\xff\xfe"),
	} {
		_, _, err := chain.DecodeCanonical(b)
		assert.ErrorIs(t, err, chain.ErrMalformed, name)
	}
}

func FuzzDecodeCanonical(f *testing.F) {
	e := fullEntry()
	f.Add(chain.AppendCanonical(nil, &e))
	e2 := nullsEntryV2()
	f.Add(chain.AppendCanonical(nil, &e2))
	f.Add([]byte("19:agentaudit.entry.v1-"))
	f.Add([]byte("19:agentaudit.entry.v2-"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, rest, err := chain.DecodeCanonical(b)
		var view entry.Entry
		var opts [chain.NumOptional]string
		viewRest, viewErr := chain.DecodeView(b, &view, &opts)
		assert.Equal(t, err == nil, viewErr == nil, "DecodeView agrees on whether b decodes")
		if err != nil {
			return
		}
		assert.Len(t, viewRest, len(rest))
		view.EntryHash = got.EntryHash
		assert.Equal(t, got, view)
		// Whatever decodes re-encodes to exactly the bytes it came from.
		assert.Equal(t, b[:len(b)-len(rest)], chain.AppendCanonical(nil, &got))
		assert.Equal(t, chain.Hash(&got), got.EntryHash)
	})
}
