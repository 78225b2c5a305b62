//go:build cgo

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/review"
	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/agentaudit/agentaudit/internal/trailtest"
)

// reviewTrail writes two runs into one chain, three entries a file:
// "run-1" completed (start, a nested write, end), "run-2" awaiting
// approval. It returns the batch keys.
func reviewTrail(t *testing.T, dir string) []string {
	t.Helper()
	w, err := trailtest.New(dir, "replica-a", 3, day)
	require.NoError(t, err)
	s := func(v string) *string { return &v }
	add := func(exec, action, span string, parent *string, at time.Duration, mod func(*entry.Entry)) {
		start := day.Add(at).UnixNano()
		end := start + int64(time.Second)
		e := entry.Entry{TimeUnixNano: start, EndTimeUnixNano: &end, ExecutionID: exec, TraceID: strings.Repeat("ab", 16),
			SpanID: span, ParentSpanID: parent, ActionType: action, TargetSystem: "crm", TargetResource: "contact/7",
			Result: "ok", StatusCode: "Unset", Attributes: "{}", AgentName: s("Support agent"), Principal: s("jane@example.com")}
		if mod != nil {
			mod(&e)
		}
		require.NoError(t, w.Add(e))
	}
	add("run-1", "start", "0000000000000001", nil, 0, nil)
	add("run-1", "write", "0000000000000002", s("0000000000000001"), time.Minute, func(e *entry.Entry) {
		e.ProposedValue, e.PreviousValue, e.Approver = s("jane@new.example"), s("jane@old.example"), s("ops@example.com")
	})
	add("run-2", "start", "0000000000000003", nil, 2*time.Minute, nil)
	add("run-2", "request_approval", "0000000000000004", s("0000000000000003"), 3*time.Minute, nil)
	add("run-1", "end", "0000000000000005", s("0000000000000001"), 4*time.Minute, nil)
	require.NoError(t, w.Flush())
	return w.Files
}

// reviewArgs fixes the instant statuses are computed at.
var reviewArgs = []string{"--as-of", "2026-03-09T10:00:00Z"}

func reviewCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return auditctl(t, env, append(args[:1:1], append(reviewArgs, args[1:]...)...)...)
}

func TestRunsAndShow(t *testing.T) {
	dir := t.TempDir()
	reviewTrail(t, dir)

	out, errOut, code := reviewCLI(t, nil, "runs", dir)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Regexp(t, `^EXECUTION_ID\s+AGENT\s+PRINCIPAL\s+START\s+END\s+DURATION\s+STATUS\s+ACTIONS\s+ERRORS\s+APPROVALS\s+INTEGRITY$`, lines[0])
	assert.Regexp(t, `^run-2\s+Support agent\s+jane@example.com\s+2026-03-09T09:32:00Z\s+-\s+-\s+awaiting_approval\s+1\s+0\s+0 \(1 pending\)\s+intact$`, lines[1])
	assert.Regexp(t, `^run-1\s+Support agent\s+jane@example.com\s+2026-03-09T09:30:00Z\s+2026-03-09T09:34:01Z\s+4m1s\s+completed\s+1\s+0\s+0\s+intact$`, lines[2])
	assert.Contains(t, errOut, "verified 2 files: intact; signed checkpoint of chain replica-a at size 5 by key agentaudit-replica-a")

	// The JSON contract.
	out, _, code = reviewCLI(t, nil, "runs", "--json", "--status", "awaiting_approval,completed", dir)
	require.Equal(t, exitIntact, code)
	var runs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &runs))
	require.Len(t, runs, 2)
	for _, k := range []string{"execution_id", "agent", "principal", "status", "start", "end", "duration_ms", "actions", "errors", "approvals"} {
		assert.Contains(t, runs[0], k)
	}
	assert.Equal(t, "run-2", runs[0]["execution_id"])
	assert.Nil(t, runs[0]["end"], "null while running")
	assert.Nil(t, runs[0]["duration_ms"])
	assert.Equal(t, "2026-03-09T09:34:01Z", runs[1]["end"])
	assert.Equal(t, 241000.0, runs[1]["duration_ms"])

	out, _, code = reviewCLI(t, nil, "show", "--json", dir, "run-1")
	require.Equal(t, exitIntact, code, out)
	var tl struct {
		ExecutionID string           `json:"execution_id"`
		Status      string           `json:"status"`
		Steps       []map[string]any `json:"steps"`
		Integrity   struct {
			Intact     bool              `json:"intact"`
			Violations []json.RawMessage `json:"violations"`
			Checkpoint *struct {
				Size    int64  `json:"size"`
				KeyName string `json:"key_name"`
			} `json:"checkpoint"`
		} `json:"integrity"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &tl))
	assert.Equal(t, "run-1", tl.ExecutionID)
	assert.Equal(t, "completed", tl.Status)
	require.Len(t, tl.Steps, 3)
	for _, c := range []string{"timestamp", "time_unix_nano", "end_time_unix_nano", "chain_id", "seq", "execution_id", "trace_id", "span_id",
		"parent_span_id", "agent_id", "agent_name", "service_name", "principal", "sender", "action_type", "target_system", "target_resource",
		"proposed_value", "previous_value", "reasoning", "approver", "result", "status_code", "attributes", "validation",
		"prev_hash", "entry_hash", "duration_ms", "depth"} {
		assert.Contains(t, tl.Steps[1], c)
	}
	assert.Equal(t, []any{"start", "write", "end"}, []any{tl.Steps[0]["action_type"], tl.Steps[1]["action_type"], tl.Steps[2]["action_type"]})
	assert.Equal(t, []any{0.0, 1.0, 1.0}, []any{tl.Steps[0]["depth"], tl.Steps[1]["depth"], tl.Steps[2]["depth"]})
	assert.Equal(t, 1000.0, tl.Steps[1]["duration_ms"])
	assert.True(t, tl.Integrity.Intact)
	assert.Empty(t, tl.Integrity.Violations)
	require.NotNil(t, tl.Integrity.Checkpoint)
	assert.Equal(t, int64(5), tl.Integrity.Checkpoint.Size, "the checkpoint of the batch holding its end")

	out, _, code = reviewCLI(t, nil, "show", dir, "run-1")
	require.Equal(t, exitIntact, code)
	assert.Contains(t, out, "execution run-1: completed")
	assert.Contains(t, out, "  2026-03-09T09:31:00.000Z (1s)  write  crm / contact/7  [replica-a seq 1]\n      value: jane@old.example -> jane@new.example\n      approver: ops@example.com")

	// Nothing matched, or could not run: 2.
	for _, args := range [][]string{
		{"runs", "--status", "failed", dir},
		{"runs", "--status", "nonsense", dir},
		{"runs", "--since", "yesterday-ish", dir},
		{"show", dir, "no-such-run"},
		{"show", dir},
		{"runs", filepath.Join(dir, "nowhere")},
		{"export", "--exec", "run-1", "--format", "pdf", "-o", "-", dir},
		{"export", "--format", "csv", "-o", "-", dir},
	} {
		_, errOut, code := reviewCLI(t, nil, args...)
		assert.Equal(t, exitError, code, "%v: %s", args, errOut)
	}
}

// TestReviewTampered: a changed value is still printed, marked, and the
// exit status is 1.
func TestReviewTampered(t *testing.T) {
	dir := t.TempDir()
	keys := reviewTrail(t, dir)
	p := filepath.Join(dir, filepath.FromSlash(keys[0]))
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	es, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	v := "attacker@evil.example"
	es[1].ProposedValue = &v
	var buf bytes.Buffer
	_, err = parquetfile.Encode(&buf, es)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))

	out, errOut, code := reviewCLI(t, nil, "runs", dir)
	assert.Equal(t, exitViolations, code)
	// Both runs have entries in the tampered file.
	assert.Regexp(t, `run-1 .* VIOLATIONS: 1 violation`, out)
	assert.Regexp(t, `run-2 .* VIOLATIONS: 1 violation`, out)
	assert.Contains(t, errOut, "seq 1: hash_mismatch")

	out, _, code = reviewCLI(t, nil, "show", dir, "run-1")
	assert.Equal(t, exitViolations, code)
	assert.Contains(t, out, "jane@old.example -> attacker@evil.example")
	assert.Contains(t, out, "VIOLATION hash_mismatch")

	out, _, code = reviewCLI(t, nil, "show", dir, "run-2")
	assert.Equal(t, exitViolations, code, "run-2's start is in the tampered file")
	assert.NotContains(t, out, "VIOLATION hash_mismatch", "none of run-2's own entries is changed")
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	reviewTrail(t, dir)
	outDir := t.TempDir()
	for _, f := range []string{"csv", "jsonl", "html"} {
		file := filepath.Join(outDir, "run."+f)
		_, errOut, code := reviewCLI(t, nil, "export", "--exec", "run-1", "--format", f, "-o", file, dir)
		require.Equal(t, exitIntact, code, errOut)
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		switch f {
		case "csv":
			lines := strings.Split(strings.TrimSpace(string(data)), "\r\n")
			assert.Len(t, lines, 4)
			assert.True(t, strings.HasPrefix(lines[0], "timestamp,time_unix_nano,end_time_unix_nano,chain_id,seq,"))
		case "jsonl":
			assert.Len(t, strings.Split(strings.TrimSpace(string(data)), "\n"), 3)
		case "html":
			s := string(data)
			assert.Contains(t, s, "jane@new.example")
			assert.Contains(t, s, "auditctl verify")
			assert.NotContains(t, strings.ToLower(s), "<script")
		}
	}
	// A period: both runs.
	out, errOut, code := reviewCLI(t, nil, "export", "--since", "2026-03-09", "--until", "2026-03-10", "--format", "jsonl", "-o", "-", dir)
	require.Equal(t, exitIntact, code, errOut)
	assert.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 5)
}

// TestReviewS3 runs the review verbs on a trail in a real S3 server and
// checks that they answer as on the directory, from a cache the second time.
func TestReviewS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", false)
	dir := t.TempDir()
	reviewTrail(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := srv.Client()
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("trail"), Key: aws.String("audit/" + filepath.ToSlash(rel)), Body: bytes.NewReader(data)})
		return err
	}))
	env := srv.Env()
	cache := t.TempDir()
	local, _, code := reviewCLI(t, nil, "show", "--json", dir, "run-1")
	require.Equal(t, exitIntact, code)
	for range 2 {
		remote, errOut, code := reviewCLI(t, env, "show", "--json", "--cache", cache, "--endpoint", srv.Endpoint, "s3://trail/audit", "run-1")
		require.Equal(t, exitIntact, code, errOut)
		// The same answer, but for the re-verify command's target.
		assert.Equal(t, local, strings.ReplaceAll(remote, "s3://trail/audit", dir))
	}
	cached := 0
	require.NoError(t, filepath.WalkDir(cache, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".parquet") {
			cached++
		}
		return err
	}))
	assert.Equal(t, 2, cached, "both batch files hold run-1")

	out, errOut, code := reviewCLI(t, env, "runs", "--cache", cache, "--endpoint", srv.Endpoint, "s3://trail/audit")
	require.Equal(t, exitIntact, code, errOut)
	assert.Contains(t, out, "awaiting_approval")
}

// TestReviewEngineStaysOut: the collector and the verifier do not link the
// review verbs' engine, and auditctl builds without cgo.
func TestReviewEngineStaysOut(t *testing.T) {
	for _, pkg := range []string{"github.com/agentaudit/agentaudit", "github.com/agentaudit/agentaudit/internal/verify"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		require.NoError(t, err)
		assert.NotContains(t, string(out), "duckdb", pkg)
	}
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.NotContains(t, string(out), "duckdb", "auditctl without cgo")
	nocgo := filepath.Join(t.TempDir(), "auditctl")
	build := exec.Command("go", "build", "-o", nocgo, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	outb, err := build.CombinedOutput()
	require.NoError(t, err, string(outb))
	var stderr bytes.Buffer
	run := exec.Command(nocgo, "runs", t.TempDir())
	run.Stderr = &stderr
	err = run.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, exitError, ee.ExitCode())
	assert.Contains(t, stderr.String(), "built without cgo")
}

// TestReviewProgressBar: on a terminal, the stages of a review verb show
// on stderr and are cleared before the answer.
func TestReviewProgressBar(t *testing.T) {
	dir := t.TempDir()
	reviewTrail(t, dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"runs", "--json"}, append(reviewArgs, dir)...), &stdout, &stderr, true)
	require.Equal(t, exitIntact, code, stderr.String())
	assert.Contains(t, stderr.String(), "footers 2/2")
	assert.True(t, json.Valid(stdout.Bytes()))
	stderr.Reset()
	code = run(context.Background(), append([]string{"runs", "--no-progress"}, append(reviewArgs, dir)...), &stdout, &stderr, true)
	require.Equal(t, exitIntact, code)
	assert.NotContains(t, stderr.String(), "footers")
}

// TestPrintIntegrity: the summary line says how the files were checked.
func TestPrintIntegrity(t *testing.T) {
	files := []string{"a.parquet", "b.parquet", "c.parquet"}
	for _, tc := range []struct {
		proven []string
		want   string
	}{
		{nil, "verified 3 files: intact\n"},
		{files, "checked 3 files: intact, the entries read proven against each batch's signed checkpoint\n"},
		{files[:1], "checked 3 files: intact, the entries read in 1 proven against their batches' signed checkpoints, 2 verified whole\n"},
	} {
		var b strings.Builder
		printIntegrity(&b, review.Integrity{Intact: true, Files: files, Proven: tc.proven})
		assert.Equal(t, tc.want, b.String())
	}
}
