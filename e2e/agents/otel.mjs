// Tracing setup shared by the agents: the OpenTelemetry Node SDK exporting
// over OTLP/HTTP (protobuf) to OTEL_EXPORTER_OTLP_ENDPOINT (…/v1/traces is
// appended) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is); without
// either, the collector's default http://127.0.0.1:4318.
//
// An export that fails makes the agent exit 1: the exporter only logs its
// failures, and a test must not take "sent nothing" for "sent".
import { diag, DiagConsoleLogger, DiagLogLevel } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);

if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT && !process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = "http://127.0.0.1:4318";
}

// countingExporter forwards to the OTLP exporter and remembers failures.
class CountingExporter {
  constructor(inner) {
    this.inner = inner;
    this.failures = [];
    this.exported = 0;
  }
  export(spans, done) {
    this.inner.export(spans, (result) => {
      if (result.code === 0) {
        this.exported += spans.length;
      } else {
        this.failures.push(result.error ?? new Error("export failed"));
      }
      done(result);
    });
  }
  forceFlush() {
    return this.inner.forceFlush();
  }
  shutdown() {
    return this.inner.shutdown();
  }
}

// startTracing registers a global tracer provider for serviceName (the
// resource's service.name) and returns finish(), which flushes, shuts the
// provider down and exits 1 when an export failed.
export function startTracing(serviceName, resourceAttributes = {}) {
  const exporter = new CountingExporter(new OTLPTraceExporter());
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": serviceName,
      "service.version": "1.0.0",
      ...resourceAttributes,
    }),
    // One request per run: the batch processor's timer (5 s by default)
    // never fires before finish() flushes, so that what the collector
    // makes of a run does not depend on how fast the machine is. (A
    // long-lived agent's exporter may split a run over several requests.)
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 600_000 })],
  });
  provider.register();
  return {
    provider,
    async finish() {
      // Let spans that end on a framework's own schedule end first: the AI
      // SDK ends streamText's root span in the stream's flush, after
      // result.text has resolved.
      await new Promise((resolve) => setImmediate(resolve));
      await provider.forceFlush();
      await provider.shutdown();
      if (exporter.failures.length > 0) {
        console.error(`${serviceName}: ${exporter.failures.length} export(s) failed: ${exporter.failures[0]}`);
        process.exit(1);
      }
      console.log(`${serviceName}: exported ${exporter.exported} spans`);
    },
  };
}

// modelLatency is how long the scripted models take to answer: a model
// call takes time, and OTel JS stamps a span's start in whole milliseconds,
// so without it a run's first steps could all start in one millisecond.
export const modelLatencyMs = 5;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// check fails the run (exit 1) when the scripted scenario did not happen
// as written: the spans would not show what the tests look for.
export function check(cond, what) {
  if (!cond) {
    console.error(`scenario check failed: ${what}`);
    process.exit(1);
  }
}
