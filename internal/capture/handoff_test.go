package capture

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TestStrippedNote: the note holds for the traces it was written for, an
// equal strip list and capture configuration (not the same objects), and
// as many spans; for nothing else.
func TestStrippedNote(t *testing.T) {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	spans.AppendEmpty()
	spans.AppendEmpty()
	tools := []ToolRule{{Match: "crm_*", Action: "write"}}
	ctx := WithStripped(context.Background(), td, NewStripper(StripConfig{}), New(Config{Conventions: []string{GenAI}, Tools: tools}), 1)

	audit, ok := StrippedIn(ctx, td, NewStripper(DefaultStripConfig()), New(Config{Conventions: []string{GenAI}, Tools: tools}))
	assert.True(t, ok)
	assert.Equal(t, 1, audit)

	other := ptrace.NewTraces()
	td.CopyTo(other)
	holds := func(_ int, ok bool) bool { return ok }
	for name, ok := range map[string]bool{
		"no note":           holds(StrippedIn(context.Background(), td, NewStripper(StripConfig{}), New(Config{Conventions: []string{GenAI}, Tools: tools}))),
		"other traces":      holds(StrippedIn(ctx, other, NewStripper(StripConfig{}), New(Config{Conventions: []string{GenAI}, Tools: tools}))),
		"other keys":        holds(StrippedIn(ctx, td, NewStripper(StripConfig{Keys: []string{"audit.*"}, Except: DefaultStripExcept}), New(Config{Conventions: []string{GenAI}, Tools: tools}))),
		"other exceptions":  holds(StrippedIn(ctx, td, NewStripper(StripConfig{Keys: DefaultStripKeys}), New(Config{Conventions: []string{GenAI}, Tools: tools}))),
		"other conventions": holds(StrippedIn(ctx, td, NewStripper(StripConfig{}), New(Config{Conventions: []string{GenAI, OpenInference}, Tools: tools}))),
		"other tools":       holds(StrippedIn(ctx, td, NewStripper(StripConfig{}), New(Config{Conventions: []string{GenAI}}))),
	} {
		assert.False(t, ok, name)
	}
	first := true
	spans.RemoveIf(func(ptrace.Span) bool { removed := first; first = false; return removed })
	_, ok = StrippedIn(ctx, td, NewStripper(StripConfig{}), New(Config{Conventions: []string{GenAI}, Tools: tools}))
	assert.False(t, ok, "a span removed since")
}
