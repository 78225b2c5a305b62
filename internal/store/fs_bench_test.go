package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPutTiles stores what the collector stores for a batch of
// 10,000 entries of a chain's tree (tlogtree: 39 full tiles of 8 KiB and
// 3 partial ones) on the local disk, side by side: a Put each, 8 at a time
// (how the sealer wrote them before PutAll), and one PutAll. It reports
// the process's CPU per object (the kernel's part of creating and syncing
// a file included) besides the wall time.
//
//	go test ./internal/store -run '^$' -bench PutTiles -benchtime 20x -count 3
func BenchmarkPutTiles(b *testing.B) {
	objs := make([]Object, 0, 42)
	for n := range 39 {
		objs = append(objs, Object{Key: fmt.Sprintf("tiles/c1/tile/0/x%03d/%03d", n/1000, n%1000), Data: make([]byte, 8192)})
	}
	objs = append(objs,
		Object{Key: "tiles/c1/tile/0/039.p/16", Data: make([]byte, 16*32)},
		Object{Key: "tiles/c1/tile/1/000.p/39", Data: make([]byte, 39*32)},
		Object{Key: "tiles/c1/tile/2/000.p/1", Data: make([]byte, 32)})
	for _, way := range []string{"put-8", "putall"} {
		b.Run(way, func(b *testing.B) {
			st, err := NewFS(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			cpu0 := processCPU()
			round := 0
			for b.Loop() {
				// Each round a fresh tree, so that every object is new.
				batch := make([]Object, len(objs))
				for i, o := range objs {
					batch[i] = Object{Key: fmt.Sprintf("r%d/%s", round, o.Key), Data: o.Data}
				}
				round++
				if way == "putall" {
					if err := st.PutAll(ctx, batch); err != nil {
						b.Fatal(err)
					}
					continue
				}
				var wg sync.WaitGroup
				sem := make(chan struct{}, 8)
				for _, o := range batch {
					sem <- struct{}{}
					wg.Go(func() {
						defer func() { <-sem }()
						if err := st.Put(ctx, o.Key, o.Data); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*len(objs)), "cpu-ns/object")
			b.ReportMetric(float64(b.Elapsed())/float64(b.N*len(objs)), "wall-ns/object")
		})
	}
}

// BenchmarkCreateFile creates empty files in one directory under TMPDIR
// (open with O_CREAT|O_EXCL, close; nothing written or synced): what a new
// file costs before any byte is in it. On this VM's ext4 that is about 21
// µs of CPU in a directory whose part of the disk is little used, and ten
// to thirty times as much where the disk around it was just written: the
// benchmarks' own writes take a directory from the one to the other
// (docs/PERFORMANCE.md, "The disk").
// Run it in the TMPDIR of the other benchmarks to know which disk they
// measured.
//
//	TMPDIR=/path go test ./internal/store -run '^$' -bench CreateFile -benchtime 2000x -count 3
func BenchmarkCreateFile(b *testing.B) {
	dir := b.TempDir()
	cpu0 := processCPU()
	i := 0
	for b.Loop() {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, objectMode)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		i++
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/file")
}

// processCPU returns the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}
