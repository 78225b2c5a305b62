package trailcache

import (
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/chain"
)

// Benchmark trail: benchFiles files of benchRows entries in 4 chains, 8
// entries per execution, execution ids hashed so that every file's min and
// max span most of the id space and only bloom filters can exclude it.
const (
	benchFiles = 200
	benchRows  = 1000
)

func benchID(n int) string {
	h := fnv.New64a()
	fmt.Fprint(h, n)
	return fmt.Sprintf("%016x", h.Sum64())
}

var benchTrail struct {
	once sync.Once
	dir  string
}

func benchDir(b *testing.B) string {
	benchTrail.once.Do(func() {
		dir, err := os.MkdirTemp("", "trailcache-bench-")
		if err != nil {
			b.Fatal(err)
		}
		objs := map[string][]byte{}
		chains := make([]*chain.Chain, 4)
		for i := range chains {
			chains[i] = chain.New(fmt.Sprintf("chain-%d", i), chain.Genesis())
		}
		for f := range benchFiles {
			c := chains[f%len(chains)]
			first := f * benchRows
			bt := appendBatch(b, c, benchRows, day.Add(time.Duration(f)*time.Minute), func(i int) string { return benchID((first + i) / 8) })
			objs[bt.key] = bt.data
		}
		writeDir(b, dir, objs)
		benchTrail.dir = dir
	})
	if benchTrail.dir == "" {
		b.Skip("no benchmark trail")
	}
	return benchTrail.dir
}

// BenchmarkSelect measures reading the footers of a directory trail and
// selecting the files of one execution.
func BenchmarkSelect(b *testing.B) {
	dir := benchDir(b)
	b.Run("files", func(b *testing.B) {
		for b.Loop() {
			trail, err := Open(ctx, dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := trail.Files(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchFiles, "ns/file")
	})
	b.Run("files-indexed", func(b *testing.B) {
		// A process after the first: the footers from the footer index.
		cache := b.TempDir()
		trail, err := Open(ctx, dir, Options{CacheDir: cache})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := trail.Files(ctx); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			trail, err := Open(ctx, dir, Options{CacheDir: cache})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := trail.Files(ctx); err != nil {
				b.Fatal(err)
			}
			if trail.parsed.Load() != 0 {
				b.Fatal("footers read again")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchFiles, "ns/file")
	})
	b.Run("index-decode", func(b *testing.B) {
		trail, err := Open(ctx, dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := trail.Files(ctx); err != nil {
			b.Fatal(err)
		}
		data := encodeIndex("bench", trail.files)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := decodeIndex("bench", data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchFiles, "ns/file")
	})
	b.Run("select-id", func(b *testing.B) {
		trail, err := Open(ctx, dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := trail.Files(ctx); err != nil {
			b.Fatal(err)
		}
		selected, n := 0, 0
		for b.Loop() {
			exec := (n * 7919) % (benchFiles * benchRows / 8)
			n++
			files, err := trail.Select(ctx, Filter{ExecutionIDs: []string{benchID(exec)}})
			if err != nil {
				b.Fatal(err)
			}
			if len(files) == 0 {
				b.Fatalf("execution %d: no file", exec)
			}
			selected += len(files)
		}
		b.ReportMetric(float64(selected)/float64(n), "files/op")
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchTrail.dir != "" {
		os.RemoveAll(benchTrail.dir)
	}
	os.Exit(code)
}
