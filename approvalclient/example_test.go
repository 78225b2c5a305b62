package approvalclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentaudit/agentaudit/approvalclient"
)

// An agent's CRM update: ask, wait for a person, then perform exactly the
// approved write in a span that names the approval. (Here a stand-in
// service approves at once, and the span goes to an in-memory recorder.)
func Example() {
	url, stop := exampleService()
	defer stop()
	spans := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("crm-agent")
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // how long a person may take
	defer cancel()

	c := &approvalclient.Client{BaseURL: url, Token: "agent-token"}
	a, err := c.Request(ctx, approvalclient.Request{
		ExecutionID:    "exec_a7f3b2c1",
		TargetSystem:   "HubSpot CRM",
		TargetResource: "Contact #48291 (email field)",
		ProposedValue:  new("jane@newdomain.com"),
		PreviousValue:  new("jane@olddomain.com"),
		Reasoning:      "Email bounced; found updated address via Clearbit",
		Tool:           "crm_update_contact",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("requested:", a.ID, a.Status)

	a, err = c.Wait(ctx, a.ID)
	if err != nil {
		log.Fatal(err)
	}
	if err := a.Err(); errors.Is(err, approvalclient.ErrRejected) || errors.Is(err, approvalclient.ErrExpired) {
		fmt.Println("not written:", err)
		return
	}
	fmt.Println("decided:", a.Status, "by", *a.Decision.Approver)

	_, span := tracer.Start(ctx, "crm.update_contact", trace.WithAttributes(approvalclient.WriteAttributes(a)...))
	// ... the CRM call, with *a.ProposedValue ...
	span.SetAttributes(attribute.String("audit.result", "200 OK (field updated)"))
	span.End()

	for _, kv := range spans.Ended()[0].Attributes() {
		fmt.Printf("%s=%s\n", kv.Key, kv.Value.AsString())
	}
	// Output:
	// requested: apr_0001 pending
	// decided: approved by alice@example.com
	// audit.action.type=write
	// audit.execution.id=exec_a7f3b2c1
	// audit.target.system=HubSpot CRM
	// audit.target.resource=Contact #48291 (email field)
	// audit.value.proposed=jane@newdomain.com
	// audit.value.previous=jane@olddomain.com
	// audit.approval.id=apr_0001
	// audit.result=200 OK (field updated)
}

// exampleService is a stand-in for the collector's approval service whose
// reviewer approves on the first poll.
func exampleService() (url string, stop func()) {
	f := &fakeService{approvals: map[string]*fakeApproval{}, byKey: map[string]string{}, approveAt: 1}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.serve(l)
	return f.url(), f.stop
}
