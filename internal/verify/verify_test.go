package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/merkle"
	"github.com/agentaudit/agentaudit/internal/parquetfile"
	"github.com/agentaudit/agentaudit/internal/store"
)

// Two chains (one per collector replica) of 50 entries, 10 to a file.
var chainIDs = []string{"replica-0", "replica-1"}

const (
	chainLen = 50
	perFile  = 10
)

func newTrail(t *testing.T) *trail {
	t.Helper()
	return writeTrail(t, t.TempDir(), chainIDs, chainLen, perFile)
}

func verifyDir(t *testing.T, dir string) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), store.Dir(dir), Options{Workers: 3})
	require.NoError(t, err)
	return rep
}

func TestCleanTrailIsIntact(t *testing.T) {
	tr := newTrail(t)
	rep := verifyDir(t, tr.dir)
	require.True(t, rep.Intact, "violations:\n%s", joinLines(rep.Violations))
	assert.Empty(t, rep.Violations)
	assert.Equal(t, 10, rep.Files)
	assert.Equal(t, int64(100), rep.Entries)
	assert.Equal(t, []string{
		"chain replica-0 has no stored checkpoint: its tail is not covered by a signature",
		"chain replica-1 has no stored checkpoint: its tail is not covered by a signature",
		NoCheckpointNote,
	}, rep.Notes)
	require.Len(t, rep.Chains, 2)
	for i, c := range rep.Chains {
		es := tr.chains[chainIDs[i]]
		assert.Equal(t, Chain{
			ChainID: chainIDs[i], Entries: chainLen, Files: 5, FirstSeq: 0, LastSeq: chainLen - 1,
			FirstTime: timeOf(es[0]), LastTime: timeOf(es[chainLen-1]),
			LastHash: es[chainLen-1].EntryHash, Intact: true,
		}, c)
	}
}

// TestVerifyKnownAnswer: the chain-c entries of docs/FORMAT.md, whose
// hashes an auditor can recompute with sha256sum, verify, and a change of
// one byte is reported with the hash FORMAT.md gives.
func TestVerifyKnownAnswer(t *testing.T) {
	es := []entry.Entry{
		{ChainID: "chain-c", Seq: 0, TimeUnixNano: 1773048600000000000, ExecutionID: "run-9",
			TraceID: "5b8efff798038103d269b633813fc60c", SpanID: "eee19b7ec3c1b174", AgentID: strp("agent-1"),
			ActionType: "start", TargetSystem: "agent", TargetResource: "run-9", Result: "ok", StatusCode: "Unset", Attributes: "{}"},
		{ChainID: "chain-c", Seq: 1, TimeUnixNano: 1773048600250000000, ExecutionID: "run-9",
			TraceID: "5b8efff798038103d269b633813fc60c", SpanID: "eee19b7ec3c1b175", ParentSpanID: strp("eee19b7ec3c1b174"),
			AgentID: strp("agent-1"), ActionType: "read", TargetSystem: "crm", TargetResource: "customer/42",
			Result: "ok", StatusCode: "Unset", Attributes: "{}"},
	}
	c := chain.New("chain-c", chain.Genesis())
	for i := range es {
		c.Append(&es[i])
	}
	require.Equal(t, "2447b0bebae8918a1a4655f9e7633fd022538e2f9779c5c009542c4d501411b3", es[0].EntryHash)
	require.Equal(t, "4dda43b2691f6ffef44078e70f57f202de7ad8d2f067bdc9208d7332e9b179ff", es[1].EntryHash)
	dir := t.TempDir()
	writeBatch(t, dir, es)
	rep := verifyDir(t, dir)
	require.True(t, rep.Intact, joinLines(rep.Violations))

	// Stored hash of seq 1 replaced by the hash of seq 0: the detail gives
	// the recomputed (FORMAT.md) hash as want.
	bad := slices.Clone(es)
	bad[1].EntryHash = es[0].EntryHash
	writeRaw(t, dir, store.BatchKey("chain-c", 0, day), bad, footerOf(bad))
	rep = verifyDir(t, dir)
	require.Len(t, rep.Violations, 1, joinLines(rep.Violations))
	assert.Equal(t, Violation{
		File: "dt=2026-03-09/chain-c-00000000000000000000.parquet", ChainID: "chain-c", Seq: 1, Kind: HashMismatch,
		Detail: "got entry_hash 2447b0bebae8918a1a4655f9e7633fd022538e2f9779c5c009542c4d501411b3, want 4dda43b2691f6ffef44078e70f57f202de7ad8d2f067bdc9208d7332e9b179ff",
	}, rep.Violations[0])
	assert.Equal(t, "dt=2026-03-09/chain-c-00000000000000000000.parquet: seq 1: hash_mismatch: got entry_hash 2447b0bebae8918a1a4655f9e7633fd022538e2f9779c5c009542c4d501411b3, want 4dda43b2691f6ffef44078e70f57f202de7ad8d2f067bdc9208d7332e9b179ff",
		rep.Violations[0].String())
}

// TestTamperMatrix makes each change to a fresh copy of a two-chain,
// five-files-per-chain trail and checks that exactly the expected
// violations come back ("chain/seq/kind").
func TestTamperMatrix(t *testing.T) {
	for _, tt := range tamperMatrix {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTrail(t)
			tt.tamper(t, tr)
			rep := verifyDir(t, tr.dir)
			assert.False(t, rep.Intact)
			got := violationKeys(rep.Violations)
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			assert.Equal(t, want, got, "violations:\n%s", joinLines(rep.Violations))
			for _, c := range rep.Chains {
				n := 0
				for _, v := range rep.Violations {
					if v.ChainID == c.ChainID {
						n++
					}
				}
				assert.Equal(t, n, c.Violations, c.ChainID)
				assert.Equal(t, n == 0, c.Intact, c.ChainID)
			}
		})
	}
}

const c0 = "replica-0"

// tamperMatrix is the table of TestTamperMatrix: each change to a fresh
// trail (newTrail) and the violations expected ("chain/seq/kind").
var tamperMatrix = []struct {
	name   string
	tamper func(t *testing.T, tr *trail)
	want   []string
}{
	{
		name: "value rewritten in place",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 2)
			es := slices.Clone(orig)
			es[3].TargetResource = "Contact #1 (email field)"
			writeRaw(t, tr.dir, tr.keys[c0][2], es, footerOf(orig))
		},
		want: []string{"replica-0/23/hash_mismatch"},
	},
	{
		name: "NULL replaced by empty string",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 2)
			es := slices.Clone(orig)
			require.Nil(t, es[4].Approver)
			es[4].Approver = strp("")
			writeRaw(t, tr.dir, tr.keys[c0][2], es, footerOf(orig))
		},
		want: []string{"replica-0/24/hash_mismatch"},
	},
	{
		name: "row deleted",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 2)
			writeRaw(t, tr.dir, tr.keys[c0][2], slices.Delete(slices.Clone(orig), 3, 4), footerOf(orig))
		},
		// entry_count and merkle_root
		want: []string{"replica-0/20/footer_mismatch", "replica-0/20/footer_mismatch", "replica-0/24/broken_link", "replica-0/24/gap"},
	},
	{
		name: "row inserted",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 2)
			forged := testEntry(999)
			forged.ChainID, forged.Seq, forged.PrevHash = c0, 24, orig[3].EntryHash
			forged.EntryHash = chain.Hash(&forged)
			writeRaw(t, tr.dir, tr.keys[c0][2], slices.Insert(slices.Clone(orig), 4, forged), footerOf(orig))
		},
		want: []string{"replica-0/20/footer_mismatch", "replica-0/20/footer_mismatch", "replica-0/24/duplicate"},
	},
	{
		name: "rows reordered in the file",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 2)
			es := slices.Clone(orig)
			es[3], es[4] = es[4], es[3]
			writeRaw(t, tr.dir, tr.keys[c0][2], es, footerOf(orig))
		},
		want: []string{"replica-0/23/reordering"},
	},
	{
		name: "rows swapped, their seq exchanged",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 2)
			es := slices.Clone(orig)
			es[3], es[4] = es[4], es[3]
			es[3].Seq, es[4].Seq = 23, 24
			writeRaw(t, tr.dir, tr.keys[c0][2], es, footerOf(orig))
		},
		want: []string{"replica-0/20/footer_mismatch", "replica-0/23/broken_link", "replica-0/23/hash_mismatch", "replica-0/24/broken_link",
			"replica-0/24/hash_mismatch", "replica-0/25/broken_link"},
	},
	{
		name: "middle file deleted",
		tamper: func(t *testing.T, tr *trail) {
			require.NoError(t, os.Remove(tr.path(tr.keys[c0][2])))
		},
		want: []string{"replica-0/30/broken_link", "replica-0/30/missing_file"},
	},
	{
		name: "first file deleted",
		tamper: func(t *testing.T, tr *trail) {
			require.NoError(t, os.Remove(tr.path(tr.keys[c0][0])))
		},
		want: []string{"replica-0/10/missing_file"},
	},
	{
		name: "tail cut from the last file, footer kept",
		tamper: func(t *testing.T, tr *trail) {
			orig := tr.file(c0, 4)
			writeRaw(t, tr.dir, tr.keys[c0][4], orig[:7], footerOf(orig))
		},
		want: []string{"replica-0/40/footer_mismatch", "replica-0/40/footer_mismatch", "replica-0/46/footer_mismatch", "replica-0/46/footer_mismatch"},
	},
	{
		name: "file from another trail swapped in",
		tamper: func(t *testing.T, tr *trail) {
			// Same chain id, other content.
			c := chain.New(c0, chain.Genesis())
			es := make([]entry.Entry, chainLen)
			for i := range es {
				es[i] = testEntry(int64(i) + 1000)
				c.Append(&es[i])
			}
			data, err := encode(es[20:30])
			require.NoError(t, err)
			writeFile(t, tr.dir, tr.keys[c0][2], data)
		},
		want: []string{"replica-0/20/broken_link", "replica-0/20/foreign_file", "replica-0/30/broken_link"},
	},
	{
		name: "file of another chain renamed into this one",
		tamper: func(t *testing.T, tr *trail) {
			data, err := os.ReadFile(tr.path(tr.keys["replica-1"][2]))
			require.NoError(t, err)
			writeFile(t, tr.dir, tr.keys[c0][2], data)
		},
		// replica-1's rows appear twice, replica-0 misses seq 20..29.
		want: []string{"replica-0/30/broken_link", "replica-0/30/missing_file",
			"replica-1/20/duplicate", "replica-1/20/foreign_file"},
	},
	{
		name: "footer metadata stripped",
		tamper: func(t *testing.T, tr *trail) {
			writeRaw(t, tr.dir, tr.keys[c0][2], tr.file(c0, 2), nil)
		},
		want: []string{"replica-0/20/footer_missing", "replica-0/20/footer_missing", "replica-0/20/footer_missing",
			"replica-0/20/footer_missing", "replica-0/20/footer_missing", "replica-0/20/footer_missing",
			"replica-0/29/footer_missing", "replica-0/29/footer_missing"},
	},
	{
		name: "footer chain id altered",
		tamper: func(t *testing.T, tr *trail) {
			es := tr.file(c0, 2)
			f := footerOf(es)
			f[1][1] = "replica-1"
			writeRaw(t, tr.dir, tr.keys[c0][2], es, f)
		},
		want: []string{"replica-0/20/foreign_file"},
	},
	{
		name: "footer last hash altered",
		tamper: func(t *testing.T, tr *trail) {
			es := tr.file(c0, 2)
			f := footerOf(es)
			f[6][1] = chain.GenesisHash
			writeRaw(t, tr.dir, tr.keys[c0][2], es, f)
		},
		want: []string{"replica-0/29/footer_mismatch"},
	},
	{
		name: "footer merkle root altered",
		tamper: func(t *testing.T, tr *trail) {
			es := tr.file(c0, 2)
			f := footerOf(es)
			f[7][1] = es[0].EntryHash
			writeRaw(t, tr.dir, tr.keys[c0][2], es, f)
		},
		want: []string{"replica-0/20/footer_mismatch"},
	},
	{
		name: "file renamed",
		tamper: func(t *testing.T, tr *trail) {
			p := tr.path(tr.keys[c0][2])
			require.NoError(t, os.Rename(p, strings.Replace(p, "00000000000000000020", "00000000000000000021", 1)))
		},
		want: []string{"replica-0/20/file_name_mismatch"},
	},
	{
		name: "file copied into another day",
		tamper: func(t *testing.T, tr *trail) {
			data, err := os.ReadFile(tr.path(tr.keys[c0][2]))
			require.NoError(t, err)
			writeFile(t, tr.dir, strings.Replace(tr.keys[c0][2], "2026-03-09", "2026-03-10", 1), data)
		},
		want: []string{"replica-0/20/duplicate"},
	},
	{
		name: "timestamp rewritten",
		tamper: func(t *testing.T, tr *trail) {
			es := tr.file(c0, 2)
			writeRawWith(t, tr.dir, tr.keys[c0][2], es, footerOf(es), func(i int, r *rawRow) {
				if i == 5 {
					r.Timestamp++
				}
			})
		},
		want: []string{"replica-0/25/timestamp_mismatch"},
	},
	{
		name: "not a batch file",
		tamper: func(t *testing.T, tr *trail) {
			writeFile(t, tr.dir, "dt=2026-03-09/notes.parquet", []byte("PAR1 this is not parquet PAR1"))
		},
		want: []string{"/-1/not_audit_file"},
	},
	{
		name: "file truncated",
		tamper: func(t *testing.T, tr *trail) {
			p := tr.path(tr.keys[c0][4])
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, data[:len(data)/2], 0o644))
		},
		// The last file is gone as far as the rows go: a truncated tail,
		// which only a checkpoint can show; but the file is reported.
		want: []string{"replica-0/-1/not_audit_file"},
	},
}

// TestTruncatedTailNeedsCheckpoint: removing a chain's last file leaves a
// shorter chain that verifies; the report says so.
func TestTruncatedTailNeedsCheckpoint(t *testing.T) {
	tr := newTrail(t)
	require.NoError(t, os.Remove(tr.path(tr.keys["replica-0"][4])))
	rep := verifyDir(t, tr.dir)
	assert.True(t, rep.Intact)
	assert.False(t, rep.Checkpoint)
	assert.Contains(t, rep.Notes, NoCheckpointNote)
	assert.Equal(t, int64(39), rep.Chains[0].LastSeq)
}

func TestNoFilesIsAnError(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644))
	_, err := Verify(context.Background(), store.Dir(dir), Options{})
	require.ErrorIs(t, err, ErrNoFiles)
	_, err = Verify(context.Background(), store.Dir(filepath.Join(dir, "missing")), Options{})
	require.Error(t, err)
}

func TestReportJSON(t *testing.T) {
	tr := newTrail(t)
	require.NoError(t, os.Remove(tr.path(tr.keys["replica-1"][1])))
	rep := verifyDir(t, tr.dir)
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var doc struct {
		Chains []struct {
			ChainID string `json:"chain_id"`
			Entries int64  `json:"entries"`
			Intact  bool   `json:"intact"`
		} `json:"chains"`
		Violations []map[string]any `json:"violations"`
		Intact     bool             `json:"intact"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.False(t, doc.Intact)
	require.Len(t, doc.Chains, 2)
	assert.True(t, doc.Chains[0].Intact)
	assert.Equal(t, int64(40), doc.Chains[1].Entries)
	require.Len(t, doc.Violations, 2)
	assert.Equal(t, "missing_file", doc.Violations[1]["kind"])
	assert.Equal(t, "replica-1", doc.Violations[1]["chain_id"])
	assert.EqualValues(t, 20, doc.Violations[1]["seq"])
	assert.Equal(t, "seq 10 to 19 missing between dt=2026-03-09/replica-1-00000000000000000000.parquet and dt=2026-03-09/replica-1-00000000000000000020.parquet",
		doc.Violations[1]["detail"])
}

type failingSource struct{ store.Dir }

func (failingSource) Get(context.Context, string) ([]byte, error) {
	return nil, errors.New("connection reset")
}

func TestUnreadableSourceIsAnError(t *testing.T) {
	tr := newTrail(t)
	_, err := Verify(context.Background(), failingSource{store.Dir(tr.dir)}, Options{})
	require.ErrorContains(t, err, "connection reset")
}

// TestNoAllocationPerEntry: a file reader, once warmed up, allocates per
// file and per page, never per entry.
func TestNoAllocationPerEntry(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	allocs := func(n int) float64 {
		es := buildChain("replica-0", n)
		data, err := encode(es)
		require.NoError(t, err)
		r := newFileReader()
		r.read("dt=2026-03-09/replica-0-00000000000000000000.parquet", data)
		return testing.AllocsPerRun(5, func() {
			res := r.read("dt=2026-03-09/replica-0-00000000000000000000.parquet", data)
			if !res.ok || len(res.violations) != 0 {
				t.Fatalf("clean file: ok %v, %v", res.ok, res.violations)
			}
		})
	}
	small, large := allocs(1000), allocs(10000)
	t.Logf("allocations per file: %.0f for 1000 entries, %.0f for 10000", small, large)
	assert.Less(t, large-small, 100.0, "9000 more entries must not cost allocations")
}

// TestCorruptBytesNeverCrash flips bytes all over a file: verification
// never crashes or fails to run, and every flip it does not report left the
// rows as they were (it hit page statistics or indexes, which are not read).
func TestCorruptBytesNeverCrash(t *testing.T) {
	tr := newTrail(t)
	p := tr.path(tr.keys["replica-0"][2])
	orig, err := os.ReadFile(p)
	require.NoError(t, err)
	want := tr.file("replica-0", 2)
	caught := 0
	for i := 0; i < 200; i++ {
		data := slices.Clone(orig)
		off := (i*7919 + 13) % len(data)
		data[off] ^= byte(1 + i%255)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		rep := verifyDir(t, tr.dir)
		if !rep.Intact {
			caught++
			continue
		}
		got, _, err := parquetfile.ReadEntries(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, "byte %d flipped, not reported, but the file does not read", off)
		require.Equal(t, want, got, "byte %d flipped changed the rows, not reported", off)
	}
	t.Logf("%d of 200 single-byte corruptions reported; the others did not change the rows", caught)
}

// root returns the hex root of the hashes in recs as a file's read
// computes it (its leaves, then their root), or ok false when one is not
// 64 hex digits.
func (m *merkleFold) root(recs []rec) (root [64]byte, ok bool) {
	leaves, ok := m.leaves(nil, recs)
	if !ok {
		return root, false
	}
	return m.rootOfLeaves(leaves), true
}

// TestMerkleRootMatchesWriter: the verifier's Merkle fold gives the root
// internal/merkle gives the writer, for every tree shape up to 40 leaves.
func TestMerkleRootMatchesWriter(t *testing.T) {
	es := buildChain("replica-0", 40)
	var m merkleFold
	for n := 0; n <= len(es); n++ {
		hashes := make([]string, n)
		recs := make([]rec, n)
		for i := range n {
			hashes[i] = es[i].EntryHash
			recs[i].eh = hash64(es[i].EntryHash)
		}
		want, err := merkle.RootHex(hashes)
		require.NoError(t, err)
		got, ok := m.root(recs)
		require.True(t, ok)
		assert.Equal(t, want, string(got[:]), "%d leaves", n)
	}
	// Larger trees, leaves given as raw bytes (as for rows whose hash was
	// just recomputed) and as hex.
	big := buildChain("replica-0", 300)
	for _, n := range []int{63, 64, 65, 127, 129, 255, 256, 257, 300} {
		hashes := make([]string, n)
		recs := make([]rec, n)
		for i := range n {
			hashes[i] = big[i].EntryHash
			recs[i].eh = hash64(big[i].EntryHash)
			if i%3 != 0 {
				_, err := hex.Decode(recs[i].raw[:], recs[i].eh)
				require.NoError(t, err)
				recs[i].rawOK = true
			}
		}
		want, err := merkle.RootHex(hashes)
		require.NoError(t, err)
		got, ok := m.root(recs)
		require.True(t, ok)
		assert.Equal(t, want, string(got[:]), "%d leaves", n)
	}
	_, ok := m.root([]rec{{eh: hash64(strings.Repeat("z", 64))}})
	assert.False(t, ok, "not hex")
}

// remoteSource is a local trail seen as a remote source (not a Dir), as
// S3 is: files are fetched ahead of the workers. failAt, when set, makes
// that key's download fail; delay is each download's latency.
type remoteSource struct {
	store.Dir
	failAt string
	delay  time.Duration
}

func (s remoteSource) Get(ctx context.Context, key string) ([]byte, error) {
	if key == s.failAt {
		return nil, errors.New("connection reset")
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Dir.Get(ctx, key)
}

// TestRemoteSourceSameReport: fetching ahead changes nothing in the report,
// for the tamper matrix's trails, with more or fewer fetchers than files.
func TestRemoteSourceSameReport(t *testing.T) {
	for _, tt := range tamperMatrix {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTrail(t)
			tt.tamper(t, tr)
			want := verifyDir(t, tr.dir)
			for _, fetchers := range []int{1, 3, 64} {
				got, err := Verify(context.Background(), remoteSource{Dir: store.Dir(tr.dir)}, Options{Workers: 2, Fetchers: fetchers})
				require.NoError(t, err)
				assert.Equal(t, want, got, "fetchers=%d", fetchers)
			}
		})
	}
}

// TestRemoteSourceFailure: a download that fails mid-trail is the error,
// and no goroutine is left behind.
func TestRemoteSourceFailure(t *testing.T) {
	tr := newTrail(t)
	keys, err := store.Dir(tr.dir).Batches(context.Background())
	require.NoError(t, err)
	require.Greater(t, len(keys), 4)
	src := remoteSource{Dir: store.Dir(tr.dir), failAt: keys[len(keys)/2], delay: time.Millisecond}
	_, err = Verify(context.Background(), src, Options{Workers: 2, Fetchers: 3})
	require.ErrorContains(t, err, "connection reset")
	goleak.VerifyNone(t)
}
