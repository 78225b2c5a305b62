// Package auditspan maps an audit-tagged OpenTelemetry span to an
// entry.Entry: it tells audit spans apart (IsAudit), strips their payload for
// monitoring pipelines (StripPayload), normalizes and seals them in the
// pipeline (Normalize, AddProblems, see seal.go), and maps them to entries
// (FromSpan, FromOwnSpan), with the canonical JSON of the attributes and
// validation columns and the sender column's rules (SenderColumn).
//
// The mapping is kept apart from the model it produces (package entry),
// which imports no OpenTelemetry package, so that the verifier
// (cmd/auditctl) links no pdata.
package auditspan // import "github.com/agentaudit/agentaudit/internal/auditspan"
