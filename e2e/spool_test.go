package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// TestSecondCollectorOnASpoolRefusesToStart: a second collector process
// configured with a spool directory in use (a restarted pod whose old
// process still runs, a copied configuration) exits non-zero naming the
// directory and the holder; the first keeps acknowledging and loses
// nothing.
func TestSecondCollectorOnASpoolRefusesToStart(t *testing.T) {
	const chainID = "shared-spool"
	dataDir := filepath.Join(t.TempDir(), "audit-data")
	spool := filepath.Join(filepath.Dir(dataDir), "spool") // where the harness puts it
	opts := harness.CollectorOptions{ChainID: chainID, MaxEntries: 7, DataDir: dataDir}
	first := harness.StartCollector(t, opts)

	conn, err := grpc.NewClient(first.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var results [][]harness.LoadResult = [][]harness.LoadResult{nil}
	send := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := len(results[0])
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(harness.LoadTraces(0, req)))
		require.NoError(t, err, "request %d to the first collector", req)
		results[0] = append(results[0], harness.LoadResult{Client: 0, Req: req, Acked: true})
	}
	for range 3 {
		send()
	}

	second := harness.LaunchCollector(t, opts)
	err = second.WaitExit()
	require.Error(t, err, "the second collector exits non-zero\n%s", second.Logs())
	assert.Contains(t, second.Logs(),
		fmt.Sprintf(`spool: \"directory\" \"%s\" is in use by another collector (held by pid %d on host `, spool, first.Pid()))

	for range 3 {
		send()
	}
	first.Stop()

	_, err = os.Stat(filepath.Join(spool, "wal", wal.SegmentName(chainID, 0)))
	assert.True(t, os.IsNotExist(err), "the first collector sealed its log on shutdown")
	db := harness.TrailDB(t, dataDir)
	trail := harness.ReadLoadTrail(t, db)
	harness.CheckLoadTrail(t, trail, chainID, results, true, harness.OneCleanRun) // the second collector never started its recorder
	assert.Empty(t, harness.VerifySQL(t, db), "docs/verify.sql finds the trail intact")
}

// TestAcceptedLossEndToEnd: a bit rots in the write-ahead log of a killed
// collector. The restart refuses, naming the file and offset, and changes
// nothing; the operator accepts the loss with auditctl; the next start
// records it in the trail, and both verifiers show it.
func TestAcceptedLossEndToEnd(t *testing.T) {
	const chainID = "loss-1"
	dataDir := filepath.Join(t.TempDir(), "audit-data")
	spool := filepath.Join(filepath.Dir(dataDir), "spool")
	opts := harness.CollectorOptions{ChainID: chainID, DataDir: dataDir}
	c := harness.StartCollector(t, opts)
	conn, err := grpc.NewClient(c.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for req := range 3 {
		_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(harness.LoadTraces(0, req)))
		require.NoError(t, err)
	}
	conn.Close()
	c.Kill() // every entry is in the open batch's log segment

	// The record of seq 1 rots: the first span's, after the start marker.
	seg := filepath.Join(spool, "wal", wal.SegmentName(chainID, 0))
	data, err := os.ReadFile(seg)
	require.NoError(t, err)
	const magic, header, mark = 8, 12, 4
	second := magic + header + int(binary.LittleEndian.Uint32(data[magic:])) + mark
	data[second+header+20] ^= 0x04
	require.NoError(t, os.WriteFile(seg, data, 0o640))

	refused := harness.LaunchCollector(t, opts)
	require.Error(t, refused.WaitExit(), "the restart refuses\n%s", refused.Logs())
	assert.Contains(t, refused.Logs(), fmt.Sprintf("%s is corrupt at byte offset %d: record payload checksum mismatch", seg, second))
	after, err := os.ReadFile(seg)
	require.NoError(t, err)
	require.Equal(t, data, after, "the refused start changed nothing")

	auditctl := harness.BuildAuditctl(t, t.TempDir())
	out, err := exec.Command(auditctl, "wal", "accept-loss", "--by", "ops@example.com", "--reason", "bad sector on sdb", spool).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "lost: seq 1 to 1")
	assert.Contains(t, string(out), fmt.Sprintf("readable after the damage: %d entries, seq 2 to %d", 3*harness.LoadAuditSpans-1, 3*harness.LoadAuditSpans))

	c = harness.StartCollector(t, opts)
	assert.Contains(t, c.Logs(), "Recorded the loss the operator accepted")
	conn, err = grpc.NewClient(c.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	// A deadline of its own: building auditctl above can take most of the
	// first one on a loaded machine.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(harness.LoadTraces(0, 3)))
	require.NoError(t, err, "the collector goes on after the loss")
	conn.Close()
	c.Stop()

	db := harness.TrailDB(t, dataDir)
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM audit_entries WHERE `+harness.NoMarkers).Scan(&n))
	assert.Equal(t, 4*harness.LoadAuditSpans, n, "every entry but the lost one, the entry recording the loss, and the request after it")
	// The refused start wrote nothing; the one after it found no record of
	// a clean stop.
	assert.Equal(t, harness.Runs(true, false), harness.TrailMarkers(t, db))
	var lastID string
	require.NoError(t, db.QueryRow(`SELECT json_extract_string(attributes, '$."load.id"') FROM audit_entries WHERE `+harness.NoMarkers+` ORDER BY seq DESC LIMIT 1`).Scan(&lastID))
	assert.Equal(t, harness.LoadID(0, 3, harness.LoadAuditSpans-1), lastID)
	var action, result, approver string
	require.NoError(t, db.QueryRow(`SELECT action_type, result, approver FROM audit_entries WHERE seq = 1`).Scan(&action, &result, &approver))
	assert.Equal(t, "agentaudit.loss", action)
	assert.Equal(t, fmt.Sprintf("lost seq 1; seq 2 to %d renumbered 2 to %d", 3*harness.LoadAuditSpans, 3*harness.LoadAuditSpans), result)
	assert.Equal(t, "ops@example.com", approver)

	want := []string{chainID + "/1/recorded_loss"}
	assert.Equal(t, want, harness.SQLKeys(harness.VerifySQL(t, db)), "docs/verify.sql shows the loss, and nothing else")
	rep := harness.Verify(t, dataDir)
	assert.Equal(t, want, harness.ReportKeys(rep), "auditctl verify shows the same")
	assert.Len(t, rep.Violations, 1)
	cmd := exec.Command(auditctl, "verify", dataDir)
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "seq 1: recorded_loss: lost seq 1; seq 2 to")
	assert.Contains(t, string(out), "(accepted by ops@example.com: bad sector on sdb)")
}
