package harness

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Every load request holds LoadAuditSpans audit-tagged spans and
// LoadPlainSpans spans without audit tags, interleaved.
const (
	LoadAuditSpans = 20
	LoadPlainSpans = 5
)

// LoadID is the marker of audit span k of request req of client.
func LoadID(client, req, k int) string { return fmt.Sprintf("%d-%d-%d", client, req, k) }

// LoadTraces is request req of client: every span has unique ids and a
// load.id marker; untagged spans carry a "plain" marker that must never
// reach the trail.
func LoadTraces(client, req int) ptrace.Traces {
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
	for i := range LoadAuditSpans + LoadPlainSpans {
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
		s.Attributes().PutStr("load.id", LoadID(client, req, k))
		k++
	}
	return td
}

// LoadResult is the outcome of one request as its client saw it.
type LoadResult struct {
	Client, Req int
	Acked       bool
	Err         error
}

// LoadGen drives concurrent OTLP/gRPC clients against the collector whose
// address it holds; the test changes the address when it restarts the
// collector. A failed request is recorded, never retried.
type LoadGen struct {
	Timeout time.Duration // per request
	Pause   time.Duration // between a client's requests

	mu   sync.Mutex
	addr string
}

func (g *LoadGen) target() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// SetTarget points the clients at the collector listening on addr.
func (g *LoadGen) SetTarget(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.addr = addr
}

// Run starts clients numbered 0..clients-1 that send requests until stop is
// closed. The returned function waits for them and returns every client's
// results in the order sent.
func (g *LoadGen) Run(t *testing.T, clients int, stop <-chan struct{}) func() [][]LoadResult {
	t.Helper()
	results := make([][]LoadResult, clients)
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
				ctx, cancel := context.WithTimeout(context.Background(), g.Timeout)
				_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(LoadTraces(client, req)))
				cancel()
				results[client] = append(results[client], LoadResult{Client: client, Req: req, Acked: err == nil, Err: err})
				pause := g.Pause
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
	return func() [][]LoadResult {
		wg.Wait()
		return results
	}
}

// TrailEntry is one entry of the trail as the load checks see it.
type TrailEntry struct {
	ChainID string
	Seq     int64
	LoadID  string
	Marker  string // a coverage marker as Marker shows it; "" for a span's entry
}

// ReadLoadTrail returns the trail's entries in chain order, the coverage
// markers included.
func ReadLoadTrail(t *testing.T, db *sql.DB) []TrailEntry {
	t.Helper()
	rows, err := db.Query(`SELECT chain_id, seq, coalesce(json_extract_string(attributes, '$."load.id"'), ''), action_type, result
		FROM audit_entries ORDER BY chain_id, seq`)
	require.NoError(t, err)
	defer rows.Close()
	var out []TrailEntry
	for rows.Next() {
		var e TrailEntry
		var action, result string
		require.NoError(t, rows.Scan(&e.ChainID, &e.Seq, &e.LoadID, &action, &result))
		if IsMarker(action) {
			e.Marker = Marker(action, result)
		}
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

// LoadEntries is trail without the coverage markers: the load's spans.
func LoadEntries(trail []TrailEntry) []TrailEntry {
	var out []TrailEntry
	for _, e := range trail {
		if e.Marker == "" {
			out = append(out, e)
		}
	}
	return out
}

// CheckLoadTrail asserts that trail, one chain's entries in chain order,
// holds exactly the coverage markers given, in this order, and besides
// them every span of every acknowledged request exactly once, no load.id
// twice, no untagged span, seq 0..n-1 without gaps, every request's spans
// in the order sent, and every acknowledged request before each later
// request of its client. When exact, it also asserts that nothing else is
// there (every request not acknowledged was refused). It returns the
// number of entries of requests that were not acknowledged.
func CheckLoadTrail(t *testing.T, trail []TrailEntry, chainID string, results [][]LoadResult, exact bool, markers []string) int {
	t.Helper()
	type key struct{ client, req int }
	type span struct {
		seq int64
		k   int
	}
	seen := map[string]int64{}
	byReq := map[key][]span{}
	var gotMarkers []string
	for i, e := range trail {
		require.Equal(t, chainID, e.ChainID, "seq %d", e.Seq)
		require.Equal(t, int64(i), e.Seq, "seq runs 0..n-1 without gaps")
		if e.Marker != "" {
			require.Empty(t, e.LoadID, "seq %d: a coverage marker with a load.id", e.Seq)
			gotMarkers = append(gotMarkers, e.Marker)
			continue
		}
		if prev, dup := seen[e.LoadID]; dup {
			t.Fatalf("load.id %q appears at seq %d and %d", e.LoadID, prev, e.Seq)
		}
		seen[e.LoadID] = e.Seq
		parts := strings.Split(e.LoadID, "-")
		require.Len(t, parts, 3, "seq %d: load.id %q is an audit span's marker", e.Seq, e.LoadID)
		var n [3]int
		for j, p := range parts {
			v, err := strconv.Atoi(p)
			require.NoError(t, err, "seq %d: load.id %q", e.Seq, e.LoadID)
			n[j] = v
		}
		byReq[key{n[0], n[1]}] = append(byReq[key{n[0], n[1]}], span{e.Seq, n[2]})
	}

	acked, unacked := 0, 0
	for _, rs := range results {
		for _, r := range rs {
			if r.Acked {
				acked++
			}
		}
	}
	for _, rs := range results {
		for i, r := range rs {
			got := byReq[key{r.Client, r.Req}]
			for j := 1; j < len(got); j++ {
				require.Less(t, got[j-1].k, got[j].k, "request %d-%d: spans in the order sent", r.Client, r.Req)
			}
			if !r.Acked {
				if exact {
					require.Empty(t, got, "request %d-%d was refused (%v) and must leave nothing behind", r.Client, r.Req, r.Err)
				}
				unacked += len(got)
				continue
			}
			require.Len(t, got, LoadAuditSpans, "request %d-%d was acknowledged: every audit span exactly once", r.Client, r.Req)
			last := got[len(got)-1].seq
			for _, later := range rs[i+1:] {
				if l := byReq[key{later.Client, later.Req}]; len(l) > 0 {
					require.Less(t, last, l[0].seq, "acknowledged request %d-%d precedes request %d-%d of its client", r.Client, r.Req, later.Client, later.Req)
				}
			}
		}
	}
	for k := range byReq {
		require.Less(t, k.client, len(results), "entries of client %d, which never ran", k.client)
		require.Less(t, k.req, len(results[k.client]), "entries of request %d-%d, which was never sent", k.client, k.req)
	}
	require.Equal(t, markers, gotMarkers, "the coverage markers: each start and clean stop of a collector")
	require.Equal(t, acked*LoadAuditSpans+unacked, len(trail)-len(gotMarkers))
	return unacked
}
