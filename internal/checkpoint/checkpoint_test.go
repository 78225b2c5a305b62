package checkpoint

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

var cp = Checkpoint{
	ChainID:    "collector-1",
	Size:       10,
	Head:       strings.Repeat("ab", 32),
	BatchFirst: 6, BatchLast: 9,
	BatchRoot: strings.Repeat("01", 32),
}

func TestTextKnownAnswer(t *testing.T) {
	text, err := cp.Text()
	require.NoError(t, err)
	assert.Equal(t, "agentaudit/collector-1\n10\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\nbatch 6 9 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n", text)
	got, err := Parse(text)
	require.NoError(t, err)
	assert.Equal(t, cp, got)
}

func TestSignOpen(t *testing.T) {
	skey, vkey, err := GenerateKey("collector-1")
	require.NoError(t, err)
	derived, err := VerifierKey(skey)
	require.NoError(t, err)
	assert.Equal(t, vkey, derived, "the verifier key derives from the signer key")
	assert.True(t, strings.HasPrefix(vkey, "agentaudit-collector-1+"))

	s, err := note.NewSigner(skey)
	require.NoError(t, err)
	msg, err := Sign(cp, s)
	require.NoError(t, err)
	got, signer, err := Open(msg, vkey)
	require.NoError(t, err)
	assert.Equal(t, cp, got)
	assert.Equal(t, vkey, signer)

	// A forged signature, another key, an altered body: all refused.
	_, other, err := GenerateKey("collector-1")
	require.NoError(t, err)
	_, _, err = Open(msg, other)
	assert.ErrorIs(t, err, ErrBadSignature)
	altered := []byte(strings.Replace(string(msg), "\n10\n", "\n11\n", 1))
	_, _, err = Open(altered, vkey)
	assert.ErrorIs(t, err, ErrBadSignature)
	// The forged signature keeps the key hash (its first 4 bytes) and
	// changes one byte of the Ed25519 signature itself.
	sigAt := strings.LastIndex(string(msg), " ") + 1
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(msg[sigAt:]), "\n"))
	require.NoError(t, err)
	sig[4+10] ^= 0x01
	forged := []byte(string(msg[:sigAt]) + base64.StdEncoding.EncodeToString(sig) + "\n")
	_, _, err = Open(forged, vkey)
	assert.ErrorIs(t, err, ErrBadSignature)
}

func TestParseRejects(t *testing.T) {
	good, err := cp.Text()
	require.NoError(t, err)
	for name, text := range map[string]string{
		"origin":     strings.Replace(good, "agentaudit/", "other/", 1),
		"size":       strings.Replace(good, "\n10\n", "\nten\n", 1),
		"head":       strings.Replace(good, "q6urq6ur", "!!", 1),
		"batch line": strings.Replace(good, "batch 6 9", "batch 6", 1),
		"last seq":   strings.Replace(good, "batch 6 9", "batch 6 8", 1),
		"lines":      good + "extra\n",
	} {
		_, err := Parse(text)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

var cp2 = Checkpoint{
	ChainID:    "collector-1",
	Size:       10,
	Root:       strings.Repeat("cd", 32),
	Head:       strings.Repeat("ab", 32),
	BatchFirst: 6, BatchLast: 9,
	BatchRoot: strings.Repeat("01", 32),
}

func TestTextKnownAnswerFormat2(t *testing.T) {
	text, err := cp2.Text()
	require.NoError(t, err)
	assert.Equal(t, "agentaudit/collector-1\n10\nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc0=\n"+
		"agentaudit-head q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"+
		"agentaudit-batch 6 9 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n", text)
	got, err := Parse(text)
	require.NoError(t, err)
	assert.Equal(t, cp2, got)
	assert.Equal(t, 2, got.Format())
	assert.Equal(t, 1, cp.Format())
}

// TestFormat2IsATlogCheckpoint checks that the first three lines are a
// C2SP tlog-checkpoint as transparency-dev/formats reads it, the extension
// lines left as its "other data".
func TestFormat2IsATlogCheckpoint(t *testing.T) {
	text, err := cp2.Text()
	require.NoError(t, err)
	var c tlog.Checkpoint
	rest, err := c.Unmarshal([]byte(text))
	require.NoError(t, err)
	assert.Equal(t, "agentaudit/collector-1", c.Origin)
	assert.Equal(t, uint64(10), c.Size)
	assert.Equal(t, strings.Repeat("cd", 32), hex.EncodeToString(c.Hash))
	assert.Equal(t, "agentaudit-head q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\nagentaudit-batch 6 9 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n", string(rest))
}

func TestParseRejectsFormat2(t *testing.T) {
	good, err := cp2.Text()
	require.NoError(t, err)
	for name, text := range map[string]string{
		"root":        strings.Replace(good, "zc3Nzc3N", "!!", 1),
		"head prefix": strings.Replace(good, "agentaudit-head ", "head ", 1),
		"batch line":  strings.Replace(good, "agentaudit-batch 6 9", "agentaudit-batch 6", 1),
		"batch kw":    strings.Replace(good, "agentaudit-batch ", "batch ", 1),
		"double":      strings.Replace(good, "agentaudit-batch 6 9", "agentaudit-batch 6  9", 1),
		"last seq":    strings.Replace(good, "agentaudit-batch 6 9", "agentaudit-batch 6 8", 1),
		"lines":       good + "extra\n",
	} {
		_, err := Parse(text)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}
