// Package approvalclient is the agent's side of agentaudit's approval
// service (docs/APPROVALS.md): ask before an important action, wait for a
// person's decision, and tag the write that follows so that the trail
// links request → decision → write and `auditctl verify` can check that
// what was written is what was approved.
//
// The flow, in an agent's tool:
//
//	c := &approvalclient.Client{BaseURL: "http://127.0.0.1:4320", Token: agentToken}
//	a, err := c.Request(ctx, approvalclient.Request{
//		ExecutionID:    "exec_a7f3b2c1",
//		TargetSystem:   "HubSpot CRM",
//		TargetResource: "Contact #48291 (email field)",
//		ProposedValue:  new("jane@newdomain.com"),
//		PreviousValue:  new("jane@olddomain.com"),
//		Reasoning:      "Email bounced; found updated address via Clearbit",
//	})
//	...
//	a, err = c.Wait(ctx, a.ID)   // returns once a person decided (or it expired)
//	if !a.Approved() {
//		return a.Err()           // errors.Is(err, approvalclient.ErrRejected)
//	}
//	ctx, span := tracer.Start(ctx, "crm.update_contact",
//		trace.WithAttributes(approvalclient.WriteAttributes(a)...))
//	... perform exactly the approved write ...
//
// # Retries
//
// Both calls ride out what a collector does in normal operation: Request
// sends an idempotency key (one is generated when the Request has none),
// so that a retry after a network error or a 503 (the trail's spool is
// full; its Retry-After is honoured) returns the approval the first try
// created rather than a second one. Wait long-polls (PollWait, 30s by
// default) and resumes after a dropped connection or a restart of the
// collector, where pending approvals stay pending. Both back off
// exponentially, with jitter, and give up only when ctx ends, or on an
// answer that retrying cannot change (an *APIError: 400, 401, 403, 404,
// 409, 413…).
//
// The package depends on the standard library and the OpenTelemetry API
// only: it holds no part of the collector.
package approvalclient // import "github.com/agentaudit/agentaudit/approvalclient"
