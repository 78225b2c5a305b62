package checkpoint

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/store"
)

// signed returns cp of chainID signed with a new key, and the key pair.
func signed(t *testing.T, chainID string) (msg []byte, skey, vkey string) {
	t.Helper()
	skey, vkey, err := GenerateKey(chainID)
	require.NoError(t, err)
	s, err := note.NewSigner(skey)
	require.NoError(t, err)
	c := cp
	c.ChainID = chainID
	msg, err = Sign(c, s)
	require.NoError(t, err)
	return msg, skey, vkey
}

func TestOpenNamesTheSigner(t *testing.T) {
	a, _, va := signed(t, "chain-a")
	_, _, vb := signed(t, "chain-b")
	c, signer, err := Open(a, vb, " "+va+"\n")
	require.NoError(t, err)
	assert.Equal(t, va, signer, "the key that verified, whitespace trimmed")
	assert.Equal(t, "chain-a", c.ChainID)

	_, _, err = Open(a, vb)
	require.ErrorIs(t, err, ErrBadSignature)
	_, _, err = Open(a, "not a key")
	require.ErrorIs(t, err, ErrBadKey)
}

func TestSplitNotes(t *testing.T) {
	a, _, _ := signed(t, "chain-a")
	b, _, _ := signed(t, "chain-b")
	joined := append(append(append([]byte{}, a...), '\n'), b...)
	assert.Equal(t, [][]byte{a, b}, SplitNotes(joined))
	assert.Equal(t, [][]byte{a}, SplitNotes(a))
	assert.Equal(t, [][]byte{a, b}, SplitNotes(append(append([]byte("\n\n"), joined...), "\n\n"...)), "blank lines around")
	assert.Empty(t, SplitNotes([]byte("\n \n")))
}

func TestUnverifiedChain(t *testing.T) {
	a, _, _ := signed(t, "chain-a")
	assert.Equal(t, "chain-a", UnverifiedChain(a))
	assert.Equal(t, "chain-a", UnverifiedChain([]byte(strings.Replace(string(a), "— ", "— x", 1))), "the signature is not checked")
	assert.Empty(t, UnverifiedChain([]byte("hello\n\n— someone c2lnbmF0dXJl\n")))
	assert.Empty(t, UnverifiedChain([]byte("no blank line")))
}

func TestParseKeys(t *testing.T) {
	_, _, va := signed(t, "chain-a")
	_, _, vb := signed(t, "chain-b")
	keys, err := ParseKeys("# keys\n" + va + "\n\n  " + vb + "  \n")
	require.NoError(t, err)
	assert.Equal(t, []string{va, vb}, keys)
	_, err = ParseKeys(va + "\ngarbage\n")
	require.ErrorIs(t, err, ErrBadKey)
	assert.Contains(t, err.Error(), `"garbage"`)
	keys, err = ParseKeys("# none\n")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func TestKeyIDAndTOFUNote(t *testing.T) {
	_, _, va := signed(t, "chain-a")
	id := KeyID(va)
	assert.Regexp(t, `^agentaudit-chain-a\+[0-9a-f]{8}$`, id)
	assert.True(t, strings.HasPrefix(va, id+"+"))
	assert.Equal(t, "plain", KeyID("plain"))
	assert.Contains(t, TOFUNote(va), "trusting the published key "+id+" on first use")
	assert.NotContains(t, TOFUNote(va), va, "the note names the key, not all of it")
}

func TestKeys(t *testing.T) {
	k := Keys{Published: map[string][]string{"a": {"ka"}, "b": {"kb1", "kb2"}}}
	assert.Equal(t, []string{"ka"}, k.For("a"))
	assert.Empty(t, k.For("c"))
	assert.ElementsMatch(t, []string{"ka", "kb1", "kb2"}, k.All())
	assert.False(t, k.Empty())
	k.Given = []string{"g"}
	assert.Equal(t, []string{"g"}, k.For("a"), "given keys are trusted for every chain")
	assert.Contains(t, k.All(), "g")
	assert.True(t, Keys{}.Empty())
}

// TestPublishedKeys: keys are read from where the exporter publishes them,
// by chain; other files are problems or skipped, never errors.
func TestPublishedKeys(t *testing.T) {
	dir := t.TempDir()
	put := func(key, data string) {
		p := filepath.Join(dir, filepath.FromSlash(key))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	_, _, va := signed(t, "chain-a")
	_, _, va2 := signed(t, "chain-a")
	_, _, vb := signed(t, "my-chain-b")
	put(store.VerifierKeyKey("chain-a", va), va+"\n")
	put(store.VerifierKeyKey("chain-a", va2), va2)
	put(store.VerifierKeyKey("my-chain-b", vb), vb+"\n")
	put("keys/nochain.vkey", va)
	put("keys/chain-c-0000.vkey", "not a key")
	put("keys/README", "skipped")
	put("keys/sub/chain-d-1.vkey", "skipped: nested")

	keys, problems, err := PublishedKeys(context.Background(), store.Dir(dir))
	require.NoError(t, err)
	assert.Len(t, keys, 2)
	assert.ElementsMatch(t, []string{va, va2}, keys["chain-a"])
	assert.Equal(t, []string{vb}, keys["my-chain-b"], "chain ids may hold '-'")
	require.Len(t, problems, 2)
	assert.Contains(t, problems[0], "keys/chain-c-0000.vkey: not a verifier key")
	assert.Contains(t, problems[1], "keys/nochain.vkey: not named keys/<chain_id>-<key hash>.vkey")

	keys, problems, err = PublishedKeys(context.Background(), store.Dir(filepath.Join(dir, "none")))
	require.NoError(t, err)
	assert.Empty(t, keys)
	assert.Empty(t, problems)
}
