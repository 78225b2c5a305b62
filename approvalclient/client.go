package approvalclient

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Client talks to the approval service. Its zero value is not usable:
// set BaseURL. A Client is safe for concurrent use once set up.
type Client struct {
	// BaseURL is the service's address, e.g. "http://127.0.0.1:4320".
	BaseURL string
	// HTTPClient sends the requests; nil is http.DefaultClient. Its
	// Timeout, if any, bounds each long poll: Wait asks for less.
	HTTPClient *http.Client
	// Token, if set, is sent as "Authorization: Bearer <Token>": the
	// agent's identity for the service's auth extension.
	Token string
	// PollWait is how long one long poll may last; 0 is 30s. The service
	// holds a poll for at most 60s.
	PollWait time.Duration
	// Backoff is the first pause after a failed try, doubled after each
	// further failure up to MaxBackoff; 0 is 250ms. A 503's Retry-After
	// replaces it.
	Backoff time.Duration
	// MaxBackoff bounds the pause between tries; 0 is 10s.
	MaxBackoff time.Duration
}

const (
	defaultPollWait   = 30 * time.Second
	maxPollWait       = 60 * time.Second // the service's limit
	defaultBackoff    = 250 * time.Millisecond
	defaultMaxBackoff = 10 * time.Second
	// maxResponse bounds what is read of an answer: an approval is a few
	// KiB (the values are bounded by the trail's max_value_bytes).
	maxResponse = 8 << 20
)

// requestBody is the JSON of POST /v1/approvals. The service refuses
// unknown fields, so it holds exactly the contract's.
type requestBody struct {
	ExecutionID    string  `json:"execution_id"`
	TargetSystem   string  `json:"target_system"`
	TargetResource string  `json:"target_resource"`
	ProposedValue  *string `json:"proposed_value"`
	PreviousValue  *string `json:"previous_value"`
	Reasoning      string  `json:"reasoning,omitempty"`
	Tool           string  `json:"tool,omitempty"`
	AgentID        string  `json:"agent_id,omitempty"`
	AgentName      string  `json:"agent_name,omitempty"`
	ServiceName    string  `json:"service_name,omitempty"`
	Principal      string  `json:"principal,omitempty"`
	TraceID        string  `json:"trace_id,omitempty"`
	SpanID         string  `json:"span_id,omitempty"`
	ExpiresIn      string  `json:"expires_in,omitempty"`
	IdempotencyKey string  `json:"idempotency_key"`
}

// Request asks for approval of req's action and returns the approval:
// pending, or already approved when an auto policy decides it. It retries
// network errors and 503s (honouring Retry-After) until ctx ends, with
// the same idempotency key each time, so that at most one approval is
// created. Other refusals come back as an *APIError at once.
func (c *Client) Request(ctx context.Context, req Request) (*Approval, error) {
	body := requestBody{
		ExecutionID: req.ExecutionID, TargetSystem: req.TargetSystem, TargetResource: req.TargetResource,
		ProposedValue: req.ProposedValue, PreviousValue: req.PreviousValue, Reasoning: req.Reasoning,
		Tool: req.Tool, AgentID: req.AgentID, AgentName: req.AgentName, ServiceName: req.ServiceName, Principal: req.Principal,
		TraceID: req.TraceID, SpanID: req.SpanID, IdempotencyKey: req.IdempotencyKey,
	}
	if body.TraceID == "" && body.SpanID == "" {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			body.TraceID, body.SpanID = sc.TraceID().String(), sc.SpanID().String()
		}
	}
	if req.ExpiresIn > 0 {
		body.ExpiresIn = req.ExpiresIn.String()
	}
	if body.IdempotencyKey == "" {
		body.IdempotencyKey = NewIdempotencyKey()
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var a *Approval
	err = c.retry(ctx, "requesting approval", func(ctx context.Context) (bool, error) {
		var err error
		a, err = c.do(ctx, http.MethodPost, "/v1/approvals", b)
		return false, err
	})
	if err != nil {
		return nil, err
	}
	// The service answers a known key with the approval it was first
	// given, whatever the body: a key reused for another action must not
	// pass for an approval of this one.
	if diff := a.differs(body); diff != "" {
		return nil, fmt.Errorf("approvalclient: the service answered idempotency key %q with approval %s of another action (its %s differs): is the key reused?", body.IdempotencyKey, a.ID, diff)
	}
	return a, nil
}

// differs names the first field of the action in which a differs from b.
func (a *Approval) differs(b requestBody) string {
	switch {
	case a.ExecutionID != b.ExecutionID:
		return "execution_id"
	case a.TargetSystem != b.TargetSystem:
		return "target_system"
	case a.TargetResource != b.TargetResource:
		return "target_resource"
	case !sameValue(a.ProposedValue, b.ProposedValue):
		return "proposed_value"
	case !sameValue(a.PreviousValue, b.PreviousValue):
		return "previous_value"
	}
	return ""
}

func sameValue(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// Wait returns approval id once it is no longer pending: approved,
// rejected or expired (see Approval.Approved and Approval.Err). It
// long-polls, and resumes after network errors, 503s and restarts of the
// collector until ctx ends; then it returns ctx's error. An *APIError
// (404: unknown id, or another requester's; 403) comes back at once.
func (c *Client) Wait(ctx context.Context, id string) (*Approval, error) {
	if id == "" {
		return nil, errors.New("approvalclient: Wait: empty approval id")
	}
	wait := c.pollWait()
	path := "/v1/approvals/" + url.PathEscape(id) + "?wait=" + wait.String()
	var a *Approval
	err := c.retry(ctx, "waiting for approval "+id, func(ctx context.Context) (bool, error) {
		start := time.Now()
		var err error
		a, err = c.do(ctx, http.MethodGet, path, nil)
		if err != nil {
			return false, err
		}
		if a.Status != Pending {
			return false, nil
		}
		// Still pending: ask again at once, unless the poll came back
		// early (a server that does not hold polls, or one stopping), in
		// which case pause as after a failure rather than spin.
		if time.Since(start) < wait/2 {
			return true, errPendingEarly
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// errPendingEarly is a poll answered "pending" before its wait ran out.
var errPendingEarly = errors.New("answered pending before the wait ran out")

// pollWait is the wait of one poll: PollWait, within the service's limit
// and below the HTTP client's timeout.
func (c *Client) pollWait() time.Duration {
	wait := c.PollWait
	if wait <= 0 {
		wait = defaultPollWait
	}
	wait = min(wait, maxPollWait)
	if t := c.httpClient().Timeout; t > 0 && wait > t*3/4 {
		wait = t / 2
	}
	return wait
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// retry calls try until it returns neither an error nor again, backing
// off after errors that may pass (see retryable) and returning the others
// at once. When ctx ends it returns ctx's error, with the last failure.
func (c *Client) retry(ctx context.Context, what string, try func(context.Context) (again bool, err error)) error {
	first := c.Backoff
	if first <= 0 {
		first = defaultBackoff
	}
	maxB := c.MaxBackoff
	if maxB <= 0 {
		maxB = defaultMaxBackoff
	}
	backoff := first
	var last error
	for {
		again, err := try(ctx)
		if err == nil && !again {
			return nil
		}
		if ctx.Err() != nil {
			if last == nil {
				return fmt.Errorf("approvalclient: %s: %w", what, ctx.Err())
			}
			return fmt.Errorf("approvalclient: %s: %w (last try: %w)", what, ctx.Err(), last)
		}
		var pause time.Duration
		switch {
		case err == nil:
			backoff = first // a poll that ran its course: the service is there
			continue
		case !retryable(err):
			return err
		default:
			last = err
			pause = rand.N(backoff/2+1) + backoff/2 // jitter: agents restarted together spread out
			backoff = min(backoff*2, maxB)
			if ra := (*retryAfterError)(nil); errors.As(err, &ra) && ra.after > 0 {
				pause = ra.after
			}
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("approvalclient: %s: %w (last try: %w)", what, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// retryable reports whether err may pass by itself: anything but an
// *APIError, and the APIErrors of an overloaded or restarting service.
func retryable(err error) bool {
	if pe := (*permanentError)(nil); errors.As(err, &pe) {
		return false
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return true // a network error, a cut answer, errPendingEarly
	}
	switch ae.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryAfterError is an *APIError with a Retry-After.
type retryAfterError struct {
	*APIError
	after time.Duration
}

func (e *retryAfterError) Unwrap() error { return e.APIError }

// permanentError is a failure of the client itself, which no retry
// changes.
type permanentError struct{ error }

func (e *permanentError) Unwrap() error { return e.error }

// do sends one request and decodes the approval it answers.
func (c *Client) do(ctx context.Context, method, path string, body []byte) (*Approval, error) {
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &permanentError{fmt.Errorf("approvalclient: BaseURL %q is not an http(s) URL such as http://127.0.0.1:4320", c.BaseURL)}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("approvalclient: %w", err)} // a bad BaseURL
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		ae := &APIError{Status: resp.StatusCode, Message: errorMessage(b)}
		if after := retryAfter(resp.Header.Get("Retry-After")); after > 0 {
			return nil, &retryAfterError{APIError: ae, after: after}
		}
		return nil, ae
	}
	var a Approval
	if err := json.Unmarshal(b, &a); err != nil {
		// A cut answer reads as bad JSON: retried like the cut itself.
		return nil, fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
	}
	if a.ID == "" || a.Status == "" {
		return nil, &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("the answer is no approval: %.200s", b)}
	}
	return &a, nil
}

// errorMessage is the message of an error body: {"error": "..."}, else
// the start of the text (a proxy's page).
func errorMessage(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// NewIdempotencyKey returns a fresh random key for Request.IdempotencyKey.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return "ak_" + hex.EncodeToString(b[:])
}
