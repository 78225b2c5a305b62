package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/agentaudit/agentaudit/connector/auditsplitconnector"
	"github.com/agentaudit/agentaudit/exporter/auditexporter"
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
// "decode" unmarshals the request (the receiver's work). "default" does
// that and runs the embedded default's path: the agentaudit_split
// connector, then the processor in mode audit into the agentaudit exporter
// (file store, fsynced write-ahead log; 8 requests in flight so that group
// commit works as under load) and the processor in mode monitoring into a
// sink; the timing includes shutting the exporter down, so every batch is
// encoded and written. "split" is the same without the two processors.
// "processors" has no connector: it copies the request (the collector's
// fan-out to two pipelines whose processors both change data) and runs the
// two processors on the receiver's stream. cpu-ns/span is the process's CPU
// time (all goroutines, GC included) per span; compare them.
// AP_COMMIT_DELAY (e.g. "0s") overrides the exporter's spool.commit_delay.
func BenchmarkAuditPath(b *testing.B) {
	for _, shape := range []struct {
		name  string
		every int
	}{{"all-audit", 1}, {"mixed10", 10}} {
		payloads, _, _ := tpPayloads(b, 16, 100, shape.every)
		b.Run(shape.name+"/decode", func(b *testing.B) {
			cpu0 := tpSelfCPU()
			spans := decodeParallel(b, payloads, func(ptrace.Traces) error { return nil })
			reportPerSpan(b, cpu0, spans)
		})
		b.Run(shape.name+"/default", func(b *testing.B) {
			benchSplit(b, payloads, true)
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
	cf := auditsplitconnector.NewFactory()
	ccfg := cf.CreateDefaultConfig().(*auditsplitconnector.Config)
	auditID := pipeline.NewIDWithName(pipeline.SignalTraces, "audit")
	monitoringID := pipeline.NewIDWithName(pipeline.SignalTraces, "monitoring")
	ccfg.AuditPipelines = []pipeline.ID{auditID}
	ccfg.MonitoringPipelines = []pipeline.ID{monitoringID}
	split, err := cf.CreateTracesToTraces(ctx, connectortest.NewNopSettings(cf.Type()), ccfg,
		connector.NewTracesRouter(map[pipeline.ID]consumer.Traces{auditID: auditNext, monitoringID: monitoringNext}))
	if err != nil {
		b.Fatal(err)
	}
	measurePath(b, payloads, append(comps, split), func(td ptrace.Traces) error {
		return split.ConsumeTraces(ctx, td)
	})
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
// of spans whose requests work took.
func decodeParallel(b *testing.B, payloads [][]byte, work func(ptrace.Traces) error) int64 {
	var n atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := ptraceotlp.NewExportRequest()
			if err := req.UnmarshalProto(payloads[i%len(payloads)]); err != nil {
				b.Error(err)
				return
			}
			td := req.Traces()
			spans := td.SpanCount()
			if err := work(td); err != nil {
				b.Error(err)
				return
			}
			n.Add(int64(spans))
			i++
		}
	})
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
