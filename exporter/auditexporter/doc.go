// Package auditexporter provides the agentaudit exporter: it turns each
// audit-tagged span into an audit entry (internal/auditspan), which the
// recorder (internal/recorder) links into a SHA-256 hash chain, logs
// durably and writes as immutable Parquet batches to a store. The exporter
// adapts the collector to the recorder: factory, configuration, the
// mapping of each request, its sender, and the component's telemetry.
package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"
