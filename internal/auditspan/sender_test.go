package auditspan

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentaudit/agentaudit/internal/entry"
)

func TestSenderColumn(t *testing.T) {
	long := strings.Repeat("ü", 40) // 80 bytes
	sum := sha256.Sum256([]byte(long))
	for _, tc := range []struct {
		name, in, want string
		problems       []entry.Problem
	}{
		{"plain", "svc-billing", "svc-billing", nil},
		{"certificate subject", "CN=Zahlungs-Agent Ü,O=Beispiel GmbH", "CN=Zahlungs-Agent Ü,O=Beispiel GmbH", nil},
		{"empty", "", "", nil},
		{"invalid UTF-8", "svc-\xff", "svc-\uFFFD", []entry.Problem{{Field: "sender", Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"}}},
		{"NUL", "svc\x00x", "svc\x00x", []entry.Problem{{Field: "sender", Kind: entry.ProblemNULByte, Detail: "kept"}}},
		{"too long", long, strings.Repeat("ü", 32), []entry.Problem{{Field: "sender", Kind: entry.ProblemTruncated,
			Detail: "truncated to 65 bytes", OriginalBytes: 80, SHA256: hex.EncodeToString(sum[:])}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ps := SenderColumn(tc.in, Options{MaxValueBytes: 65})
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.problems, ps)
		})
	}
}

func TestSenderMismatch(t *testing.T) {
	assert.Equal(t, entry.Problem{Field: "sender", Kind: "sender_mismatch", Detail: `sender "svc-billing" may not write for agent_id "crm-agent"`},
		SenderMismatch("svc-billing", "agent_id", "crm-agent", true))
	assert.Equal(t, entry.Problem{Field: "sender", Kind: "sender_mismatch", Detail: `sender "CN=x,O=ü" is not listed in senders, so may not write for agent_name "CRM \"agent\""`},
		SenderMismatch("CN=x,O=ü", "agent_name", `CRM "agent"`, false))
	p := SenderMismatch(strings.Repeat("s", 1000), "agent_id", strings.Repeat("a", 1000), true)
	assert.Equal(t, `sender "`+strings.Repeat("s", 256)+`" may not write for agent_id "`+strings.Repeat("a", 256)+`"`, p.Detail, "each value cut to 256 bytes")
}

// MergeProblems keeps the column canonical: what the mapping would have
// written had it found every problem itself.
func TestMergeProblems(t *testing.T) {
	mismatch := SenderMismatch("svc", "agent_id", "a", true)

	e := entry.Entry{}
	MergeProblems(&e)
	assert.Nil(t, e.Validation, "nothing to merge: still NULL")
	MergeProblems(&e, mismatch)
	require.NotNil(t, e.Validation)
	assert.Equal(t, `[{"field":"sender","problem":"sender_mismatch","detail":"sender \"svc\" may not write for agent_id \"a\""}]`, *e.Validation)

	// Merged, sorted by field then kind, duplicates dropped.
	old := `[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},{"field":"trace_id","problem":"invalid_id"}]`
	e = entry.Entry{Validation: &old}
	MergeProblems(&e, mismatch, entry.Problem{Field: "sender", Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"}, mismatch)
	want := sortProblems([]entry.Problem{
		{Field: "audit.execution.id", Kind: "defaulted", Detail: "defaulted to trace id"},
		{Field: "trace_id", Kind: "invalid_id"},
		mismatch,
		{Field: "sender", Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
	})
	assert.Equal(t, string(appendProblems(nil, want)), *e.Validation)
	assert.Equal(t, `[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},`+
		`{"field":"sender","problem":"invalid_utf8","detail":"replaced with U+FFFD"},`+
		`{"field":"sender","problem":"sender_mismatch","detail":"sender \"svc\" may not write for agent_id \"a\""},`+
		`{"field":"trace_id","problem":"invalid_id"}]`, *e.Validation)

	// Not ours: kept as text in a problem, as AddProblems does.
	bad := "not json"
	e = entry.Entry{Validation: &bad}
	MergeProblems(&e, mismatch)
	assert.Equal(t, `[{"field":"audit.validation","problem":"unknown_value","detail":"not json"},`+
		`{"field":"sender","problem":"sender_mismatch","detail":"sender \"svc\" may not write for agent_id \"a\""}]`, *e.Validation)
}
