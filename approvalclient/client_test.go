package approvalclient_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentaudit/agentaudit/approvalclient"
)

// testClient is a client of f with short pauses, so that the tests run
// in well under a second each unless they test a Retry-After.
func testClient(f *fakeService) *approvalclient.Client {
	return &approvalclient.Client{
		BaseURL:    f.url(),
		PollWait:   200 * time.Millisecond,
		Backoff:    5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
}

func crmRequest() approvalclient.Request {
	return approvalclient.Request{
		ExecutionID:    "exec_a7f3b2c1",
		TargetSystem:   "HubSpot CRM",
		TargetResource: "Contact #48291 (email field)",
		ProposedValue:  new("jane@newdomain.com"),
		PreviousValue:  new("jane@olddomain.com"),
		Reasoning:      "Email bounced; found updated address via Clearbit",
		Tool:           "crm_update_contact",
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestApprovedAfterPolls(t *testing.T) {
	f := newFakeService(t)
	f.approveAt = 3
	c := testClient(f)
	ctx := testContext(t, 10*time.Second)

	a, err := c.Request(ctx, crmRequest())
	require.NoError(t, err)
	assert.Equal(t, approvalclient.Pending, a.Status)
	assert.Equal(t, "apr_0001", a.ID)
	assert.Equal(t, "Contact #48291 (email field)", a.TargetResource)
	assert.Equal(t, "jane@newdomain.com", *a.ProposedValue)
	assert.Equal(t, "c1", a.Request.ChainID)
	assert.Equal(t, time.Date(2026, 12, 6, 8, 0, 0, 123456789, time.UTC), a.RequestedAt)
	assert.Nil(t, a.Decision)
	assert.False(t, a.Approved())
	assert.ErrorIs(t, a.Err(), approvalclient.ErrPending)

	a, err = c.Wait(ctx, a.ID)
	require.NoError(t, err)
	assert.True(t, a.Approved())
	require.NoError(t, a.Err())
	require.NotNil(t, a.Decision)
	assert.Equal(t, "approve", a.Decision.Decision)
	assert.Equal(t, "alice@example.com", *a.Decision.Approver)
	assert.Equal(t, strings.Repeat("d", 64), a.Decision.EntryHash)
	assert.Equal(t, time.Date(2026, 12, 6, 8, 5, 0, 0, time.UTC), a.Decision.DecidedAt)

	posts, polls, n := f.counts()
	assert.Equal(t, 1, posts)
	assert.Equal(t, 3, polls, "two polls ran out pending, the third was woken by the decision")
	assert.Equal(t, 1, n)
	assert.Equal(t, []string{"200ms", "200ms", "200ms"}, f.waits)
}

func TestRequestRetries503WithRetryAfter(t *testing.T) {
	f := newFakeService(t)
	f.unavailable = 1 // Retry-After: 1
	c := testClient(f)

	start := time.Now()
	a, err := c.Request(testContext(t, 10*time.Second), crmRequest())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After: 1 is honoured over the 5ms backoff")
	assert.Equal(t, approvalclient.Pending, a.Status)
	require.Len(t, f.keys, 2)
	assert.NotEmpty(t, f.keys[0], "a key is generated")
	assert.Equal(t, f.keys[0], f.keys[1], "the retry sends the same key")
	_, _, n := f.counts()
	assert.Equal(t, 1, n)
}

// TestRequestCutAfterCreating: the answer to the first try is lost after
// the service created the approval; the retry gets that approval, not a
// second one.
func TestRequestCutAfterCreating(t *testing.T) {
	f := newFakeService(t)
	f.cutPost = 1
	c := testClient(f)

	req := crmRequest()
	req.IdempotencyKey = "step-12"
	a, err := c.Request(testContext(t, 10*time.Second), req)
	require.NoError(t, err)
	assert.Equal(t, "apr_0001", a.ID)
	posts, _, n := f.counts()
	assert.Equal(t, 2, posts)
	assert.Equal(t, 1, n, "one approval for two tries")
	assert.Equal(t, []string{"step-12", "step-12"}, f.keys)
}

func TestWaitResumesAfterCutPoll(t *testing.T) {
	f := newFakeService(t)
	f.cutPoll = []int{1}
	f.approveAt = 2
	c := testClient(f)
	ctx := testContext(t, 10*time.Second)

	a, err := c.Request(ctx, crmRequest())
	require.NoError(t, err)
	a, err = c.Wait(ctx, a.ID)
	require.NoError(t, err)
	assert.True(t, a.Approved())
	_, polls, _ := f.counts()
	assert.Equal(t, 2, polls)
}

// TestWaitResumesAfterRestart: the collector stops while the agent waits
// (its poll answers, then connections are refused) and comes back with
// the approval still pending; a reviewer decides; the wait ends.
func TestWaitResumesAfterRestart(t *testing.T) {
	f := newFakeService(t)
	c := testClient(f)
	ctx := testContext(t, 10*time.Second)

	a, err := c.Request(ctx, crmRequest())
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		var err error
		a, err = c.Wait(ctx, a.ID)
		done <- err
	}()
	require.Eventually(t, func() bool { _, polls, _ := f.counts(); return polls >= 1 }, 5*time.Second, 5*time.Millisecond)
	f.restart(300 * time.Millisecond)
	f.mu.Lock()
	f.unavailable = 1 // and it refuses once more, starting up
	f.retryAfter = ""
	f.mu.Unlock()
	require.Eventually(t, func() bool { _, polls, _ := f.counts(); return polls >= 2 }, 5*time.Second, 5*time.Millisecond,
		"the client polls the restarted service")
	require.NoError(t, f.decideNow("apr_0001", "approve"))
	require.NoError(t, <-done)
	assert.True(t, a.Approved())
}

func TestWaitEndsWithContext(t *testing.T) {
	f := newFakeService(t)
	c := testClient(f)
	c.PollWait = 100 * time.Millisecond

	a, err := c.Request(testContext(t, 10*time.Second), crmRequest())
	require.NoError(t, err)
	_, err = c.Wait(testContext(t, 350*time.Millisecond), a.ID)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, polls, _ := f.counts()
	assert.GreaterOrEqual(t, polls, 3)
}

func TestWaitWithinHTTPClientTimeout(t *testing.T) {
	f := newFakeService(t)
	f.approveAt = 2
	c := testClient(f)
	c.PollWait = 0 // 30s
	c.HTTPClient = &http.Client{Timeout: 400 * time.Millisecond}
	ctx := testContext(t, 10*time.Second)

	a, err := c.Request(ctx, crmRequest())
	require.NoError(t, err)
	a, err = c.Wait(ctx, a.ID)
	require.NoError(t, err)
	assert.True(t, a.Approved())
	assert.Equal(t, []string{"200ms", "200ms"}, f.waits, "a poll asks for less than the client's timeout")
}

func TestDecisions(t *testing.T) {
	for _, tc := range []struct {
		decision string
		status   approvalclient.Status
		err      error
		msg      string
	}{
		{"reject", approvalclient.Rejected, approvalclient.ErrRejected, `approval apr_0001 rejected by alice@example.com ("ok"): rejected`},
		{"expire", approvalclient.Expired, approvalclient.ErrExpired, "approval apr_0001 expired at 2026-12-06T08:15:00Z undecided: expired"},
	} {
		t.Run(tc.decision, func(t *testing.T) {
			f := newFakeService(t)
			c := testClient(f)
			ctx := testContext(t, 10*time.Second)
			a, err := c.Request(ctx, crmRequest())
			require.NoError(t, err)
			require.NoError(t, f.decideNow(a.ID, tc.decision))
			a, err = c.Wait(ctx, a.ID)
			require.NoError(t, err, "a decision is an answer, not an error of Wait")
			assert.Equal(t, tc.status, a.Status)
			assert.False(t, a.Approved())
			require.ErrorIs(t, a.Err(), tc.err)
			assert.EqualError(t, a.Err(), tc.msg)
		})
	}
}

// TestAPIErrors: the refusals retrying cannot change come back at once,
// as *APIError matching their sentinel.
func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		is     error
	}{
		{400, approvalclient.ErrBadRequest},
		{401, approvalclient.ErrUnauthorized},
		{403, approvalclient.ErrForbidden},
		{404, approvalclient.ErrNotFound},
		{409, approvalclient.ErrConflict},
		{413, approvalclient.ErrTooLarge},
		{500, approvalclient.ErrUnavailable},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			f := newFakeService(t)
			f.failWith = tc.status
			c := testClient(f)
			ctx := testContext(t, 10*time.Second)

			_, err := c.Request(ctx, crmRequest())
			var ae *approvalclient.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.status, ae.Status)
			assert.Equal(t, fmt.Sprintf("scripted %d", tc.status), ae.Message)
			assert.ErrorIs(t, err, tc.is)
			for _, other := range sentinels {
				if other != tc.is {
					assert.NotErrorIs(t, err, other)
				}
			}
			_, err = c.Wait(ctx, "apr_0001")
			assert.ErrorIs(t, err, tc.is)
			assert.Equal(t, 2, f.requests, "no retry")
		})
	}
}

var sentinels = []error{
	approvalclient.ErrBadRequest, approvalclient.ErrUnauthorized, approvalclient.ErrForbidden, approvalclient.ErrNotFound,
	approvalclient.ErrConflict, approvalclient.ErrTooLarge, approvalclient.ErrUnavailable,
	approvalclient.ErrRejected, approvalclient.ErrExpired, approvalclient.ErrPending,
}

func TestWaitUnknownID(t *testing.T) {
	f := newFakeService(t)
	_, err := testClient(f).Wait(testContext(t, 10*time.Second), "apr_nope")
	require.ErrorIs(t, err, approvalclient.ErrNotFound)
	assert.EqualError(t, err, `approval service: 404 Not Found: no approval "apr_nope"`)
}

func TestTokenAndTraceContext(t *testing.T) {
	f := newFakeService(t)
	f.token = "agent-secret"
	c := testClient(f)

	_, err := c.Request(testContext(t, 10*time.Second), crmRequest())
	require.ErrorIs(t, err, approvalclient.ErrUnauthorized, "no token")

	c.Token = "agent-secret"
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	ctx := trace.ContextWithSpanContext(testContext(t, 10*time.Second), sc)
	a, err := c.Request(ctx, crmRequest())
	require.NoError(t, err)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", a.TraceID, "the request entry is placed in the caller's trace")
	assert.Equal(t, "00f067aa0ba902b7", a.SpanID)
}

func TestNullValues(t *testing.T) {
	f := newFakeService(t)
	req := crmRequest()
	req.PreviousValue = nil
	req.TargetResource = ""
	a, err := testClient(f).Request(testContext(t, 10*time.Second), req)
	require.NoError(t, err)
	assert.Nil(t, a.PreviousValue)
	assert.Empty(t, a.TargetResource)
	f.mu.Lock()
	body := f.approvals[a.ID].body
	f.mu.Unlock()
	assert.Contains(t, body, "previous_value", "sent as null, not left out")
	assert.Nil(t, body["previous_value"])
}

// TestKeyReusedForAnotherAction: the service answers a known key with its
// first approval; the client must not take it for an approval of another
// action.
func TestKeyReusedForAnotherAction(t *testing.T) {
	f := newFakeService(t)
	c := testClient(f)
	ctx := testContext(t, 10*time.Second)
	req := crmRequest()
	req.IdempotencyKey = "step-12"
	_, err := c.Request(ctx, req)
	require.NoError(t, err)
	req.ProposedValue = new("mallory@evil.example")
	_, err = c.Request(ctx, req)
	require.ErrorContains(t, err, `the service answered idempotency key "step-12" with approval apr_0001 of another action (its proposed_value differs)`)
}

func TestBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:4320", "ftp://x"} {
		c := &approvalclient.Client{BaseURL: u}
		_, err := c.Request(testContext(t, 5*time.Second), crmRequest())
		require.ErrorContains(t, err, "is not an http(s) URL", "BaseURL %q", u)
		require.NotErrorIs(t, err, context.DeadlineExceeded, "refused at once, not retried")
	}
}

func TestWriteAttributesAndAttach(t *testing.T) {
	a := &approvalclient.Approval{
		ID: "apr_0001", Status: approvalclient.Approved,
		ExecutionID: "exec_a7f3b2c1", TargetSystem: "HubSpot CRM", TargetResource: "Contact #48291 (email field)",
		ProposedValue: new("jane@newdomain.com"), PreviousValue: new("jane@olddomain.com"),
	}
	assert.Equal(t, []attribute.KeyValue{
		attribute.String("audit.action.type", "write"),
		attribute.String("audit.execution.id", "exec_a7f3b2c1"),
		attribute.String("audit.target.system", "HubSpot CRM"),
		attribute.String("audit.target.resource", "Contact #48291 (email field)"),
		attribute.String("audit.value.proposed", "jane@newdomain.com"),
		attribute.String("audit.value.previous", "jane@olddomain.com"),
		attribute.String("audit.approval.id", "apr_0001"),
	}, approvalclient.WriteAttributes(a))

	a.PreviousValue = nil
	assert.NotContains(t, approvalclient.WriteAttributes(a), attribute.String("audit.value.previous", ""), "null stays absent")
	assert.Len(t, approvalclient.WriteAttributes(a), 6)
	assert.Nil(t, approvalclient.WriteAttributes(nil))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := tp.Tracer("test").Start(context.Background(), "crm.update_contact")
	approvalclient.Attach(span, a)
	approvalclient.Attach(span, nil)
	span.End()
	require.Len(t, rec.Ended(), 1)
	assert.Equal(t, []attribute.KeyValue{attribute.String("audit.approval.id", "apr_0001")}, rec.Ended()[0].Attributes())
}
