package entry

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
	res.Attributes().PutStr(KeyServiceName, "crm-agent-svc")
	res.Attributes().PutStr(KeyAgentID, "agent-7")

	span := ptrace.NewSpan()
	span.SetName("update phone")
	span.SetTraceID(testTraceID)
	span.SetSpanID(testSpanID)
	span.SetParentSpanID(testParentID)
	span.SetStartTimestamp(1_700_000_000_123_456_789)
	span.SetEndTimestamp(1_700_000_000_223_456_789)
	a := span.Attributes()
	a.PutStr(KeyActionType, "write")
	a.PutStr(KeyExecutionID, "run-42")
	a.PutStr(KeyTargetSystem, "salesforce")
	a.PutStr(KeyTargetResource, "Account/001/Phone")
	a.PutStr(KeyValueProposed, "+1 555 0100")
	a.PutStr(KeyValuePrevious, "+1 555 0199")
	a.PutStr(KeyReasoning, "customer asked to update the phone number")
	a.PutStr(KeyApprover, "auto:low-risk")
	a.PutStr(KeyAgentName, "crm-agent")
	a.PutStr(KeyEndUserID, "alice@example.com")
	a.PutStr("http.request.method", "PATCH")
	a.PutInt(KeyHTTPStatus, 200)
	span.Status().SetCode(ptrace.StatusCodeOk)
	return res, span
}

func typicalEntry() Entry {
	return Entry{
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
	want func(e *Entry)
	// problems are the expected problems, in Validation order.
	problems []Problem
}

var fixtures = []fixture{
	{
		name: "typical",
		edit: func(pcommon.Resource, ptrace.Span) {},
		want: func(*Entry) {},
	},
	{
		name:     "action type missing",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(KeyActionType) },
		want:     func(e *Entry) { e.ActionType = "" },
		problems: []Problem{{Field: KeyActionType, Kind: ProblemMissing}},
	},
	{
		name:     "action type empty",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyActionType, "") },
		want:     func(e *Entry) { e.ActionType = "" },
		problems: []Problem{{Field: KeyActionType, Kind: ProblemEmpty}},
	},
	{
		name:     "action type unknown",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyActionType, "delete") },
		want:     func(e *Entry) { e.ActionType = "delete" },
		problems: []Problem{{Field: KeyActionType, Kind: ProblemUnknownValue, Detail: "kept verbatim"}},
	},
	{
		name: "action type int",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt(KeyActionType, 7) },
		want: func(e *Entry) { e.ActionType = "7" },
		problems: []Problem{
			{Field: KeyActionType, Kind: ProblemNotString, Detail: "Int"},
			{Field: KeyActionType, Kind: ProblemUnknownValue, Detail: "kept verbatim"},
		},
	},
	{
		name:     "execution id missing",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(KeyExecutionID) },
		want:     func(e *Entry) { e.ExecutionID = testTraceHex },
		problems: []Problem{{Field: KeyExecutionID, Kind: ProblemDefaulted, Detail: "defaulted to trace id"}},
	},
	{
		name: "execution id empty",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyExecutionID, "") },
		want: func(e *Entry) { e.ExecutionID = testTraceHex },
		problems: []Problem{
			{Field: KeyExecutionID, Kind: ProblemDefaulted, Detail: "defaulted to trace id"},
			{Field: KeyExecutionID, Kind: ProblemEmpty},
		},
	},
	{
		name:     "target system missing",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(KeyTargetSystem) },
		want:     func(e *Entry) { e.TargetSystem = "" },
		problems: []Problem{{Field: KeyTargetSystem, Kind: ProblemMissing}},
	},
	{
		name:     "target system empty",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyTargetSystem, "") },
		want:     func(e *Entry) { e.TargetSystem = "" },
		problems: []Problem{{Field: KeyTargetSystem, Kind: ProblemMissing}},
	},
	{
		name: "target resource missing",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(KeyTargetResource) },
		want: func(e *Entry) { e.TargetResource = "" },
	},
	{
		name: "optional values missing",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			for _, k := range []string{KeyValueProposed, KeyValuePrevious, KeyReasoning, KeyApprover} {
				s.Attributes().Remove(k)
			}
		},
		want: func(e *Entry) { e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver = nil, nil, nil, nil },
	},
	{
		name: "optional values empty strings",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			for _, k := range []string{KeyValueProposed, KeyValuePrevious, KeyReasoning, KeyApprover} {
				s.Attributes().PutStr(k, "")
			}
		},
		want: func(e *Entry) {
			e.ProposedValue, e.PreviousValue, e.Reasoning, e.Approver = ptr(""), ptr(""), ptr(""), ptr("")
		},
	},
	{
		name: "identity from span wins over resource",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(KeyAgentID, "agent-span")
			s.Attributes().PutStr(KeyServiceName, "svc-span")
		},
		want: func(e *Entry) {
			e.AgentID = ptr("agent-span")
			e.ServiceName = ptr("svc-span")
			// service.name is not one of the keys taken out of the attributes.
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"service.name":"svc-span"}`
		},
	},
	{
		name: "identity from resource only",
		edit: func(r pcommon.Resource, s ptrace.Span) {
			s.Attributes().Remove(KeyAgentName)
			s.Attributes().Remove(KeyEndUserID)
			r.Attributes().PutStr(KeyAgentName, "res-name")
			r.Attributes().PutStr(KeyEndUserID, "bob")
		},
		want: func(e *Entry) { e.AgentName, e.Principal = ptr("res-name"), ptr("bob") },
	},
	{
		name: "identity absent on both",
		edit: func(r pcommon.Resource, s ptrace.Span) {
			r.Attributes().Clear()
			s.Attributes().Remove(KeyAgentName)
			s.Attributes().Remove(KeyEndUserID)
		},
		want: func(e *Entry) { e.AgentID, e.AgentName, e.ServiceName, e.Principal = nil, nil, nil, nil },
	},
	{
		name:     "identity not string on resource",
		edit:     func(r pcommon.Resource, _ ptrace.Span) { r.Attributes().PutInt(KeyAgentID, 99) },
		want:     func(e *Entry) { e.AgentID = ptr("99") },
		problems: []Problem{{Field: KeyAgentID, Kind: ProblemNotString, Detail: "Int"}},
	},
	{
		name:     "identity not string on span",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutBool(KeyEndUserID, true) },
		want:     func(e *Entry) { e.Principal = ptr("true") },
		problems: []Problem{{Field: KeyEndUserID, Kind: ProblemNotString, Detail: "Bool"}},
	},
	{
		name: "result given",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyResult, "updated") },
		want: func(e *Entry) { e.Result = "updated" },
	},
	{
		name: "result error with error.type",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage("upstream said no")
			s.Attributes().PutStr(KeyErrorType, "timeout")
		},
		want: func(e *Entry) {
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
		want: func(e *Entry) { e.Result, e.StatusCode = "error: upstream said no", "Error" },
	},
	{
		name: "result error bare",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Status().SetCode(ptrace.StatusCodeError) },
		want: func(e *Entry) { e.Result, e.StatusCode = "error", "Error" },
	},
	{
		name: "result http status string without status",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeUnset)
			s.Attributes().PutStr(KeyHTTPStatus, "503")
		},
		want: func(e *Entry) {
			e.Result, e.StatusCode = "503", "Unset"
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":"503"}`
		},
	},
	{
		name: "result ok",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().Remove(KeyHTTPStatus) },
		want: func(e *Entry) { e.Result, e.Attributes = "ok", `{"http.request.method":"PATCH"}` },
	},
	{
		name: "result unset",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().Remove(KeyHTTPStatus)
			s.Status().SetCode(ptrace.StatusCodeUnset)
		},
		want: func(e *Entry) {
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
		want: func(e *Entry) {
			e.TraceID, e.SpanID, e.ParentSpanID = strings.Repeat("0", 32), strings.Repeat("0", 16), nil
		},
		problems: []Problem{
			{Field: "span_id", Kind: ProblemInvalidID, Detail: "empty span id"},
			{Field: "trace_id", Kind: ProblemInvalidID, Detail: "empty trace id"},
		},
	},
	{
		name:     "invalid utf8 in contract value",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyReasoning, "bad \xff\xfe byte") },
		want:     func(e *Entry) { e.Reasoning = ptr("bad \uFFFD byte") },
		problems: []Problem{{Field: KeyReasoning, Kind: ProblemInvalidUTF8, Detail: "replaced with U+FFFD"}},
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
		want: func(e *Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"k` + "\uFFFD" + `ey":"v","tool.args":["ok","` + "\uFFFD" + `"],"tool.input":"x` + "\uFFFD" + `"}`
		},
		problems: []Problem{
			{Field: "attributes", Kind: ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"},
			{Field: "tool.args", Kind: ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
			{Field: "tool.input", Kind: ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
		},
	},
	{
		name: "invalid utf8 in a nested key",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutEmptyMap("tool.args").PutStr("q\xff", "v")
		},
		want: func(e *Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.args":{"q` + "\uFFFD" + `":"v"}}`
		},
		problems: []Problem{{Field: "tool.args", Kind: ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"}},
	},
	{
		name: "unknown audit key",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt("audit.cost.usd", 3) },
		want: func(e *Entry) {
			e.Attributes = `{"audit.cost.usd":3,"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{{Field: "audit.cost.usd", Kind: ProblemUnknownKey, Detail: "kept in attributes"}},
	},
	{
		name:     "proposed Int",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt(KeyValueProposed, -42) },
		want:     func(e *Entry) { e.ProposedValue = ptr("-42") },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Int"}},
	},
	{
		name:     "proposed Double",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutDouble(KeyValueProposed, 0.1) },
		want:     func(e *Entry) { e.ProposedValue = ptr("0.1") },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Double"}},
	},
	{
		name:     "proposed Double large",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutDouble(KeyValueProposed, 1e21) },
		want:     func(e *Entry) { e.ProposedValue = ptr("1e+21") },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Double"}},
	},
	{
		name:     "proposed Bool",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutBool(KeyValueProposed, false) },
		want:     func(e *Entry) { e.ProposedValue = ptr("false") },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Bool"}},
	},
	{
		name: "proposed Bytes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutEmptyBytes(KeyValueProposed).FromRaw([]byte{0xde, 0xad, 0xbe, 0xef, 0xff})
		},
		want:     func(e *Entry) { e.ProposedValue = ptr("3q2+7/8=") },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Bytes"}},
	},
	{
		name: "proposed Slice",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			sl := s.Attributes().PutEmptySlice(KeyValueProposed)
			sl.AppendEmpty().SetStr("a<b>")
			sl.AppendEmpty().SetInt(1)
			sl.AppendEmpty()
		},
		want:     func(e *Entry) { e.ProposedValue = ptr(`["a<b>",1,null]`) },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Slice"}},
	},
	{
		name: "proposed Map",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			m := s.Attributes().PutEmptyMap(KeyValueProposed)
			m.PutStr("phone", "+1 555 0100")
			m.PutBool("verified", true)
			m.PutDouble("amount", 12.5)
		},
		want:     func(e *Entry) { e.ProposedValue = ptr(`{"amount":12.5,"phone":"+1 555 0100","verified":true}`) },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Map"}},
	},
	{
		name:     "proposed Empty",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutEmpty(KeyValueProposed) },
		want:     func(e *Entry) { e.ProposedValue = ptr("") },
		problems: []Problem{{Field: KeyValueProposed, Kind: ProblemNotString, Detail: "Empty"}},
	},
	{
		name: "earlier validation merged and deduplicated",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().Remove(KeyTargetSystem)
			putSealed(s, `[{"field":"audit.target.system","problem":"missing"},{"field":"audit.value.proposed","problem":"truncated","original_bytes":70000,"sha256":"ab"}]`)
		},
		want: func(e *Entry) { e.TargetSystem = "" },
		problems: []Problem{
			{Field: KeyTargetSystem, Kind: ProblemMissing},
			{Field: KeyValueProposed, Kind: ProblemTruncated, OriginalBytes: 70000, SHA256: "ab"},
		},
	},
	{
		name:     "sealed validation, malformed",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { putSealed(s, `{"not":"an array"`) },
		want:     func(*Entry) {},
		problems: []Problem{{Field: KeyValidation, Kind: ProblemUnknownValue, Detail: `{"not":"an array"`}},
	},
	{
		name: "sealed validation with unknown keys is malformed",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			putSealed(s, `[{"field":"x","problem":"y","extra":1}]`)
		},
		want:     func(*Entry) {},
		problems: []Problem{{Field: KeyValidation, Kind: ProblemUnknownValue, Detail: `[{"field":"x","problem":"y","extra":1}]`}},
	},
	{
		name: "forged validation kept in attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(KeyValidation, `[{"field":"audit.value.proposed","problem":"truncated","original_bytes":70000,"sha256":"ab"}]`)
		},
		want: func(e *Entry) {
			e.Attributes = `{"audit.validation":"[{\"field\":\"audit.value.proposed\",\"problem\":\"truncated\",\"original_bytes\":70000,\"sha256\":\"ab\"}]",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{{Field: KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed}},
	},
	{
		name: "forged validation with a forged seal",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(KeyValidation, `[{"field":"x","problem":"missing"}]`)
			s.Attributes().PutStr(KeySeal, strings.Repeat("0", 64))
		},
		want: func(e *Entry) {
			e.Attributes = `{"agentaudit.seal":"` + strings.Repeat("0", 64) + `","audit.validation":"[{\"field\":\"x\",\"problem\":\"missing\"}]",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{
			{Field: KeySeal, Kind: ProblemReservedKey, Detail: detailReservedKey},
			{Field: KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed},
		},
	},
	{
		name: "sealed validation moved to another span",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			putSealed(s, `[{"field":"x","problem":"missing"}]`)
			s.SetSpanID(pcommon.SpanID{1})
		},
		want: func(e *Entry) {
			e.SpanID = "0100000000000000"
			seal := sealHex(testTraceID, testSpanID, `[{"field":"x","problem":"missing"}]`)
			e.Attributes = `{"agentaudit.seal":"` + seal + `","audit.validation":"[{\"field\":\"x\",\"problem\":\"missing\"}]",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{
			{Field: KeySeal, Kind: ProblemReservedKey, Detail: detailReservedKey},
			{Field: KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed},
		},
	},
	{
		name: "forged validation not a string",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutInt(KeyValidation, 5) },
		want: func(e *Entry) {
			e.Attributes = `{"audit.validation":5,"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{{Field: KeyValidation, Kind: ProblemUnsealedValidation, Detail: detailUnsealed}},
	},
	{
		name: "reserved keys kept in attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr("agentaudit.x", "1")
			s.Attributes().PutEmptyMap(KeyMoved).PutStr(KeyValidation, "[]")
			s.Attributes().PutBool("AgentAudit.Y", true)
		},
		want: func(e *Entry) {
			e.Attributes = `{"AgentAudit.Y":true,"agentaudit.moved":{"audit.validation":"[]"},"agentaudit.x":"1",` +
				`"http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{
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
		want: func(e *Entry) {
			e.Attributes = `{"dup` + "\uFFFD" + `":"first","http.request.method":"PATCH","http.response.status_code":200}`
		},
		problems: []Problem{
			{Field: "attributes", Kind: ProblemInvalidUTF8, Detail: "key repaired with U+FFFD"},
			{Field: "dup\uFFFD", Kind: ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 6, SHA256: sha256Of("second")},
		},
	},
	{
		name:     "status code outside the enum",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Status().SetCode(7) },
		want:     func(e *Entry) { e.StatusCode = "Code(7)" },
		problems: []Problem{{Field: "status_code", Kind: ProblemUnknownValue, Detail: "stored as Code(7)"}},
	},
	{
		name:     "status code negative",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Status().SetCode(-1) },
		want:     func(e *Entry) { e.StatusCode = "Code(-1)" },
		problems: []Problem{{Field: "status_code", Kind: ProblemUnknownValue, Detail: "stored as Code(-1)"}},
	},
	{
		name: "start time past int64",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetStartTimestamp(1<<63 + 5)
			s.SetEndTimestamp(1<<63 + 6)
		},
		want: func(e *Entry) { e.TimeUnixNano, e.EndTimeUnixNano = math.MaxInt64, i64(math.MaxInt64) },
		problems: []Problem{
			{Field: "end_time_unix_nano", Kind: ProblemOutOfRange, Detail: "end time 9223372036854775814 ns clamped to the largest int64"},
			{Field: "time_unix_nano", Kind: ProblemOutOfRange, Detail: "start time 9223372036854775813 ns clamped to the largest int64"},
		},
	},
	{
		name: "start and end time the largest int64",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetStartTimestamp(math.MaxInt64)
			s.SetEndTimestamp(math.MaxInt64)
		},
		want: func(e *Entry) { e.TimeUnixNano, e.EndTimeUnixNano = math.MaxInt64, i64(math.MaxInt64) },
	},
	{
		name:     "end time past int64",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(math.MaxUint64) },
		want:     func(e *Entry) { e.EndTimeUnixNano = i64(math.MaxInt64) },
		problems: []Problem{{Field: "end_time_unix_nano", Kind: ProblemOutOfRange, Detail: "end time 18446744073709551615 ns clamped to the largest int64"}},
	},
	{
		name: "end time equal to the start time",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(s.StartTimestamp()) },
		want: func(e *Entry) { e.EndTimeUnixNano = i64(e.TimeUnixNano) },
	},
	{
		name:     "end time one nanosecond before the start time",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(s.StartTimestamp() - 1) },
		want:     func(e *Entry) { e.EndTimeUnixNano = i64(e.TimeUnixNano - 1) },
		problems: []Problem{{Field: "end_time_unix_nano", Kind: ProblemBeforeStart, Detail: "end time before start time"}},
	},
	{
		name:     "end time unset",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.SetEndTimestamp(0) },
		want:     func(e *Entry) { e.EndTimeUnixNano = i64(0) },
		problems: []Problem{{Field: "end_time_unix_nano", Kind: ProblemBeforeStart, Detail: "end time before start time"}},
	},
	{
		// Compared as the span carries them: both clamp to the same
		// value, but the end is before the start.
		name: "both times past int64, the end before the start",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.SetStartTimestamp(math.MaxUint64)
			s.SetEndTimestamp(1<<63 + 1)
		},
		want: func(e *Entry) { e.TimeUnixNano, e.EndTimeUnixNano = math.MaxInt64, i64(math.MaxInt64) },
		problems: []Problem{
			{Field: "end_time_unix_nano", Kind: ProblemBeforeStart, Detail: "end time before start time"},
			{Field: "end_time_unix_nano", Kind: ProblemOutOfRange, Detail: "end time 9223372036854775809 ns clamped to the largest int64"},
			{Field: "time_unix_nano", Kind: ProblemOutOfRange, Detail: "start time 18446744073709551615 ns clamped to the largest int64"},
		},
	},
	{
		name:     "NUL byte in a column is kept",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyReasoning, "approve\x00 and delete") },
		want:     func(e *Entry) { e.Reasoning = ptr("approve\x00 and delete") },
		problems: []Problem{{Field: KeyReasoning, Kind: ProblemNULByte, Detail: "kept"}},
	},
	{
		name:     "NUL byte in a resource identity",
		edit:     func(r pcommon.Resource, _ ptrace.Span) { r.Attributes().PutStr(KeyAgentID, "\x00") },
		want:     func(e *Entry) { e.AgentID = ptr("\x00") },
		problems: []Problem{{Field: KeyAgentID, Kind: ProblemNULByte, Detail: "kept"}},
	},
	{
		name: "NUL byte in a derived result",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage("no\x00")
		},
		want:     func(e *Entry) { e.Result, e.StatusCode = "error: no\x00", "Error" },
		problems: []Problem{{Field: KeyResult, Kind: ProblemNULByte, Detail: "kept"}},
	},
	{
		name: "NUL byte in attributes is escaped, not a problem",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr("tool.input", "a\x00b") },
		want: func(e *Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.input":"a\u0000b"}`
		},
	},
	{
		name: "reserved action type",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyActionType, ActionLoss) },
		want: func(e *Entry) { e.ActionType = "reserved:agentaudit.loss" },
		problems: []Problem{
			{Field: KeyActionType, Kind: ProblemReservedValue, Detail: "agentaudit.loss"},
			{Field: KeyActionType, Kind: ProblemUnknownValue, Detail: "kept verbatim"},
		},
	},
	{
		name: "reserved action type in other letter case",
		edit: func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyActionType, "AgentAudit.Loss") },
		want: func(e *Entry) { e.ActionType = "reserved:AgentAudit.Loss" },
		problems: []Problem{
			{Field: KeyActionType, Kind: ProblemReservedValue, Detail: "AgentAudit.Loss"},
			{Field: KeyActionType, Kind: ProblemUnknownValue, Detail: "kept verbatim"},
		},
	},
	{
		name:     "action type agentaudit without the dot is not reserved",
		edit:     func(_ pcommon.Resource, s ptrace.Span) { s.Attributes().PutStr(KeyActionType, "agentaudit-loss") },
		want:     func(e *Entry) { e.ActionType = "agentaudit-loss" },
		problems: []Problem{{Field: KeyActionType, Kind: ProblemUnknownValue, Detail: "kept verbatim"}},
	},
	{
		name: "duplicate contract key keeps the first",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			appendAttr(s.Attributes(), KeyApprover, `{"stringValue":"mallory"}`)
		},
		want:     func(*Entry) {},
		problems: []Problem{{Field: KeyApprover, Kind: ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 7, SHA256: sha256Of("mallory")}},
	},
	{
		name: "duplicate action type",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			appendAttr(s.Attributes(), KeyActionType, `{"stringValue":"delete"}`)
			appendAttr(s.Attributes(), KeyActionType, `{"stringValue":"delete"}`)
		},
		want: func(*Entry) {},
		// Two equal dropped values are one problem.
		problems: []Problem{{Field: KeyActionType, Kind: ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 6, SHA256: sha256Of("delete")}},
	},
	{
		name: "duplicate attribute of another type",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr("tool.input", "a")
			appendAttr(s.Attributes(), "tool.input", `{"kvlistValue":{"values":[{"key":"z","value":{"intValue":"5"}},{"key":"b","value":{"stringValue":"\u0000"}}]}}`)
		},
		want: func(e *Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.input":"a"}`
		},
		problems: []Problem{{Field: "tool.input", Kind: ProblemDuplicateKey, Detail: "kept the first value",
			OriginalBytes: int64(len(`{"b":"\u0000","z":5}`)), SHA256: sha256Of(`{"b":"\u0000","z":5}`)}},
	},
	{
		name: "duplicate nested key",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			m := s.Attributes().PutEmptyMap("tool.args")
			m.PutStr("q", "1")
			appendAttr(m, "q", `{"stringValue":"2"}`)
		},
		want: func(e *Entry) {
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"tool.args":{"q":"1"}}`
		},
		problems: []Problem{{Field: "tool.args", Kind: ProblemDuplicateKey, Detail: "kept the first value of a nested key", OriginalBytes: 1, SHA256: sha256Of("2")}},
	},
	{
		name: "duplicate service.name keeps the first for the column and in attributes",
		edit: func(_ pcommon.Resource, s ptrace.Span) {
			s.Attributes().PutStr(KeyServiceName, "svc-span")
			appendAttr(s.Attributes(), KeyServiceName, `{"stringValue":"svc-other"}`)
		},
		want: func(e *Entry) {
			e.ServiceName = ptr("svc-span")
			e.Attributes = `{"http.request.method":"PATCH","http.response.status_code":200,"service.name":"svc-span"}`
		},
		problems: []Problem{{Field: KeyServiceName, Kind: ProblemDuplicateKey, Detail: "kept the first value", OriginalBytes: 9, SHA256: sha256Of("svc-other")}},
	},
}

func sha256Of(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func buildFixture(f fixture) (pcommon.Resource, ptrace.Span, Entry) {
	res, span := typicalSpan()
	f.edit(res, span)
	want := typicalEntry()
	f.want(&want)
	return res, span, want
}

func problemsOf(t *testing.T, e Entry) []Problem {
	t.Helper()
	if e.Validation == nil {
		return nil
	}
	var ps []Problem
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
				_, tagged := span.Attributes().Get(KeyActionType)
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
	a.Remove(KeyExecutionID)
	a.Remove(KeyTargetSystem)
	a.PutInt(KeyValueProposed, 5)
	a.PutStr(KeyReasoning, "r\xff")
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
	assert.Equal(t, testTraceHex, str(KeyExecutionID))
	assert.Equal(t, "", str(KeyTargetSystem))
	assert.Equal(t, "5", str(KeyValueProposed))
	assert.Equal(t, "r\uFFFD", str(KeyReasoning))
	assert.Equal(t, "in\uFFFD", str("tool.input"))
	assert.Equal(t, int64(3), str("tool.count"), "non-string values outside the contract keep their type")
	assert.Equal(t, "200", str(KeyResult))
	assert.Equal(t, `[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},`+
		`{"field":"audit.reasoning","problem":"invalid_utf8","detail":"replaced with U+FFFD"},`+
		`{"field":"audit.target.system","problem":"missing"},`+
		`{"field":"audit.value.proposed","problem":"not_string","detail":"Int"},`+
		`{"field":"tool.input","problem":"invalid_utf8","detail":"replaced with U+FFFD"}]`, str(KeyValidation))

	_, sealed := a.Get(KeySeal)
	assert.True(t, sealed)

	// A clean span loses a stale, empty validation the pipeline sealed,
	// and its seal.
	res, span = typicalSpan()
	putSealed(span, "[]")
	Normalize(res, span, Options{})
	for _, k := range []string{KeyValidation, KeySeal, KeyMoved} {
		_, ok := span.Attributes().Get(k)
		assert.False(t, ok, k)
	}
	// A sender's empty one is the sender's: kept, flagged, sealed.
	res, span = typicalSpan()
	span.Attributes().PutStr(KeyValidation, "[]")
	Normalize(res, span, Options{})
	moved, ok := span.Attributes().Get(KeyMoved)
	require.True(t, ok)
	assert.Equal(t, map[string]any{KeyValidation: "[]"}, moved.Map().AsRaw())
	v, _ := span.Attributes().Get(KeyValidation)
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
	span.Attributes().PutStr(KeyValueProposed, full)
	span.Attributes().PutStr("tool.output", full)

	for _, limit := range []int{0, 1000} {
		max := limit
		if max == 0 {
			max = DefaultMaxValueBytes
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
		assert.Equal(t, []Problem{
			{Field: KeyValueProposed, Kind: ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: fullSHA},
			{Field: "tool.output", Kind: ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: fullSHA},
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
	assert.Equal(t, []Problem{
		{Field: "nested", Kind: ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: hex.EncodeToString(sum[:])},
		{Field: "tool.output", Kind: ProblemTruncated, Detail: detail, OriginalBytes: int64(len(full)), SHA256: hex.EncodeToString(sum[:])},
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
	span.Attributes().PutStr(KeyActionType, "read")
	span.Attributes().PutStr(KeyExecutionID, "run")
	span.Attributes().PutStr(KeyTargetSystem, "crm")
	span.Attributes().PutStr(KeyReasoning, raw)
	e := FromSpan(pcommon.NewResource(), span, Options{MaxValueBytes: 10})
	assert.Equal(t, ptr(strings.Repeat("a", 10)), e.Reasoning)
	assert.Equal(t, []Problem{
		{Field: KeyReasoning, Kind: ProblemInvalidUTF8, Detail: "replaced with U+FFFD"},
		{Field: KeyReasoning, Kind: ProblemTruncated, Detail: "truncated to 10 bytes", OriginalBytes: int64(len(repaired)), SHA256: hex.EncodeToString(sum[:])},
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
	span.Attributes().PutInt(KeyActionType, 1)
	assert.True(t, IsAudit(span), "any value type tags a span")
	span.Attributes().PutEmpty(KeyActionType)
	assert.True(t, IsAudit(span))
}

// TestCanonicalAttributes pins the exact bytes of the attributes column.
func TestCanonicalAttributes(t *testing.T) {
	res, span := typicalSpan()
	a := span.Attributes()
	a.Remove("http.request.method")
	a.Remove(KeyHTTPStatus)
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
	span.Attributes().Remove(KeyHTTPStatus)
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
	ps := sortProblems([]Problem{
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
	assert.Equal(t, []Problem{{Field: "a", Kind: "b", Detail: "c"}}, got)
}

func TestFromSpanNeverPanics(t *testing.T) {
	// A zero span and resource and a span with every attribute of the wrong
	// type must map without panicking.
	assert.NotPanics(t, func() { FromSpan(pcommon.NewResource(), ptrace.NewSpan(), Options{}) })
	span := ptrace.NewSpan()
	for _, k := range []string{KeyActionType, KeyExecutionID, KeyTargetSystem, KeyTargetResource, KeyValueProposed,
		KeyValuePrevious, KeyReasoning, KeyApprover, KeyResult, KeyValidation, KeyAgentID, KeyErrorType, KeyHTTPStatus} {
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
	a.PutInt(KeyHTTPStatus, 200)
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
// entry over its limit says so: go test -fuzz FuzzNormalize ./internal/entry
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
		a.PutStr(KeyActionType, action)
		a.PutStr(KeyReasoning, value)
		a.PutStr(key, value)
		a.PutEmptySlice("list").AppendEmpty().SetStr(value)
		a.PutInt(KeyValuePrevious, n)
		if n%4 == 0 {
			putSealed(span, validation) // as if the pipeline wrote it
		} else if n%2 == 0 {
			a.PutStr(KeyValidation, validation)
		}
		if n%3 == 0 {
			a.Remove(KeyExecutionID)
			span.Status().SetCode(ptrace.StatusCodeError)
			a.PutStr(KeyErrorType, value)
		}
		if n%5 == 0 {
			appendAttr(a, key, `{"stringValue":"second"}`)
			span.Status().SetCode(ptrace.StatusCode(n % 11))
			span.SetStartTimestamp(pcommon.Timestamp(uint64(n) * 1e12))
		}
		if n%7 == 0 {
			deepMap(a, value, MaxDepth+int(n%3))
		}
		opts := Options{MaxValueBytes: int(limit), MaxEntryBytes: 4 * int(limit)}
		want := FromSpan(res, span, opts)
		require.True(t, utf8.ValidString(want.Attributes))
		require.True(t, json.Valid([]byte(want.Attributes)), want.Attributes)
		require.False(t, IsReservedActionType(want.ActionType), want.ActionType)
		if want.Validation != nil {
			require.True(t, json.Valid([]byte(*want.Validation)), *want.Validation)
		}
		if EntryBytes(&want) > opts.maxEntryBytes() {
			require.Contains(t, *want.Validation, `{"field":"entry","problem":"entry_truncated"`)
		}
		Normalize(res, span, opts)
		if want.Validation == nil || len(*want.Validation) <= opts.maxEntryBytes() {
			require.Equal(t, want, FromSpan(res, span, opts))
		}
	})
}
