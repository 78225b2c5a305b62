package verify

import (
	"crypto/sha256"
	"fmt"
	"runtime"

	"context"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/store"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchTrail is one trail of 200k entries in 20 files (two chains of 10
// files), written once per test binary.
var benchTrail struct {
	once sync.Once
	dir  string
}

const (
	benchEntries = 100_000 // per chain
	benchPerFile = 10_000
)

func benchDir(b *testing.B) string {
	benchTrail.once.Do(func() {
		dir, err := os.MkdirTemp("", "verify-bench-")
		if err != nil {
			b.Fatal(err)
		}
		writeTrail(b, dir, []string{"replica-0", "replica-1"}, benchEntries, benchPerFile)
		benchTrail.dir = dir
	})
	return benchTrail.dir
}

// BenchmarkVerify verifies 200k realistic entries (about 400 canonical bytes
// each) in 20 local files. -cpu 1 measures one core, in a run of its own:
// with -cpu 1,2 (Go 1.26, b.Loop) the first run has GOMAXPROCS 2 as well,
// and only its entries/cpu-s is one core's.
//
//	go test -run '^$' -bench 'BenchmarkVerify$' -benchmem -cpu 1 ./internal/verify/
func BenchmarkVerify(b *testing.B) {
	dir := benchDir(b)
	b.ReportAllocs()
	var n int64
	cpu0 := cpuTime()
	for b.Loop() {
		rep, err := Verify(context.Background(), store.Dir(dir), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.Intact {
			b.Fatalf("clean trail flagged:\n%s", joinLines(rep.Violations))
		}
		n += rep.Entries
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
	// The machines are shared: CPU time per entry is what one core costs,
	// whatever else runs.
	b.ReportMetric(float64(n)/cpu.Seconds(), "entries/cpu-s")
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSHA256Baseline hashes the canonical bytes of the same entries
// and nothing else: the floor BenchmarkVerify is measured against. Run both
// in one go test run and read the ratio: the machines are shared.
func BenchmarkSHA256Baseline(b *testing.B) {
	es := buildChain("replica-0", benchPerFile)
	canon := make([][]byte, len(es))
	size := 0
	for i := range es {
		canon[i] = chain.AppendCanonical(nil, &es[i])
		size += len(canon[i])
	}
	b.ReportAllocs()
	var n int64
	cpu0 := cpuTime()
	for b.Loop() {
		for _, c := range canon {
			_ = sha256.Sum256(c)
		}
		n += int64(len(canon))
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "entries/cpu-s")
	b.ReportMetric(float64(size)/float64(len(canon)), "canonical-bytes/entry")
}

// BenchmarkSHA256MerkleBaseline is BenchmarkSHA256Baseline plus the
// Merkle root of the sums (internal/merkle's Fold): all the hashing
// verification must do per entry with crypto/sha256, and nothing else.
func BenchmarkSHA256MerkleBaseline(b *testing.B) {
	es := buildChain("replica-0", benchPerFile)
	canon := make([][]byte, len(es))
	for i := range es {
		canon[i] = chain.AppendCanonical(nil, &es[i])
	}
	sums := make([][32]byte, len(canon))
	var fold merkle.Fold
	b.ReportAllocs()
	var n int64
	cpu0 := cpuTime()
	for b.Loop() {
		for i, c := range canon {
			sums[i] = sha256.Sum256(c)
		}
		if _, err := fold.Root(len(sums), func(i int, dst *[32]byte) error {
			*dst = sums[i]
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		n += int64(len(canon))
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "entries/cpu-s")
}

// BenchmarkHashRows recomputes the entry hashes and the Merkle root of one
// file of 10,000 entries already decoded: the part of BenchmarkVerify that
// reads no page.
func BenchmarkHashRows(b *testing.B) {
	data, err := encode(buildChain("replica-0", benchPerFile))
	if err != nil {
		b.Fatal(err)
	}
	r := newFileReader()
	res := r.read("dt=2026-03-09/replica-0-00000000000000000000.parquet", data)
	if len(res.violations) > 0 {
		b.Fatal(joinLines(res.violations))
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		r.recs = r.recs[:0]
		r.hashRows(res, benchPerFile)
		if _, ok := r.tree.root(r.recs); !ok {
			b.Fatal("no root")
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.N*benchPerFile)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.N*benchPerFile)/cpu.Seconds(), "entries/cpu-s")
}

// BenchmarkVerifyRemote verifies the benchmark trail through a source that
// adds 20 ms to every download, as a remote store does, with as many
// downloads in flight as workers (what Verify did before it fetched ahead)
// and with DefaultFetchers:
//
//	go test -run '^$' -bench BenchmarkVerifyRemote -benchtime 3x ./internal/verify/
func BenchmarkVerifyRemote(b *testing.B) {
	dir := benchDir(b)
	workers := runtime.GOMAXPROCS(0)
	for _, fetchers := range []int{workers, DefaultFetchers} {
		b.Run(fmt.Sprintf("fetchers=%d", fetchers), func(b *testing.B) {
			src := remoteSource{Dir: store.Dir(dir), delay: 20 * time.Millisecond}
			var n int64
			for b.Loop() {
				rep, err := Verify(context.Background(), src, Options{Workers: workers, Fetchers: fetchers})
				if err != nil {
					b.Fatal(err)
				}
				if !rep.Intact {
					b.Fatalf("clean trail flagged:\n%s", joinLines(rep.Violations))
				}
				n += rep.Entries
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
