package auditspan

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/entry"
)

var (
	testTraceID  = pcommon.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}
	testSpanID   = pcommon.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31}
	testParentID = pcommon.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

const (
	testTraceHex  = "0af7651916cd43dd8448eb211c80319c"
	testSpanHex   = "b7ad6b7169203331"
	testParentHex = "00f067aa0ba902b7"
)

func ptr(s string) *string { return &s }

func i64(v int64) *int64 { return &v }

// typicalSpan is a well-formed write action: no problems.
func typicalSpan() (pcommon.Resource, ptrace.Span) {
	res := pcommon.NewResource()
	res.Attributes().PutStr(entry.KeyServiceName, "crm-agent-svc")
	res.Attributes().PutStr(entry.KeyAgentID, "agent-7")

	span := ptrace.NewSpan()
	span.SetName("update phone")
	span.SetTraceID(testTraceID)
	span.SetSpanID(testSpanID)
	span.SetParentSpanID(testParentID)
	span.SetStartTimestamp(1_700_000_000_123_456_789)
	span.SetEndTimestamp(1_700_000_000_223_456_789)
	a := span.Attributes()
	a.PutStr(entry.KeyActionType, "write")
	a.PutStr(entry.KeyExecutionID, "run-42")
	a.PutStr(entry.KeyTargetSystem, "salesforce")
	a.PutStr(entry.KeyTargetResource, "Account/001/Phone")
	a.PutStr(entry.KeyValueProposed, "+1 555 0100")
	a.PutStr(entry.KeyValuePrevious, "+1 555 0199")
	a.PutStr(entry.KeyReasoning, "customer asked to update the phone number")
	a.PutStr(entry.KeyApprover, "auto:low-risk")
	a.PutStr(entry.KeyAgentName, "crm-agent")
	a.PutStr(entry.KeyEndUserID, "alice@example.com")
	a.PutStr("http.request.method", "PATCH")
	a.PutInt(entry.KeyHTTPStatus, 200)
	span.Status().SetCode(ptrace.StatusCodeOk)
	return res, span
}

func typicalEntry() entry.Entry {
	return entry.Entry{
		TimeUnixNano:    1_700_000_000_123_456_789,
		EndTimeUnixNano: i64(1_700_000_000_223_456_789),
		ExecutionID:     "run-42",
		TraceID:         testTraceHex,
		SpanID:          testSpanHex,
		ParentSpanID:    ptr(testParentHex),
		AgentID:         ptr("agent-7"),
		AgentName:       ptr("crm-agent"),
		ServiceName:     ptr("crm-agent-svc"),
		Principal:       ptr("alice@example.com"),
		ActionType:      "write",
		TargetSystem:    "salesforce",
		TargetResource:  "Account/001/Phone",
		ProposedValue:   ptr("+1 555 0100"),
		PreviousValue:   ptr("+1 555 0199"),
		Reasoning:       ptr("customer asked to update the phone number"),
		Approver:        ptr("auto:low-risk"),
		Result:          "200",
		StatusCode:      "Ok",
		Attributes:      `{"http.request.method":"PATCH","http.response.status_code":200}`,
	}
}

type fixture struct {
	name string
	// edit changes the typical span; want changes the typical entry.
	edit func(res pcommon.Resource, span ptrace.Span)
	want func(e *entry.Entry)
	// problems are the expected problems, in Validation order.
	problems []entry.Problem
}

var fixtures = []fixture{
	{
		name: "typical",
		edit: func(pcommon.Resource, ptrace.Span) {},
		want: func(*entry.Entry) {},
	},
	{
		name:     "action type missing",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(entry.KeyActionType) },
		want:     func(e *entry.Entry) { e.ActionType = "" },
		problems: []entry.Problem{{Field: entry.KeyActionType, Kind: entry.ProblemMissing}},
	},
	{
		name:     "action type empty",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyActionType, "") },
		want:     func(e *entry.Entry) { e.ActionType = "" },
		problems: []entry.Problem{{Field: entry.KeyActionType, Kind: entry.ProblemEmpty}},
	},
	{
		name:     "action type unknown",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyActionType, "delete") },
		want:     func(e *entry.Entry) { e.ActionType = "delete" },
		problems: []entry.Problem{{Field: entry.KeyActionType, Kind: entry.ProblemUnknownValue, Detail: "kept verbatim"}},
	},
	{
		name: "action type int",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt(entry.KeyActionType, 7) },
		want: func(e *entry.Entry) { e.ActionType = "7" },
		problems: []entry.Problem{
			{Field: entry.KeyActionType, Kind: entry.ProblemNotString, Detail: "Int"},
			{Field: entry.KeyActionType, Kind: entry.ProblemUnknownValue, Detail: "kept verbatim"},
		},
	},
	{
		name:     "execution id missing",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(entry.KeyExecutionID) },
		want:     func(e *entry.Entry) { e.ExecutionID = testTraceHex },
		problems: []entry.Problem{{Field: entry.KeyExecutionID, Kind: entry.ProblemDefaulted, Detail: "defaulted to trace id"}},
	},
	{
		name: "execution id empty",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyExecutionID, "") },
		want: func(e *entry.Entry) { e.ExecutionID = testTraceHex },
		problems: []entry.Problem{
			{Field: entry.KeyExecutionID, Kind: entry.ProblemDefaulted, Detail: "defaulted to trace id"},
			{Field: entry.KeyExecutionID, Kind: entry.ProblemEmpty},
		},
	},
	{
		name:     "target system missing",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(entry.KeyTargetSystem) },
		want:     func(e *entry.Entry) { e.TargetSystem = "" },
		problems: []entry.Problem{{Field: entry.KeyTargetSystem, Kind: entry.ProblemMissing}},
	},
	{
		name:     "target system empty",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyTargetSystem, "") },
		want:     func(e *entry.Entry) { e.TargetSystem = "" },
		problems: []entry.Problem{{Field: entry.KeyTargetSystem, Kind: entry.ProblemMissing}},
	},
	{
		name: "target resource missing",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(entry.KeyTargetResource) },
		want: func(e *entry.Entry) { e.TargetResource = "" },
	},
	{
		name: "optional values missing",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			for _, k := range []string{entry.KeyValueProposed, entry.KeyValuePrevious, entry.KeyReasoning, entry.KeyApprover} {
				s.Attributes().Remove(k)
			}
		},
		want: func(e *entry.Entry) { e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver = nil, nil, nil, nil },
	},
	{
		name: "optional values empty strings",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			for _, k := range []string{entry.KeyValueProposed, entry.KeyValuePrevious, entry.KeyReasoning, entry.KeyApprover} {
				s.Attributes().PutStr(k, "")
			}
		},
		want: func(e *entry.Entry) {
			e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver = ptr(""), ptr(""), ptr(""), ptr("")
		},
	},
	{
		name: "identity from span wins over resource",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(entry.KeyAgentID, "agent-span")
			s.Attributes().PutStr(entry.KeyServiceName, "svc-span")
		},
		want: func(e *entry.Entry) {
			e.AgentID = ptr("agent-span")
			e.ServiceName = ptr("svc-span")
			// service.name is not one of the keys taken out of the attributes.
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"service.name":"svc-span"}`
		},
	},
	{
		name: "identity from resource only",
		edit: func(r pcommon.Resource, s ptrace.Span) {
			s.Attributes().Remove(entry.KeyAgentName)
			s.Attributes().Remove(entry.KeyEndUserID)
			r.Attributes().PutStr(entry.KeyAgentName, "res-name")
			r.Attributes().PutStr(entry.KeyEndUserID, "bob")
		},
		want: func(e *entry.Entry) { e.AgentName, e.Principal = ptr("res-name"), ptr("bob") },
	},
	{
		name: "identity absent on both",
		edit: func(r pcommon.Resource, s ptrace.Span) {
			r.Attributes().Clear()
			s.Attributes().Remove(entry.KeyAgentName)
			s.Attributes().Remove(entry.KeyEndUserID)
		},
		want: func(e *entry.Entry) { e.AgentID, e.AgentName, e.ServiceName, e.Principal = nil, nil, nil, nil },
	},
	{
		name:     "identity not string on resource",
		edit:     func(r pcommon.Resource, _ ptrace.Span) { r.Attributes().PutInt(entry.KeyAgentID, 99) },
		want:     func(e *entry.Entry) { e.AgentID = ptr("99") },
		problems: []entry.Problem{{Field: entry.KeyAgentID, Kind: entry.ProblemNotString, Detail: "Int"}},
	},
	{
		name:     "identity not string on span",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutBool(entry.KeyEndUserID, true) },
		want:     func(e *entry.Entry) { e.Principal = ptr("true") },
		problems: []entry.Problem{{Field: entry.KeyEndUserID, Kind: entry.ProblemNotString, Detail: "Bool"}},
	},
	{
		name: "result given",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyResult, "updated") },
		want: func(e *entry.Entry) { e.Result = "updated" },
	},
	{
		name: "result error with error.type",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage("upstream said no")
			s.Attributes().PutStr(entry.KeyErrorType, "timeout")
		},
		want: func(e *entry.Entry) {
			e.Result, e.StatusCode = "error: timeout", "Error"
			e.Attributes = `{"error.type":"timeout","http.request.method":"PATCH","http.response.status_code":200}`
		},
	},
	{
		name: "result error with message",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage("upstream said no")
		},
		want: func(e *entry.Entry) { e.Result, e.StatusCode = "error: upstream said no", "Error" },
	},
	{
		name: "result error bare",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Status().SetCode(ptrace.StatusCodeError) },
		want: func(e *entry.Entry) { e.Result, e.StatusCode = "error", "Error" },
	},
	{
		name: "result http status string without status",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeUnset)
			s.Attributes().PutStr(entry.KeyHTTPStatus, "503")
		},
		want: func(e *entry.Entry) {
			e.Result, e.StatusCode = "503", "Unset"
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":"503"}`
		},
	},
	{
		name: "result ok",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(entry.KeyHTTPStatus) },
		want: func(e *entry.Entry) { e.Result, e.Attributes = "ok", `{"http.request.method":"PATCH"}` },
	},
	{
		name: "result unset",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().Remove(entry.KeyHTTPStatus)
			s.Status().SetCode(ptrace.StatusCodeUnset)
		},
		want: func(e *entry.Entry) {
			e.Result, e.StatusCode, e.Attributes = "unset", "Unset", `{"http.request.method":"PATCH"}`
		},
	},
	{
		name: "invalid ids",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetTraceID(pcommon.NewTraceIDEmpty())
			s.SetSpanID(pcommon.NewSpanIDEmpty())
			s.SetParentSpanID(pcommon.NewSpanIDEmpty())
		},
		want: func(e *entry.Entry) {
			e.TraceID, e.SpanID, e.ParentSpanID = strings.Repeat("0", 32), strings.Repeat("0", 16), nil
		},
		problems: []entry.Problem{
			{Field: "span_id", Kind: entry.ProblemInvalidID, Detail: "empty span id"},
			{Field: "trace_id", Kind: entry.ProblemInvalidID, Detail: "empty trace id"},
		},
	},
	{
		name: "invalid utf8 in contract value",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(entry.KeyReasoning, "bad \xff\xfe byte")
		},
		want:     func(e *entry.Entry) { e.Reasoning = ptr("bad \uFFFD byte") },
		problems: []entry.Problem{{Field: entry.KeyReasoning, Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"}},
	},
	{
		name: "invalid utf8 in other attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr("tool.input", "x\xc3")
			s.Attributes().PutStr("k\xffey", "v")
			sl := s.Attributes().PutEmptySlice("tool.args")
			sl.AppendEmpty().SetStr("ok")
			sl.AppendEmpty().SetStr("\xe2\x82")
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"k` + "\uFFFD" + `ey":"v","tool.args":["ok","` + "\uFFFD" + `"],"tool.input":"x` + "\uFFFD" + `"}`
		},
		problems: []entry.Problem{
			{Field: "attributes", Kind: entry.ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"},
			{Field: "tool.args", Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
			{Field: "tool.input", Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
		},
	},
	{
		name: "invalid utf8 in a nested key",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutEmptyMap("tool.args").PutStr("q\xff", "v")
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.args":{"q` + "\uFFFD" + `":"v"}}`
		},
		problems: []entry.Problem{{Field: "tool.args", Kind: entry.ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"}},
	},
	{
		name: "unknown audit key",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt("audit.cost.usd", 3) },
		want: func(e *entry.Entry) {
			e.Attributes = `{"audit.cost.usd":3,"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{{Field: "audit.cost.usd", Kind: entry.ProblemUnknownKey, Detail: "kept in attributes"}},
	},
	{
		name:     "proposed Int",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt(entry.KeyValueProposed, -42) },
		want:     func(e *entry.Entry) { e.ProposedValue = ptr("-42") },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Int"}},
	},
	{
		name:     "proposed Double",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutDouble(entry.KeyValueProposed, 0.1) },
		want:     func(e *entry.Entry) { e.ProposedValue = ptr("0.1") },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Double"}},
	},
	{
		name:     "proposed Double large",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutDouble(entry.KeyValueProposed, 1e21) },
		want:     func(e *entry.Entry) { e.ProposedValue = ptr("1e+21") },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Double"}},
	},
	{
		name:     "proposed Bool",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutBool(entry.KeyValueProposed, false) },
		want:     func(e *entry.Entry) { e.ProposedValue = ptr("false") },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Bool"}},
	},
	{
		name: "proposed Bytes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutEmptyBytes(entry.KeyValueProposed).FromRaw([]byte{0xde, 0xad, 0xbe, 0xef, 0xff})
		},
		want:     func(e *entry.Entry) { e.ProposedValue = ptr("3q2+7/8=") },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Bytes"}},
	},
	{
		name: "proposed Slice",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			sl := s.Attributes().PutEmptySlice(entry.KeyValueProposed)
			sl.AppendEmpty().SetStr("a<b>")
			sl.AppendEmpty().SetInt(1)
			sl.AppendEmpty()
		},
		want:     func(e *entry.Entry) { e.ProposedValue = ptr(`["a<b>",1,null]`) },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Slice"}},
	},
	{
		name: "proposed Map",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			m := s.Attributes().PutEmptyMap(entry.KeyValueProposed)
			m.PutStr("phone", "+1 555 0100")
			m.PutBool("verified", true)
			m.PutDouble("amount", 12.5)
		},
		want:     func(e *entry.Entry) { e.ProposedValue = ptr(`{"amount":12.5,"phone":"+1 555 0100","verified":true}`) },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Map"}},
	},
	{
		name:     "proposed Empty",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutEmpty(entry.KeyValueProposed) },
		want:     func(e *entry.Entry) { e.ProposedValue = ptr("") },
		problems: []entry.Problem{{Field: entry.KeyValueProposed, Kind: entry.ProblemNotString, Detail: "Empty"}},
	},
	{
		name: "earlier validation merged and deduplicated",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().Remove(entry.KeyTargetSystem)
			putSealed(s, `[{"field":"audit.target.system","problem":"missing"},{"field":"audit.value.proposed","problem":"truncated","original_bytes":70000,"sha256":"ab"}]`)
		},
		want: func(e *entry.Entry) { e.TargetSystem = "" },
		problems: []entry.Problem{
			{Field: entry.KeyTargetSystem, Kind: entry.ProblemMissing},
			{Field: entry.KeyValueProposed, Kind: entry.ProblemTruncated, OriginalBytes: 70000, SHA256: "ab"},
		},
	},
	{
		name:     "sealed validation, malformed",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { putSealed(s, `{"not":"an array"`) },
		want:     func(*entry.Entry) {},
		problems: []entry.Problem{{Field: entry.KeyValidation, Kind: entry.ProblemUnknownValue, Detail: `{"not":"an array"`}},
	},
	{
		name: "sealed validation with unknown keys is malformed",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			putSealed(s, `[{"field":"x","problem":"y","extra":1}]`)
		},
		want:     func(*entry.Entry) {},
		problems: []entry.Problem{{Field: entry.KeyValidation, Kind: entry.ProblemUnknownValue, Detail: `[{"field":"x","problem":"y","extra":1}]`}},
	},
	{
		name: "forged validation kept in attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(entry.KeyValidation, `[{"field":"audit.value.proposed","problem":"truncated","original_bytes":70000,"sha256":"ab"}]`)
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"audit.validation":"[{\"field\":\"audit.value.proposed\",\"problem\":\"truncated\",\"original_bytes\":70000,\"sha256\":\"ab\"}]",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed}},
	},
	{
		name: "forged validation with a forged seal",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(entry.KeyValidation, `[{"field":"x","problem":"missing"}]`)
			s.Attributes().PutStr(KeySeal, strings.Repeat("0", 64))
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"agentaudit.seal":"` + strings.Repeat("0", 64) + `","audit.validation":"[{\"field\":\"x\",\"problem\":\"missing\"}]",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{
			{Field: KeySeal, Kind: ProblemReservedKey, Detail: detailReservedKey},
			{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed},
		},
	},
	{
		name: "sealed validation moved to another span",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			putSealed(s, `[{"field":"x","problem":"missing"}]`)
			s.SetSpanID(pcommon.SpanID{1})
		},
		want: func(e *entry.Entry) {
			e.SpanID = "0100000000000000"
			seal := sealHex(testTraceID, testSpanID, `[{"field":"x","problem":"missing"}]`)
			e.Attributes = `{"agentaudit.seal":"` + seal + `","audit.validation":"[{\"field\":\"x\",\"problem\":\"missing\"}]",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{
			{Field: KeySeal, Kind: ProblemReservedKey, Detail: detailReservedKey},
			{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed},
		},
	},
	{
		name: "forged validation not a string",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt(entry.KeyValidation, 5) },
		want: func(e *entry.Entry) {
			e.Attributes = `{"audit.validation":5,"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{{Field: entry.KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed}},
	},
	{
		name: "reserved keys kept in attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr("agentaudit.x", "1")
			s.Attributes().PutEmptyMap(KeyMoved).PutStr(entry.KeyValidation, "[]")
			s.Attributes().PutBool("AgentAudit.Y", true)
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"AgentAudit.Y":true,"agentaudit.moved":{"audit.validation":"[]"},"agentaudit.x":"1",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{
			{Field: "AgentAudit.Y", Kind: ProblemReservedKey, Detail: detailReservedKey},
			{Field: KeyMoved, Kind: ProblemReservedKey, Detail: detailReservedKey},
			{Field: "agentaudit.x", Kind: ProblemReservedKey, Detail: detailReservedKey},
		},
	},
	{
		name: "repaired key colliding with another keeps the first",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr("dup\xff", "first")
			s.Attributes().PutStr("dup\uFFFD", "second")
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"dup` + "\uFFFD" + `":"first","http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []entry.Problem{
			{Field: "attributes", Kind: entry.ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"},
			{Field: "dup\uFFFD", Kind: entry.ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 6, SHA256: sha256Of("second")},
		},
	},
	{
		name:     "status code outside the enum",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Status().SetCode(7) },
		want:     func(e *entry.Entry) { e.StatusCode = "Code(7)" },
		problems: []entry.Problem{{Field: "status_code", Kind: entry.ProblemUnknownValue, Detail: "stored as Code(7)"}},
	},
	{
		name:     "status code negative",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Status().SetCode(-1) },
		want:     func(e *entry.Entry) { e.StatusCode = "Code(-1)" },
		problems: []entry.Problem{{Field: "status_code", Kind: entry.ProblemUnknownValue, Detail: "stored as Code(-1)"}},
	},
	{
		name: "start time past int64",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetStartTimestamp(1<<63 + 5)
			s.SetEndTimestamp(1<<63 + 6)
		},
		want: func(e *entry.Entry) { e.TimeUnixNano, e.EndTimeUnixNano = math.MaxInt64, i64(math.MaxInt64) },
		problems: []entry.Problem{
			{Field: "end_time_unix_nano", Kind: entry.ProblemOutOfRange, Detail: "end time 9223372036854775814 ns clamped to the largest int64"},
			{Field: "time_unix_nano", Kind: entry.ProblemOutOfRange, Detail: "start time 9223372036854775813 ns clamped to the largest int64"},
		},
	},
	{
		name: "start and end time the largest int64",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetStartTimestamp(math.MaxInt64)
			s.SetEndTimestamp(math.MaxInt64)
		},
		want: func(e *entry.Entry) { e.TimeUnixNano, e.EndTimeUnixNano = math.MaxInt64, i64(math.MaxInt64) },
	},
	{
		name:     "end time past int64",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(math.MaxUint64) },
		want:     func(e *entry.Entry) { e.EndTimeUnixNano = i64(math.MaxInt64) },
		problems: []entry.Problem{{Field: "end_time_unix_nano", Kind: entry.ProblemOutOfRange, Detail: "end time 18446744073709551615 ns clamped to the largest int64"}},
	},
	{
		name: "end time equal to the start time",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(s.StartTimestamp()) },
		want: func(e *entry.Entry) { e.EndTimeUnixNano = i64(e.TimeUnixNano) },
	},
	{
		name:     "end time one nanosecond before the start time",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(s.StartTimestamp() - 1) },
		want:     func(e *entry.Entry) { e.EndTimeUnixNano = i64(e.TimeUnixNano - 1) },
		problems: []entry.Problem{{Field: "end_time_unix_nano", Kind: entry.ProblemBeforeStart, Detail: "end time before start time"}},
	},
	{
		name:     "end time unset",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(0) },
		want:     func(e *entry.Entry) { e.EndTimeUnixNano = i64(0) },
		problems: []entry.Problem{{Field: "end_time_unix_nano", Kind: entry.ProblemBeforeStart, Detail: "end time before start time"}},
	},
	{
		// Compared as the span carries them: both clamp to the same
		// value, but the end is before the start.
		name: "both times past int64, the end before the start",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetStartTimestamp(math.MaxUint64)
			s.SetEndTimestamp(1<<63 + 1)
		},
		want: func(e *entry.Entry) { e.TimeUnixNano, e.EndTimeUnixNano = math.MaxInt64, i64(math.MaxInt64) },
		problems: []entry.Problem{
			{Field: "end_time_unix_nano", Kind: entry.ProblemBeforeStart, Detail: "end time before start time"},
			{Field: "end_time_unix_nano", Kind: entry.ProblemOutOfRange, Detail: "end time 9223372036854775809 ns clamped to the largest int64"},
			{Field: "time_unix_nano", Kind: entry.ProblemOutOfRange, Detail: "start time 18446744073709551615 ns clamped to the largest int64"},
		},
	},
	{
		name: "NUL byte in a column is kept",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(entry.KeyReasoning, "approve\x00 and delete")
		},
		want:     func(e *entry.Entry) { e.Reasoning = ptr("approve\x00 and delete") },
		problems: []entry.Problem{{Field: entry.KeyReasoning, Kind: entry.ProblemNULByte, Detail: "kept"}},
	},
	{
		name:     "NUL byte in a resource identity",
		edit:     func(r pcommon.Resource, _ ptrace.Span) { r.Attributes().PutStr(entry.KeyAgentID, "\x00") },
		want:     func(e *entry.Entry) { e.AgentID = ptr("\x00") },
		problems: []entry.Problem{{Field: entry.KeyAgentID, Kind: entry.ProblemNULByte, Detail: "kept"}},
	},
	{
		name: "NUL byte in a derived result",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage("no\x00")
		},
		want:     func(e *entry.Entry) { e.Result, e.StatusCode = "error: no\x00", "Error" },
		problems: []entry.Problem{{Field: entry.KeyResult, Kind: entry.ProblemNULByte, Detail: "kept"}},
	},
	{
		name: "NUL byte in attributes is escaped, not a problem",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr("tool.input", "a\x00b") },
		want: func(e *entry.Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.input":"a\u0000b"}`
		},
	},
	{
		name: "reserved action type",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyActionType, entry.ActionLoss) },
		want: func(e *entry.Entry) { e.ActionType = "reserved:agentaudit.loss" },
		problems: []entry.Problem{
			{Field: entry.KeyActionType, Kind: entry.ProblemReservedValue, Detail: "agentaudit.loss"},
			{Field: entry.KeyActionType, Kind: entry.ProblemUnknownValue, Detail: "kept verbatim"},
		},
	},
	{
		name: "reserved action type in other letter case",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyActionType, "AgentAudit.Loss") },
		want: func(e *entry.Entry) { e.ActionType = "reserved:AgentAudit.Loss" },
		problems: []entry.Problem{
			{Field: entry.KeyActionType, Kind: entry.ProblemReservedValue, Detail: "AgentAudit.Loss"},
			{Field: entry.KeyActionType, Kind: entry.ProblemUnknownValue, Detail: "kept verbatim"},
		},
	},
	{
		name:     "action type agentaudit without the dot is not reserved",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(entry.KeyActionType, "agentaudit-loss") },
		want:     func(e *entry.Entry) { e.ActionType = "agentaudit-loss" },
		problems: []entry.Problem{{Field: entry.KeyActionType, Kind: entry.ProblemUnknownValue, Detail: "kept verbatim"}},
	},
	{
		name: "duplicate contract key keeps the first",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			appendAttr(s.Attributes(), entry.KeyApprover, `{"stringValue":"mallory"}`)
		},
		want:     func(*entry.Entry) {},
		problems: []entry.Problem{{Field: entry.KeyApprover, Kind: entry.ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 7, SHA256: sha256Of("mallory")}},
	},
	{
		name: "duplicate action type",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			appendAttr(s.Attributes(), entry.KeyActionType, `{"stringValue":"delete"}`)
			appendAttr(s.Attributes(), entry.KeyActionType, `{"stringValue":"delete"}`)
		},
		want: func(*entry.Entry) {},
		// Two equal dropped values are one problem.
		problems: []entry.Problem{{Field: entry.KeyActionType, Kind: entry.ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 6, SHA256: sha256Of("delete")}},
	},
	{
		name: "duplicate attribute of another type",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr("tool.input", "a")
			appendAttr(s.Attributes(), "tool.input", `{"kvlistValue":{"values":[{"key":"z","value":{"intValue":"5"}},{"key":"b","value":{"stringValue":"\u0000"}}]}}`)
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.input":"a"}`
		},
		problems: []entry.Problem{{Field: "tool.input", Kind: entry.ProblemDuplicateKey, Detail: "kept the first value",
			OriginalBytes: int64(len(`{"b":"\u0000","z":5}`)), SHA256: sha256Of(`{"b":"\u0000","z":5}`)}},
	},
	{
		name: "duplicate nested key",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			m := s.Attributes().PutEmptyMap("tool.args")
			m.PutStr("q", "1")
			appendAttr(m, "q", `{"stringValue":"2"}`)
		},
		want: func(e *entry.Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.args":{"q":"1"}}`
		},
		problems: []entry.Problem{{Field: "tool.args", Kind: entry.ProblemDuplicateKey, Detail: "kept the first value of a nested key", OriginalBytes: 1, SHA256: sha256Of("2")}},
	},
	{
		name: "duplicate service.name keeps the first for the column and in attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(entry.KeyServiceName, "svc-span")
			appendAttr(s.Attributes(), entry.KeyServiceName, `{"stringValue":"svc-other"}`)
		},
		want: func(e *entry.Entry) {
			e.ServiceName = ptr("svc-span")
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"service.name":"svc-span"}`
		},
		problems: []entry.Problem{{Field: entry.KeyServiceName, Kind: entry.ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 9, SHA256: sha256Of("svc-other")}},
	},
}

func sha256Of(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func buildFixture(f fixture) (pcommon.Resource, ptrace.Span, entry.Entry) {
	res, span := typicalSpan()
	f.edit(res, span)
	want := typicalEntry()
	f.want(&want)
	return res, span, want
}

func problemsOf(t *testing.T, e entry.Entry) []entry.Problem {
	t.Helper()
	if e.Validation == nil {
		return nil
	}
	var ps []entry.Problem
	require.NoError(t, json.Unmarshal([]byte(*e.Validation), &ps), *e.Validation)
	require.NotEmpty(t, ps, "validation must be nil rather than an empty array")
	return ps
}

func TestFromSpan(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			res, span, want := buildFixture(f)
			before := ptrace.NewSpan()
			span.CopyTo(before)

			got := FromSpan(res, span, Options{})

			assert.Equal(t, f.problems, problemsOf(t, got))
			got.Validation = nil
			assert.Equal(t, want, got)
			assert.Equal(t, before, span, "FromSpan must not modify the span")
		})
	}
}

// TestNormalize checks over every fixture that Normalize is idempotent and
// that FromSpan of the normalized span is the entry of the original span.
func TestNormalize(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			res, span, _ := buildFixture(f)
			want := FromSpan(res, span, Options{})

			Normalize(res, span, Options{})
			if f.name == "action type missing" {
				_, tagged := span.Attributes().Get(entry.KeyActionType)
				assert.False(t, tagged, "Normalize must not tag an untagged span")
			}
			assert.Equal(t, want, FromSpan(res, span, Options{}))

			once := ptrace.NewSpan()
			span.CopyTo(once)
			Normalize(res, span, Options{})
			assert.Equal(t, once, span, "Normalize must be idempotent")
		})
	}
}

func TestNormalizeWritesRepairs(t *testing.T) {
	res, span := typicalSpan()
	a := span.Attributes()
	a.Remove(entry.KeyExecutionID)
	a.Remove(entry.KeyTargetSystem)
	a.PutInt(entry.KeyValueProposed, 5)
	a.PutStr(entry.KeyReasoning, "r\xff")
	a.PutStr("tool.input", "in\xff")
	a.PutInt("tool.count", 3)
	Normalize(res, span, Options{})

	str := func(k string) any {
		v, ok := a.Get(k)
		if !ok {
			return nil
		}
		return v.AsRaw()
	}
	assert.Equal(t, testTraceHex, str(entry.KeyExecutionID))
	assert.Equal(t, "", str(entry.KeyTargetSystem))
	assert.Equal(t, "5", str(entry.KeyValueProposed))
	assert.Equal(t, "r\uFFFD", str(entry.KeyReasoning))
	assert.Equal(t, "in\uFFFD", str("tool.input"))
	assert.Equal(t, int64(3), str("tool.count"), "non-string values outside the contract keep their type")
	assert.Equal(t, "200", str(entry.KeyResult))
	assert.Equal(t, `[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},`+
		`{"field":"audit.reasoning","problem":"invalid_utf8","detail":"replaced with U+FFFD"},`+
		`{"field":"audit.target.system","problem":"missing"},`+
		`{"field":"audit.value.proposed","problem":"not_string","detail":"Int"},`+
		`{"field":"tool.input","problem":"invalid_utf8","detail":"replaced with U+FFFD"}]`, str(entry.KeyValidation))

	_, sealed := a.Get(KeySeal)
	assert.True(t, sealed)

	// A clean span loses a stale, empty validation the pipeline sealed,
	// and its seal.
	res, span = typicalSpan()
	putSealed(span, "[]")
	Normalize(res, span, Options{})
	for _, k := range []string{entry.KeyValidation, KeySeal, KeyMoved} {
		_, ok := span.Attributes().Get(k)
		assert.False(t, ok, k)
	}
	// A sender's empty one is the sender's: kept, flagged, sealed.
	res, span = typicalSpan()
	span.Attributes().PutStr(entry.KeyValidation, "[]")
	Normalize(res, span, Options{})
	moved, ok := span.Attributes().Get(KeyMoved)
	require.True(t, ok)
	assert.Equal(t, map[string]any{entry.KeyValidation: "[]"}, moved.Map().AsRaw())
	v, _ := span.Attributes().Get(entry.KeyValidation)
	assert.Equal(t, `[{"field":"audit.validation","problem":"unsealed_validation","detail":"`+detailUnsealed+`"}]`, v.Str())
	assert.True(t, isSealed(span))
}

func TestTruncateLargeValue(t *testing.T) {
	// 10 MB of a 3-byte rune preceded by one ASCII byte, so that the limit
	// falls inside a rune and the cut must move back.
	full := "x" + strings.Repeat("€", 10<<20/3)
	sum := sha256.Sum256([]byte(full))
	fullSHA := hex.EncodeToString(sum[:])

	res, span := typicalSpan()
	span.Attributes().PutStr(entry.KeyValueProposed, full)
	span.Attributes().PutStr("tool.output", full)

	for _, limit := range []int{0, 1000} {
		max := limit
		if max == 0 {
			max = entry.DefaultMaxValueBytes
		}
		e := FromSpan(res, span, Options{MaxValueBytes: limit})
		require.NotNil(t, e.ProposedValue)
		got := *e.ProposedValue
		assert.LessOrEqual(t, len(got), max)
		assert.Greater(t, len(got), max-3)
		assert.True(t, utf8.ValidString(got))
		assert.True(t, strings.HasPrefix(full, got))

		var attrs map[string]any
		require.NoError(t, json.Unmarshal([]byte(e.Attributes), &attrs))
		assert.Equal(t, got, attrs["tool.output"])

		detail := "truncated to " + itoa(max) + " bytes"
		assert.Equal(t, []entry.Problem{
			{Field: entry.KeyValueProposed, Kind: entry.ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: fullSHA},
			{Field: "tool.output", Kind: entry.ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: fullSHA},
		}, problemsOf(t, e))
	}
}

// TestTruncateLargeBytes: a Bytes attribute is kept in attributes as
// base64, truncated like a string when its base64 form is over the limit,
// nested ones too; normalizing first changes nothing.
func TestTruncateLargeBytes(t *testing.T) {
	raw := make([]byte, 3<<20)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	full := base64.StdEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(full))

	res, span := typicalSpan()
	span.Attributes().PutEmptyBytes("tool.output").FromRaw(raw)
	span.Attributes().PutEmptyMap("nested").PutEmptySlice("s").AppendEmpty().SetEmptyBytes().FromRaw(raw)
	span.Attributes().PutEmptyBytes("small").FromRaw([]byte{1, 2, 3})
	opts := Options{MaxValueBytes: 1000}
	e := FromSpan(res, span, opts)

	var attrs map[string]any
	require.NoError(t, json.Unmarshal([]byte(e.Attributes), &attrs))
	assert.Equal(t, full[:1000], attrs["tool.output"])
	assert.Equal(t, map[string]any{"s": []any{full[:1000]}}, attrs["nested"])
	assert.Equal(t, "AQID", attrs["small"])
	detail := "truncated to 1000 bytes"
	assert.Equal(t, []entry.Problem{
		{Field: "nested", Kind: entry.ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: hex.EncodeToString(sum[:])},
		{Field: "tool.output", Kind: entry.ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: hex.EncodeToString(sum[:])},
	}, problemsOf(t, e))

	Normalize(res, span, opts)
	assert.Equal(t, e, FromSpan(res, span, opts))
}

func TestTruncateHashesRepairedValue(t *testing.T) {
	raw := strings.Repeat("a", 20) + "\xff"
	repaired := strings.Repeat("a", 20) + "\uFFFD"
	sum := sha256.Sum256([]byte(repaired))

	span := ptrace.NewSpan()
	span.SetTraceID(testTraceID)
	span.SetSpanID(testSpanID)
	span.Attributes().PutStr(entry.KeyActionType, "read")
	span.Attributes().PutStr(entry.KeyExecutionID, "run")
	span.Attributes().PutStr(entry.KeyTargetSystem, "crm")
	span.Attributes().PutStr(entry.KeyReasoning, raw)
	e := FromSpan(pcommon.NewResource(), span, Options{MaxValueBytes: 10})
	assert.Equal(t, ptr(strings.Repeat("a", 10)), e.Reasoning)
	assert.Equal(t, []entry.Problem{
		{Field: entry.KeyReasoning, Kind: entry.ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
		{Field: entry.KeyReasoning, Kind: entry.ProblemTruncated, Detail: "truncated to 10 bytes", OriginalBytes: int64(len(repaired)), SHA256: hex.EncodeToString(sum[:])},
	}, problemsOf(t, e))
}

func TestTruncatedValidationDetail(t *testing.T) {
	res, span := typicalSpan()
	raw := strings.Repeat("é", 1000) // 2000 bytes, not JSON
	putSealed(span, raw)
	ps := problemsOf(t, FromSpan(res, span, Options{}))
	require.Len(t, ps, 1)
	assert.Equal(t, strings.Repeat("é", 512), ps[0].Detail)
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(dst []byte, n int) []byte {
	if n >= 10 {
		dst = appendInt(dst, n/10)
	}
	return append(dst, byte('0'+n%10))
}

func TestIsAudit(t *testing.T) {
	span := ptrace.NewSpan()
	assert.False(t, IsAudit(span))
	span.Attributes().PutStr("audit.target.system", "x")
	assert.False(t, IsAudit(span), "only audit.action.type tags a span")
	span.Attributes().PutInt(entry.KeyActionType, 1)
	assert.True(t, IsAudit(span), "any value type tags a span")
	span.Attributes().PutEmpty(entry.KeyActionType)
	assert.True(t, IsAudit(span))
}

// TestCanonicalAttributes pins the exact bytes of the attributes column.
func TestCanonicalAttributes(t *testing.T) {
	res, span := typicalSpan()
	a := span.Attributes()
	a.Remove("http.request.method")
	a.Remove(entry.KeyHTTPStatus)
	a.PutStr("z", "last")
	a.PutStr("a", "<b>&\"quote\"\\ \n\t\u0001\u2028é")
	a.PutInt("int", -9007199254740993)
	a.PutDouble("dbl", 1.5)
	a.PutDouble("dbl.big", 1e21)
	a.PutDouble("dbl.small", 1e-7)
	a.PutDouble("nan", math.NaN())
	a.PutDouble("inf", math.Inf(1))
	a.PutDouble("ninf", math.Inf(-1))
	a.PutBool("bool", true)
	a.PutEmptyBytes("bytes").FromRaw([]byte("hi?"))
	a.PutEmpty("empty")
	sl := a.PutEmptySlice("slice")
	sl.AppendEmpty().SetInt(1)
	sl.AppendEmpty().SetStr("two")
	sl.AppendEmpty().SetEmptyMap().PutBool("b", false)
	m := a.PutEmptyMap("map")
	m.PutStr("y", "1")
	m.PutStr("B", "2")
	m.PutStr("é", "3")
	m.PutEmptySlice("x")

	e := FromSpan(res, span, Options{})
	assert.Equal(t, `{"a":"<b>&\"quote\"\\ \n\t\u0001\u2028é","bool":true,"bytes":"aGk/",`+
		`"dbl":1.5,"dbl.big":1e+21,"dbl.small":1e-07,"empty":null,"inf":"Infinity","int":-9007199254740993,`+
		`"map":{"B":"2","x":[],"y":"1","é":"3"},"nan":"NaN","ninf":"-Infinity",`+
		`"slice":[1,"two",{"b":false}],"z":"last"}`, e.Attributes)
	assert.Nil(t, e.Validation)

	res, span = typicalSpan()
	span.Attributes().Remove("http.request.method")
	span.Attributes().Remove(entry.KeyHTTPStatus)
	assert.Equal(t, "{}", FromSpan(res, span, Options{}).Attributes)
}

// TestJSONStringMatchesEncodingJSON checks the hand-written escaping against
// encoding/json with HTML escaping off.
func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	var all strings.Builder
	for r := rune(0); r < 0x80; r++ {
		all.WriteRune(r)
	}
	for _, s := range []string{"", "plain", all.String(), "\u2028\u2029\u00e9\U0001F600", "<>&", "\x7f"} {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(s))
		assert.Equal(t, strings.TrimSuffix(b.String(), "\n"), string(appendJSONString(nil, s)))
	}
}

func TestProblemsJSON(t *testing.T) {
	ps := sortProblems([]entry.Problem{
		{Field: "b", Kind: "x"},
		{Field: "a", Kind: "z", Detail: "<&>"},
		{Field: "a", Kind: "y", OriginalBytes: 70000, SHA256: "ab"},
		{Field: "b", Kind: "x"},
	})
	assert.Equal(t, `[{"field":"a","problem":"y","original_bytes":70000,"sha256":"ab"},`+
		`{"field":"a","problem":"z","detail":"<&>"},{"field":"b","problem":"x"}]`, string(appendProblems(nil, ps)))

	for _, bad := range []string{"", "null", "{}", "[1]", `[{"field":"a"}]`, `[] x`, `[{"field":"a","problem":"b"}]]`} {
		_, err := parseProblems(bad)
		assert.Error(t, err, bad)
	}
	got, err := parseProblems(` [{"field":"a","problem":"b","detail":"c"}] `)
	require.NoError(t, err)
	assert.Equal(t, []entry.Problem{{Field: "a", Kind: "b", Detail: "c"}}, got)
}

func TestFromSpanNeverPanics(t *testing.T) {
	// A zero span and resource and a span with every attribute of the wrong
	// type must map without panicking.
	assert.NotPanics(t, func() { FromSpan(pcommon.NewResource(), ptrace.NewSpan(), Options{}) })
	span := ptrace.NewSpan()
	for _, k := range []string{entry.KeyActionType, entry.KeyExecutionID, entry.KeyTargetSystem, entry.KeyTargetResource, entry.KeyValueProposed,
		entry.KeyValuePrevious, entry.KeyReasoning, entry.KeyApprover, entry.KeyResult, entry.KeyValidation, entry.KeyAgentID, entry.KeyErrorType, entry.KeyHTTPStatus} {
		span.Attributes().PutEmptyMap(k).PutEmptySlice("s").AppendEmpty().SetEmptyBytes()
	}
	span.Status().SetCode(ptrace.StatusCodeError)
	assert.NotPanics(t, func() {
		e := FromSpan(pcommon.NewResource(), span, Options{MaxValueBytes: 1})
		Normalize(pcommon.NewResource(), span, Options{MaxValueBytes: 1})
		assert.Equal(t, e, FromSpan(pcommon.NewResource(), span, Options{MaxValueBytes: 1}))
	})
}

func BenchmarkFromSpan(b *testing.B) {
	res, span := typicalSpan()
	b.ReportAllocs()
	for b.Loop() {
		FromSpan(res, span, Options{})
	}
}

func BenchmarkIsAuditUntagged(b *testing.B) {
	span := ptrace.NewSpan()
	a := span.Attributes()
	a.PutStr("http.request.method", "GET")
	a.PutStr("url.full", "https://example.com/x")
	a.PutInt(entry.KeyHTTPStatus, 200)
	a.PutStr("server.address", "example.com")
	b.ReportAllocs()
	for b.Loop() {
		if IsAudit(span) {
			b.Fatal("tagged")
		}
	}
}

// FuzzNormalize checks on arbitrary strings (an audit.validation among
// them, sealed or the sender's) that mapping never panics, that Normalize
// keeps the entry, that no span yields a reserved action type and that an
// entry over its limit says so: go test -fuzz FuzzNormalize ./internal/auditspan
func FuzzNormalize(f *testing.F) {
	f.Add("write", "value", "tool.input", "\xff", uint16(0), int64(1))
	f.Add("", "\xe2\x82\xac\xe2", "audit.x", "[{\"field\":\"a\",\"problem\":\"b\"}]", uint16(2), int64(-1))
	f.Add("delete", strings.Repeat("é", 40), "k\xff", "not json", uint16(5), int64(0))
	f.Add("agentaudit.loss", "a\x00b", "http.request.method", "", uint16(40), int64(7))
	f.Add("write", "v", KeySeal, forged, uint16(3), int64(4))
	f.Add("read", "v", "agentaudit.moved", "[]", uint16(9), int64(2))
	f.Add("0", "0", "agentaudit.moved", "0", uint16(68), int64(16)) // a sender's moved, then a sealed validation
	f.Fuzz(func(t *testing.T, action, value, key, validation string, limit uint16, n int64) {
		res, span := typicalSpan()
		a := span.Attributes()
		a.PutStr(entry.KeyActionType, action)
		a.PutStr(entry.KeyReasoning, value)
		a.PutStr(key, value)
		a.PutEmptySlice("list").AppendEmpty().SetStr(value)
		a.PutInt(entry.KeyValuePrevious, n)
		if n%4 == 0 {
			putSealed(span, validation) // as if the pipeline wrote it
		} else if n%2 == 0 {
			a.PutStr(entry.KeyValidation, validation)
		}
		if n%3 == 0 {
			a.Remove(entry.KeyExecutionID)
			span.Status().SetCode(ptrace.StatusCodeError)
			a.PutStr(entry.KeyErrorType, value)
		}
		if n%5 == 0 {
			appendAttr(a, key, `{"stringValue":"second"}`)
			span.Status().SetCode(ptrace.StatusCode(n % 11))
			span.SetStartTimestamp(pcommon.Timestamp(uint64(n) * 1e12))
		}
		if n%7 == 0 {
			deepMap(a, value, entry.MaxDepth+int(n%3))
		}
		opts := Options{MaxValueBytes: int(limit), MaxEntryBytes: 4 * int(limit)}
		want := FromSpan(res, span, opts)
		require.True(t, utf8.ValidString(want.Attributes))
		require.True(t, json.Valid([]byte(want.Attributes)), want.Attributes)
		require.False(t, entry.IsReservedActionType(want.ActionType), want.ActionType)
		if want.Validation != nil {
			require.True(t, json.Valid([]byte(*want.Validation)), *want.Validation)
		}
		if entry.EntryBytes(&want) > opts.maxEntryBytes() {
			require.Contains(t, *want.Validation, `{"field":"entry","problem":"entry_truncated"`)
		}
		Normalize(res, span, opts)
		if want.Validation == nil || len(*want.Validation) <= opts.maxEntryBytes() {
			require.Equal(t, want, FromSpan(res, span, opts))
		}
	})
}
