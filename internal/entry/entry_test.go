package entry

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsReservedActionType(t *testing.T) {
	for s, want := range map[string]bool{
		ActionLoss: true, "agentaudit.": true, "AGENTAUDIT.x": true, "agentaudit": false,
		"agentaudit-loss": false, "xagentaudit.loss": false, "reserved:agentaudit.loss": false, "": false,
	} {
		assert.Equal(t, want, IsReservedActionType(s), s)
	}
	assert.True(t, strings.HasPrefix(ActionLoss, ReservedActionPrefix))
}

func TestEntryBytesCountsSender(t *testing.T) {
	e := Entry{ExecutionID: "x"}
	n := EntryBytes(&e)
	e.Sender = new("svc-billing")
	assert.Equal(t, n+len("svc-billing"), EntryBytes(&e))
}

func TestIsUnknownAuditKey(t *testing.T) {
	for k, want := range map[string]bool{
		KeyApprovalID: false, "audit.approval.idx": true, "audit.approval": true, "audit.cost.usd": true,
		"audit.": true, "audit": false, "AUDIT.x": false, AttrApprovalID: false, "gen_ai.tool.name": false,
	} {
		assert.Equal(t, want, IsUnknownAuditKey(k), k)
	}
	// The service's attributes are in the collector's namespace.
	for _, k := range []string{AttrApprovalID, AttrApprovalRequestHash, AttrApprovalExpiresAt, AttrApprovalPolicy,
		AttrApprovalTool, AttrApprovalAuto, AttrApprovalReviewers} {
		assert.True(t, IsReservedActionType(k), k)
	}
	assert.True(t, IsReservedActionType(ActionApprovalPolicy))
	assert.True(t, IsReservedActionType(ActionApprovalExpired))
}
