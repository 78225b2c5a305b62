// Package auditsplitconnector provides the agentaudit_split connector, the
// one-pass alternative to two pipelines of the agentaudit processor. It
// reads one stream of agent spans and feeds two sets of pipelines:
//
//   - audit_pipelines get the audit-tagged spans (those carrying
//     audit.action.type), each normalized as the processor's mode "audit"
//     does, so that the agentaudit exporter records exactly what the
//     connector saw;
//   - monitoring_pipelines get every span, with the payload of audit-tagged
//     ones (audit.value.* and audit.reasoning) stripped, or, with action
//     "drop", without the audit-tagged spans.
//
// Two pipelines behind one receiver cost a copy of every request (the
// collector's fan-out copies data for each pipeline that changes it) and a
// second pass over every span. The connector copies only the audit-tagged
// spans and looks at each span once; a span without audit tags costs one
// attribute lookup and one pass over its attributes (is it a framework's
// tool or agent span, captured or counted as missed). It notes in the context what it did, so that the
// agentaudit processors the embedded default keeps behind it do not check
// or strip the same spans again (see internal/auditspan's handoff.go).
package auditsplitconnector // import "github.com/agentaudit/agentaudit/connector/auditsplitconnector"
