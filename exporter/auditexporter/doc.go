// Package auditexporter provides the agentaudit exporter: it turns each
// audit-tagged span into an audit entry, links the entries into a SHA-256
// hash chain and writes them as immutable Parquet batches to a store.
package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"
