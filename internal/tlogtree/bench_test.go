package tlogtree

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentaudit/agentaudit/internal/merkle"
)

// The 10M-entry chain of the benchmarks: its tiles, in memory, as a
// Writer returns them for Appends that end at each multiple of 10,000
// entries (a batch) and at the odd sizes the benchmarks prove from. It is built once per
// process (about 330 MB of tiles).
const (
	bigSize  = 10_000_000
	bigBatch = 10_000
)

var bigOddSizes = []int64{1, 1_234_567, 9_000_001, bigSize - 1}

var big struct {
	once  sync.Once
	s     *tiles
	roots map[int64]tlog.Hash
	built time.Duration
}

func bigEntryHash(i int64) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func bigTree(b *testing.B) {
	big.once.Do(func() {
		start := time.Now()
		s := newTiles(b)
		w := newWriter(b)
		big.roots = map[int64]tlog.Hash{0: w.Root()}
		odd := 0
		hs := make([][32]byte, 0, bigBatch)
		for w.Size() < bigSize {
			stop := min((w.Size()/bigBatch+1)*bigBatch, bigSize)
			if odd < len(bigOddSizes) && bigOddSizes[odd] < stop {
				stop = bigOddSizes[odd]
				odd++
			}
			hs = hs[:0]
			for i := w.Size(); i < stop; i++ {
				hs = append(hs, bigEntryHash(i))
			}
			ts, root, err := w.Append(hs)
			if err != nil {
				b.Fatal(err)
			}
			s.put(ts)
			big.roots[stop] = root
		}
		big.s = s
		big.built = time.Since(start)
	})
	if big.s == nil {
		b.Fatal("the 10M tree was not built")
	}
}

// BenchmarkBuild10M reports what storing the 10M-entry tree takes: the
// build's time (entry hashes included) and the tiles stored. It also
// checks the root at 10M against internal/merkle's Fold over the same
// entry hashes.
func BenchmarkBuild10M(b *testing.B) {
	bigTree(b)
	var bytes int
	for _, d := range big.s.m {
		bytes += len(d)
	}
	for b.Loop() {
	}
	var f merkle.Fold
	root, err := f.Root(bigSize, func(i int, dst *[32]byte) error {
		*dst = bigEntryHash(int64(i))
		return nil
	})
	if err != nil || tlog.Hash(root) != big.roots[bigSize] {
		b.Fatalf("root at 10M: the tiles give %v, internal/merkle %v (%v)", big.roots[bigSize], tlog.Hash(root), err)
	}
	b.ReportMetric(float64(len(big.s.m)), "tiles")
	b.ReportMetric(float64(bytes), "tile-bytes")
	b.ReportMetric(big.built.Seconds(), "build-s")
}

// bigPairs are the consistency proofs measured: one batch, 1M entries, and
// from early sizes to the whole 10M tree; and two to sizes one short.
var bigPairs = [][2]int64{
	{bigSize - bigBatch, bigSize},
	{9_000_000, bigSize},
	{9_000_001, bigSize},
	{1_234_567, bigSize},
	{1, bigSize},
	{1_234_567, bigSize - 1},
	{9_000_001, bigSize - 1},
}

// BenchmarkConsistencyProof10M: a proof from the tiles, each checked
// against the new root, and what it reads: tiles/op and tile-bytes/op,
// against the whole trail (about 200 bytes an entry: 2 GB).
func BenchmarkConsistencyProof10M(b *testing.B) {
	bigTree(b)
	r := newReader(b, big.s)
	for _, pr := range bigPairs {
		b.Run(fmt.Sprintf("%d-%d", pr[0], pr[1]), func(b *testing.B) {
			root := big.roots[pr[1]]
			big.s.reads, big.s.bytes = 0, 0
			var n int
			for b.Loop() {
				p, err := r.ConsistencyProof(pr[0], pr[1], root)
				if err != nil {
					b.Fatal(err)
				}
				n = len(p)
			}
			b.ReportMetric(float64(big.s.reads)/float64(b.N), "tiles/op")
			b.ReportMetric(float64(big.s.bytes)/float64(b.N), "tile-bytes/op")
			b.ReportMetric(float64(n), "hashes")
		})
	}
}

// BenchmarkCheckConsistency10M: checking needs only the two sizes and
// roots and the proof.
func BenchmarkCheckConsistency10M(b *testing.B) {
	bigTree(b)
	r := newReader(b, big.s)
	for _, pr := range bigPairs {
		b.Run(fmt.Sprintf("%d-%d", pr[0], pr[1]), func(b *testing.B) {
			oldRoot, newRoot := big.roots[pr[0]], big.roots[pr[1]]
			p, err := r.ConsistencyProof(pr[0], pr[1], newRoot)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := CheckConsistency(pr[0], oldRoot, pr[1], newRoot, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInclusionProof10M: an entry's audit path in the 10M tree, and
// what it reads.
func BenchmarkInclusionProof10M(b *testing.B) {
	bigTree(b)
	r := newReader(b, big.s)
	root := big.roots[bigSize]
	for _, i := range []int64{0, 5_000_000, bigSize - 1} {
		b.Run(fmt.Sprint(i), func(b *testing.B) {
			big.s.reads, big.s.bytes = 0, 0
			for b.Loop() {
				p, err := r.InclusionProof(i, bigSize, root)
				if err != nil {
					b.Fatal(err)
				}
				if err := CheckInclusion(bigEntryHash(i), i, bigSize, root, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(big.s.reads)/float64(b.N), "tiles/op")
			b.ReportMetric(float64(big.s.bytes)/float64(b.N), "tile-bytes/op")
		})
	}
}

// BenchmarkResume10M: a Writer resumed at 10M from its stored tiles.
func BenchmarkResume10M(b *testing.B) {
	bigTree(b)
	root := big.roots[bigSize]
	big.s.reads, big.s.bytes = 0, 0
	for b.Loop() {
		if _, err := ResumeWriter("c", bigSize, root, big.s.read); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(big.s.reads)/float64(b.N), "tiles/op")
}

// BenchmarkAppend: the collector's cost, a batch of 10,000 entries a
// time, per entry: from the entry hashes, and from the leaf hashes the
// batch computed for its own Merkle root (what the sealer does).
func BenchmarkAppend(b *testing.B) {
	hs := make([][32]byte, bigBatch)
	leaves := make([]byte, 0, bigBatch*tlog.HashSize)
	for i := range hs {
		hs[i] = bigEntryHash(int64(i))
		l := LeafHash(hs[i])
		leaves = append(leaves, l[:]...)
	}
	for _, from := range []string{"entry-hashes", "leaves"} {
		b.Run(from, func(b *testing.B) {
			w := newWriter(b)
			for b.Loop() {
				var err error
				if from == "leaves" {
					_, _, err = w.AppendLeaves(leaves)
				} else {
					_, _, err = w.Append(hs)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bigBatch), "ns/entry")
		})
	}
}
