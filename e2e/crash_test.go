package e2e

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentaudit/agentaudit/internal/wal"
)

// Every load request holds loadAuditSpans audit-tagged spans and
// loadPlainSpans spans without audit tags, interleaved.
const (
	loadAuditSpans = 20
	loadPlainSpans = 5
)

// loadID is the marker of audit span k of request req of client.
func loadID(client, req, k int) string { return fmt.Sprintf("%d-%d-%d", client, req, k) }

// loadTraces is request req of client: every span has unique ids and a
// load.id marker; untagged spans carry a "plain" marker that must never
// reach the trail.
func loadTraces(client, req int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "load-agent")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	var tid pcommon.TraceID
	binary.BigEndian.PutUint32(tid[0:4], uint32(client))
	binary.BigEndian.PutUint32(tid[4:8], uint32(req))
	tid[15] = 1
	now := pcommon.NewTimestampFromTime(time.Now())
	k, plain := 0, 0
	for i := range loadAuditSpans + loadPlainSpans {
		s := spans.AppendEmpty()
		s.SetTraceID(tid)
		var sid pcommon.SpanID
		sid[0] = byte(client)
		binary.BigEndian.PutUint32(sid[1:5], uint32(req))
		sid[5] = byte(i)
		sid[7] = 1
		s.SetSpanID(sid)
		s.SetStartTimestamp(now)
		s.SetEndTimestamp(now + 1000)
		if i%5 == 4 {
			s.SetName("plain")
			s.Attributes().PutStr("load.id", fmt.Sprintf("%d-%d-plain-%d", client, req, plain))
			plain++
			continue
		}
		s.SetName("load")
		s.Attributes().PutStr("audit.action.type", "write")
		s.Attributes().PutStr("audit.execution.id", fmt.Sprintf("load-%d", client))
		s.Attributes().PutStr("audit.target.system", "load-test")
		s.Attributes().PutStr("audit.target.resource", fmt.Sprintf("request %d", req))
		s.Attributes().PutStr("load.id", loadID(client, req, k))
		k++
	}
	return td
}

// loadResult is the outcome of one request as its client saw it.
type loadResult struct {
	client, req int
	acked       bool
	err         error
}

// loadGen drives concurrent OTLP/gRPC clients against the collector whose
// address it holds; the test changes the address when it restarts the
// collector. A failed request is recorded, never retried.
type loadGen struct {
	timeout time.Duration // per request
	pause   time.Duration // between a client's requests

	mu   sync.Mutex
	addr string
}

func (g *loadGen) target() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

func (g *loadGen) setTarget(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.addr = addr
}

// run starts clients numbered 0..clients-1 that send requests until stop is
// closed. The returned function waits for them and returns every client's
// results in the order sent.
func (g *loadGen) run(t *testing.T, clients int, stop <-chan struct{}) func() [][]loadResult {
	t.Helper()
	results := make([][]loadResult, clients)
	var wg sync.WaitGroup
	for client := range clients {
		wg.Go(func() {
			var conn *grpc.ClientConn
			connAddr := ""
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for req := 0; ; req++ {
				select {
				case <-stop:
					return
				default:
				}
				if addr := g.target(); addr != connAddr {
					if conn != nil {
						conn.Close()
					}
					var err error
					conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						t.Errorf("client %d: %v", client, err)
						return
					}
					connAddr = addr
				}
				ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
				_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(loadTraces(client, req)))
				cancel()
				results[client] = append(results[client], loadResult{client: client, req: req, acked: err == nil, err: err})
				pause := g.pause
				if err != nil {
					pause = max(pause, 20*time.Millisecond)
				}
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
			}
		})
	}
	return func() [][]loadResult {
		wg.Wait()
		return results
	}
}

// trailEntry is one entry of the trail as the load checks see it.
type trailEntry struct {
	chainID string
	seq     int64
	loadID  string
}

// readLoadTrail returns the trail's entries in chain order.
func readLoadTrail(t *testing.T, db *sql.DB) []trailEntry {
	t.Helper()
	rows, err := db.Query(`SELECT chain_id, seq, coalesce(json_extract_string(attributes, '$."load.id"'), '')
		FROM audit_entries ORDER BY chain_id, seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []trailEntry
	for rows.Next() {
		var e trailEntry
		require.NoError(t, rows.Scan(&e.chainID, &e.seq, &e.loadID))
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

// checkLoadTrail asserts that trail, one chain's entries in chain order,
// holds every span of every acknowledged request exactly once, no marker
// twice, no untagged span, seq 0..n-1 without gaps, every request's spans
// in the order sent, and every acknowledged request before each later
// request of its client. When exact, it also asserts that nothing else is
// there (every request not acknowledged was refused). It returns the
// number of entries of requests that were not acknowledged.
func checkLoadTrail(t *testing.T, trail []trailEntry, chainID string, results [][]loadResult, exact bool) int {
	t.Helper()
	type key struct{ client, req int }
	type span struct {
		seq int64
		k   int
	}
	seen := map[string]int64{}
	byReq := map[key][]span{}
	for i, e := range trail {
		require.Equal(t, chainID, e.chainID, "seq %d", e.seq)
		require.Equal(t, int64(i), e.seq, "seq runs 0..n-1 without gaps")
		if prev, dup := seen[e.loadID]; dup {
			t.Fatalf("load.id %q appears at seq %d and %d", e.loadID, prev, e.seq)
		}
		seen[e.loadID] = e.seq
		parts := strings.Split(e.loadID, "-")
		require.Len(t, parts, 3, "seq %d: load.id %q is an audit span's marker", e.seq, e.loadID)
		var n [3]int
		for j, p := range parts {
			v, err := strconv.Atoi(p)
			require.NoError(t, err, "seq %d: load.id %q", e.seq, e.loadID)
			n[j] = v
		}
		byReq[key{n[0], n[1]}] = append(byReq[key{n[0], n[1]}], span{e.seq, n[2]})
	}

	acked, unacked := 0, 0
	for _, rs := range results {
		for _, r := range rs {
			if r.acked {
				acked++
			}
		}
	}
	for _, rs := range results {
		for i, r := range rs {
			got := byReq[key{r.client, r.req}]
			for j := 1; j < len(got); j++ {
				require.Less(t, got[j-1].k, got[j].k, "request %d-%d: spans in the order sent", r.client, r.req)
			}
			if !r.acked {
				if exact {
					require.Empty(t, got, "request %d-%d was refused (%v) and must leave nothing behind", r.client, r.req, r.err)
				}
				unacked += len(got)
				continue
			}
			require.Len(t, got, loadAuditSpans, "request %d-%d was acknowledged: every audit span exactly once", r.client, r.req)
			last := got[len(got)-1].seq
			for _, later := range rs[i+1:] {
				if l := byReq[key{later.client, later.req}]; len(l) > 0 {
					require.Less(t, last, l[0].seq, "acknowledged request %d-%d precedes request %d-%d of its client", r.client, r.req, later.client, later.req)
				}
			}
		}
	}
	for k := range byReq {
		require.Less(t, k.client, len(results), "entries of client %d, which never ran", k.client)
		require.Less(t, k.req, len(results[k.client]), "entries of request %d-%d, which was never sent", k.client, k.req)
	}
	require.Equal(t, acked*loadAuditSpans+unacked, len(trail))
	return unacked
}

// newestSegmentHasRecords reports whether the newest write-ahead log
// segment in dir, the open batch's, whose entries no sealed batch holds,
// holds any record, whole or torn.
func newestSegmentHasRecords(t *testing.T, dir string) bool {
	t.Helper()
	ids, err := wal.Chains(dir)
	require.NoError(t, err)
	require.Len(t, ids, 1, "the write-ahead log %s has an open segment, of one chain", dir)
	// The collector is running: it removes a sealed batch's segment,
	// maybe between Recover's listing and its reading of that segment.
	var segs []wal.Segment
	for try := 0; ; try++ {
		segs, err = wal.Recover(dir, ids[0])
		if !errors.Is(err, fs.ErrNotExist) || try == 10 {
			break
		}
	}
	require.NoError(t, err)
	newest := segs[len(segs)-1]
	return len(newest.Entries) > 0 || newest.Torn || newest.Corrupt != nil
}

const (
	logRecovered = "Recovered entries from the write-ahead log"
	logTornTail  = "Dropping the torn tail of a write-ahead log segment"
)

// TestSIGKILLLosesNothingAcknowledged runs once per way to split the
// stream (see splitConfigs): an acknowledgement through each is durable.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	eachSplit(t, testSIGKILL)
}

func testSIGKILL(t *testing.T, split string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("AGENTAUDIT_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "AGENTAUDIT_E2E_SEED")
		seed = v
	}
	t.Logf("kill schedule seed %d (AGENTAUDIT_E2E_SEED=%d repeats it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	started := time.Now()

	const chainID, clients = "crash-1", 4
	dataDir := filepath.Join(t.TempDir(), "audit-data")
	walDir := filepath.Join(filepath.Dir(dataDir), "spool", "wal") // where the harness puts the spool
	opts := collectorOptions{chainID: chainID, maxEntries: 50, dataDir: dataDir, split: split}
	c := startCollector(t, opts)

	g := &loadGen{timeout: 2 * time.Second, pause: 30 * time.Millisecond, addr: c.grpcAddr}
	stop := make(chan struct{})
	wait := g.run(t, clients, stop)
	kills, withOpenBatch := 8+rng.IntN(2), 0
	deadline := time.Now().Add(30 * time.Second)
	k := 0
	for ; k < kills && time.Now().Before(deadline); k++ {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		c.kill()
		// Entries in the open batch's segment are in no sealed batch: the
		// restart must recover them (or cut the torn tail of a write the
		// kill interrupted).
		open := newestSegmentHasRecords(t, walDir)
		c = startCollector(t, opts)
		g.setTarget(c.grpcAddr)
		if open {
			withOpenBatch++
			logs := c.logs.String()
			assert.True(t, strings.Contains(logs, logRecovered) || strings.Contains(logs, logTornTail),
				"restart %d after a kill with entries in the open segment: no recovery logged\n%s", k+1, logs)
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	results := wait()

	// A last kill at a point known to leave acknowledged entries in the
	// open batch only: the restart must recover them.
	const last = clients
	results = append(results, nil)
	conn, err := grpc.NewClient(c.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(conn *grpc.ClientConn) {
		req := len(results[last])
		_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(loadTraces(last, req)))
		require.NoError(t, err)
		results[last] = append(results[last], loadResult{client: last, req: req, acked: true})
	}
	for !newestSegmentHasRecords(t, walDir) {
		require.Less(t, len(results[last]), 3, "two requests of %d entries leave some in a batch of 50", loadAuditSpans)
		send(conn)
	}
	conn.Close()
	c.kill()
	k++
	c = startCollector(t, opts)
	require.Contains(t, c.logs.String(), logRecovered, "the restart recovers the acknowledged entries of the open batch")
	conn, err = grpc.NewClient(c.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	send(conn)
	conn.Close()
	c.stop()

	acked, failed := 0, 0
	for _, rs := range results {
		for _, r := range rs {
			if r.acked {
				acked++
			} else {
				failed++
			}
		}
	}
	t.Logf("%d kills (%d with entries in the open batch), %d requests acknowledged, %d failed, in %v",
		k, withOpenBatch+1, acked, failed, time.Since(started).Round(time.Millisecond))
	require.GreaterOrEqual(t, k, 4, "the kill loop ran")
	for client, rs := range results[:clients] {
		n := 0
		for _, r := range rs {
			if r.acked {
				n++
			}
		}
		require.Positive(t, n, "client %d had requests acknowledged", client)
	}

	db := trailDB(t, dataDir)
	trail := readLoadTrail(t, db)
	unacked := checkLoadTrail(t, trail, chainID, results, false)
	t.Logf("trail: %d entries in %d files, %d of them from requests not acknowledged",
		len(trail), len(parquetFiles(t, dataDir)), unacked)
	assert.Empty(t, runVerifySQL(t, db), "docs/verify.sql finds the trail intact")
}
