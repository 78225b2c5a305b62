package chain_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

func strp(s string) *string { return &s }

func i64p(v int64) *int64 { return &v }

// nullsEntry has every optional field nil: each encodes as the single byte
// '-'. It has no end time: an entry of version 1.
func nullsEntry() entry.Entry {
	return entry.Entry{
		TimeUnixNano:   1773048600123456789, // 2026-03-09T09:30:00.123456789Z
		ChainID:        "chain-a",
		Seq:            0,
		ExecutionID:    "exec-1",
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:         "00f067aa0ba902b7",
		ActionType:     "read",
		TargetSystem:   "crm",
		TargetResource: "customer/42",
		Result:         "ok",
		StatusCode:     "Unset",
		Attributes:     "{}",
		PrevHash:       chain.GenesisHash,
	}
}

// fullEntry has every field set. Several values are non-ASCII, so their byte
// length (the length prefix) differs from their character count, and
// PreviousValue is the empty string, which encodes as "0:", not as NULL's '-'.
// PrevHash is the SHA-256 of the empty string, an arbitrary but familiar value.
// It has no end time: an entry of version 1.
func fullEntry() entry.Entry {
	return entry.Entry{
		TimeUnixNano:   1773048600987654321,
		ChainID:        "chain-ä",
		Seq:            7,
		ExecutionID:    "exec-2",
		TraceID:        "0af7651916cd43dd8448eb211c80319c",
		SpanID:         "b7ad6b7169203331",
		ParentSpanID:   strp("53995c3f42cd8ad8"),
		AgentID:        strp("agent-7"),
		AgentName:      strp("Zahlungs-Agent Ü"),
		ServiceName:    strp("payments"),
		Principal:      strp("jürgen@example.com"),
		ActionType:     "write",
		TargetSystem:   "ledger",
		TargetResource: "konto/DE89 3704 0044 0532 0130 00",
		ProposedValue:  strp("1.234,56 €"),
		PreviousValue:  strp(""),
		Reasoning:      strp("Rechnung geprüft ✓ 請求書"),
		Approver:       strp("maria"),
		Result:         "ok",
		StatusCode:     "Ok",
		Attributes:     `{"http.response.status_code":200,"note":"naïve"}`,
		Validation:     strp(`[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"}]`),
		PrevHash:       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	}
}

// nullsEntryV2 is nullsEntry with an end time 100 ms after its start: an
// entry of version 2, without a sender (NULL).
func nullsEntryV2() entry.Entry {
	e := nullsEntry()
	e.EndTimeUnixNano = i64p(1773048600223456789)
	return e
}

// fullEntryV2 is fullEntry with an end time 1 s after its start and a
// sender, the subject of a client certificate (non-ASCII: 35 characters,
// 36 bytes).
func fullEntryV2() entry.Entry {
	e := fullEntry()
	e.EndTimeUnixNano = i64p(1773048601987654321)
	e.Sender = strp("CN=Zahlungs-Agent Ü,O=Beispiel GmbH")
	return e
}

// chainEntriesV2 are chainEntries with end times, appended to chain
// "chain-d": the agent run's start and end span the run, the read takes
// 150 ms. The agent's sender authenticated as svc-agent-1.
func chainEntriesV2() []entry.Entry {
	es := chainEntries()
	es[0].EndTimeUnixNano = i64p(1773048601000000000)
	es[1].EndTimeUnixNano = i64p(1773048600400000000)
	es[2].EndTimeUnixNano = i64p(1773048601000000000)
	for i := range es {
		es[i].Sender = strp("svc-agent-1")
	}
	return es
}

// chainEntries are three entries of one agent run, appended in this order to
// chain "chain-c" from Genesis. Chain.Append fills in ChainID, Seq, PrevHash
// and EntryHash. They have no end times: entries of version 1.
func chainEntries() []entry.Entry {
	base := entry.Entry{
		ExecutionID: "run-9",
		TraceID:     "5b8efff798038103d269b633813fc60c",
		AgentID:     strp("agent-1"),
		Result:      "ok",
		StatusCode:  "Unset",
		Attributes:  "{}",
	}
	start, read, end := base, base, base
	start.TimeUnixNano, start.SpanID, start.ActionType, start.TargetSystem, start.TargetResource = 1773048600000000000, "eee19b7ec3c1b174", "start", "agent", "run-9"
	read.TimeUnixNano, read.SpanID, read.ActionType, read.TargetSystem, read.TargetResource = 1773048600250000000, "eee19b7ec3c1b175", "read", "crm", "customer/42"
	read.ParentSpanID = strp("eee19b7ec3c1b174")
	end.TimeUnixNano, end.SpanID, end.ActionType, end.TargetSystem, end.TargetResource = 1773048601000000000, "eee19b7ec3c1b176", "end", "agent", "run-9"
	return []entry.Entry{start, read, end}
}

// knownAnswer is one known-answer vector. The same vectors are printed in
// docs/FORMAT.md; TestFormatDocVectors keeps the two in step.
type knownAnswer struct {
	name      string // the vector= marker in docs/FORMAT.md
	canonical string
	hash      string
}

var (
	// printf '%s' '19:agentaudit.entry.v17:chain-a1:019:17730486001234567896:exec-132:4bf92f3577b34da6a3ce929d0e0e473616:00f067aa0ba902b7-----4:read3:crm11:customer/42----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000' | sha256sum
	vectorNulls = knownAnswer{
		name:      "v1-nulls",
		canonical: "19:agentaudit.entry.v17:chain-a1:019:17730486001234567896:exec-132:4bf92f3577b34da6a3ce929d0e0e473616:00f067aa0ba902b7-----4:read3:crm11:customer/42----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000",
		hash:      "6449de9d0851b7ac69c6b91720c843593cf6031cc62029fb249ffec438bf0b97",
	}

	// printf '%s' '19:agentaudit.entry.v18:chain-ä1:719:17730486009876543216:exec-232:0af7651916cd43dd8448eb211c80319c16:b7ad6b716920333116:53995c3f42cd8ad87:agent-717:Zahlungs-Agent Ü8:payments19:jürgen@example.com5:write6:ledger33:konto/DE89 3704 0044 0532 0130 0012:1.234,56 €0:31:Rechnung geprüft ✓ 請求書5:maria2:ok2:Ok49:{"http.response.status_code":200,"note":"naïve"}87:[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"}]64:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' | sha256sum
	vectorFull = knownAnswer{
		name:      "v1-full",
		canonical: `19:agentaudit.entry.v18:chain-ä1:719:17730486009876543216:exec-232:0af7651916cd43dd8448eb211c80319c16:b7ad6b716920333116:53995c3f42cd8ad87:agent-717:Zahlungs-Agent Ü8:payments19:jürgen@example.com5:write6:ledger33:konto/DE89 3704 0044 0532 0130 0012:1.234,56 €0:31:Rechnung geprüft ✓ 請求書5:maria2:ok2:Ok49:{"http.response.status_code":200,"note":"naïve"}87:[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"}]64:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`,
		hash:      "4072052aebd17fc786628f74ce789e408777cc4c2beb7949e0377bd8f6be6bc5",
	}

	// The three entries of chainEntries, in order. Each prev_hash (the last
	// field) is the hash of the line before; the first is GenesisHash.
	vectorChainV1 = []knownAnswer{
		// printf '%s' '19:agentaudit.entry.v17:chain-c1:019:17730486000000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b174-7:agent-1---5:start5:agent5:run-9----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000' | sha256sum
		{
			name:      "v1-chain-c/0",
			canonical: "19:agentaudit.entry.v17:chain-c1:019:17730486000000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b174-7:agent-1---5:start5:agent5:run-9----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000",
			hash:      "2447b0bebae8918a1a4655f9e7633fd022538e2f9779c5c009542c4d501411b3",
		},
		// printf '%s' '19:agentaudit.entry.v17:chain-c1:119:17730486002500000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b17516:eee19b7ec3c1b1747:agent-1---4:read3:crm11:customer/42----2:ok5:Unset2:{}-64:2447b0bebae8918a1a4655f9e7633fd022538e2f9779c5c009542c4d501411b3' | sha256sum
		{
			name:      "v1-chain-c/1",
			canonical: "19:agentaudit.entry.v17:chain-c1:119:17730486002500000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b17516:eee19b7ec3c1b1747:agent-1---4:read3:crm11:customer/42----2:ok5:Unset2:{}-64:2447b0bebae8918a1a4655f9e7633fd022538e2f9779c5c009542c4d501411b3",
			hash:      "4dda43b2691f6ffef44078e70f57f202de7ad8d2f067bdc9208d7332e9b179ff",
		},
		// printf '%s' '19:agentaudit.entry.v17:chain-c1:219:17730486010000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b176-7:agent-1---3:end5:agent5:run-9----2:ok5:Unset2:{}-64:4dda43b2691f6ffef44078e70f57f202de7ad8d2f067bdc9208d7332e9b179ff' | sha256sum
		{
			name:      "v1-chain-c/2",
			canonical: "19:agentaudit.entry.v17:chain-c1:219:17730486010000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b176-7:agent-1---3:end5:agent5:run-9----2:ok5:Unset2:{}-64:4dda43b2691f6ffef44078e70f57f202de7ad8d2f067bdc9208d7332e9b179ff",
			hash:      "cc1fc2733b46ad9e23d282bb2f42409e8b214135cfab65cb85b178e674bd7ce4",
		},
	}
)

// Version 2: the same entries with end times, and senders.
var (
	// printf '%s' '19:agentaudit.entry.v27:chain-a1:019:177304860012345678919:17730486002234567896:exec-132:4bf92f3577b34da6a3ce929d0e0e473616:00f067aa0ba902b7------4:read3:crm11:customer/42----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000' | sha256sum
	vectorNullsV2 = knownAnswer{
		name:      "v2-nulls",
		canonical: "19:agentaudit.entry.v27:chain-a1:019:177304860012345678919:17730486002234567896:exec-132:4bf92f3577b34da6a3ce929d0e0e473616:00f067aa0ba902b7------4:read3:crm11:customer/42----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000",
		hash:      "bcb3a60e9476c0f8b39a80b40a260c07b6c1b399f6caecd252774d67fd7e65c5",
	}

	// printf '%s' '19:agentaudit.entry.v28:chain-ä1:719:177304860098765432119:17730486019876543216:exec-232:0af7651916cd43dd8448eb211c80319c16:b7ad6b716920333116:53995c3f42cd8ad87:agent-717:Zahlungs-Agent Ü8:payments19:jürgen@example.com36:CN=Zahlungs-Agent Ü,O=Beispiel GmbH5:write6:ledger33:konto/DE89 3704 0044 0532 0130 0012:1.234,56 €0:31:Rechnung geprüft ✓ 請求書5:maria2:ok2:Ok49:{"http.response.status_code":200,"note":"naïve"}87:[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"}]64:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' | sha256sum
	vectorFullV2 = knownAnswer{
		name:      "v2-full",
		canonical: `19:agentaudit.entry.v28:chain-ä1:719:177304860098765432119:17730486019876543216:exec-232:0af7651916cd43dd8448eb211c80319c16:b7ad6b716920333116:53995c3f42cd8ad87:agent-717:Zahlungs-Agent Ü8:payments19:jürgen@example.com36:CN=Zahlungs-Agent Ü,O=Beispiel GmbH5:write6:ledger33:konto/DE89 3704 0044 0532 0130 0012:1.234,56 €0:31:Rechnung geprüft ✓ 請求書5:maria2:ok2:Ok49:{"http.response.status_code":200,"note":"naïve"}87:[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"}]64:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`,
		hash:      "a4eeb6b656cf44a53cc4cf5359095360601a00a858f157dbb42a5cbe11ec35d3",
	}

	// The three entries of chainEntriesV2, in order, chain-d.
	vectorChainV2 = []knownAnswer{
		// printf '%s' '19:agentaudit.entry.v27:chain-d1:019:177304860000000000019:17730486010000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b174-7:agent-1---11:svc-agent-15:start5:agent5:run-9----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000' | sha256sum
		{
			name:      "v2-chain-d/0",
			canonical: "19:agentaudit.entry.v27:chain-d1:019:177304860000000000019:17730486010000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b174-7:agent-1---11:svc-agent-15:start5:agent5:run-9----2:ok5:Unset2:{}-64:0000000000000000000000000000000000000000000000000000000000000000",
			hash:      "8835026bb46c0822d9db5ce82ad7d61027873514dc2d96a337eac5e685359e7a",
		},
		// printf '%s' '19:agentaudit.entry.v27:chain-d1:119:177304860025000000019:17730486004000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b17516:eee19b7ec3c1b1747:agent-1---11:svc-agent-14:read3:crm11:customer/42----2:ok5:Unset2:{}-64:8835026bb46c0822d9db5ce82ad7d61027873514dc2d96a337eac5e685359e7a' | sha256sum
		{
			name:      "v2-chain-d/1",
			canonical: "19:agentaudit.entry.v27:chain-d1:119:177304860025000000019:17730486004000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b17516:eee19b7ec3c1b1747:agent-1---11:svc-agent-14:read3:crm11:customer/42----2:ok5:Unset2:{}-64:8835026bb46c0822d9db5ce82ad7d61027873514dc2d96a337eac5e685359e7a",
			hash:      "9d51b52f43185838f162d7cb5b81e0c9f06b25a923c9fd5cdf968362f5aa2108",
		},
		// printf '%s' '19:agentaudit.entry.v27:chain-d1:219:177304860100000000019:17730486010000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b176-7:agent-1---11:svc-agent-13:end5:agent5:run-9----2:ok5:Unset2:{}-64:9d51b52f43185838f162d7cb5b81e0c9f06b25a923c9fd5cdf968362f5aa2108' | sha256sum
		{
			name:      "v2-chain-d/2",
			canonical: "19:agentaudit.entry.v27:chain-d1:219:177304860100000000019:17730486010000000005:run-932:5b8efff798038103d269b633813fc60c16:eee19b7ec3c1b176-7:agent-1---11:svc-agent-13:end5:agent5:run-9----2:ok5:Unset2:{}-64:9d51b52f43185838f162d7cb5b81e0c9f06b25a923c9fd5cdf968362f5aa2108",
			hash:      "a17ec5818b55009534ce01046db62ad121c075235b11ece94a6f1d20fef17f6d",
		},
	}
)

// allVectors are the vectors in the order docs/FORMAT.md prints them.
func allVectors() []knownAnswer {
	out := []knownAnswer{vectorNullsV2, vectorFullV2}
	out = append(out, vectorChainV2...)
	out = append(out, vectorNulls, vectorFull)
	return append(out, vectorChainV1...)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestConstants(t *testing.T) {
	assert.Equal(t, "agentaudit.entry.v1", chain.FormatTagV1)
	assert.Equal(t, "agentaudit.entry.v2", chain.FormatTagV2)
	assert.Equal(t, strings.Repeat("0", 64), chain.GenesisHash)
	assert.Equal(t, chain.Head{Size: 0, Hash: chain.GenesisHash}, chain.Genesis())
}

func TestKnownAnswer(t *testing.T) {
	for _, tc := range []struct {
		want  knownAnswer
		entry entry.Entry
	}{
		{vectorNulls, nullsEntry()},
		{vectorFull, fullEntry()},
		{vectorNullsV2, nullsEntryV2()},
		{vectorFullV2, fullEntryV2()},
	} {
		t.Run(tc.want.name, func(t *testing.T) {
			e := tc.entry
			assert.Equal(t, tc.want.canonical, string(chain.AppendCanonical(nil, &e)), "canonical bytes")
			assert.Equal(t, tc.want.hash, chain.Hash(&e), "chain.Hash")
			// The vector is self-consistent: its hash is the plain SHA-256 of
			// its bytes, as sha256sum computes it.
			assert.Equal(t, tc.want.hash, sha256Hex([]byte(tc.want.canonical)), "sha256 of the canonical literal")
		})
	}
}

// The length prefix counts bytes, not characters. A verifier that counts
// characters (SQL length(), Python len() on str) reproduces only ASCII entries.
func TestKnownAnswerLengthIsBytes(t *testing.T) {
	e := fullEntry()
	r := *e.Reasoning
	require.Equal(t, 31, len(r))
	require.Equal(t, 22, utf8.RuneCountInString(r))
	assert.Contains(t, vectorFull.canonical, "31:"+r)
	assert.Contains(t, vectorFull.canonical, "8:chain-ä") // 7 characters
	assert.Contains(t, vectorFull.canonical, "12:1.234,56 €")
}

func TestKnownAnswerChain(t *testing.T) {
	t.Run("v1", func(t *testing.T) { testKnownAnswerChain(t, "chain-c", chainEntries(), vectorChainV1) })
	t.Run("v2", func(t *testing.T) { testKnownAnswerChain(t, "chain-d", chainEntriesV2(), vectorChainV2) })
}

func testKnownAnswerChain(t *testing.T, id string, entries []entry.Entry, vectors []knownAnswer) {
	c := chain.New(id, chain.Genesis())
	require.Len(t, entries, len(vectors))
	for i := range entries {
		e := &entries[i]
		c.Append(e)
		want := vectors[i]
		assert.Equal(t, id, e.ChainID, want.name)
		assert.Equal(t, int64(i), e.Seq, want.name)
		if i == 0 {
			assert.Equal(t, chain.GenesisHash, e.PrevHash, "%s: first entry links to genesis", want.name)
		} else {
			assert.Equal(t, entries[i-1].EntryHash, e.PrevHash, "%s: prev_hash is the previous entry_hash", want.name)
		}
		assert.Equal(t, want.canonical, string(chain.AppendCanonical(nil, e)), want.name)
		assert.Equal(t, want.hash, e.EntryHash, want.name)
		assert.Equal(t, want.hash, chain.Hash(e), want.name)
		assert.Equal(t, chain.Head{Size: int64(i + 1), Hash: want.hash}, c.Head(), want.name)
	}
	assert.Equal(t, id, c.ID())
}

// The version follows the entry: a chain of version 1 entries continues
// with entries of version 2 (a collector upgraded over an old write-ahead
// log), each hashed by its own version, and entries of version 2 are the
// version 1 entries with the tag changed, the end time inserted after the
// start time and the sender after the principal.
func TestVersionPerEntry(t *testing.T) {
	v1, v2 := chainEntries(), chainEntriesV2()
	c := chain.New("chain-c", chain.Genesis())
	c.Append(&v1[0])
	c.Append(&v2[1])
	c.Append(&v1[2])
	assert.Equal(t, vectorChainV1[0].hash, v1[0].EntryHash)
	assert.True(t, strings.HasPrefix(string(chain.AppendCanonical(nil, &v2[1])), "19:agentaudit.entry.v27:chain-c1:119:177304860025000000019:1773048600400000000"))
	assert.Equal(t, sha256Hex(chain.AppendCanonical(nil, &v2[1])), v2[1].EntryHash)
	assert.Equal(t, v2[1].EntryHash, v1[2].PrevHash)

	for _, pair := range [][2]entry.Entry{{nullsEntry(), nullsEntryV2()}, {fullEntry(), fullEntryV2()}} {
		e := pair[0]
		old, err := parseCanonical(string(chain.AppendCanonical(nil, &e)))
		require.NoError(t, err)
		cur, err := parseCanonical(string(chain.AppendCanonical(nil, &pair[1])))
		require.NoError(t, err)
		// tag, chain_id, seq, time_unix_nano | execution_id … principal | action_type … prev_hash
		want := append([]*string{strp(chain.FormatTagV2)}, old[1:4]...)
		want = append(want, strp(strconv.FormatInt(*pair[1].EndTimeUnixNano, 10)))
		want = append(want, old[4:12]...)
		want = append(want, pair[1].Sender)
		want = append(want, old[12:]...)
		assert.Equal(t, want, cur)
	}
}

// Version 1 has no sender field: a version 1 entry (no end time) encodes
// without it and decodes with none. (parquetfile.Encode refuses a version
// 1 entry with a sender, which would be stored but not hashed.)
func TestVersion1HasNoSender(t *testing.T) {
	e := fullEntry()
	without := chain.AppendCanonical(nil, &e)
	e.Sender = strp("svc-agent-1")
	assert.Equal(t, string(without), string(chain.AppendCanonical(nil, &e)))
	back, _, err := chain.DecodeCanonical(without)
	require.NoError(t, err)
	assert.Nil(t, back.Sender)

	v2 := fullEntryV2()
	back, _, err = chain.DecodeCanonical(chain.AppendCanonical(nil, &v2))
	require.NoError(t, err)
	assert.Equal(t, v2.Sender, back.Sender)
}

// A chain resumed from a stored head continues exactly as an uninterrupted
// one: the head is all the state there is.
func TestChainResumesFromHead(t *testing.T) {
	whole := chainEntries()
	c := chain.New("chain-c", chain.Genesis())
	for i := range whole {
		c.Append(&whole[i])
	}

	parts := chainEntries()
	first := chain.New("chain-c", chain.Genesis())
	first.Append(&parts[0])
	resumed := chain.New("chain-c", first.Head())
	resumed.Append(&parts[1])
	resumed.Append(&parts[2])
	assert.Equal(t, whole, parts)
	assert.Equal(t, c.Head(), resumed.Head())
}

// docVectors parses the known-answer blocks of docs/FORMAT.md:
//
//	```sh vector=NAME
//	printf '%s' 'CANONICAL' | sha256sum
//	# HASH  -
//	```
//
// Blocks named tree-* are the chain's tree's (internal/verify checks them).
func docVectors(t *testing.T) []knownAnswer {
	t.Helper()
	f, err := os.Open("../../docs/FORMAT.md")
	require.NoError(t, err)
	defer f.Close()

	const (
		open       = "```sh vector="
		cmdPrefix  = "printf '%s' '"
		cmdSuffix  = "' | sha256sum"
		hashPrefix = "# "
		hashSuffix = "  -"
	)
	var (
		out  []knownAnswer
		cur  *knownAnswer
		tree bool // in a vector of the chain's tree, which internal/verify checks
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case tree:
			tree = line != "```"
		case cur == nil && strings.HasPrefix(line, open+"tree-"):
			tree = true
		case cur == nil && strings.HasPrefix(line, open):
			cur = &knownAnswer{name: strings.TrimPrefix(line, open)}
		case cur == nil:
		case line == "```":
			require.NotEmpty(t, cur.canonical, "FORMAT.md:%d: vector %s has no printf line", n, cur.name)
			require.NotEmpty(t, cur.hash, "FORMAT.md:%d: vector %s has no hash line", n, cur.name)
			out = append(out, *cur)
			cur = nil
		case strings.HasPrefix(line, cmdPrefix) && strings.HasSuffix(line, cmdSuffix):
			cur.canonical = strings.TrimSuffix(strings.TrimPrefix(line, cmdPrefix), cmdSuffix)
		case strings.HasPrefix(line, hashPrefix) && strings.HasSuffix(line, hashSuffix):
			cur.hash = strings.TrimSuffix(strings.TrimPrefix(line, hashPrefix), hashSuffix)
		default:
			t.Fatalf("FORMAT.md:%d: unexpected line in vector %s: %q", n, cur.name, line)
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "FORMAT.md: unterminated vector block")
	return out
}

// The vectors printed in docs/FORMAT.md are exactly the ones the code
// produces, so an auditor reproducing them by hand checks this code.
func TestFormatDocVectors(t *testing.T) {
	assert.Equal(t, allVectors(), docVectors(t))
}

// mutators change one field each. TestHashCoversEveryField checks that every
// field of entry.Entry except EntryHash has at least one.
var mutators = []struct {
	field  string
	mutate func(*entry.Entry)
}{
	{"TimeUnixNano", func(e *entry.Entry) { e.TimeUnixNano++ }}, // one nanosecond: below the timestamp column's ms
	{"EndTimeUnixNano", func(e *entry.Entry) { e.EndTimeUnixNano = i64p(*e.EndTimeUnixNano + 1) }},
	{"EndTimeUnixNano", func(e *entry.Entry) { e.EndTimeUnixNano = i64p(e.TimeUnixNano) }},
	// A downgrade to version 1: the same fields but the end time.
	{"EndTimeUnixNano", func(e *entry.Entry) { e.EndTimeUnixNano = nil }},
	{"ChainID", func(e *entry.Entry) { e.ChainID += "x" }},
	{"Seq", func(e *entry.Entry) { e.Seq++ }},
	{"ExecutionID", func(e *entry.Entry) { e.ExecutionID += "x" }},
	{"TraceID", func(e *entry.Entry) { e.TraceID = "1" + e.TraceID[1:] }},
	{"SpanID", func(e *entry.Entry) { e.SpanID = "1" + e.SpanID[1:] }},
	{"ParentSpanID", func(e *entry.Entry) { e.ParentSpanID = strp("1" + (*e.ParentSpanID)[1:]) }},
	{"ParentSpanID", func(e *entry.Entry) { e.ParentSpanID = nil }},
	{"AgentID", func(e *entry.Entry) { e.AgentID = strp(*e.AgentID + "x") }},
	{"AgentID", func(e *entry.Entry) { e.AgentID = nil }},
	{"AgentName", func(e *entry.Entry) { e.AgentName = strp(strings.Replace(*e.AgentName, "Ü", "U", 1)) }},
	{"AgentName", func(e *entry.Entry) { e.AgentName = nil }},
	{"ServiceName", func(e *entry.Entry) { e.ServiceName = strp(*e.ServiceName + "x") }},
	{"ServiceName", func(e *entry.Entry) { e.ServiceName = nil }},
	{"Principal", func(e *entry.Entry) { e.Principal = strp(*e.Principal + "x") }},
	{"Principal", func(e *entry.Entry) { e.Principal = nil }},
	{"Sender", func(e *entry.Entry) { e.Sender = strp(*e.Sender + "x") }},
	{"Sender", func(e *entry.Entry) { e.Sender = strp(strings.Replace(*e.Sender, "Ü", "U", 1)) }},
	{"Sender", func(e *entry.Entry) { e.Sender = nil }},
	{"Sender", func(e *entry.Entry) { e.Sender = strp("") }},
	{"ActionType", func(e *entry.Entry) { e.ActionType = "read" }},
	{"TargetSystem", func(e *entry.Entry) { e.TargetSystem += "x" }},
	{"TargetResource", func(e *entry.Entry) { e.TargetResource += "x" }},
	{"ProposedValue", func(e *entry.Entry) { e.ProposedValue = strp("9.234,56 €") }},
	{"ProposedValue", func(e *entry.Entry) { e.ProposedValue = nil }},
	{"PreviousValue", func(e *entry.Entry) { e.PreviousValue = strp("x") }},
	{"PreviousValue", func(e *entry.Entry) { e.PreviousValue = nil }},
	{"Reasoning", func(e *entry.Entry) { e.Reasoning = strp(*e.Reasoning + " ") }},
	{"Reasoning", func(e *entry.Entry) { e.Reasoning = nil }},
	{"Approver", func(e *entry.Entry) { e.Approver = strp("mallory") }},
	{"Approver", func(e *entry.Entry) { e.Approver = nil }},
	{"Result", func(e *entry.Entry) { e.Result = "denied" }},
	{"StatusCode", func(e *entry.Entry) { e.StatusCode = "Error" }},
	{"Attributes", func(e *entry.Entry) { e.Attributes = "{}" }},
	{"Validation", func(e *entry.Entry) { e.Validation = strp("[]") }},
	{"Validation", func(e *entry.Entry) { e.Validation = nil }},
	{"PrevHash", func(e *entry.Entry) { e.PrevHash = chain.GenesisHash }},
}

func TestHashCoversEveryField(t *testing.T) {
	base := fullEntryV2()
	baseHash := chain.Hash(&base)
	covered := map[string]bool{}
	for i, m := range mutators {
		covered[m.field] = true
		e := fullEntryV2()
		m.mutate(&e)
		require.NotEqual(t, base, e, "mutator %d (%s) changed nothing", i, m.field)
		assert.NotEqual(t, baseHash, chain.Hash(&e), "mutator %d: changing %s must change the hash", i, m.field)
	}

	// Every field is covered, so a field added to entry.Entry without being
	// added to the encoding fails here.
	typ := reflect.TypeFor[entry.Entry]()
	for f := range typ.Fields() {
		if f.Name == "EntryHash" {
			continue
		}
		assert.True(t, covered[f.Name], "no mutator for entry.Entry.%s: is it hashed?", f.Name)
	}
}

// entry_hash is the output, not an input: rewriting it does not change the
// recomputed hash (and so it is caught by comparing the two).
func TestHashIgnoresEntryHash(t *testing.T) {
	e := fullEntry()
	before := chain.Hash(&e)
	e.EntryHash = strings.Repeat("f", 64)
	assert.Equal(t, before, chain.Hash(&e))
}

// optionalFields are the *string fields, in encoding order.
var optionalFields = []struct {
	name string
	ptr  func(*entry.Entry) **string
}{
	{"ParentSpanID", func(e *entry.Entry) **string { return &e.ParentSpanID }},
	{"AgentID", func(e *entry.Entry) **string { return &e.AgentID }},
	{"AgentName", func(e *entry.Entry) **string { return &e.AgentName }},
	{"ServiceName", func(e *entry.Entry) **string { return &e.ServiceName }},
	{"Principal", func(e *entry.Entry) **string { return &e.Principal }},
	{"Sender", func(e *entry.Entry) **string { return &e.Sender }},
	{"ProposedValue", func(e *entry.Entry) **string { return &e.ProposedValue }},
	{"PreviousValue", func(e *entry.Entry) **string { return &e.PreviousValue }},
	{"Reasoning", func(e *entry.Entry) **string { return &e.Reasoning }},
	{"Approver", func(e *entry.Entry) **string { return &e.Approver }},
	{"Validation", func(e *entry.Entry) **string { return &e.Validation }},
}

func TestNullDiffersFromEmptyAndDash(t *testing.T) {
	for _, f := range optionalFields {
		t.Run(f.name, func(t *testing.T) {
			null := nullsEntryV2()
			require.Nil(t, *f.ptr(&null))
			empty := nullsEntryV2()
			*f.ptr(&empty) = strp("")
			dash := nullsEntryV2()
			*f.ptr(&dash) = strp("-")

			assert.NotEqual(t, chain.Hash(&null), chain.Hash(&empty), "NULL vs empty string")
			assert.NotEqual(t, chain.Hash(&null), chain.Hash(&dash), `NULL vs "-"`)
			assert.NotEqual(t, chain.Hash(&empty), chain.Hash(&dash), `empty string vs "-"`)
			// The bytes themselves: NULL is '-', "" is "0:", "-" is "1:-".
			assert.Equal(t, len(chain.AppendCanonical(nil, &null))+1, len(chain.AppendCanonical(nil, &empty)))
			assert.Equal(t, len(chain.AppendCanonical(nil, &null))+2, len(chain.AppendCanonical(nil, &dash)))
		})
	}
}

// stringFields are the string-valued fields in encoding order (required
// and optional alike, PrevHash last). Moving bytes across the boundary of two
// neighbours must change the hash: the length prefixes make that so.
var stringFields = []struct {
	name string
	set  func(*entry.Entry, string)
}{
	{"ExecutionID", func(e *entry.Entry, s string) { e.ExecutionID = s }},
	{"TraceID", func(e *entry.Entry, s string) { e.TraceID = s }},
	{"SpanID", func(e *entry.Entry, s string) { e.SpanID = s }},
	{"ParentSpanID", func(e *entry.Entry, s string) { e.ParentSpanID = &s }},
	{"AgentID", func(e *entry.Entry, s string) { e.AgentID = &s }},
	{"AgentName", func(e *entry.Entry, s string) { e.AgentName = &s }},
	{"ServiceName", func(e *entry.Entry, s string) { e.ServiceName = &s }},
	{"Principal", func(e *entry.Entry, s string) { e.Principal = &s }},
	{"Sender", func(e *entry.Entry, s string) { e.Sender = &s }},
	{"ActionType", func(e *entry.Entry, s string) { e.ActionType = s }},
	{"TargetSystem", func(e *entry.Entry, s string) { e.TargetSystem = s }},
	{"TargetResource", func(e *entry.Entry, s string) { e.TargetResource = s }},
	{"ProposedValue", func(e *entry.Entry, s string) { e.ProposedValue = &s }},
	{"PreviousValue", func(e *entry.Entry, s string) { e.PreviousValue = &s }},
	{"Reasoning", func(e *entry.Entry, s string) { e.Reasoning = &s }},
	{"Approver", func(e *entry.Entry, s string) { e.Approver = &s }},
	{"Result", func(e *entry.Entry, s string) { e.Result = s }},
	{"StatusCode", func(e *entry.Entry, s string) { e.StatusCode = s }},
	{"Attributes", func(e *entry.Entry, s string) { e.Attributes = s }},
	{"Validation", func(e *entry.Entry, s string) { e.Validation = &s }},
	{"PrevHash", func(e *entry.Entry, s string) { e.PrevHash = s }},
}

func TestAdjacentFieldBoundary(t *testing.T) {
	for i := 0; i+1 < len(stringFields); i++ {
		left, right := stringFields[i], stringFields[i+1]
		t.Run(left.name+"|"+right.name, func(t *testing.T) {
			a, b := fullEntryV2(), fullEntryV2()
			left.set(&a, "ab")
			right.set(&a, "c")
			left.set(&b, "a")
			right.set(&b, "bc")
			assert.NotEqual(t, chain.Hash(&a), chain.Hash(&b))
		})
	}
	// The integers too: chain "a", seq 12 vs chain "a1", seq 2.
	a, b := fullEntry(), fullEntry()
	a.ChainID, a.Seq = "a", 12
	b.ChainID, b.Seq = "a1", 2
	assert.NotEqual(t, chain.Hash(&a), chain.Hash(&b), "ChainID|Seq")
	// The start and end times: 12 and 3 vs 1 and 23.
	a, b = fullEntryV2(), fullEntryV2()
	a.TimeUnixNano, a.EndTimeUnixNano = 12, i64p(3)
	b.TimeUnixNano, b.EndTimeUnixNano = 1, i64p(23)
	assert.NotEqual(t, chain.Hash(&a), chain.Hash(&b), "TimeUnixNano|EndTimeUnixNano")
	// And a NULL next to a string that starts with '-'.
	a, b = fullEntry(), fullEntry()
	a.Reasoning, a.Approver = nil, strp("-x")
	b.Reasoning, b.Approver = strp("-"), strp("x")
	assert.NotEqual(t, chain.Hash(&a), chain.Hash(&b), "Reasoning|Approver")
}

// prev_hash is hashed, so the same entry appended after different heads gets
// different hashes: an entry cannot be moved to another place in a chain.
func TestPrevHashIsCovered(t *testing.T) {
	e1, e2 := nullsEntry(), nullsEntry()
	chain.New("chain-a", chain.Genesis()).Append(&e1)
	chain.New("chain-a", chain.Head{Size: 0, Hash: strings.Repeat("1", 64)}).Append(&e2)
	assert.Equal(t, e1.Seq, e2.Seq)
	assert.NotEqual(t, e1.EntryHash, e2.EntryHash)
}

func TestIntegerEncoding(t *testing.T) {
	for _, tc := range []struct {
		seq, time int64
		end       *int64
		want      string
	}{
		{0, 0, nil, "19:agentaudit.entry.v17:chain-a1:01:0"},
		{10, 1773048600123456789, nil, "19:agentaudit.entry.v17:chain-a2:1019:1773048600123456789"},
		{9223372036854775807, -1, nil, "19:agentaudit.entry.v17:chain-a19:92233720368547758072:-1"}, // never negative in practice
		{0, 0, i64p(0), "19:agentaudit.entry.v27:chain-a1:01:01:0"},
		{10, 1773048600123456789, i64p(1773048600123456790), "19:agentaudit.entry.v27:chain-a2:1019:177304860012345678919:1773048600123456790"},
		{3, 5, i64p(-9223372036854775808), "19:agentaudit.entry.v27:chain-a1:31:520:-9223372036854775808"}, // a span that ended before 1970
		{3, 9223372036854775807, i64p(9223372036854775807), "19:agentaudit.entry.v27:chain-a1:319:922337203685477580719:9223372036854775807"},
	} {
		e := nullsEntry()
		e.Seq, e.TimeUnixNano, e.EndTimeUnixNano = tc.seq, tc.time, tc.end
		got := string(chain.AppendCanonical(nil, &e))
		assert.True(t, strings.HasPrefix(got, tc.want+"6:exec-1"), "seq %d time %d: %s", tc.seq, tc.time, got)
		back, rest, err := chain.DecodeCanonical([]byte(got))
		require.NoError(t, err)
		assert.Empty(t, rest)
		assert.Equal(t, tc.end, back.EndTimeUnixNano)
	}
}

func TestAppendCanonicalAppends(t *testing.T) {
	e := nullsEntry()
	got := chain.AppendCanonical([]byte("prefix"), &e)
	assert.Equal(t, "prefix"+vectorNulls.canonical, string(got))
}

// TestLengthPrefixes: a field's length prefix is its byte length in
// decimal on each side of the one- and two-digit fast paths, up to lengths
// past a value's limit, as strconv writes it.
func TestLengthPrefixes(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 11, 42, 99, 100, 101, 999, 1000, 65536, 1 << 20} {
		e := nullsEntry()
		e.Attributes = strings.Repeat("x", n)
		got := string(chain.AppendCanonical(nil, &e))
		assert.Contains(t, got, "6:exec-1", n)
		assert.Contains(t, got, strconv.Itoa(n)+":"+e.Attributes+"-64:", "attributes of %d bytes", n)
		back, rest, err := chain.DecodeCanonical([]byte(got))
		require.NoError(t, err, n)
		assert.Empty(t, rest)
		assert.Equal(t, e.Attributes, back.Attributes)
	}
}

// TestAppendCanonicalOneGrowth: appending to an empty buffer allocates
// once, whatever the entry's size (the encoding's room is reserved before
// the first field).
func TestAppendCanonicalOneGrowth(t *testing.T) {
	for _, e := range []entry.Entry{fullEntry(), fullEntryV2(), nullsEntry()} {
		e.Attributes = strings.Repeat("a", 5000)
		e.Seq, e.TimeUnixNano = math.MinInt64, math.MinInt64
		if e.EndTimeUnixNano != nil {
			e.EndTimeUnixNano = i64p(math.MinInt64)
		}
		var got []byte
		allocs := testing.AllocsPerRun(10, func() { got = chain.AppendCanonical(nil, &e) })
		assert.Equal(t, 1.0, allocs)
		back, _, err := chain.DecodeCanonical(got)
		require.NoError(t, err)
		assert.Equal(t, e.Attributes, back.Attributes)
	}
}

func TestAppendCanonicalZeroAllocs(t *testing.T) {
	e := fullEntry()
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		buf = chain.AppendCanonical(buf[:0], &e)
	})
	assert.Zero(t, allocs)
}

// parseCanonical splits a canonical encoding back into its fields (nil for
// NULL). It exists to show that the encoding is unambiguous: every byte string
// has at most one parse, so two different entries never share an encoding.
func parseCanonical(b string) ([]*string, error) {
	var fields []*string
	for len(b) > 0 {
		if b[0] == '-' {
			fields = append(fields, nil)
			b = b[1:]
			continue
		}
		colon := strings.IndexByte(b, ':')
		if colon <= 0 {
			return nil, errors.New("missing length")
		}
		n, err := strconv.Atoi(b[:colon])
		if err != nil || n < 0 || strconv.Itoa(n) != b[:colon] || colon+1+n > len(b) {
			return nil, errors.New("bad length")
		}
		s := b[colon+1 : colon+1+n]
		fields = append(fields, &s)
		b = b[colon+1+n:]
	}
	return fields, nil
}

func FuzzCanonicalRoundTrip(f *testing.F) {
	f.Add("chain-a", int64(0), "read", "", true, "-", "{}", false, int64(0))
	f.Add("chain-ä", int64(7), "2:ab", "1:", false, "", `{"a":"b"}`, true, int64(1773048601987654321))
	f.Add("c", int64(1), "-", "-", false, "0:", "{}", true, int64(-1))
	f.Fuzz(func(t *testing.T, chainID string, seq int64, resource, reasoning string, reasoningNull bool, approver, attrs string, hasEnd bool, end int64) {
		e := fullEntry()
		e.ChainID, e.Seq, e.TargetResource, e.Approver, e.Attributes = chainID, seq, resource, &approver, attrs
		e.Reasoning = &reasoning
		if reasoningNull {
			e.Reasoning = nil
		}
		// Version 2 has the end time as field 4 and the sender after the
		// principal: the fields after the sender move up by two.
		tag, n, k := chain.FormatTagV1, 24, 0
		if hasEnd {
			e.EndTimeUnixNano = &end
			e.Sender = &reasoning
			tag, n, k = chain.FormatTagV2, 26, 2
		}
		enc := chain.AppendCanonical(nil, &e)
		fields, err := parseCanonical(string(enc))
		require.NoError(t, err)
		require.Len(t, fields, n)
		str := func(i int) string { require.NotNil(t, fields[i]); return *fields[i] }
		assert.Equal(t, tag, str(0))
		assert.Equal(t, chainID, str(1))
		assert.Equal(t, strconv.FormatInt(seq, 10), str(2))
		if hasEnd {
			assert.Equal(t, strconv.FormatInt(end, 10), str(4))
			assert.Equal(t, reasoning, str(13))
		}
		assert.Equal(t, resource, str(14+k))
		assert.Equal(t, e.Reasoning, fields[17+k])
		assert.Equal(t, approver, str(18+k))
		assert.Equal(t, attrs, str(21+k))
		assert.Equal(t, e.PrevHash, str(23+k))

		back, rest, err := chain.DecodeCanonical(enc)
		require.NoError(t, err)
		assert.Empty(t, rest)
		e.EntryHash = sha256Hex(enc)
		assert.Equal(t, e, back)
	})
}

func TestParseKnownVectors(t *testing.T) {
	for _, v := range allVectors() {
		fields, err := parseCanonical(v.canonical)
		require.NoError(t, err, v.name)
		require.NotNil(t, fields[0], v.name)
		want := map[string]int{chain.FormatTagV1: 24, chain.FormatTagV2: 26}[*fields[0]]
		assert.Len(t, fields, want, v.name)
	}
}

// benchEntry is a typical entry (version 2) whose canonical encoding is 400
// bytes.
func benchEntry(b *testing.B) entry.Entry {
	e := fullEntryV2()
	e.Validation = nil
	e.Attributes = `{"retries":2}`
	e.Reasoning = strp("Rechnung ✓")     // 22 bytes fewer, for the end time
	e.Sender = strp("svc-payments")      // an OIDC subject, say
	e.TargetResource = "konto/DE89 3704" // 18 bytes fewer, for the sender
	if n := len(chain.AppendCanonical(nil, &e)); n != 400 {
		b.Fatalf("bench entry encodes to %d bytes, want 400", n)
	}
	return e
}

func BenchmarkAppend(b *testing.B) {
	e := benchEntry(b)
	b.SetBytes(int64(len(chain.AppendCanonical(nil, &e))))
	c := chain.New("chain-bench", chain.Genesis())
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		c.Append(&e)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkAppendCanonical(b *testing.B) {
	e := benchEntry(b)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(chain.AppendCanonical(nil, &e))))
	b.ReportAllocs()
	for b.Loop() {
		buf = chain.AppendCanonical(buf[:0], &e)
	}
}

func BenchmarkHash(b *testing.B) {
	e := benchEntry(b)
	b.SetBytes(int64(len(chain.AppendCanonical(nil, &e))))
	b.ReportAllocs()
	for b.Loop() {
		_ = chain.Hash(&e)
	}
}
