package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// signTrail writes, beside the trail of writeTrail, what the exporter
// writes: a checkpoint after each batch and the published verifier key. It
// returns the verifier keys by chain.
func signTrail(t *testing.T, dir string, keys []string) map[string]string {
	t.Helper()
	return signTrailFormat(t, dir, keys, false)
}

// signTrailFormat is signTrail with checkpoints of format 1, or (tree) of
// format 2 and the chain's tiles, as the collector writes them since
// issue 18; keys are then in seq order per chain.
func signTrailFormat(t *testing.T, dir string, keys []string, tree bool) map[string]string {
	t.Helper()
	vkeys := map[string]string{}
	signers := map[string]note.Signer{}
	writers := map[string]*tlogtree.Writer{}
	for _, k := range keys {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		es, f, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		s, ok := signers[f.ChainID]
		if !ok {
			skey, vkey, err := checkpoint.GenerateKey(f.ChainID)
			require.NoError(t, err)
			s, err = note.NewSigner(skey)
			require.NoError(t, err)
			signers[f.ChainID], vkeys[f.ChainID] = s, vkey
			writeKeyFile(t, dir, store.VerifierKeyKey(f.ChainID, vkey), vkey+"\n")
			writers[f.ChainID], err = tlogtree.NewWriter(f.ChainID)
			require.NoError(t, err)
		}
		c := checkpoint.Checkpoint{ChainID: f.ChainID, Size: f.LastSeq + 1, Head: es[len(es)-1].EntryHash,
			BatchFirst: f.FirstSeq, BatchLast: f.LastSeq, BatchRoot: f.MerkleRoot}
		if tree {
			c.Root = appendTree(t, dir, writers[f.ChainID], es)
		}
		msg, err := checkpoint.Sign(c, s)
		require.NoError(t, err)
		writeKeyFile(t, dir, store.CheckpointKey(f.ChainID, f.LastSeq+1), string(msg))
	}
	return vkeys
}

// appendTree appends es to the chain's tree, writes its tiles beside the
// trail and returns the new root, hex.
func appendTree(t *testing.T, dir string, w *tlogtree.Writer, es []entry.Entry) string {
	t.Helper()
	hs := make([][32]byte, len(es))
	for i := range es {
		b, err := hex.DecodeString(es[i].EntryHash)
		require.NoError(t, err)
		hs[i] = [32]byte(b)
	}
	ts, root, err := w.Append(hs)
	require.NoError(t, err)
	for _, tl := range ts {
		writeKeyFile(t, dir, tl.Key, string(tl.Data))
	}
	return hex.EncodeToString(root[:])
}

func writeKeyFile(t *testing.T, dir, key, data string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(key))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
}

func TestVerifyWithCheckpoints(t *testing.T) {
	dir := t.TempDir()
	keys := writeTrail(t, dir)
	vkeys := signTrail(t, dir, keys)
	keyFile := filepath.Join(t.TempDir(), "keys.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkeys["replica-a"]+"\n"+vkeys["replica-b"]+"\n"), 0o644))

	// Clean, published keys: trusted on first use, and said.
	out, errOut, code := auditctl(t, nil, "verify", dir)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "note: trusting the published key agentaudit-replica-a+")
	assert.Contains(t, out, ", signed checkpoint at 30 entries: intact\n")
	assert.Contains(t, out, "note: no checkpoint given")

	// auditctl checkpoint: the notes, verbatim, ready to keep.
	saved, errOut, code := auditctl(t, nil, "checkpoint", dir)
	require.Equal(t, exitIntact, code, errOut)
	assert.Contains(t, errOut, "trusting the published key agentaudit-replica-b+")
	cpA, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(store.CheckpointKey("replica-a", 30))))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(saved, string(cpA)+"\n"), saved)
	keptFile := filepath.Join(t.TempDir(), "kept.checkpoint")
	require.NoError(t, os.WriteFile(keptFile, []byte(saved), 0o644))

	out, errOut, code = auditctl(t, nil, "checkpoint", "--json", "--key", keyFile, "--chain", "replica-b", dir)
	require.Equal(t, exitIntact, code, errOut)
	assert.Empty(t, errOut, "a key given: nothing trusted on first use")
	var cps []checkpointJSON
	require.NoError(t, json.Unmarshal([]byte(out), &cps))
	require.Len(t, cps, 1)
	assert.Equal(t, "replica-b", cps[0].ChainID)
	assert.Equal(t, int64(30), cps[0].Size)
	assert.Equal(t, int64(20), cps[0].BatchFirst)
	assert.Equal(t, vkeys["replica-b"], cps[0].Key)

	// The kept checkpoint and the keys: intact, no caveat.
	out, errOut, code = auditctl(t, nil, "verify", "--checkpoint", keptFile, "--key", keyFile, dir)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.NotContains(t, out, "note:")

	// Tail truncated, its stored checkpoint removed too: the kept one
	// catches it.
	require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(keys[2]))))
	require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(store.CheckpointKey("replica-a", 30)))))
	out, _, code = auditctl(t, nil, "verify", "--checkpoint", keptFile, "--key", keyFile, dir)
	require.Equal(t, exitViolations, code, out)
	assert.Contains(t, out, keptFile+"#1: seq 29: ends_before_checkpoint: checkpoint records 30 entries")
	_, _, code = auditctl(t, nil, "verify", dir)
	assert.Equal(t, exitIntact, code, "without the kept checkpoint the truncation is invisible")

	// A forged stored checkpoint.
	other, _, err := checkpoint.GenerateKey("replica-b")
	require.NoError(t, err)
	s, err := note.NewSigner(other)
	require.NoError(t, err)
	forged, err := checkpoint.Sign(checkpoint.Checkpoint{ChainID: "replica-b", Size: 30, Head: strings.Repeat("ab", 32),
		BatchFirst: 20, BatchLast: 29, BatchRoot: strings.Repeat("cd", 32)}, s)
	require.NoError(t, err)
	writeKeyFile(t, dir, store.CheckpointKey("replica-b", 30), string(forged))
	out, _, code = auditctl(t, nil, "verify", "--json", "--key", keyFile, dir)
	require.Equal(t, exitViolations, code, out)
	var rep jsonReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Violations, 1)
	assert.Equal(t, "bad_signature", rep.Violations[0].Kind)
	assert.Equal(t, store.CheckpointKey("replica-b", 30), rep.Violations[0].File)
	_, errOut, code = auditctl(t, nil, "checkpoint", dir)
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "bad_signature")

	// No key at all: a kept checkpoint cannot be checked.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "keys")))
	_, errOut, code = auditctl(t, nil, "verify", "--checkpoint", keptFile, dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "no verifier key")
}

func TestProve(t *testing.T) {
	dir := t.TempDir()
	keys := writeTrail(t, dir)
	vkeys := signTrail(t, dir, keys)
	keyFile := filepath.Join(t.TempDir(), "keys.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkeys["replica-a"]+"\n"), 0o644))

	out, errOut, code := auditctl(t, nil, "prove", "--chain", "replica-a", dir, "13")
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, errOut, "trusting the published key agentaudit-replica-a+")
	var b proofBundle
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	assert.Equal(t, ProofFormat, b.Format)
	assert.Equal(t, int64(3), b.LeafIndex)
	assert.Equal(t, int64(10), b.BatchSize)
	assert.Len(t, b.AuditPath, 4) // ceil(log2(10))
	assert.Equal(t, "agentaudit-replica-a", b.KeyName)
	bundle := filepath.Join(t.TempDir(), "proof.json")
	require.NoError(t, os.WriteFile(bundle, []byte(out), 0o644))

	out, errOut, code = auditctl(t, nil, "prove", "--check", bundle, "--key", keyFile)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Empty(t, errOut)
	assert.Contains(t, out, `  target_resource: "contact/13"`)
	assert.True(t, strings.HasSuffix(out, "VALID: the entry is part of the signed chain\n"), out)
	out, errOut, code = auditctl(t, nil, "prove", "--check", bundle, "--json")
	require.Equal(t, exitIntact, code, out)
	assert.Contains(t, errOut, "trusting the key in the proof")
	var res checkResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.True(t, res.Valid)
	assert.Equal(t, "contact/13", *res.Entry["target_resource"])

	// Tampered bundles are rejected.
	_, otherV, err := checkpoint.GenerateKey("replica-a")
	require.NoError(t, err)
	otherKey := filepath.Join(t.TempDir(), "other.pub")
	require.NoError(t, os.WriteFile(otherKey, []byte(otherV+"\n"), 0o644))
	for _, tc := range []struct {
		name   string
		change func(b *proofBundle)
		args   []string
		want   string
	}{
		{"entry changed", func(b *proofBundle) {
			c, _ := base64.StdEncoding.DecodeString(b.Canonical)
			b.Canonical = base64.StdEncoding.EncodeToString(bytes.Replace(c, []byte("contact/13"), []byte("contact/14"), 1))
		}, nil, "SHA-256 of the canonical bytes is"},
		{"entry and its hash changed", func(b *proofBundle) {
			c, _ := base64.StdEncoding.DecodeString(b.Canonical)
			c = bytes.Replace(c, []byte("contact/13"), []byte("contact/14"), 1)
			b.Canonical = base64.StdEncoding.EncodeToString(c)
			sum := sha256.Sum256(c)
			b.EntryHash = hex.EncodeToString(sum[:])
		}, nil, "the audit path does not lead to batch root"},
		{"audit path changed", func(b *proofBundle) { b.AuditPath[1] = strings.Repeat("00", 32) }, nil, "the audit path does not lead"},
		{"batch root changed", func(b *proofBundle) { b.BatchRoot = strings.Repeat("00", 32) }, nil, "checkpoint batch root"},
		{"leaf index changed", func(b *proofBundle) { b.LeafIndex = 4 }, nil, "leaf 4 of 10 does not place seq 13"},
		{"checkpoint of another key", func(b *proofBundle) {}, []string{"--key", otherKey}, "checkpoint: checkpoint: bad signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tb proofBundle
			require.NoError(t, json.Unmarshal([]byte(mustRead(t, bundle)), &tb))
			tc.change(&tb)
			data, err := json.Marshal(tb)
			require.NoError(t, err)
			p := filepath.Join(t.TempDir(), "proof.json")
			require.NoError(t, os.WriteFile(p, data, 0o644))
			args := append([]string{"prove", "--check", p}, tc.args...)
			if tc.args == nil {
				args = append(args, "--key", keyFile)
			}
			out, _, code := auditctl(t, nil, args...)
			assert.Equal(t, exitViolations, code, out)
			assert.Contains(t, out, "FAIL: "+tc.want)
			assert.Contains(t, out, "INVALID")
		})
	}

	// Entries the trail cannot prove.
	_, errOut, code = auditctl(t, nil, "prove", "--chain", "replica-a", dir, "30")
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "cannot prove")
	require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(store.CheckpointKey("replica-a", 20)))))
	_, errOut, code = auditctl(t, nil, "prove", "--chain", "replica-a", dir, "13")
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "the checkpoint of the batch")

	// The batch file is checked as verify checks it before it is read: a
	// file that is not an audit batch, or fails its own checks, proves
	// nothing.
	files, err := filepath.Glob(filepath.Join(dir, "dt=*", "replica-a-00000000000000000010.parquet"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	require.NoError(t, os.Chmod(files[0], 0o644))
	require.NoError(t, os.WriteFile(files[0], []byte("PAR1 not a parquet file PAR1"), 0o644))
	_, errOut, code = auditctl(t, nil, "prove", "--chain", "replica-a", dir, "13")
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "cannot prove")
	assert.Contains(t, errOut, "replica-a-00000000000000000010.parquet: not_audit_file: ")
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// TestCheckpointsS3: checkpoints and keys are found under an S3 prefix too.
func TestCheckpointsS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", false)
	dir := t.TempDir()
	signTrail(t, dir, writeTrail(t, dir))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := srv.Client()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("trail"),
			Key: aws.String("audit/" + filepath.ToSlash(rel)), Body: bytes.NewReader(data)})
		return err
	})
	require.NoError(t, err)
	env := srv.Env()
	target := "s3://trail/audit"

	out, errOut, code := auditctl(t, env, "verify", "--endpoint", srv.Endpoint, target)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "signed checkpoint at 30 entries: intact")
	assert.Contains(t, out, "trusting the published key agentaudit-replica-b+")

	out, errOut, code = auditctl(t, env, "checkpoint", "--endpoint", srv.Endpoint, target)
	require.Equal(t, exitIntact, code, errOut)
	assert.Len(t, checkpoint.SplitNotes([]byte(out)), 2)

	out, errOut, code = auditctl(t, env, "prove", "--endpoint", srv.Endpoint, "--chain", "replica-b", target, "29")
	require.Equal(t, exitIntact, code, errOut)
	var b proofBundle
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	assert.Equal(t, int64(9), b.LeafIndex)
}
