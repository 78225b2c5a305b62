package trailtest

import (
	"fmt"
	"strconv"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// Start is when Entry(0) starts: 2026-03-09T09:30:00Z, a day the hand-made
// trails of the tests share.
const Start int64 = 1773048600000000000

// Entry is a realistic entry of about 400 canonical bytes, the i-th of a
// test chain: an execution of 8 steps, the action types in turn, a
// proposed and previous value with reasoning every third, an approver every
// fifth; no end time and no sender (a test sets those it needs). Tests
// vary it from here, so that one shape serves them all.
func Entry(i int64) entry.Entry {
	s := func(v string) *string { return &v }
	e := entry.Entry{
		TimeUnixNano:   Start + i*1_234_567,
		ExecutionID:    "exec_" + strconv.FormatInt(i/8, 36),
		TraceID:        fmt.Sprintf("%032x", i*7919+1),
		SpanID:         fmt.Sprintf("%016x", i*104729+1),
		ParentSpanID:   s(fmt.Sprintf("%016x", i*104729)),
		AgentID:        s("agent-7"),
		AgentName:      s("CRM Assistant"),
		ServiceName:    s("crm-agent"),
		Principal:      s("user-42"),
		ActionType:     entry.KnownActionTypes[i%int64(len(entry.KnownActionTypes))],
		TargetSystem:   "HubSpot CRM",
		TargetResource: "Contact #" + strconv.FormatInt(48291+i%1000, 10) + " (email field)",
		Result:         "200 OK",
		StatusCode:     "Unset",
		Attributes:     `{"http.request.method":"GET","http.response.status_code":200}`,
	}
	if i%3 == 0 {
		e.ProposedValue = s("jane@newdomain.com")
		e.PreviousValue = s("jane@olddomain.com")
		e.Reasoning = s("Email bounced; found updated address via Clearbit")
	}
	if i%5 == 0 {
		e.Approver = s("ops@company.com")
	}
	return e
}
