package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/s3test"
	"github.com/agentaudit/agentaudit/internal/store"
)

// bin is auditctl, built once for the tests that run it as a process.
var bin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "auditctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "auditctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building auditctl:", err)
		return 1
	}
	// The review verbs keep a cache (a directory trail's footer index,
	// S3 downloads) in the user cache directory: the tests' go to dir.
	if err := os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

var day = time.Date(2026, 3, 9, 9, 30, 0, 0, time.UTC)

// writeTrail writes chains a and b, 30 entries each, 10 to a file, and
// returns the file keys.
func writeTrail(t *testing.T, dir string) []string {
	t.Helper()
	var keys []string
	for _, id := range []string{"replica-a", "replica-b"} {
		c := chain.New(id, chain.Genesis())
		es := make([]entry.Entry, 30)
		for i := range es {
			es[i] = entry.Entry{
				TimeUnixNano: day.UnixNano() + int64(i)*1e6, ExecutionID: "exec-1",
				TraceID: strings.Repeat("ab", 16), SpanID: fmt.Sprintf("%016x", i+1),
				ActionType: "write", TargetSystem: "crm", TargetResource: fmt.Sprintf("contact/%d", i),
				Result: "ok", StatusCode: "Unset", Attributes: "{}",
			}
			c.Append(&es[i])
		}
		for start := 0; start < len(es); start += 10 {
			var buf bytes.Buffer
			_, err := parquetfile.Encode(&buf, es[start:start+10])
			require.NoError(t, err)
			key := store.BatchKey(id, int64(start), day)
			p := filepath.Join(dir, filepath.FromSlash(key))
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
			keys = append(keys, key)
		}
	}
	return keys
}

// auditctl runs the binary and returns its stdout, stderr and exit status.
func auditctl(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

type jsonReport struct {
	Chains []struct {
		ChainID  string `json:"chain_id"`
		Entries  int64  `json:"entries"`
		Files    int    `json:"files"`
		FirstSeq int64  `json:"first_seq"`
		LastSeq  int64  `json:"last_seq"`
		Intact   bool   `json:"intact"`
	} `json:"chains"`
	Violations []struct {
		File    string `json:"file"`
		ChainID string `json:"chain_id"`
		Seq     int64  `json:"seq"`
		Kind    string `json:"kind"`
		Detail  string `json:"detail"`
	} `json:"violations"`
	Intact bool `json:"intact"`
}

func TestVerifyExitCodes(t *testing.T) {
	dir := t.TempDir()
	keys := writeTrail(t, dir)

	out, errOut, code := auditctl(t, nil, "verify", dir)
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "chain replica-a: 30 entries in 3 files, seq 0 to 29, 2026-03-09T09:30:00Z to 2026-03-09T09:30:00.029Z")
	assert.Contains(t, out, "note: no checkpoint given: a truncated tail cannot be detected\n")
	assert.True(t, strings.HasSuffix(out, "INTACT: no violations\n"), out)
	assert.Empty(t, errOut, "no progress bar when stderr is not a terminal")

	out, _, code = auditctl(t, nil, "verify", "--json", dir)
	require.Equal(t, exitIntact, code)
	var rep jsonReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.True(t, rep.Intact)
	require.Len(t, rep.Chains, 2)
	assert.Equal(t, "replica-b", rep.Chains[1].ChainID)
	assert.Equal(t, int64(30), rep.Chains[1].Entries)
	assert.Equal(t, 3, rep.Chains[1].Files)
	assert.Empty(t, rep.Violations)

	// A middle file of replica-b deleted: exit 1, the JSON names it.
	require.NoError(t, os.Remove(filepath.Join(dir, filepath.FromSlash(keys[4]))))
	out, _, code = auditctl(t, nil, "verify", dir, "--json") // flags after TARGET too
	require.Equal(t, exitViolations, code, out)
	rep = jsonReport{}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.False(t, rep.Intact)
	require.Len(t, rep.Violations, 2)
	assert.Equal(t, "missing_file", rep.Violations[1].Kind)
	assert.Equal(t, "replica-b", rep.Violations[1].ChainID)
	assert.Equal(t, int64(20), rep.Violations[1].Seq)

	out, _, code = auditctl(t, nil, "verify", dir)
	require.Equal(t, exitViolations, code)
	assert.Contains(t, out, "dt=2026-03-09/replica-b-00000000000000000020.parquet: seq 20: missing_file: seq 10 to 19 missing between dt=2026-03-09/replica-b-00000000000000000000.parquet and dt=2026-03-09/replica-b-00000000000000000020.parquet\n")
	assert.True(t, strings.HasSuffix(out, "VIOLATIONS: 2 violations found\n"), out)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"verify"}, "want one TARGET"},
		{"missing directory", []string{"verify", filepath.Join(dir, "nope")}, "could not verify"},
		{"empty directory", []string{"verify", t.TempDir()}, "no .parquet files"},
		{"unknown flag", []string{"verify", "--bogus", dir}, "flag provided but not defined"},
		{"checkpoint file missing", []string{"verify", "--checkpoint", "cp.txt", dir}, "--checkpoint: open cp.txt"},
		{"key file missing", []string{"verify", "--key", "key.pub", dir}, "--key: open key.pub"},
		{"checkpoint without target", []string{"checkpoint"}, "want one TARGET"},
		{"checkpoint without checkpoints", []string{"checkpoint", dir}, "no checkpoints under"},
		{"prove without seq", []string{"prove", dir}, "want TARGET SEQ"},
		{"prove of several chains", []string{"prove", dir, "3"}, "choose one with --chain"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"endpoint for a directory", []string{"verify", "--endpoint", "http://x", dir}, "for s3:// targets"},
		{"no command", nil, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := auditctl(t, nil, tc.args...)
			assert.Equal(t, exitError, code, out)
			assert.Contains(t, errOut, tc.want)
		})
	}
}

// TestProgressBar: on a terminal, progress goes to stderr, never stdout.
func TestProgressBar(t *testing.T) {
	dir := t.TempDir()
	writeTrail(t, dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"verify", "--json", dir}, &stdout, &stderr, true)
	require.Equal(t, exitIntact, code)
	assert.Contains(t, stderr.String(), "6/6 files")
	assert.True(t, json.Valid(stdout.Bytes()))
}

// TestVerifyS3 verifies a trail uploaded to a real S3 server.
func TestVerifyS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket("trail", false)
	dir := t.TempDir()
	keys := writeTrail(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := srv.Client()
	put := func(key string, data []byte) {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("trail"), Key: aws.String(key), Body: bytes.NewReader(data)})
		require.NoError(t, err)
	}
	for _, k := range keys {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(k)))
		require.NoError(t, err)
		put("audit/"+k, data)
	}
	put("audit/README.txt", []byte("not part of the trail"))
	env := srv.Env()

	out, errOut, code := auditctl(t, env, "verify", "--json", "--endpoint", srv.Endpoint, "s3://trail/audit")
	require.Equal(t, exitIntact, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	var rep jsonReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Chains, 2)
	assert.Equal(t, int64(30), rep.Chains[0].Entries)

	// An object under a name agentaudit never writes, which a reader's
	// glob may still read, is verified like the others.
	first, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(keys[0])))
	require.NoError(t, err)
	put("audit/dt=2026-03-09/.hidden.parquet", first)
	out, _, code = auditctl(t, env, "verify", "--endpoint", srv.Endpoint, "s3://trail/audit")
	require.Equal(t, exitViolations, code, out)
	assert.Contains(t, out, "dt=2026-03-09/.hidden.parquet: ")
	_, err = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("trail"), Key: aws.String("audit/dt=2026-03-09/.hidden.parquet")})
	require.NoError(t, err)

	// A file of replica-a replaced by one of replica-b.
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(keys[4])))
	require.NoError(t, err)
	_, err = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("trail"), Key: aws.String("audit/" + keys[1])})
	require.NoError(t, err)
	put("audit/"+keys[1], data)
	out, _, code = auditctl(t, env, "verify", "--endpoint", srv.Endpoint, "s3://trail/audit/")
	require.Equal(t, exitViolations, code, out)
	assert.Contains(t, out, "dt=2026-03-09/replica-a-00000000000000000010.parquet: seq 10: foreign_file: file name says chain \"replica-a\", the rows are chain \"replica-b\"")

	// A wrong bucket cannot be verified.
	_, errOut, code = auditctl(t, env, "verify", "--endpoint", srv.Endpoint, "s3://no-such-bucket/audit")
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "could not verify")
}
