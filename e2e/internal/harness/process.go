package harness

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Process is a collector process started by StartProcess.
type Process struct {
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan struct{}
	exitErr error
}

// StartProcess runs bin --config cfgPath (bin alone, on the embedded
// default, when cfgPath is "") in dir with env added, and kills it when the
// test ends (printing its logs if the test failed).
func StartProcess(tb testing.TB, bin, cfgPath, dir string, env []string) *Process {
	tb.Helper()
	p := &Process{logs: &syncBuffer{}, exited: make(chan struct{})}
	if cfgPath == "" {
		p.cmd = exec.Command(bin)
	} else {
		p.cmd = exec.Command(bin, "--config", cfgPath)
	}
	p.cmd.Dir = dir // relative paths land there, never in the checkout
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(tb, p.cmd.Start())
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if tb.Failed() {
			tb.Logf("collector logs:\n%s", p.logs.String())
		}
	})
	return p
}

// WaitListening waits until the process accepts connections on every addr.
func (p *Process) WaitListening(tb testing.TB, addrs ...string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, addr := range addrs {
		for {
			select {
			case <-p.exited:
				tb.Fatalf("collector exited at start: %v\n%s", p.exitErr, p.logs.String())
			default:
			}
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("collector did not open %s within 60s\n%s", addr, p.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Logs returns what the process wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// Cmd returns the running command.
func (p *Process) Cmd() *exec.Cmd { return p.cmd }

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Kill())
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		tb.Fatalf("collector did not die within 30s of SIGKILL")
	}
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Terminate sends SIGTERM and waits for a clean exit: the collector seals
// and writes everything it received before it exits.
func (p *Process) Terminate(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		tb.Fatalf("collector did not exit within 60s of SIGTERM\n%s", p.logs.String())
	}
	require.NoError(tb, p.exitErr, "collector exit status\n%s", p.logs.String())
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreeAddr returns a loopback address with a port free at the time of the
// call, for a process started after it to listen on. The port is below
// the kernel's ephemeral range (ip_local_port_range): a port the kernel
// picks for a listener is one it may also give, before the process binds
// it, to any test's outgoing connection as its source port (CI failed
// once so: "bind: address already in use"). Ports below the range are
// given to no connection; this process never hands out one twice, and
// checks that nothing listens on it. Without such a port it falls back to
// one the kernel picks.
func FreeAddr(t *testing.T) string {
	t.Helper()
	lo := ephemeralLow()
	ports.Lock()
	defer ports.Unlock()
	for range 200 {
		p := lo - 1 - ports.rnd.IntN(min(lo-1024, 12000))
		if ports.given[p] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		ports.given[p] = true
		return addr
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// ports are the ports FreeAddr handed out, each once.
var ports = struct {
	sync.Mutex
	given map[int]bool
	rnd   *rand.Rand
}{given: make(map[int]bool), rnd: rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))}

// ephemeralLow is the lowest port of the kernel's ephemeral range, 32768
// when it cannot be read (Linux's default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 2048 {
		return 32768
	}
	return lo
}
