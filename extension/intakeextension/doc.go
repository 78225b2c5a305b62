// Package intakeextension provides the agentaudit_intake extension: a
// middleware for the OTLP receiver's HTTP and gRPC servers that bounds the
// memory a request can take before the receiver decodes it.
//
//   - At most max_in_flight requests (HTTP and gRPC together) are in the
//     receiver at once; one more is refused before its body is read, with
//     HTTP 503 and Retry-After or gRPC UNAVAILABLE with RetryInfo, which
//     OTLP clients retry. A request holds its place at most
//     max_request_duration: past it, its HTTP body's read fails (and the
//     connection is closed) or its gRPC call ends, so that slow or stalled
//     clients cannot keep the places for good.
//   - An OTLP/JSON body that nests deeper than max_json_depth is refused with
//     HTTP 400 as it streams in, before pdata's JSON decoder sees it: that
//     decoder recurses once per level without a limit (about 0.4 KiB of
//     stack and heap a level; the collector as a whole spent 1.7 KiB a level
//     on an 18 MB request nested 650,000 deep). Protobuf needs no such
//     check: pdata refuses messages nested deeper than 100.
//
// The request size itself is the receiver's: max_request_body_size (HTTP)
// and max_recv_msg_size_mib (gRPC).
package intakeextension // import "github.com/agentaudit/agentaudit/extension/intakeextension"
