// Package auditprocessor provides the agentaudit processor. It splits one
// stream of agent spans into two pipelines:
//
//   - mode "audit" keeps only audit-tagged spans (those carrying
//     audit.action.type) and normalizes each in place: missing contract fields
//     are filled in, malformed values repaired, long values truncated, and the
//     problems found are written to audit.validation, so that the agentaudit
//     exporter records exactly what the processor saw.
//   - mode "monitoring" keeps every span but strips the payload of
//     audit-tagged ones (audit.value.* and audit.reasoning), so latency and
//     errors stay visible without the data; with action "drop" it removes
//     audit-tagged spans instead.
//
// A span without audit tags costs one attribute lookup. Behind the
// agentaudit_split connector, which notes in the context what it did to
// the spans it sends (auditspan.WithNormalized, capture.WithStripped), the
// processor counts the connector's outcomes and looks at no span: it would
// find its work done. Data from anywhere else is normalized or stripped.
package auditprocessor // import "github.com/agentaudit/agentaudit/processor/auditprocessor"
