package harness

import (
	"fmt"
	"strconv"
	"time"

	"github.com/agentaudit/agentaudit/internal/entry"
)

// SampleEntry is a realistic entry of about 400 canonical bytes.
func SampleEntry(i int64) entry.Entry {
	s := func(v string) *string { return &v }
	e := entry.Entry{
		TimeUnixNano:   1773048600000000000 + i*1_234_567,
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

// Day is the UTC day of the hand-made trails' batch keys.
var Day = time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)

// Strp returns a pointer to s, for an entry's optional fields.
func Strp(s string) *string { return &s }
