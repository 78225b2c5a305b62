package auditspan

import (
	"strconv"
	"strings"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// The sender column: who sent an entry's span, as the collector
// authenticated it (the exporter reads it from the request, see
// exporter/auditexporter and the README's "Who sent it"). Unlike every
// other column it is not the sender's claim: an agent cannot set it.

// FieldSender is the field of the problems about the sender column.
const FieldSender = "sender"

// maxDetailValue bounds each value a sender_mismatch detail quotes: the
// values are in their own columns already.
const maxDetailValue = 256

// SenderColumn returns identity as the sender column stores it, and the
// problems of storing it so, under FieldSender: invalid UTF-8 replaced
// (invalid_utf8), cut to opts' value limit (truncated, with the length and
// SHA-256 of the whole), a NUL byte kept (nul_byte), as for any value a
// column stores.
func SenderColumn(identity string, opts Options) (string, []entry.Problem) {
	var ps []entry.Problem
	if !validUTF8(identity) {
		identity = strings.ToValidUTF8(identity, "\uFFFD")
		ps = append(ps, entry.Problem{Field: FieldSender, Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"})
	}
	if limit := opts.maxValueBytes(); len(identity) > limit {
		ps = append(ps, entry.Problem{Field: FieldSender, Kind: entry.ProblemTruncated,
			Detail:        "truncated to " + strconv.Itoa(limit) + " bytes",
			OriginalBytes: int64(len(identity)), SHA256: sha256Hex(identity)})
		identity = truncate(identity, limit)
	}
	if strings.IndexByte(identity, 0) >= 0 {
		ps = append(ps, entry.Problem{Field: FieldSender, Kind: entry.ProblemNULByte, Detail: "kept"})
	}
	return identity, ps
}

// SenderMismatch is the problem of an entry whose sender may not write for
// the agent it claims: claimed is the value of the column named field
// (agent_id, agent_name or service_name). listed says whether the sender
// is in the policy at all. The detail quotes both values, each cut to 256
// bytes.
func SenderMismatch(sender, field, claimed string, listed bool) entry.Problem {
	s := strconv.Quote(truncate(sender, maxDetailValue))
	c := field + " " + strconv.Quote(truncate(claimed, maxDetailValue))
	detail := "sender " + s + " may not write for " + c
	if !listed {
		detail = "sender " + s + " is not listed in senders, so may not write for " + c
	}
	return entry.Problem{Field: FieldSender, Kind: entry.ProblemSenderMismatch, Detail: detail}
}

// MergeProblems adds ps to e's validation: merged with the problems it
// holds, sorted by field then kind, without duplicates, in the canonical
// JSON of the column. It changes e.Validation only when ps is not empty;
// the entry must not be chained yet (its hash would no longer match). A
// validation that is not a JSON array of problems (never one the mapping
// wrote) is replaced, its text kept in an unknown_value problem, as
// AddProblems does for a span's.
func MergeProblems(e *entry.Entry, ps ...entry.Problem) {
	if len(ps) == 0 {
		return
	}
	var all []entry.Problem
	if e.Validation != nil {
		old, err := parseProblems(*e.Validation)
		if err != nil {
			old = []entry.Problem{{Field: entry.KeyValidation, Kind: entry.ProblemUnknownValue,
				Detail: truncate(strings.ToValidUTF8(*e.Validation, "\uFFFD"), maxValidationDetail)}}
		}
		all = old
	}
	all = sortProblems(append(all, ps...))
	s := string(appendProblems(nil, all))
	e.Validation = &s
}
