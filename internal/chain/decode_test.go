package chain_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

func TestDecodeCanonicalRoundTrip(t *testing.T) {
	c := chain.New("chain-ä", chain.Genesis())
	full := fullEntry()
	empty := entry.Entry{TraceID: "00", SpanID: "00", Attributes: "{}"}
	var buf []byte
	var want []entry.Entry
	for _, e := range []entry.Entry{full, empty, full} {
		c.Append(&e)
		want = append(want, e)
		buf = chain.AppendCanonical(buf, &e)
	}
	rest := buf
	for i := range want {
		got, r, err := chain.DecodeCanonical(rest)
		require.NoError(t, err, "entry %d", i)
		assert.Equal(t, want[i], got, "entry %d, entry_hash recomputed", i)
		rest = r
	}
	assert.Empty(t, rest)
}

func TestDecodeCanonicalRejects(t *testing.T) {
	e := fullEntry()
	good := chain.AppendCanonical(nil, &e)
	for name, b := range map[string][]byte{
		"empty":           nil,
		"truncated":       good[:len(good)-1],
		"other tag":       append([]byte("19:agentaudit.entry.v2"), good[len("19:agentaudit.entry.v1"):]...),
		"null seq":        []byte("19:agentaudit.entry.v17:chain-a-"),
		"bad integer":     []byte("19:agentaudit.entry.v17:chain-a2:01"),
		"leading zero":    []byte("19:agentaudit.entry.v107:chain-a"),
		"length past end": []byte("19:agentaudit.entry.v199:x"),
		"garbage":         []byte("\xff\xfe"),
	} {
		_, _, err := chain.DecodeCanonical(b)
		assert.ErrorIs(t, err, chain.ErrMalformed, name)
	}
}

func FuzzDecodeCanonical(f *testing.F) {
	e := fullEntry()
	f.Add(chain.AppendCanonical(nil, &e))
	f.Add([]byte("19:agentaudit.entry.v1-"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, rest, err := chain.DecodeCanonical(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to exactly the bytes it came from.
		assert.Equal(t, b[:len(b)-len(rest)], chain.AppendCanonical(nil, &got))
		assert.Equal(t, chain.Hash(&got), got.EntryHash)
	})
}
