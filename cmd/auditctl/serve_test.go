//go:build cgo

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/browsertest"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/trailtest"
)

// showcaseTrail writes reviewTrail's chain and a second chain with a run of
// every other status: run-3 failed, run-4 completed after an approval,
// run-5 abandoned (as of reviewArgs).
func showcaseTrail(t *testing.T, dir string) []string {
	t.Helper()
	keys := reviewTrail(t, dir)
	w, err := trailtest.New(dir, "replica-b", 4, day)
	require.NoError(t, err)
	s := func(v string) *string { return &v }
	n := 0
	// parent is the number of an earlier entry (1, 2, ...) whose span is
	// this one's parent, 0 for none.
	add := func(exec, action, system, resource string, parent int, at time.Duration, mod func(*entry.Entry)) {
		n++
		start := day.Add(at).UnixNano()
		end := start + int64(1500*time.Millisecond)
		if action == "start" {
			end = start + int64(4*time.Minute+30*time.Second)
		}
		e := entry.Entry{TimeUnixNano: start, EndTimeUnixNano: &end, ExecutionID: exec, TraceID: strings.Repeat("cd", 16),
			SpanID: fmt.Sprintf("%016x", n), ActionType: action,
			TargetSystem: system, TargetResource: resource, Result: "ok", StatusCode: "Unset", Attributes: "{}",
			AgentID: s("agent-7"), AgentName: s("Billing agent"), ServiceName: s("billing"), Principal: s("maria@example.com"),
			Sender: s("CN=billing-agent,O=Example Corp")}
		if parent > 0 {
			e.ParentSpanID = s(fmt.Sprintf("%016x", parent))
		}
		if mod != nil {
			mod(&e)
		}
		require.NoError(t, w.Add(e))
	}
	add("run-5", "start", "", "", 0, -30*time.Hour, nil)
	add("run-5", "read", "ERP", "invoice/88", 1, -30*time.Hour+time.Minute, nil)
	add("run-3", "start", "", "", 0, 5*time.Minute, nil)
	add("run-3", "read", "Stripe", "customer/cus_42", 3, 6*time.Minute, nil)
	add("run-3", "error", "Stripe", "refund/re_9", 3, 7*time.Minute, func(e *entry.Entry) {
		e.Result, e.StatusCode = "error: card_declined", "Error"
		e.Reasoning = s("Customer asked for a refund of order #1042")
	})
	add("run-4", "start", "", "", 0, 10*time.Minute, nil)
	add("run-4", "request_approval", "HubSpot CRM", "Contact #48291 (email field)", 6, 11*time.Minute, func(e *entry.Entry) {
		e.ProposedValue, e.PreviousValue = s("jane@newdomain.com"), s("jane@olddomain.com")
		e.Reasoning = s("Email bounced; found updated address via Clearbit")
	})
	add("run-4", "approve", "HubSpot CRM", "Contact #48291 (email field)", 6, 12*time.Minute, func(e *entry.Entry) {
		e.Approver = s("ops@company.com")
	})
	add("run-4", "write", "HubSpot CRM", "Contact #48291 (email field)", 6, 13*time.Minute, func(e *entry.Entry) {
		e.ProposedValue, e.PreviousValue = s("jane@newdomain.com"), s("jane@olddomain.com")
		e.Reasoning, e.Approver, e.Result = s("Email bounced; found updated address via Clearbit"), s("ops@company.com"), "200 OK (field updated)"
	})
	add("run-4", "end", "", "", 6, 14*time.Minute, nil)
	require.NoError(t, w.Flush())
	return append(keys, w.Files...)
}

// serve starts `auditctl serve` on a free loopback port and returns its
// base URL; the process is stopped by PID when the test ends.
func serve(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"serve", "--listen", "127.0.0.1:0"}, reviewArgs...), args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	// A file, which the process writes itself: no goroutine of exec's
	// copies into memory the test reads.
	stderr := filepath.Join(t.TempDir(), "stderr")
	errFile, err := os.Create(stderr)
	require.NoError(t, err)
	defer errFile.Close() // the process has its own descriptor
	cmd.Stderr = errFile
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		m := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("serve printed %q; stderr: %s", l, readFile(stderr))
		}
		return m[1]
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start: %s", readFile(stderr))
	}
	return ""
}

// readFile returns a file's contents, or what kept it from being read.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestServeInBrowser: the web view of a real trail, one file of it
// tampered, in headless Chromium.
func TestServeInBrowser(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "audit-data")
	keys := showcaseTrail(t, dir)
	t.Chdir(parent) // the page names the trail as given: audit-data
	base := serve(t, nil, "audit-data")

	// Read-only: nothing but GET and HEAD.
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	b := browsertest.Start(t)
	require.NoError(t, b.Open(base+"/"))
	ids, err := b.Texts("tr.run td.id")
	require.NoError(t, err)
	assert.Equal(t, []string{"run-4", "run-3", "run-2", "run-1", "run-5"}, ids, "newest start first")
	badges, err := b.Texts("tr.run td:last-child")
	require.NoError(t, err)
	for _, bd := range badges {
		assert.Contains(t, bd, "intact")
	}
	screenshotTo(t, b, "serve-runs.png")

	// Filter by status with the form.
	require.NoError(t, b.Click(`input[name=status][value=failed]`))
	require.NoError(t, b.Click(`button[type=submit]`))
	require.NoError(t, b.WaitText("p.shown", "1 run matches", 10*time.Second))
	ids, err = b.Texts("tr.run td.id")
	require.NoError(t, err)
	assert.Equal(t, []string{"run-3"}, ids)

	// Search.
	require.NoError(t, b.Open(base+"/"))
	require.NoError(t, b.Type(`input[name=q]`, "newdomain"))
	require.NoError(t, b.Click(`button[type=submit]`))
	require.NoError(t, b.WaitText("p.shown", "1 run matches", 10*time.Second))
	ids, err = b.Texts("tr.run td.id")
	require.NoError(t, err)
	assert.Equal(t, []string{"run-4"}, ids)

	// The run page: every step, in order, nested.
	require.NoError(t, b.Click(`tr.run td.id a`))
	require.NoError(t, b.WaitFor("li.step", 10*time.Second))
	n, err := b.Count("li.step")
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	steps, err := b.Texts("li.step")
	require.NoError(t, err)
	for i, action := range []string{"start", "request_approval", "approve", "write", "end"} {
		assert.Contains(t, steps[i], action)
	}
	page, err := b.Texts("main")
	require.NoError(t, err)
	assert.Contains(t, page[0], "intact")
	assert.Contains(t, page[0], "agentaudit-replica-b")
	screenshotTo(t, b, "serve-run.png")
	errs, err := b.ConsoleErrors()
	require.NoError(t, err)
	assert.Empty(t, errs)

	// Tamper with run-1's write: its badge, and its step, say so.
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

	require.NoError(t, b.Open(base+"/"))
	rows, err := b.Texts("tr.run")
	require.NoError(t, err)
	require.Len(t, rows, 5)
	for _, r := range rows {
		if strings.HasPrefix(r, "run-1") || strings.HasPrefix(r, "run-2") {
			assert.Contains(t, r, "1 violation", r)
		} else {
			assert.Contains(t, r, "intact", r)
		}
	}
	require.NoError(t, b.Open(base+"/runs/run-1"))
	tampered, err := b.Texts("li.step.tampered")
	require.NoError(t, err)
	require.Len(t, tampered, 1)
	assert.Contains(t, tampered[0], "attacker@evil.example")
	assert.Contains(t, tampered[0], "hash_mismatch")
	errs, err = b.ConsoleErrors()
	require.NoError(t, err)
	assert.Empty(t, errs)
}

// TestServeBinding: loopback by default; another address needs
// --allow-remote and a token, which every request then needs.
func TestServeBinding(t *testing.T) {
	dir := t.TempDir()
	reviewTrail(t, dir)
	_, errOut, code := auditctl(t, nil, "serve", "--listen", "0.0.0.0:0", dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "not a loopback address")
	_, errOut, code = auditctl(t, nil, "serve", "--listen", "0.0.0.0:0", "--allow-remote", dir)
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "needs a token")

	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret-token-0123456789\n"), 0o600))
	base := serve(t, nil, "--token-file", tokenFile, dir)
	resp, err := http.Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req, _ := http.NewRequest(http.MethodGet, base+"/runs/run-1", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token-0123456789")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "jane@new.example")
}

// screenshotTo writes a full-page screenshot into $AGENTAUDIT_SCREENSHOTS,
// when set (the README's images: docs/img).
func screenshotTo(t *testing.T, b *browsertest.Browser, name string) {
	t.Helper()
	dir := os.Getenv("AGENTAUDIT_SCREENSHOTS")
	if dir == "" {
		return
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, b.FullPageScreenshot(filepath.Join(dir, name)))
}
