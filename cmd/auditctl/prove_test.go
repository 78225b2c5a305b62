package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// proveV1Trail is a trail the writer of format version 1 wrote (chain
// replica-v1, seq 0 to 39 and 40 to 79, no end times).
var proveV1Trail = filepath.Join("..", "..", "internal", "verify", "testdata", "trail-v1")

// proveMixedTrail copies proveV1Trail into dir and continues its chain with two
// files of format version 2, seq 80 to 89 and 90 to 99, whose entries end
// 250 ms after they start and were sent by svc-crm-agent. It returns every
// file's key.
func proveMixedTrail(t *testing.T, dir string) []string {
	t.Helper()
	var keys []string
	var last entry.Entry
	for _, first := range []int64{0, 40} {
		key := store.BatchKey("replica-v1", first, day)
		data, err := os.ReadFile(filepath.Join(proveV1Trail, filepath.FromSlash(key)))
		require.NoError(t, err)
		writeKeyFile(t, dir, key, string(data))
		es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		last = es[len(es)-1]
		keys = append(keys, key)
	}
	c := chain.New("replica-v1", chain.Head{Size: last.Seq + 1, Hash: last.EntryHash})
	es := make([]entry.Entry, 20)
	for i := range es {
		start := day.UnixNano() + int64(i)*1e9
		end := start + 250e6
		es[i] = entry.Entry{
			TimeUnixNano: start, EndTimeUnixNano: &end, Sender: provePtr("svc-crm-agent"), ExecutionID: "exec-2",
			TraceID: strings.Repeat("cd", 16), SpanID: fmt.Sprintf("%016x", i+1),
			ActionType: "read", TargetSystem: "crm", TargetResource: fmt.Sprintf("contact/%d", 80+i),
			Result: "ok", StatusCode: "Unset", Attributes: "{}",
		}
		c.Append(&es[i])
	}
	for start := 0; start < len(es); start += 10 {
		var buf bytes.Buffer
		_, err := parquetfile.Encode(&buf, es[start:start+10])
		require.NoError(t, err)
		key := store.BatchKey("replica-v1", es[start].Seq, day)
		writeKeyFile(t, dir, key, buf.String())
		keys = append(keys, key)
	}
	return keys
}

// TestProveBothVersions: entries of a file of format version 1 and of a
// file of version 2, in one chain, are proved and checked, each with the
// canonical encoding of its own version; the end time and the sender are
// shown, NULL for an entry of version 1, and a changed end time or sender
// does not check.
func TestProveBothVersions(t *testing.T) {
	dir := t.TempDir()
	vkeys := signTrail(t, dir, proveMixedTrail(t, dir))
	keyFile := filepath.Join(t.TempDir(), "keys.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkeys["replica-v1"]+"\n"), 0o644))

	out, errOut, code := auditctl(t, nil, "verify", "--key", keyFile, dir)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)

	for _, tc := range []struct {
		seq    int64
		tag    string
		end    *string // in the checked entry
		sender *string
		leaf   int64
		leaves int64
	}{
		{13, chain.FormatTagV1, nil, nil, 13, 40},
		{85, chain.FormatTagV2, provePtr(strconv.FormatInt(day.UnixNano()+5e9+250e6, 10)), provePtr("svc-crm-agent"), 5, 10},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			out, errOut, code := auditctl(t, nil, "prove", dir, strconv.FormatInt(tc.seq, 10))
			require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			var b proofBundle
			require.NoError(t, json.Unmarshal([]byte(out), &b))
			assert.Equal(t, tc.leaf, b.LeafIndex)
			assert.Equal(t, tc.leaves, b.BatchSize)
			canonical, err := base64.StdEncoding.DecodeString(b.Canonical)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(string(canonical), fmt.Sprintf("%d:%s", len(tc.tag), tc.tag)), "%s", canonical)
			bundle := filepath.Join(t.TempDir(), "proof.json")
			require.NoError(t, os.WriteFile(bundle, []byte(out), 0o644))

			out, errOut, code = auditctl(t, nil, "prove", "--check", bundle, "--key", keyFile, "--json")
			require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			var res checkResult
			require.NoError(t, json.Unmarshal([]byte(out), &res))
			assert.True(t, res.Valid)
			require.Contains(t, res.Entry, "end_time_unix_nano")
			assert.Equal(t, tc.end, res.Entry["end_time_unix_nano"])
			require.Contains(t, res.Entry, "sender")
			assert.Equal(t, tc.sender, res.Entry["sender"])

			out, _, code = auditctl(t, nil, "prove", "--check", bundle, "--key", keyFile)
			require.Equal(t, exitIntact, code, out)
			want := "  end_time_unix_nano: NULL\n"
			if tc.end != nil {
				want = "  end_time_unix_nano: " + strconv.Quote(*tc.end) + "\n"
			}
			assert.Contains(t, out, "  time_unix_nano: ")
			assert.Contains(t, out, want)
			want = "  sender: NULL\n  action_type: "
			if tc.sender != nil {
				want = "  sender: " + strconv.Quote(*tc.sender) + "\n  action_type: "
			}
			assert.Contains(t, out, want)
		})
	}

	// The end time or the sender of the version 2 entry changed, its hash
	// recomputed: the audit path no longer leads to the signed root.
	out, _, code = auditctl(t, nil, "prove", dir, "85")
	require.Equal(t, exitIntact, code, out)
	var b proofBundle
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	c, err := base64.StdEncoding.DecodeString(b.Canonical)
	require.NoError(t, err)
	end := strconv.FormatInt(day.UnixNano()+5e9+250e6, 10)
	moved := bytes.Replace(c, []byte("19:"+end), []byte("19:"+strconv.FormatInt(day.UnixNano()+5e9+1, 10)), 1)
	require.NotEqual(t, c, moved)
	// Or dropped with the sender: the entry passed off as one of version 1.
	const sender = "13:svc-crm-agent"
	dropped := bytes.Replace(bytes.Replace(c, []byte("19:"+end), nil, 1), []byte(chain.FormatTagV2), []byte(chain.FormatTagV1), 1)
	dropped = bytes.Replace(dropped, []byte(sender), nil, 1)
	require.Len(t, dropped, len(c)-len("19:"+end)-len(sender))
	otherSender := bytes.Replace(c, []byte(sender), []byte("13:svc-erp-agent"), 1)
	noSender := bytes.Replace(c, []byte(sender), []byte("-"), 1)
	require.NotEqual(t, c, otherSender)
	require.NotEqual(t, c, noSender)
	for name, changed := range map[string][]byte{"end time moved": moved, "end time dropped": dropped,
		"sender changed": otherSender, "sender removed": noSender} {
		tb := b
		tb.Canonical = base64.StdEncoding.EncodeToString(changed)
		sum := sha256.Sum256(changed)
		tb.EntryHash = hex.EncodeToString(sum[:])
		data, err := json.Marshal(tb)
		require.NoError(t, err)
		p := filepath.Join(t.TempDir(), "proof.json")
		require.NoError(t, os.WriteFile(p, data, 0o644))
		out, _, code := auditctl(t, nil, "prove", "--check", p, "--key", keyFile)
		assert.Equal(t, exitViolations, code, "%s: %s", name, out)
		assert.Contains(t, out, "ok: the canonical bytes decode to chain replica-v1 seq 85", name)
		assert.Contains(t, out, "FAIL: the audit path does not lead to batch root", name)
	}
}

func provePtr(s string) *string { return &s }

// TestProveTree: against a checkpoint of format 2 the proof is of format
// v2, its audit path in the chain's tree (from the tiles) leading to the
// checkpoint's root; --check checks it, and tampering is caught.
func TestProveTree(t *testing.T) {
	dir := t.TempDir()
	vkeys := signTrailFormat(t, dir, writeTrail(t, dir), true)
	keyFile := filepath.Join(t.TempDir(), "keys.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(vkeys["replica-a"]+"\n"), 0o644))

	out, errOut, code := runCLI("prove", "--chain", "replica-a", "--key", keyFile, dir, "13")
	require.Equal(t, exitIntact, code, errOut)
	var b proofBundle
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	assert.Equal(t, ProofFormatTree, b.Format)
	assert.Equal(t, int64(13), b.LeafIndex)
	assert.Equal(t, int64(20), b.TreeSize)
	assert.Len(t, b.AuditPath, 5) // ceil(log2(20))
	c, err := checkpoint.Parse(strings.SplitN(b.Checkpoint, "\n\n", 2)[0] + "\n")
	require.NoError(t, err)
	assert.Equal(t, c.Root, b.TreeRoot)
	bundle := filepath.Join(t.TempDir(), "proof.json")
	require.NoError(t, os.WriteFile(bundle, []byte(out), 0o644))
	out, errOut, code = runCLI("prove", "--check", bundle, "--key", keyFile)
	require.Equal(t, exitIntact, code, "%s%s", out, errOut)
	assert.Contains(t, out, "ok: the audit path leads from leaf 13 to the root "+b.TreeRoot+" of the chain's tree at size 20")
	assert.True(t, strings.HasSuffix(out, "VALID: the entry is part of the signed chain\n"), out)

	for name, change := range map[string]func(b *proofBundle){
		"audit path changed": func(b *proofBundle) { b.AuditPath[2] = strings.Repeat("00", 32) },
		"leaf moved":         func(b *proofBundle) { b.LeafIndex, b.Seq = 12, 12 },
		"tree root changed":  func(b *proofBundle) { b.TreeRoot = strings.Repeat("00", 32) },
		"tree size changed":  func(b *proofBundle) { b.TreeSize = 30 },
	} {
		t.Run(name, func(t *testing.T) {
			tb := b
			tb.AuditPath = slices.Clone(b.AuditPath)
			change(&tb)
			data, err := json.Marshal(tb)
			require.NoError(t, err)
			p := filepath.Join(t.TempDir(), "proof.json")
			require.NoError(t, os.WriteFile(p, data, 0o644))
			out, _, code := runCLI("prove", "--check", p, "--key", keyFile)
			assert.Equal(t, exitViolations, code, out)
			assert.Contains(t, out, "INVALID")
		})
	}

	// Tiles the checkpoint's root does not support: the trail cannot
	// prove it.
	tile := filepath.Join(dir, "tiles", "replica-a", "tile", "0", "000.p", "20")
	data, err := os.ReadFile(tile)
	require.NoError(t, err)
	data[13*32] ^= 1
	require.NoError(t, os.WriteFile(tile, data, 0o644))
	_, errOut, code = runCLI("prove", "--chain", "replica-a", "--key", keyFile, dir, "13")
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "cannot prove")
	require.NoError(t, os.Remove(tile))
	_, errOut, code = runCLI("prove", "--chain", "replica-a", "--key", keyFile, dir, "13")
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, errOut, "000.p/20")
}
