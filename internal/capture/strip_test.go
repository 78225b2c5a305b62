package capture

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultStrip(t *testing.T) {
	s := span("x", map[string]any{
		"audit.action.type": "write", "audit.execution.id": "e", "audit.target.system": "crm", "audit.result": "200",
		"audit.target.resource": "Contact #1", "audit.value.proposed": "a@b", "audit.value.previous": "c@d", "audit.reasoning": "r",
		"audit.approver": "ops@x", "audit.validation": "[]", "audit.custom": "?",
		"gen_ai.tool.call.arguments": "{}", "gen_ai.tool.call.result": "{}", "input.value": "i", "output.value": "o",
		"ai.toolCall.args": "{}", "ai.toolCall.result": "{}",
		"gen_ai.tool.name": "crm", "http.response.status_code": 200, "a/b": 1,
	})
	cfg := DefaultStripConfig()
	require.NoError(t, cfg.Validate())
	NewStripper(cfg).Strip(s)
	var kept []string
	for k := range s.Attributes().AsRaw() {
		kept = append(kept, k)
	}
	slices.Sort(kept)
	assert.Equal(t, []string{"a/b", "audit.action.type", "audit.execution.id", "audit.result", "audit.target.system", "gen_ai.tool.name", "http.response.status_code"}, kept)
}

func TestStripConfigured(t *testing.T) {
	s := span("x", map[string]any{"audit.value.proposed": "a", "audit.approver": "p", "user.email": "e", "user.id": "1"})
	NewStripper(StripConfig{Keys: []string{"audit.value.*", "user.*"}, Except: []string{"user.id"}}).Strip(s)
	assert.Equal(t, map[string]any{"audit.approver": "p", "user.id": "1"}, s.Attributes().AsRaw())
	err := (&StripConfig{Keys: []string{"[", ""}}).Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"keys": "[" is not a glob`)
	assert.Contains(t, err.Error(), `"keys": "" is not a glob`)
}
