package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/agentaudit/agentaudit/connector/auditsplitconnector"
	"github.com/agentaudit/agentaudit/exporter/auditexporter"
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/processor/auditprocessor"
)

// BenchmarkAuditPath measures, in one process and without gRPC, the CPU
// each span costs on the paths the layouts of the audit and monitoring
// pipelines give it, side by side with what decoding the request costs (the
// bulk of a receive-and-discard collector's work). It isolates agentaudit's
// own cost from the network and the load generator, and gives pprof a clean
// profile:
//
//	go test -run '^$' -bench AuditPath -benchtime 20000x -count 3 ./e2e/
//	go test -run '^$' -bench 'AuditPath/all-audit/default' -benchtime 20000x -cpuprofile /tmp/cpu.out ./e2e/
//
// "decode" unmarshals the request (the receiver's work). "floor" does that
// and the least work any design must do for the audit spans (floorPath),
// with none of agentaudit's code: what it costs beyond "decode" bounds what
// an audit span can cost from below. "default" does
// that and runs the embedded default's path: the agentaudit_split
// connector, then the processor in mode audit into the agentaudit exporter
// (file store, fsynced write-ahead log; 8 requests in flight so that group
// commit works as under load) and the processor in mode monitoring into a
// sink; the timing includes shutting the exporter down, so every batch is
// encoded and written. "front" is "default" up to the exporter's mapping:
// the connector, the processors and auditspan.FromSpan of each audit span,
// without the chain, the log or the batches (the part of an audit span's
// cost before the trail's). "split" is the same as "default" without the
// two processors.
// "processors" has no connector: it copies the request (the collector's
// fan-out to two pipelines whose processors both change data) and runs the
// two processors on the receiver's stream. cpu-ns/span is the process's CPU
// time (all goroutines, GC included) per span; compare them.
// AP_COMMIT_DELAY (e.g. "0s") overrides the exporter's spool.commit_delay.
func BenchmarkAuditPath(b *testing.B) {
	for _, shape := range []struct {
		name  string
		every int
	}{{"all-audit", 1}, {"mixed2", 2}, {"mixed10", 10}} {
		const perReq = 100 // spans per request
		payloads, auditPerReq, _ := tpPayloads(b, 16, perReq, shape.every)
		b.Run(shape.name+"/decode", func(b *testing.B) {
			cpu0 := tpSelfCPU()
			spans := decodeParallel(b, payloads, func(ptrace.Traces) error { return nil })
			reportPerSpan(b, cpu0, spans)
		})
		for _, floor := range []string{"floor", "floor-tree"} {
			b.Run(shape.name+"/"+floor, func(b *testing.B) {
				p := newFloorPath(b)
				if floor == "floor-tree" {
					p.tree = newFloorTree(b)
				}
				cpu0 := tpSelfCPU()
				spans := decodeParallel(b, payloads, p.consume)
				p.flush(b)
				reportPerSpan(b, cpu0, spans)
				// A floor that missed audit spans would look cheap.
				if want := spans / perReq * int64(auditPerReq); p.records != want {
					b.Fatalf("the floor chained %d records, want %d", p.records, want)
				}
				if p.tree != nil && p.tree.tiles[0] != p.records/floorTileHashes {
					b.Fatalf("the floor's tree has %d full tiles of leaves, want %d", p.tree.tiles[0], p.records/floorTileHashes)
				}
			})
		}
		b.Run(shape.name+"/default", func(b *testing.B) {
			benchSplit(b, payloads, true)
		})
		b.Run(shape.name+"/front", func(b *testing.B) {
			benchFront(b, payloads)
		})
		b.Run(shape.name+"/split", func(b *testing.B) {
			benchSplit(b, payloads, false)
		})
		b.Run(shape.name+"/processors", func(b *testing.B) {
			ctx := context.Background()
			exp := benchExporter(b)
			audit := benchProcessor(b, "audit", exp)
			monitoring := benchProcessor(b, "monitoring", consumertest.NewNop())
			measurePath(b, payloads, []component.Component{exp, audit, monitoring}, func(td ptrace.Traces) error {
				clone := ptrace.NewTraces()
				td.CopyTo(clone)
				if err := audit.ConsumeTraces(ctx, clone); err != nil {
					return err
				}
				return monitoring.ConsumeTraces(ctx, td)
			})
		})
	}
}

// benchSplit measures the agentaudit_split connector into the exporter and
// a sink, with the processor in front of each (mode audit, mode monitoring)
// when withProcessors, as in the embedded default.
func benchSplit(b *testing.B, payloads [][]byte, withProcessors bool) {
	ctx := context.Background()
	exp := benchExporter(b)
	var auditNext, monitoringNext consumer.Traces = exp, consumertest.NewNop()
	comps := []component.Component{exp}
	if withProcessors {
		audit := benchProcessor(b, "audit", exp)
		monitoring := benchProcessor(b, "monitoring", monitoringNext)
		auditNext, monitoringNext = audit, monitoring
		comps = append(comps, audit, monitoring)
	}
	split := benchConnector(b, auditNext, monitoringNext)
	measurePath(b, payloads, append(comps, split), func(td ptrace.Traces) error {
		return split.ConsumeTraces(ctx, td)
	})
}

// benchFront measures the embedded default's layout in front of the
// exporter (the connector, the two processors) and the span → entry
// mapping the exporter does first, without chaining, logging or writing:
// the part of an audit span's cost that is not the trail's.
func benchFront(b *testing.B, payloads [][]byte) {
	ctx := context.Background()
	var mapped atomic.Int64
	mapping, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		n := 0
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					if auditspan.IsAudit(span) {
						e := auditspan.FromSpan(rs.Resource(), span, auditspan.Options{})
						n += len(e.Attributes)
					}
				}
			}
		}
		mapped.Add(int64(n))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	audit := benchProcessor(b, "audit", mapping)
	monitoring := benchProcessor(b, "monitoring", consumertest.NewNop())
	split := benchConnector(b, audit, monitoring)
	measurePath(b, payloads, []component.Component{audit, monitoring, split}, func(td ptrace.Traces) error {
		return split.ConsumeTraces(ctx, td)
	})
	if mapped.Load() == 0 {
		b.Fatal("no audit span mapped")
	}
}

// benchConnector returns the agentaudit_split connector in its default
// configuration, feeding audit and monitoring.
func benchConnector(b *testing.B, audit, monitoring consumer.Traces) connector.Traces {
	b.Helper()
	cf := auditsplitconnector.NewFactory()
	ccfg := cf.CreateDefaultConfig().(*auditsplitconnector.Config)
	auditID := pipeline.NewIDWithName(pipeline.SignalTraces, "audit")
	monitoringID := pipeline.NewIDWithName(pipeline.SignalTraces, "monitoring")
	ccfg.AuditPipelines = []pipeline.ID{auditID}
	ccfg.MonitoringPipelines = []pipeline.ID{monitoringID}
	split, err := cf.CreateTracesToTraces(context.Background(), connectortest.NewNopSettings(cf.Type()), ccfg,
		connector.NewTracesRouter(map[pipeline.ID]consumer.Traces{auditID: audit, monitoringID: monitoring}))
	if err != nil {
		b.Fatal(err)
	}
	return split
}

// measurePath starts comps in order, decodes the payloads in parallel into
// work, shuts comps down in reverse order (the exporter, started first,
// stops last and encodes and writes what is left) and reports the CPU per
// span, shutdown included.
func measurePath(b *testing.B, payloads [][]byte, comps []component.Component, work func(ptrace.Traces) error) {
	b.Helper()
	ctx := context.Background()
	host := componenttest.NewNopHost()
	for _, c := range comps {
		if err := c.Start(ctx, host); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := tpSelfCPU()
	spans := decodeParallel(b, payloads, work)
	for _, c := range slices.Backward(comps) {
		if err := c.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSpan(b, cpu0, spans)
}

// benchExporter returns the agentaudit exporter on a file store in a
// temporary directory.
func benchExporter(b *testing.B) exporter.Traces {
	b.Helper()
	dir := b.TempDir()
	ef := auditexporter.NewFactory()
	ecfg := ef.CreateDefaultConfig().(*auditexporter.Config)
	ecfg.ChainID = "bench"
	ecfg.File = &auditexporter.FileConfig{Directory: filepath.Join(dir, "trail")}
	ecfg.Spool.Directory = filepath.Join(dir, "spool")
	if d, err := time.ParseDuration(os.Getenv("AP_COMMIT_DELAY")); err == nil {
		ecfg.Spool.CommitDelay = d
	}
	exp, err := ef.CreateTraces(context.Background(), exportertest.NewNopSettings(ef.Type()), ecfg)
	if err != nil {
		b.Fatal(err)
	}
	return exp
}

// decodeParallel decodes the payloads in turn on 8 goroutines (2 cores),
// as the receiver does, hands each request to work, and returns the number
// of spans whose requests work took. A request refused as retryable (the
// exporter's backpressure: its sealed batches wait for the disk) is decoded
// and handed over again after a pause that doubles from 5 ms to 100 ms, as
// a client retries; the refusals are reported per span taken, and their
// wasted work is in the CPU measured.
func decodeParallel(b *testing.B, payloads [][]byte, work func(ptrace.Traces) error) int64 {
	var n, refused atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			for pause := 5 * time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
				req := ptraceotlp.NewExportRequest()
				if err := req.UnmarshalProto(payloads[i%len(payloads)]); err != nil {
					b.Error(err)
					return
				}
				td := req.Traces()
				spans := td.SpanCount()
				err := work(td)
				if err == nil {
					n.Add(int64(spans))
					break
				}
				if status.Code(err) != codes.Unavailable {
					b.Error(err)
					return
				}
				refused.Add(1)
				time.Sleep(pause)
			}
			i++
		}
	})
	if taken := n.Load(); taken > 0 {
		b.ReportMetric(float64(refused.Load())/float64(taken), "refused/span")
	}
	return n.Load()
}

func benchProcessor(b *testing.B, mode string, next consumer.Traces) processor.Traces {
	b.Helper()
	pf := auditprocessor.NewFactory()
	pcfg := pf.CreateDefaultConfig().(*auditprocessor.Config)
	pcfg.Mode = mode
	p, err := pf.CreateTraces(context.Background(), processortest.NewNopSettings(pf.Type()), pcfg, next)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func reportPerSpan(b *testing.B, cpu0 time.Duration, spans int64) {
	b.Helper()
	if spans == 0 {
		return
	}
	cpu := tpSelfCPU() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(spans), "cpu-ns/span")
	b.ReportMetric(float64(spans)/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(0, "ns/op")
}

// floorPath is the least work any design must do per audit span to meet
// issue 4's contract, each stage at the cheapest this machine offers, with
// none of agentaudit's own code:
//
//   - find the audit spans: one attribute lookup per span;
//   - give the monitoring pipeline its own copy of each (pdata's CopyTo;
//     the other pipeline keeps the original, and stripping it in place
//     would be cheap);
//   - flatten each into one record: its ids, times, name, status, resource
//     and span attributes, values appended raw, nothing checked;
//   - hash the records into a SHA-256 chain under a lock;
//   - write each request's records to a preallocated log with one write,
//     and fdatasync once per 8 requests, as if every group commit took all
//     8 in flight;
//   - copy each record into a batch that zstd's fastest level compresses
//     every 8 MiB, as a columnar writer copies values into columns once and
//     compresses them.
//
// It leaves out validation, Parquet's pages, dictionaries, statistics and
// footer, the Merkle root, the bloom filter and the telemetry. What it
// costs beyond "decode" is a lower bound of what an audit span costs
// beyond being received.
type floorPath struct {
	tree    *floorTree // with issue 18's tree and tiles; nil without
	log     *os.File
	logSize int64
	enc     *zstd.Encoder

	mu       sync.Mutex // the chain and the batch
	hash     hash.Hash
	prev     [sha256.Size]byte
	batch    []byte
	spare    []byte // a compressed batch's buffer, for the next
	logAt    int64
	requests int
	records  int64

	compressMu sync.Mutex
	compressed []byte
	scratch    sync.Pool // *floorScratch
}

// floorScratch is one request's records: back to back, and where each ends.
type floorScratch struct {
	recs []byte
	ends []int
}

const (
	floorLogSize   = 64 << 20 // a ring, written with zeros before the timing starts
	floorBatchSize = 8 << 20
)

func newFloorPath(b *testing.B) *floorPath {
	b.Helper()
	f, err := os.Create(filepath.Join(b.TempDir(), "floor.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	if _, err := f.Write(make([]byte, floorLogSize)); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	return &floorPath{log: f, logSize: floorLogSize, enc: enc, hash: sha256.New(), batch: make([]byte, 0, floorBatchSize),
		compressed: make([]byte, 0, floorBatchSize)}
}

func (p *floorPath) consume(td ptrace.Traces) error {
	sc, _ := p.scratch.Get().(*floorScratch)
	if sc == nil {
		sc = new(floorScratch)
	}
	defer p.scratch.Put(sc)
	recs, ends := sc.recs[:0], sc.ends[:0]
	monitoring := ptrace.NewTraces()
	for _, rs := range td.ResourceSpans().All() {
		var out ptrace.SpanSlice
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				if _, ok := s.Attributes().Get("audit.action.type"); !ok {
					continue
				}
				if out == (ptrace.SpanSlice{}) {
					mrs := monitoring.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(mrs.Resource())
					out = mrs.ScopeSpans().AppendEmpty().Spans()
				}
				s.CopyTo(out.AppendEmpty())
				recs = floorRecord(recs, rs.Resource().Attributes(), s)
				ends = append(ends, len(recs))
			}
		}
	}
	sc.recs, sc.ends = recs, ends
	if len(ends) == 0 {
		return nil
	}

	p.mu.Lock()
	start := 0
	for _, end := range ends {
		p.hash.Reset()
		p.hash.Write(p.prev[:])
		p.hash.Write(recs[start:end])
		p.hash.Sum(p.prev[:0])
		if p.tree != nil {
			p.tree.add(&p.prev)
		}
		start = end
	}
	p.records += int64(len(ends))
	at := p.logAt
	if at+int64(len(recs)) > p.logSize {
		at = 0
	}
	p.logAt = at + int64(len(recs))
	p.requests++
	doSync := p.requests%8 == 0
	var full []byte
	var tiles []floorTile
	if len(p.batch)+len(recs) > floorBatchSize {
		next := p.spare
		if next == nil {
			next = make([]byte, 0, floorBatchSize)
		}
		full, p.batch, p.spare = p.batch, next[:0], nil
		if p.tree != nil {
			tiles, p.tree.done = p.tree.done, nil
		}
	}
	p.batch = append(p.batch, recs...)
	p.mu.Unlock()

	if _, err := p.log.WriteAt(recs, at); err != nil {
		return err
	}
	if doSync {
		if err := syscall.Fdatasync(int(p.log.Fd())); err != nil {
			return err
		}
	}
	if full != nil {
		if err := p.writeTiles(tiles); err != nil {
			return err
		}
		p.compress(full)
		p.mu.Lock()
		p.spare = full
		p.mu.Unlock()
	}
	return nil
}

// compress compresses a batch into one reused buffer.
func (p *floorPath) compress(batch []byte) {
	p.compressMu.Lock()
	defer p.compressMu.Unlock()
	p.compressed = p.enc.EncodeAll(batch, p.compressed[:0])
}

// flush compresses what is left in the batch and writes the tiles left.
func (p *floorPath) flush(b *testing.B) {
	p.compress(p.batch)
	if p.tree != nil {
		if err := p.writeTiles(p.tree.done); err != nil {
			b.Fatal(err)
		}
		p.tree.done = nil
	}
}

// writeTiles writes a sealed batch's tiles, one batch at a time as the
// tree's order requires.
func (p *floorPath) writeTiles(tiles []floorTile) error {
	if len(tiles) == 0 {
		return nil
	}
	p.compressMu.Lock()
	defer p.compressMu.Unlock()
	return p.tree.write(tiles)
}

// floorRecord appends the span's fields and attributes, length-prefixed and
// unchecked, to dst.
func floorRecord(dst []byte, resource pcommon.Map, s ptrace.Span) []byte {
	tid, sid, pid := s.TraceID(), s.SpanID(), s.ParentSpanID()
	dst = append(dst, tid[:]...)
	dst = append(dst, sid[:]...)
	dst = append(dst, pid[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.StartTimestamp()))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.EndTimestamp()))
	dst = append(dst, byte(s.Status().Code()))
	dst = floorString(dst, s.Name())
	for _, m := range [2]pcommon.Map{resource, s.Attributes()} {
		for k, v := range m.All() {
			dst = floorString(dst, k)
			switch v.Type() {
			case pcommon.ValueTypeStr:
				dst = floorString(dst, v.Str())
			case pcommon.ValueTypeInt:
				dst = binary.LittleEndian.AppendUint64(dst, uint64(v.Int()))
			case pcommon.ValueTypeDouble:
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Double()))
			default:
				dst = floorString(dst, v.AsString())
			}
		}
	}
	return dst
}

func floorString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
