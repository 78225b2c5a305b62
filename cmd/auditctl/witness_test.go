package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/witness"
	"github.com/agentaudit/agentaudit/internal/witness/witnesstest"
)

// witnessProcess is `auditctl witness serve` running on a free loopback
// port.
type witnessProcess struct {
	cmd    *exec.Cmd
	url    string
	vkey   string
	stderr *bytes.Buffer
	done   chan struct{}
}

// startWitness starts `auditctl witness serve ARGS --listen 127.0.0.1:0`
// and waits for the line naming its key and address; the process is
// interrupted by PID when the test ends, if not before.
func startWitness(t *testing.T, args ...string) *witnessProcess {
	t.Helper()
	p := &witnessProcess{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append(append([]string{"witness", "serve"}, args...), "--listen", "127.0.0.1:0")...)
	out, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		m := regexp.MustCompile(`^witness (\S+) serving 1 log on (http://127\.0\.0\.1:\d+)/\n$`).FindStringSubmatch(l)
		require.NotNil(t, m, "witness serve printed %q; stderr: %s", l, p.stderr.String())
		p.vkey, p.url = m[1], m[2]
	case <-time.After(30 * time.Second):
		t.Fatalf("witness serve did not start: %s", p.stderr.String())
	}
	return p
}

// stop interrupts the process and checks that it exits 0.
func (p *witnessProcess) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("witness serve ignored the interrupt")
	}
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "stderr: %s", p.stderr.String())
}

func TestWitnessServe(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "witness.key")
	stdout, errOut, code := auditctl(t, nil, "witness", "keygen", "--out", keyFile, "witness.test/auditor")
	require.Equal(t, 0, code, errOut)
	vkey := strings.TrimSpace(stdout)
	v, err := witness.NewVerifier(vkey)
	require.NoError(t, err)
	info, err := os.Stat(keyFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	// Never over an existing key.
	_, _, code = auditctl(t, nil, "witness", "keygen", "--out", keyFile, "witness.test/auditor")
	assert.Equal(t, 2, code)

	l := witnesstest.New(t, "agentaudit/replica-a").Grow(20)
	logKeys := filepath.Join(dir, "log.vkeys")
	require.NoError(t, os.WriteFile(logKeys, []byte("# replica-a's checkpoint key\n"+l.VKey+"\n"), 0o644))
	state := filepath.Join(dir, "state")
	args := []string{"--state", state, "--key", keyFile, "--log", l.Origin + "=" + logKeys}

	p := startWitness(t, args...)
	assert.Equal(t, vkey, p.vkey, "serve prints the verifier key keygen printed")
	// A second witness on the same state is refused.
	_, errOut, code = auditctl(t, nil, append([]string{"witness", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "in use")

	ctx := context.Background()
	var cl witness.Client
	cosigs, err := cl.Add(ctx, p.url, 0, nil, l.Checkpoint(20))
	require.NoError(t, err)
	_, err = witness.RequireCosignatures(l.Checkpoint(20), cosigs, 1, v)
	require.NoError(t, err)
	l.Grow(10)
	cosigs, err = cl.Add(ctx, p.url, 20, l.Proof(20, 30), l.Checkpoint(30))
	require.NoError(t, err)
	_, err = witness.RequireCosignatures(l.Checkpoint(30), cosigs, 1, v)
	require.NoError(t, err)

	// Stopped and started again, it remembers size 30 and its root: the
	// rewritten log is refused, the real one goes on.
	p.stop(t)
	p = startWitness(t, args...)
	_, err = cl.Add(ctx, p.url, 0, nil, l.Checkpoint(30))
	var conflict *witness.ConflictError
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, uint64(30), conflict.Size)
	forged := witnesstest.NewWithKey(t, l.Origin, l.Signer, l.VKey).Grow(35)
	_, err = cl.Add(ctx, p.url, 30, forged.Proof(30, 35), forged.Checkpoint(35))
	require.ErrorIs(t, err, witness.ErrBadProof)
	l.Grow(5)
	_, err = cl.Add(ctx, p.url, 30, l.Proof(30, 35), l.Checkpoint(35))
	require.NoError(t, err)
}

func TestWitnessUsage(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k")
	stdout, errOut, code := auditctl(t, nil, "witness", "keygen", "witness.test/w")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 2)
	assert.True(t, strings.HasPrefix(lines[0], "PRIVATE+KEY+witness.test/w+"))
	require.NoError(t, os.WriteFile(keyFile, []byte(lines[0]+"\n"), 0o600))
	got, err := witness.VerifierKey(lines[0])
	require.NoError(t, err)
	assert.Equal(t, lines[1], got)

	vkeys := filepath.Join(dir, "v")
	require.NoError(t, os.WriteFile(vkeys, []byte(lines[1]+"\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"witness"}, "usage"},
		{[]string{"witness", "frobnicate"}, "usage"},
		{[]string{"witness", "serve"}, "--state is required"},
		{[]string{"witness", "serve", "--state", dir, "--key", keyFile}, "--log"},
		{[]string{"witness", "serve", "--state", dir, "--key", filepath.Join(dir, "none"), "--log", "a=" + vkeys}, "--key"},
		{[]string{"witness", "serve", "--state", dir, "--key", vkeys, "--log", "a=" + vkeys}, "--key"},
		{[]string{"witness", "serve", "--state", dir, "--key", keyFile, "--log", "a"}, "ORIGIN=VKEY_FILE"},
		{[]string{"witness", "serve", "--state", dir, "--key", keyFile, "--log", "a=" + keyFile}, "verifier key"},
		{[]string{"witness", "serve", "--state", dir, "--key", keyFile, "--log", "a=" + vkeys, "--log", "a=" + vkeys}, "twice"},
		{[]string{"witness", "serve", "--state", dir, "--key", keyFile, "--log", "a=" + vkeys, "--listen", "127.0.0.1:notaport"}, "listen"},
		{[]string{"witness", "keygen"}, "NAME"},
		{[]string{"witness", "keygen", "has space"}, "name"},
	} {
		_, errOut, code := auditctl(t, nil, tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
	}
	stdout, _, code = auditctl(t, nil, "witness", "help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "auditctl witness serve")
	stdout, _, code = auditctl(t, nil, "help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "auditctl witness serve")
}
