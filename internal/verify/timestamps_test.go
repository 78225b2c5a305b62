package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tsa"
	"github.com/agentaudit/agentaudit/internal/tsa/localtsa"
)

// stampedTrail is one chain of three batches of four entries, recorded
// from start on (one entry a second), with a signed checkpoint after each
// batch, as the exporter writes them.
type stampedTrail struct {
	dir  string
	id   string
	cps  []string // checkpoint keys, in order
	skey string
}

const stampedChain = "replica-0"

func newStampedTrail(t *testing.T, start time.Time) *stampedTrail {
	t.Helper()
	st := &stampedTrail{dir: t.TempDir(), id: stampedChain}
	skey, vkey, err := checkpoint.GenerateKey(st.id)
	require.NoError(t, err)
	st.skey = skey
	writeFile(t, st.dir, store.VerifierKeyKey(st.id, vkey), []byte(vkey+"\n"))
	c := chain.New(st.id, chain.Genesis())
	es := make([]entry.Entry, 12)
	for i := range es {
		es[i] = testEntry(int64(i))
		es[i].TimeUnixNano = start.Add(time.Duration(i) * time.Second).UnixNano()
		es[i].EndTimeUnixNano = i64p(es[i].TimeUnixNano + 1)
		c.Append(&es[i])
	}
	for b := 0; b < len(es); b += 4 {
		batch := es[b : b+4]
		writeBatch(t, st.dir, batch)
		key := store.CheckpointKey(st.id, int64(b+4))
		writeFile(t, st.dir, key, signBatch(t, skey, batch))
		st.cps = append(st.cps, key)
	}
	return st
}

func (st *stampedTrail) read(t *testing.T, key string) []byte {
	t.Helper()
	data, err := os.ReadFile(st.path(key))
	require.NoError(t, err)
	return data
}

func (st *stampedTrail) path(key string) string { return (&trail{dir: st.dir}).path(key) }

// stampAll asks s for a token over each checkpoint and stores it beside.
func (st *stampedTrail) stampAll(t *testing.T, s *localtsa.Server) {
	t.Helper()
	for _, key := range st.cps {
		st.stamp(t, s, key, key)
	}
}

// stamp stores beside checkpoint key a token of s over the checkpoint of
// key over.
func (st *stampedTrail) stamp(t *testing.T, s *localtsa.Server, key, over string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token, err := tsa.Request(ctx, s.URL, st.read(t, over))
	require.NoError(t, err)
	writeFile(t, st.dir, key+".tsr", token)
}

func verifyStamps(t *testing.T, st *stampedTrail, opts Options) *Report {
	t.Helper()
	return verifyWith(t, st.dir, opts)
}

func kinds(vs []Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.File + " " + string(v.Kind)
	}
	return out
}

func TestTimestampsValid(t *testing.T) {
	a := localtsa.Start(t)
	st := newStampedTrail(t, time.Now().Add(-time.Minute))
	st.stampAll(t, a)
	require.Equal(t, store.TimestampKey(st.id, 4), st.cps[0]+".tsr", "the key the exporter stores a token under")

	for name, trusted := range map[string][]*x509.Certificate{"root": {a.Root()}, "TSA certificate": {a.Leaf()}, "whole chain": a.Chain} {
		t.Run(name, func(t *testing.T) {
			rep := verifyStamps(t, st, Options{TSA: trusted, RequireTimestamps: true})
			require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
		})
	}

	t.Run("no TSA given", func(t *testing.T) {
		rep := verifyStamps(t, st, Options{})
		require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
		assert.Contains(t, rep.Notes, "3 timestamp tokens beside the checkpoints not checked: no TSA certificate given")
	})
	t.Run("required without TSA", func(t *testing.T) {
		_, err := Verify(context.Background(), store.Dir(st.dir), Options{RequireTimestamps: true})
		require.ErrorIs(t, err, ErrNoTSA)
	})
}

func TestTimestampsAnotherTSA(t *testing.T) {
	a, b := localtsa.Start(t), localtsa.Start(t)
	st := newStampedTrail(t, time.Now().Add(-time.Minute))
	st.stampAll(t, a)
	st.stamp(t, b, st.cps[1], st.cps[1]) // a token of b where a's was

	rep := verifyStamps(t, st, Options{TSA: []*x509.Certificate{a.Root()}})
	require.Equal(t, []string{st.cps[1] + ".tsr bad_timestamp"}, kinds(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Violations[0].Detail, "token not signed by the given TSA")
	assert.Equal(t, stampedChain, rep.Violations[0].ChainID)
	assert.False(t, rep.Intact)

	// Trusting b instead reports a's two.
	rep = verifyStamps(t, st, Options{TSA: []*x509.Certificate{b.Root()}})
	assert.Equal(t, []string{st.cps[0] + ".tsr bad_timestamp", st.cps[2] + ".tsr bad_timestamp"}, kinds(rep.Violations))
}

func TestTimestampsOutsideWindow(t *testing.T) {
	a := localtsa.Start(t)
	trusted := []*x509.Certificate{a.Root()}

	t.Run("too late", func(t *testing.T) {
		// Batches recorded two days ago, timestamped now: the tokens say
		// nothing of when the batches were written.
		st := newStampedTrail(t, time.Now().Add(-48*time.Hour))
		st.stampAll(t, a)
		rep := verifyStamps(t, st, Options{TSA: trusted})
		require.Len(t, rep.Violations, 3, "violations:\n%s", joinLines(rep.Violations))
		for _, v := range rep.Violations {
			assert.Equal(t, BadTimestamp, v.Kind)
			assert.Contains(t, v.Detail, "is outside its batch's window")
			assert.Contains(t, v.Detail, "+ 24h0m0s)")
		}
		// A longer delay allowed accepts them.
		rep = verifyStamps(t, st, Options{TSA: trusted, TimestampMaxDelay: 72 * time.Hour})
		require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	})

	t.Run("too early", func(t *testing.T) {
		// Entries claiming to be from an hour ahead, in checkpoints
		// timestamped now: the trail was written after the tokens.
		st := newStampedTrail(t, time.Now().Add(time.Hour))
		st.stampAll(t, a)
		rep := verifyStamps(t, st, Options{TSA: trusted})
		require.Len(t, rep.Violations, 3, "violations:\n%s", joinLines(rep.Violations))
		assert.Contains(t, rep.Violations[0].Detail, "- 5m0s, last entry")
	})

	t.Run("within the skew", func(t *testing.T) {
		st := newStampedTrail(t, time.Now().Add(2*time.Minute))
		st.stampAll(t, a)
		rep := verifyStamps(t, st, Options{TSA: trusted})
		require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	})
}

func TestTimestampsOverAnotherCheckpoint(t *testing.T) {
	a := localtsa.Start(t)
	st := newStampedTrail(t, time.Now().Add(-time.Minute))
	st.stampAll(t, a)
	st.stamp(t, a, st.cps[2], st.cps[1]) // the token of size 8 stored for size 12

	rep := verifyStamps(t, st, Options{TSA: []*x509.Certificate{a.Root()}})
	require.Equal(t, []string{st.cps[2] + ".tsr bad_timestamp"}, kinds(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Violations[0].Detail, "token is not over the checkpoint beside it")

	// A changed checkpoint: its token no longer matches (and its
	// signature fails).
	cp := st.read(t, st.cps[0])
	writeFile(t, st.dir, st.cps[0], changeSignature(t, cp))
	rep = verifyStamps(t, st, Options{TSA: []*x509.Certificate{a.Root()}})
	assert.Contains(t, kinds(rep.Violations), st.cps[0]+".tsr bad_timestamp")
	assert.Contains(t, kinds(rep.Violations), st.cps[0]+" bad_signature")
}

// changeSignature returns a signed note with one base64 character in the
// middle of its last signature changed to another: the signature's bytes
// differ. (A flipped bit in its last character may only touch the
// padding bits base64 decoders ignore.)
func changeSignature(t *testing.T, note []byte) []byte {
	t.Helper()
	out := bytes.Clone(note)
	start := bytes.LastIndexByte(out[:len(out)-1], ' ') + 1 // the signature's base64
	require.Positive(t, start, "a signature line")
	i := start + (len(out)-1-start)/2
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}

func TestTimestampsRequired(t *testing.T) {
	a := localtsa.Start(t)
	trusted := []*x509.Certificate{a.Root()}
	st := newStampedTrail(t, time.Now().Add(-time.Minute))

	// No checkpoint with a token: missing, at the latest.
	rep := verifyStamps(t, st, Options{TSA: trusted, RequireTimestamps: true})
	require.Equal(t, []string{st.cps[2] + " missing_timestamp"}, kinds(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	rep = verifyStamps(t, st, Options{TSA: trusted})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))

	// An older one stamped, the newest not yet (a running collector): a
	// note, not a violation.
	st.stamp(t, a, st.cps[0], st.cps[0])
	rep = verifyStamps(t, st, Options{TSA: trusted, RequireTimestamps: true})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.True(t, slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "have no token yet") }), "notes: %v", rep.Notes)

	st.stamp(t, a, st.cps[2], st.cps[2])
	rep = verifyStamps(t, st, Options{TSA: trusted, RequireTimestamps: true})
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))

	// A chain without a checkpoint has no timestamp.
	require.NoError(t, os.RemoveAll(st.path(store.CheckpointsPrefix)))
	rep = verifyStamps(t, st, Options{TSA: trusted, RequireTimestamps: true})
	require.Equal(t, []string{"checkpoints/replica-0/ missing_timestamp"}, kinds(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
}

func TestTimestampBesideNoCheckpoint(t *testing.T) {
	a := localtsa.Start(t)
	st := newStampedTrail(t, time.Now().Add(-time.Minute))
	st.stampAll(t, a)
	orphan := store.TimestampKey(st.id, 99)
	writeFile(t, st.dir, orphan, st.read(t, st.cps[0]+".tsr"))
	writeFile(t, st.dir, st.cps[1]+".tsr", []byte("not a token"))

	rep := verifyStamps(t, st, Options{TSA: []*x509.Certificate{a.Root()}})
	require.Equal(t, []string{st.cps[1] + ".tsr bad_timestamp", orphan + " bad_timestamp"}, kinds(rep.Violations), "violations:\n%s", joinLines(rep.Violations))
	assert.Contains(t, rep.Violations[0].Detail, "malformed timestamp response")
	assert.Contains(t, rep.Violations[1].Detail, "timestamp token beside no checkpoint")
}
