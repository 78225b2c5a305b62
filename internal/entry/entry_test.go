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
