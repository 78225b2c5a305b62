package auditspan

// The entry limit: the problems an entry carries, and an entry over
// max_entry_bytes cut down to it.

import (
	"cmp"
	"slices"
	"strings"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// setValidation encodes m's problems into e.Validation.
func (m *mapper) setValidation(e *entry.Entry) {
	if len(m.problems) > 0 {
		m.problems = sortProblems(m.problems)
		s := string(appendProblems(nil, m.problems))
		e.Validation = &s
	}
}

// cutEntry brings an entry over the limit within it, or as close as it can,
// deterministically. It empties values, one at a time, largest first, until
// the entry fits: first the values of the attributes column (their JSON
// text, ties in key order; service.name, error.type and
// http.response.status_code, which feed other columns, are never cut), each
// replaced by the JSON string "", then audit.value.proposed,
// audit.value.previous and audit.reasoning (ties in that order), each
// replaced by "". Each is flagged entry_truncated with the length and
// SHA-256 of the bytes removed. A value whose problem would take as many
// bytes as emptying it saves is not cut. When even that is not enough
// (keys, problems and the other columns are never cut), one more
// entry_truncated problem under "entry" says so. kvs are the attributes,
// sorted as appendObject left them.
func (m *mapper) cutEntry(e *entry.Entry, kvs []keyValue) {
	type candidate struct {
		key  string
		text string  // the bytes removed
		col  *string // the payload column, or nil for an attribute
	}
	q := mapper{max: m.max, quiet: true}
	var cands []candidate
	for i, kv := range kvs {
		if (i > 0 && kv.key == kvs[i-1].key) || feedsColumn(kv.key) {
			continue
		}
		cands = append(cands, candidate{key: kv.key, text: string(q.appendCanonical(nil, kv.key, kv.val, 1))})
	}
	bySize := func(a, b candidate) int { return cmp.Compare(len(b.text), len(a.text)) }
	slices.SortStableFunc(cands, bySize)
	var payload []candidate
	for _, c := range [...]candidate{{key: entry.KeyValueProposed, col: e.ProposedValue}, {key: entry.KeyValuePrevious, col: e.PreviousValue}, {key: entry.KeyReasoning, col: e.Reasoning}} {
		if c.col != nil {
			c.text = *c.col
			payload = append(payload, c)
		}
	}
	slices.SortStableFunc(payload, bySize)
	cands = append(cands, payload...)

	size := entry.EntryBytes(e)
	const emptyJSON = `""`
	var added []entry.Problem
	for _, c := range cands {
		if size <= m.maxEntry {
			break
		}
		p := entry.Problem{Field: c.key, Kind: entry.ProblemEntryTruncated, Detail: "emptied to fit max_entry_bytes",
			OriginalBytes: int64(len(c.text)), SHA256: strings.Repeat("0", 64)}
		cost := len(appendProblems(nil, []entry.Problem{p})) - 1 // with its comma, or both brackets less one
		if e.Validation == nil && len(added) == 0 {
			cost++
		}
		saved := len(c.text)
		if c.col == nil {
			saved -= len(emptyJSON)
		}
		if saved <= cost {
			continue
		}
		size += cost - saved
		p.SHA256 = sha256Hex(c.text)
		added = append(added, p)
		if c.col != nil {
			*c.col = ""
		} else {
			if m.cut == nil {
				m.cut = map[string]struct{}{}
			}
			m.cut[c.key] = struct{}{}
		}
	}
	if size > m.maxEntry {
		added = append(added, entry.Problem{Field: fieldEntry, Kind: entry.ProblemEntryTruncated,
			Detail: "still over max_entry_bytes: keys, problems and other columns are not cut"})
	}
	if len(m.cut) > 0 {
		buf := []byte{'{'}
		for i, kv := range kvs {
			if i > 0 && kv.key == kvs[i-1].key {
				continue
			}
			if len(buf) > 1 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, kv.key)
			buf = append(buf, ':')
			if m.isCut(kv.key) {
				buf = append(buf, emptyJSON...)
			} else {
				buf = q.appendCanonical(buf, kv.key, kv.val, 1)
			}
		}
		e.Attributes = string(append(buf, '}'))
	}
	m.problems = append(m.problems, added...)
	m.setValidation(e)
}
