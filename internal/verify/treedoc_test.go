package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// chainD are the entry hashes of the v2-chain-d vectors of docs/FORMAT.md
// (internal/chain's tests check them): the leaves of the tree vectors.
var chainD = []string{
	"8835026bb46c0822d9db5ce82ad7d61027873514dc2d96a337eac5e685359e7a",
	"9d51b52f43185838f162d7cb5b81e0c9f06b25a923c9fd5cdf968362f5aa2108",
	"a17ec5818b55009534ce01046db62ad121c075235b11ece94a6f1d20fef17f6d",
}

// treeDocBlocks are the "tree-chain-d" blocks docs/FORMAT.md must print,
// computed here with tlogtree (the tree the collector writes and the
// proofs auditctl prints) and verify's own tree.
func treeDocBlocks(t *testing.T) map[string]string {
	t.Helper()
	w, err := tlogtree.NewWriter("chain-d")
	require.NoError(t, err)
	tiles := map[string][]byte{}
	roots := map[int64]tlog.Hash{}
	var leaves []tlog.Hash
	var recs []rec
	for i, e := range chainD {
		b, err := hex.DecodeString(e)
		require.NoError(t, err)
		leaves = append(leaves, tlogtree.LeafHash([32]byte(b)))
		ts, root, err := w.Append([][32]byte{[32]byte(b)})
		require.NoError(t, err)
		for _, tl := range ts {
			tiles[tl.Key] = tl.Data
		}
		roots[w.Size()] = root
		recs = append(recs, rec{seq: int64(i), eh: hash64(e)})
	}
	// verify's tree of the same entries has the same root.
	var f treeFold
	got, err := f.rangeOf(recs).GetRootHash(nil)
	require.NoError(t, err)
	root3 := roots[3]
	require.Equal(t, root3[:], got)

	// sha is the command hashing a prefix byte and hashes, given in hex.
	sha := func(prefix string, hs ...string) string {
		return "printf '" + prefix + strings.Repeat("%s", len(hs)) + "' " + strings.Join(hs, " ") + " | xxd -r -p | sha256sum\n"
	}
	x := func(h tlog.Hash) string { return hex.EncodeToString(h[:]) }
	blocks := map[string]string{}
	for i := range chainD {
		blocks[fmt.Sprintf("leaf%d", i)] = sha("00", chainD[i]) + "# " + x(leaves[i]) + "  -\n"
	}
	blocks["root2"] = sha("01", x(leaves[0]), x(leaves[1])) + "# " + x(roots[2]) + "  -\n"
	blocks["root3"] = sha("01", x(roots[2]), x(leaves[2])) + "# " + x(roots[3]) + "  -\n"
	blocks["root3-base64"] = "printf '%s' " + x(roots[3]) + " | xxd -r -p | base64\n# " + roots[3].String() + "\n"
	r, err := tlogtree.NewReader("chain-d", func(k string) ([]byte, error) { return tiles[k], nil })
	require.NoError(t, err)
	for _, old := range []int64{1, 2} {
		p, err := r.ConsistencyProof(old, 3, roots[3])
		require.NoError(t, err)
		text := fmt.Sprintf("auditctl consistency --key chain-d.vkey size%d.checkpoint size3.checkpoint TRAIL\n", old)
		for line := range strings.Lines(string(tlogtree.MarshalProof(p))) {
			text += "# " + line
		}
		blocks[fmt.Sprintf("consistency-%d-3", old)] = text
	}
	// The inclusion example: entry 2 at size 3.
	p, err := r.InclusionProof(2, 3, roots[3])
	require.NoError(t, err)
	require.Equal(t, []tlog.Hash{roots[2]}, p)
	return blocks
}

var docBlock = regexp.MustCompile("(?s)```sh vector=tree-chain-d/([a-z0-9-]+)\n(.*?)```")

// TestTreeDocVectors: the tree's known answers in docs/FORMAT.md are the
// code's, and the shell commands print what their comments say.
func TestTreeDocVectors(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "FORMAT.md"))
	require.NoError(t, err)
	want := treeDocBlocks(t)
	got := map[string]string{}
	for _, m := range docBlock.FindAllSubmatch(doc, -1) {
		got[string(m[1])] = string(m[2])
	}
	assert.Equal(t, want, got)

	// Run the blocks that need only a shell, printf, xxd, sha256sum and
	// base64.
	for _, tool := range []string{"bash", "xxd", "sha256sum", "base64"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed to run the FORMAT.md blocks: %v", tool, err)
			}
			t.Logf("not running the FORMAT.md blocks: %v", err)
			return
		}
	}
	for name, block := range got {
		cmd, comment, _ := strings.Cut(block, "\n# ")
		if strings.HasPrefix(cmd, "auditctl") {
			continue
		}
		out, err := exec.CommandContext(context.Background(), "bash", "-c", cmd).Output()
		require.NoError(t, err, name)
		assert.Equal(t, strings.TrimSuffix(comment, "\n"), string(bytes.TrimSuffix(out, []byte("\n"))), name)
	}
}
