package verify

import (
	"context"
	"encoding/hex"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/checkpoint"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/store"
	"github.com/agentaudit/agentaudit/internal/tlogtree"
)

// The trail of BenchmarkWatchIncrement: one chain of watchWhole entries in
// files of benchPerFile, with its tiles and a checkpoint of format 2 after
// each file, as the collector writes it; an auditor's watch remembered it
// at watchWhole - watchIncrement entries. AGENTAUDIT_BENCH_WHOLE and
// AGENTAUDIT_BENCH_INCREMENT change the sizes (multiples of 10,000).
var watchBench struct {
	once  sync.Once
	dir   string
	start Start
	built time.Duration
}

func benchSize(env string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n > 0 {
		return n
	}
	return def
}

func watchBenchTrail(b *testing.B) (string, Start) {
	watchBench.once.Do(func() {
		t0 := time.Now()
		whole := benchSize("AGENTAUDIT_BENCH_WHOLE", 2_000_000)
		from := whole - benchSize("AGENTAUDIT_BENCH_INCREMENT", 1_000_000)
		dir, err := os.MkdirTemp("", "verify-watch-bench-")
		if err != nil {
			b.Fatal(err)
		}
		watchBench.dir = dir
		watchBench.start = writeBenchTreeTrail(b, dir, "replica-0", whole, from)
		watchBench.built = time.Since(t0)
	})
	if watchBench.dir == "" {
		b.Fatal("the benchmark trail was not written")
	}
	return watchBench.dir, watchBench.start
}

// writeBenchTreeTrail writes the chain a file at a time (the entries are
// not kept: 2M would not fit in memory comfortably) and returns the start
// at size from.
func writeBenchTreeTrail(b *testing.B, dir, id string, whole, from int) Start {
	skey, vkey, err := checkpoint.GenerateKey(id)
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, dir, store.VerifierKeyKey(id, vkey), []byte(vkey+"\n"))
	w, err := tlogtree.NewWriter(id)
	if err != nil {
		b.Fatal(err)
	}
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	c := chain.New(id, chain.Genesis())
	var start Start
	for first := 0; first < whole; first += benchPerFile {
		es := make([]entry.Entry, min(benchPerFile, whole-first))
		for i := range es {
			es[i] = testEntry(int64(first + i))
			c.Append(&es[i])
		}
		writeBatch(b, dir, es)
		hs := entryHashes(b, es)
		ts, root, err := w.Append(hs)
		if err != nil {
			b.Fatal(err)
		}
		for _, tl := range ts {
			writeFile(b, dir, tl.Key, tl.Data)
		}
		if first < from {
			for _, h := range hs {
				if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(h[:]), nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		msg := signTree(b, skey, es, root)
		writeFile(b, dir, store.CheckpointKey(id, w.Size()), msg)
		if w.Size() == int64(from) {
			start.Checkpoint, _, err = checkpoint.Open(msg, vkey)
			if err != nil {
				b.Fatal(err)
			}
			start.Range = rng.Hashes()
		}
	}
	if start.Checkpoint.Size == 0 {
		b.Fatalf("no checkpoint at %d", from)
	}
	if got, _ := rng.GetRootHash(nil); hex.EncodeToString(got) != start.Checkpoint.Root {
		b.Fatal("the start's range does not give its root")
	}
	return start
}

// BenchmarkWatchIncrement: what a round of auditctl watch verifies (the
// files added since the remembered checkpoint, Options.From) against a
// verification of the whole trail, by default 1M entries of a 2M-entry
// chain:
//
//	go test -run '^$' -bench BenchmarkWatchIncrement -benchtime 1x ./internal/verify/
func BenchmarkWatchIncrement(b *testing.B) {
	dir, start := watchBenchTrail(b)
	b.Logf("trail written in %v", watchBench.built)
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"whole", Options{}},
		{"increment", Options{From: map[string]Start{start.Checkpoint.ChainID: start}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int64
			var files int
			cpu0 := cpuTime()
			for b.Loop() {
				rep, err := Verify(context.Background(), store.Dir(dir), c.opts)
				if err != nil {
					b.Fatal(err)
				}
				if !rep.Intact {
					b.Fatalf("clean trail flagged:\n%s", joinLines(rep.Violations))
				}
				n, files = n+rep.Entries, rep.Files
			}
			b.ReportMetric(float64(n)/float64(b.N), "entries/op")
			b.ReportMetric(float64(files), "files/op")
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
			// The machines are shared: CPU time is what the round costs.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(n)/cpu.Seconds(), "entries/cpu-s")
		})
	}
}
