package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// growingTrail is one chain written as the collector writes it: batches
// of 10 entries, each followed by its tiles and its checkpoint of format
// 2, the verifier key published.
type growingTrail struct {
	dir     string
	id      string
	signer  note.Signer
	skey    string
	c       *chain.Chain
	w       *tlogtree.Writer
	entries []entry.Entry
	keys    []string // batch files, in seq order
}

func newGrowingTrail(t *testing.T, id string) *growingTrail {
	t.Helper()
	g := &growingTrail{dir: t.TempDir(), id: id}
	skey, vkey, err := checkpoint.GenerateKey(id)
	require.NoError(t, err)
	g.skey = skey
	g.signer, err = note.NewSigner(skey)
	require.NoError(t, err)
	writeKeyFile(t, g.dir, store.VerifierKeyKey(id, vkey), vkey+"\n")
	g.restart(t, 0)
	return g
}

// restart continues the chain after its first n entries (a multiple of
// 10; a fork when less than its length), the tree rebuilt.
func (g *growingTrail) restart(t *testing.T, n int) {
	t.Helper()
	head := chain.Genesis()
	if n > 0 {
		head = chain.Head{Size: int64(n), Hash: g.entries[n-1].EntryHash}
	}
	g.c = chain.New(g.id, head)
	g.entries = g.entries[:n]
	g.keys = g.keys[:n/10]
	var err error
	g.w, err = tlogtree.NewWriter(g.id)
	require.NoError(t, err)
	ts, _, err := g.w.Append(hashesOf(t, g.entries))
	require.NoError(t, err)
	for _, tl := range ts {
		writeKeyFile(t, g.dir, tl.Key, string(tl.Data))
	}
}

func hashesOf(t *testing.T, es []entry.Entry) [][32]byte {
	hs := make([][32]byte, len(es))
	for i := range es {
		b, err := hex.DecodeString(es[i].EntryHash)
		require.NoError(t, err)
		hs[i] = [32]byte(b)
	}
	return hs
}

// add writes batches of 10 entries, marker in their results.
func (g *growingTrail) add(t *testing.T, batches int, marker string) {
	t.Helper()
	for range batches {
		es := make([]entry.Entry, 10)
		for i := range es {
			seq := len(g.entries) + i
			es[i] = entry.Entry{
				TimeUnixNano: day.UnixNano() + int64(seq)*1e6, ExecutionID: "exec-1",
				TraceID: strings.Repeat("ab", 16), SpanID: fmt.Sprintf("%016x", seq+1),
				ActionType: "write", TargetSystem: "crm", TargetResource: fmt.Sprintf("contact/%d", seq),
				Result: "ok" + marker, StatusCode: "Unset", Attributes: "{}",
			}
			g.c.Append(&es[i])
		}
		g.entries = append(g.entries, es...)
		var buf bytes.Buffer
		_, err := parquetfile.Encode(&buf, es)
		require.NoError(t, err)
		key := store.BatchKey(g.id, es[0].Seq, day)
		writeKeyFile(t, g.dir, key, buf.String())
		g.keys = append(g.keys, key)
		ts, root, err := g.w.Append(hashesOf(t, es))
		require.NoError(t, err)
		for _, tl := range ts {
			writeKeyFile(t, g.dir, tl.Key, string(tl.Data))
		}
		hashes := make([]string, len(es))
		for i := range es {
			hashes[i] = es[i].EntryHash
		}
		broot, err := merkle.RootHex(hashes)
		require.NoError(t, err)
		last := es[len(es)-1]
		msg, err := checkpoint.Sign(checkpoint.Checkpoint{ChainID: g.id, Size: last.Seq + 1, Root: hex.EncodeToString(root[:]), Head: last.EntryHash,
			BatchFirst: es[0].Seq, BatchLast: last.Seq, BatchRoot: broot}, g.signer)
		require.NoError(t, err)
		writeKeyFile(t, g.dir, store.CheckpointKey(g.id, last.Seq+1), string(msg))
	}
}

func (g *growingTrail) path(key string) string { return filepath.Join(g.dir, filepath.FromSlash(key)) }

func readState(t *testing.T, dir, id string) watchState {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, id+".json"))
	require.NoError(t, err)
	var st watchState
	require.NoError(t, json.Unmarshal(data, &st))
	return st
}

// TestWatch: rounds over a growing trail, each reading only what was
// added; then the attacks a round catches.
func TestWatch(t *testing.T) {
	g := newGrowingTrail(t, "replica-a")
	g.add(t, 3, "")
	state := t.TempDir()

	// First round: the whole trail, then remembered.
	out, errOut, code := runCLI("watch", "--state", state, g.dir)
	require.Equal(t, exitIntact, code, "%s%s", out, errOut)
	assert.Contains(t, out, "chain replica-a: verified whole, checkpoint at size 30 remembered")
	assert.Contains(t, out, "OK: 3 files, 30 entries verified, no history changed")
	assert.Contains(t, out, "trusting the published key agentaudit-replica-a+")
	st := readState(t, state, "replica-a")
	assert.Equal(t, int64(30), st.Size)
	assert.NotEmpty(t, st.Range)

	// Two batches later: only they are read.
	g.add(t, 2, "")
	out, errOut, code = runCLI("watch", "--state", state, "--json", g.dir)
	require.Equal(t, exitIntact, code, "%s%s", out, errOut)
	require.Equal(t, 1, strings.Count(out, "\n"), "one line a round: %s", out)
	var r watchRound
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.True(t, r.Intact)
	assert.Equal(t, 2, r.Files)
	assert.Equal(t, int64(20), r.Entries)
	require.Len(t, r.Chains, 1)
	assert.Equal(t, watchChain{ChainID: "replica-a", From: 30, To: 50, Root: r.Chains[0].Root, ProofHashes: r.Chains[0].ProofHashes}, r.Chains[0])
	assert.Positive(t, r.Chains[0].ProofHashes)
	assert.Equal(t, int64(50), readState(t, state, "replica-a").Size)

	// Nothing new.
	out, _, code = runCLI("watch", "--state", state, g.dir)
	require.Equal(t, exitIntact, code, out)
	assert.Contains(t, out, "OK: 0 files, 0 entries verified")

	// An old file changed (before the remembered checkpoint): not read
	// again, by design; the tree's consistency is what watch checks there
	// (the next case).
	before := readState(t, state, "replica-a")

	// The operator rewrites history from seq 15 with its own key, the tree
	// rebuilt and every checkpoint re-signed: consistent on its own, not
	// with what watch remembers.
	require.NoError(t, os.RemoveAll(filepath.Join(g.dir, "tiles")))
	g.restart(t, 10)
	g.add(t, 4, "rewritten")
	out, _, code = runCLI("watch", "--state", state, g.dir)
	assert.Equal(t, exitViolations, code, out)
	assert.Contains(t, out, "checkpoint_mismatch: the checkpoint stored at size 50 is not the one remembered")
	assert.Contains(t, out, "is not proved to extend the one remembered (size 50")
	assert.Contains(t, out, "HISTORY CHANGED")
	assert.Equal(t, before, readState(t, state, "replica-a"), "the state is kept")

	// The same trail verifies on its own.
	_, _, code = runCLI("verify", g.dir)
	assert.Equal(t, exitIntact, code)
}

// TestWatchViolations: each change after a remembered checkpoint is a
// violation (exit 1), and the state stays.
func TestWatchViolations(t *testing.T) {
	for name, c := range map[string]struct {
		change func(t *testing.T, g *growingTrail)
		want   string
	}{
		"tail truncated": {func(t *testing.T, g *growingTrail) {
			require.NoError(t, os.Remove(g.path(store.CheckpointKey(g.id, 30))))
		}, "the newest stored checkpoint is at size 20, the one remembered at size 30"},
		"checkpoint signed with another key": {func(t *testing.T, g *growingTrail) {
			skey, vkey, err := checkpoint.GenerateKey(g.id)
			require.NoError(t, err)
			writeKeyFile(t, g.dir, store.VerifierKeyKey(g.id, vkey), vkey+"\n")
			g.signer, err = note.NewSigner(skey)
			require.NoError(t, err)
			g.add(t, 1, "")
		}, "bad_signature: the newest checkpoint of chain replica-a"},
		"a new file tampered": {func(t *testing.T, g *growingTrail) {
			g.add(t, 2, "")
			data := mustReadBytes(t, g.path(g.keys[4]))
			es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
			require.NoError(t, err)
			es[3].Result = "403"
			var buf bytes.Buffer
			_, err = parquetfile.Encode(&buf, es)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(g.path(g.keys[4]), buf.Bytes(), 0o644))
		}, "seq 43: hash_mismatch"},
		"tiles altered": {func(t *testing.T, g *growingTrail) {
			g.add(t, 1, "")
			p := filepath.Join(g.dir, "tiles", g.id, "tile", "0", "000.p", "40")
			data := mustReadBytes(t, p)
			data[0] ^= 1
			require.NoError(t, os.WriteFile(p, data, 0o644))
		}, "is not proved to extend the one remembered"},
	} {
		t.Run(name, func(t *testing.T) {
			g := newGrowingTrail(t, "replica-a")
			g.add(t, 3, "")
			state := t.TempDir()
			_, _, code := runCLI("watch", "--state", state, g.dir)
			require.Equal(t, exitIntact, code)
			before := readState(t, state, "replica-a")
			c.change(t, g)
			out, errOut, code := runCLI("watch", "--state", state, g.dir)
			assert.Equal(t, exitViolations, code, "%s%s", out, errOut)
			assert.Contains(t, out, c.want)
			assert.Equal(t, before, readState(t, state, "replica-a"))
		})
	}
}

func TestWatchUsage(t *testing.T) {
	g := newGrowingTrail(t, "replica-a")
	g.add(t, 1, "")
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"watch", g.dir}, "--state DIR is required"},
		{[]string{"watch", "--state", t.TempDir()}, "want one TARGET"},
		{[]string{"watch", "--state", t.TempDir(), "--interval", "-1s", g.dir}, "must be positive"},
		{[]string{"watch", "--state", t.TempDir(), t.TempDir()}, "no .parquet files"},
	} {
		_, errOut, code := runCLI(c.args...)
		assert.Equal(t, exitError, code, "%v", c.args)
		assert.Contains(t, errOut, c.msg, c.args)
	}
	// A state file that is not one.
	state := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(state, "replica-a.json"), []byte("{}"), 0o600))
	_, errOut, code := runCLI("watch", "--state", state, g.dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "not a watch state of its chain")
}

// TestWatchInterval runs the binary with --interval: a line per round
// until a violation (exit 1), or until SIGINT (exit 0).
func TestWatchInterval(t *testing.T) {
	g := newGrowingTrail(t, "replica-a")
	g.add(t, 2, "")
	start := func(state string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(bin, "watch", "--state", state, "--interval", "50ms", "--json", g.dir)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, bufio.NewScanner(stdout)
	}
	round := func(sc *bufio.Scanner) watchRound {
		require.True(t, sc.Scan(), "a round")
		var r watchRound
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		return r
	}

	// SIGINT: exit 0.
	cmd, sc := start(t.TempDir())
	assert.True(t, round(sc).Intact)
	assert.True(t, round(sc).Intact)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait())

	// Growth, then a violation: exit 1.
	cmd, sc = start(t.TempDir())
	assert.True(t, round(sc).Intact)
	g.add(t, 1, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := round(sc)
		require.True(t, r.Intact, sc.Text())
		if len(r.Chains) == 1 && r.Chains[0].To == 30 && r.Chains[0].From == 20 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the new batch was never seen")
	}
	require.NoError(t, os.Remove(g.path(store.CheckpointKey(g.id, 30))))
	require.NoError(t, os.Remove(g.path(g.keys[2])))
	for {
		r := round(sc)
		if !r.Intact {
			require.NotEmpty(t, r.Violations, sc.Text())
			break
		}
		require.True(t, time.Now().Before(deadline), "the removal was never seen")
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, exitViolations, ee.ExitCode())
}
