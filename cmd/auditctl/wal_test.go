package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/spoollock"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// TestWALAcceptLoss: accept-loss finds the corrupt segment, says what is
// intact, lost and readable after the damage, and records an acceptance
// that names exactly that corruption.
func TestWALAcceptLoss(t *testing.T) {
	spool := t.TempDir()
	dir := filepath.Join(spool, "wal")
	c := chain.New("replica-a", chain.Genesis())
	l, err := wal.Open(dir, "replica-a", 0)
	require.NoError(t, err)
	for i := range 6 {
		e := entry.Entry{TimeUnixNano: day.UnixNano(), ExecutionID: fmt.Sprintf("exec-%d", i), TraceID: "0102030405060708090a0b0c0d0e0f10",
			SpanID: "0102030405060708", ActionType: "write", TargetSystem: "CRM", Result: "ok", StatusCode: "Unset", Attributes: "{}"}
		c.Append(&e)
		l.Append(&e)
	}
	require.NoError(t, l.Close())
	ctx := context.Background()
	accept := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"wal", "accept-loss"}, args...), &out, &errOut, false)
		return code, out.String(), errOut.String()
	}

	code, _, stderr := accept("--by", "ops@example.com", "--reason", "disk replaced", spool)
	assert.Equal(t, exitViolations, code, "nothing corrupt: %s", stderr)
	assert.Contains(t, stderr, "no corrupt segment")
	code, _, stderr = accept("--reason", "r", spool)
	assert.Equal(t, exitError, code)
	assert.Contains(t, stderr, "--by, --reason and the spool directory are required")

	// Seq 2's and seq 3's records rot.
	path := filepath.Join(dir, wal.SegmentName("replica-a", 0))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	segs, err := wal.Recover(dir, "replica-a")
	require.NoError(t, err)
	rec := (int(segs[0].ValidBytes) - 8) / 6
	data[8+2*rec+30] ^= 1
	data[8+3*rec+30] ^= 1
	require.NoError(t, os.WriteFile(path, data, 0o640))

	code, stdout, stderr := accept("--by", "ops@example.com", "--reason", "disk replaced", spool)
	require.Equal(t, exitIntact, code, stderr)
	for _, line := range []string{
		fmt.Sprintf("chain replica-a: %s is corrupt at byte offset %d: record payload checksum mismatch", path, 8+2*rec),
		"intact: every entry through seq 1",
		"lost: seq 2 to 3",
		"readable after the damage: 2 entries, seq 4 to 5 (renumbered after the loss entry)",
		"accepted by ops@example.com: " + filepath.Join(dir, wal.AcceptanceName("replica-a")),
	} {
		assert.Contains(t, stdout, line)
	}
	acc, err := wal.ReadAcceptance(dir, "replica-a")
	require.NoError(t, err)
	require.NotNil(t, acc)
	assert.Equal(t, wal.SegmentName("replica-a", 0), acc.Segment)
	assert.Equal(t, int64(8+2*rec), acc.Offset)
	assert.Equal(t, "ops@example.com", acc.By)
	assert.Equal(t, "disk replaced", acc.Reason)

	code, _, stderr = accept("--by", "someone else", "--reason", "again", spool)
	assert.Equal(t, exitError, code)
	assert.Contains(t, stderr, "a loss was accepted already")

	require.NoError(t, os.Remove(filepath.Join(dir, wal.AcceptanceName("replica-a"))))
	code, stdout, stderr = accept("--json", "--by", "ops@example.com", "--reason", "disk replaced", spool)
	require.Equal(t, exitIntact, code, stderr)
	var r lossReport
	require.NoError(t, json.Unmarshal([]byte(stdout), &r))
	assert.Equal(t, int64(1), r.IntactThrough)
	assert.Equal(t, 2, r.Readable)
	assert.Equal(t, int64(4), *r.ReadableFirst)
	assert.Equal(t, int64(5), *r.ReadableLast)
}

// TestWALAcceptLossRefusesARunningCollectorsSpool: accept-loss changes
// nothing in a spool whose lock another process holds.
func TestWALAcceptLossRefusesARunningCollectorsSpool(t *testing.T) {
	spool := t.TempDir()
	l, err := spoollock.Acquire(spool)
	require.NoError(t, err)
	defer l.Release()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"wal", "accept-loss", "--by", "ops", "--reason", "r", spool}, &out, &errOut, false)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut.String(), "is in use by another collector")
	assert.NoFileExists(t, filepath.Join(spool, "wal", wal.AcceptanceName("replica-a")))
}
