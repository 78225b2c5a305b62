// Package jsclient_test runs the tests of the JavaScript helper
// (@agentaudit/approvals, this directory) with Node.js, so that
// `go test ./...` covers them: without Node.js 20+ they skip, except under
// CI=true, where they fail (as e2e's framework agents do).
package jsclient_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// minNodeMajor is the oldest Node.js the helper supports (global fetch,
// node --test).
const minNodeMajor = 20

var nodeVersionRE = regexp.MustCompile(`^v(\d+)\.`)

func TestNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		nodeUnavailable(t, err.Error())
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		nodeUnavailable(t, "node --version: "+err.Error())
	}
	m := nodeVersionRE.FindSubmatch(out)
	if m == nil {
		nodeUnavailable(t, "node --version printed "+strconv.Quote(string(out)))
	}
	if major, _ := strconv.Atoi(string(m[1])); major < minNodeMajor {
		nodeUnavailable(t, "node is "+string(bytes.TrimSpace(out)))
	}

	files, err := filepath.Glob(filepath.Join("test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test/*.test.mjs (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"--test", "--test-reporter=spec"}, files...)...)
	// The helper reads these when a call names no service: the tests'
	// calls must not depend on the caller's environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTAUDIT_") && !strings.HasPrefix(kv, "NODE_OPTIONS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "NO_COLOR=1")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test %v: %v\n%s", files, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if summaryRE.MatchString(line) {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// summaryRE matches the counts at the end of node --test's report.
var summaryRE = regexp.MustCompile(`^\S+ (tests|pass|fail|cancelled|skipped) \d+$`)

// nodeUnavailable skips the test, or fails it under CI=true: CI must never
// pass by skipping.
func nodeUnavailable(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the JavaScript helper's tests need Node.js %d+ (under CI=true this fails rather than skips): %s", minNodeMajor, why)
	}
	t.Skipf("the JavaScript helper's tests need Node.js %d+: %s", minNodeMajor, why)
}
