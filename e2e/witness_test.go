package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
	"github.com/agentaudit/agentaudit/internal/verify"
	"github.com/agentaudit/agentaudit/internal/witness"
)

// witnessProcess is `auditctl witness serve` for one chain, on 127.0.0.1.
type witnessProcess struct {
	url   string
	vkey  string // its verifier key
	state string
}

func startWitness(t *testing.T, bin, chainID, logVKey string) *witnessProcess {
	t.Helper()
	dir := t.TempDir()
	skey, vkey, err := witness.GenerateKey("witness.e2e/w1", false)
	require.NoError(t, err)
	keyFile, logKeyFile := filepath.Join(dir, "witness.key"), filepath.Join(dir, "log.vkey")
	require.NoError(t, os.WriteFile(keyFile, []byte(skey+"\n"), 0o600))
	require.NoError(t, os.WriteFile(logKeyFile, []byte(logVKey+"\n"), 0o644))
	addr := harness.FreeAddr(t)
	w := &witnessProcess{url: "http://" + addr, vkey: vkey, state: filepath.Join(dir, "state")}
	cmd := exec.Command(bin, "witness", "serve", "--state", w.state, "--key", keyFile,
		"--log", "agentaudit/"+chainID+"="+logKeyFile, "--listen", addr)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("witness logs:\n%s", logs.String())
		}
	})
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "the witness does not listen")
	return w
}

// TestWitnessCatchesOperatorRewrite: a collector records a trail whose
// checkpoints a witness (`auditctl witness serve`, another process)
// cosigns. The operator then rewrites the whole trail: one entry changed,
// the chain re-hashed, the batches, the tree's tiles and every checkpoint
// made again and signed with the operator's own key. The trail verifies
// on its own; the witness refuses the rewritten checkpoint (it does not
// extend the one it cosigned), also when the operator's collector goes on
// with the rewritten chain, and `verify --witness --cosignatures 1`
// reports the latest checkpoint, which has no valid cosignature.
func TestWitnessCatchesOperatorRewrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const chainID = "wit-replica"
	bin := harness.BuildAuditctl(t, t.TempDir())
	skey, vkey, err := checkpoint.GenerateKey(chainID)
	require.NoError(t, err)
	w := startWitness(t, bin, chainID, vkey)

	base := t.TempDir()
	trail := filepath.Join(base, "audit-data")
	opts := func(spool string) harness.CollectorOptions {
		return harness.CollectorOptions{
			ChainID: chainID, MaxEntries: 3, DataDir: trail,
			Store: "    file:\n      directory: " + trail +
				"\n    spool:\n      directory: " + filepath.Join(base, spool) +
				"\n    checkpoint:\n      key_env: AGENTAUDIT_E2E_WITNESSED_KEY\n      witnesses:\n" +
				"        - name: w1\n          url: " + w.url + "\n          key: " + w.vkey + "\n",
			Env: []string{"AGENTAUDIT_E2E_WITNESSED_KEY=" + skey},
		}
	}
	c := harness.StartCollector(t, opts("spool"))
	harness.SendCRMRun(t, ctx, c, "exec-wit-a")
	harness.SendCRMRun(t, ctx, c, "exec-wit-b")
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(2*len(harness.CRMRun)))
	c.WaitMetric(ctx, "otelcol_agentaudit_witness_cosignatures", 1)
	c.Stop()

	latest := latestCheckpoint(t, trail, chainID)
	_, err = os.Stat(filepath.Join(trail, filepath.FromSlash(store.CosignatureKey(chainID, latest, "w1"))))
	require.NoError(t, err, "the checkpoint sealed at shutdown is cosigned too")
	out, errOut, code := harness.RunAuditctl(t, bin, "verify", "--witness", w.vkey, "--cosignatures", "1", trail)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)

	rewriteTrail(t, trail, chainID, skey)
	out, errOut, code = harness.RunAuditctl(t, bin, "verify", trail)
	require.Equal(t, 0, code, "the rewrite verifies on its own:\nstdout:\n%s\nstderr:\n%s", out, errOut)

	// The witness holds the old tree's size and root: it refuses.
	cp, err := os.ReadFile(filepath.Join(trail, filepath.FromSlash(store.CheckpointKey(chainID, latest))))
	require.NoError(t, err)
	r, err := tlogtree.NewReader(chainID, func(k string) ([]byte, error) { return store.Dir(trail).Get(ctx, k) })
	require.NoError(t, err)
	root := checkpointRoot(t, cp)
	var cl witness.Client
	_, _, err = cl.Submit(ctx, w.url, 0, cp, func(_ context.Context, old uint64) ([][]byte, error) {
		p, err := r.ConsistencyProof(int64(old), latest, root)
		return proofBytes(p), err
	})
	require.ErrorIs(t, err, witness.ErrBadProof)
	evidence, err := os.ReadDir(filepath.Join(w.state, witness.EvidenceDir))
	require.NoError(t, err)
	assert.Len(t, evidence, 1, "the refused request, signed by the operator, is kept")

	// verify requiring a cosignature catches it: the cosignature left
	// beside the rewritten latest checkpoint is the old one's.
	// Every rewritten checkpoint the witness had cosigned is reported,
	// the latest among them.
	vs := witnessedViolations(t, bin, w, trail)
	require.Contains(t, vs, store.CheckpointKey(chainID, latest))
	for file, v := range vs {
		assert.Contains(t, v.Detail, witness.ErrBadCosignature.Error(), file)
	}

	// The operator's collector, restarted on the rewritten trail with a
	// new spool, goes on with the rewritten chain: the witness refuses
	// every checkpoint; intake goes on; the refusal is counted and logged.
	c = harness.StartCollector(t, opts("spool-after-rewrite"))
	harness.SendCRMRun(t, ctx, c, "exec-wit-c")
	c.WaitMetric(ctx, "otelcol_agentaudit_entries_accepted", float64(len(harness.CRMRun)))
	c.WaitMetric(ctx, "otelcol_agentaudit_witness_errors", 1)
	cosigned, _ := c.Metric("otelcol_agentaudit_witness_cosignatures")
	assert.Zero(t, cosigned)
	c.Stop()
	assert.Contains(t, c.Logs(), "Witness refuses the checkpoint as inconsistent")
	after := latestCheckpoint(t, trail, chainID)
	require.Greater(t, after, latest)
	vs = witnessedViolations(t, bin, w, trail)
	require.Contains(t, vs, store.CheckpointKey(chainID, after))
	assert.Contains(t, vs[store.CheckpointKey(chainID, after)].Detail, "valid cosignatures of 0 of the given witness keys, 1 required: no cosignature is stored beside it")
	assert.Contains(t, vs, store.CheckpointKey(chainID, latest), "the rewritten checkpoints are still reported")
}

// witnessedViolations runs verify requiring a cosignature of w and returns
// its violations, by file, each a missing_cosignature.
func witnessedViolations(t *testing.T, bin string, w *witnessProcess, trail string) map[string]verify.Violation {
	t.Helper()
	out, errOut, code := harness.RunAuditctl(t, bin, "verify", "--json", "--witness", w.vkey, "--cosignatures", "1", trail)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	var rep verify.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.NotEmpty(t, rep.Violations)
	vs := map[string]verify.Violation{}
	for _, v := range rep.Violations {
		require.Equal(t, verify.MissingCosignature, v.Kind, "%+v", v)
		vs[v.File] = v
	}
	return vs
}

// latestCheckpoint is the size of the chain's latest stored checkpoint.
func latestCheckpoint(t *testing.T, trail, chainID string) int64 {
	t.Helper()
	names, err := store.Dir(trail).List(context.Background(), store.CheckpointsPrefix)
	require.NoError(t, err)
	var latest int64
	for _, n := range names {
		if id, size, err := store.ParseCheckpointKey(n); err == nil && id == chainID {
			latest = max(latest, size)
		}
	}
	require.NotZero(t, latest)
	return latest
}

// rewriteTrail is the operator's rewrite: entry 2's result changed, every
// entry hash from there recomputed, the batch files written again with the
// same names and boundaries, the chain's tiles rebuilt and every
// checkpoint signed again with the operator's key. Only the witnesses'
// cosignatures are left as they were.
func rewriteTrail(t *testing.T, trail, chainID, skey string) {
	t.Helper()
	files := harness.ParquetFiles(t, trail)
	slices.Sort(files)
	type batch struct {
		path string
		es   []entry.Entry
	}
	var batches []batch
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		batches = append(batches, batch{f, es})
	}
	slices.SortFunc(batches, func(a, b batch) int { return int(a.es[0].Seq - b.es[0].Seq) })
	batches[0].es[2].Result = "403 Forbidden"
	ch := chain.New(chainID, chain.Genesis())
	for _, b := range batches {
		for i := range b.es {
			ch.Append(&b.es[i])
		}
	}
	require.NoError(t, os.RemoveAll(filepath.Join(trail, "tiles", chainID)))
	tw, err := tlogtree.NewWriter(chainID)
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	for _, b := range batches {
		var buf bytes.Buffer
		_, err := parquetfile.Encode(&buf, b.es)
		require.NoError(t, err)
		replaceFile(t, b.path, buf.Bytes())
		tiles, root, err := tw.Append(entryHashes(t, b.es))
		require.NoError(t, err)
		for _, tl := range tiles {
			writeTrailFile(t, trail, tl.Key, tl.Data)
		}
		writeTrailFile(t, trail, store.CheckpointKey(chainID, tw.Size()), signBatch(t, signer, b.es, root))
	}
}

func entryHashes(t *testing.T, es []entry.Entry) [][32]byte {
	t.Helper()
	hs := make([][32]byte, len(es))
	for i := range es {
		b, err := hex.DecodeString(es[i].EntryHash)
		require.NoError(t, err)
		hs[i] = [32]byte(b)
	}
	return hs
}

// signBatch is the checkpoint of format 2 the collector writes after the
// batch es, the chain's tree having root.
func signBatch(t *testing.T, signer note.Signer, es []entry.Entry, root tlog.Hash) []byte {
	t.Helper()
	hashes := make([]string, len(es))
	for i := range es {
		hashes[i] = es[i].EntryHash
	}
	broot, err := merkle.RootHex(hashes)
	require.NoError(t, err)
	last := es[len(es)-1]
	msg, err := checkpoint.Sign(checkpoint.Checkpoint{
		ChainID: last.ChainID, Size: last.Seq + 1, Root: hex.EncodeToString(root[:]), Head: last.EntryHash,
		BatchFirst: es[0].Seq, BatchLast: last.Seq, BatchRoot: broot,
	}, signer)
	require.NoError(t, err)
	return msg
}

func writeTrailFile(t *testing.T, trail, key string, data []byte) {
	t.Helper()
	p := filepath.Join(trail, filepath.FromSlash(key))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	replaceFile(t, p, data)
}

// replaceFile writes data at p, replacing a file the store made read-only.
func replaceFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

// checkpointRoot is the tree root a checkpoint of format 2 states.
func checkpointRoot(t *testing.T, msg []byte) tlog.Hash {
	t.Helper()
	text, _, ok := strings.Cut(string(msg), "\n\n")
	require.True(t, ok)
	c, err := checkpoint.Parse(text + "\n")
	require.NoError(t, err)
	b, err := hex.DecodeString(c.Root)
	require.NoError(t, err)
	return tlog.Hash(b)
}

func proofBytes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}
