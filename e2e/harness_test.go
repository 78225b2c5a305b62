package e2e

import (
	"os/exec"
	"testing"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
)

// The names pipeline_bench_test.go and throughput_bench_test.go still use
// for what moved to package harness, until they use it directly.

// collectorBin is harness.CollectorBin(), set by TestMain.
var collectorBin string

var splitConfigs = harness.SplitConfigs

// process is a harness.Process under the benchmarks' names.
type process struct {
	*harness.Process
	cmd *exec.Cmd
}

func startProcess(tb testing.TB, bin, cfgPath, dir string, env []string) *process {
	p := harness.StartProcess(tb, bin, cfgPath, dir, env)
	return &process{Process: p, cmd: p.Cmd()}
}

func (p *process) waitListening(tb testing.TB, addrs ...string) {
	tb.Helper()
	p.WaitListening(tb, addrs...)
}

func (p *process) terminate(tb testing.TB) {
	tb.Helper()
	p.Terminate(tb)
}
