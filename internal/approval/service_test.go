package approval

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/chain"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// chainRecorder records into a real hash chain, in memory, and can be told
// to refuse.
type chainRecorder struct {
	mu      sync.Mutex
	c       *chain.Chain
	entries []entry.Entry
	refuse  error
}

func newChainRecorder() *chainRecorder { return &chainRecorder{c: chain.New("c1", chain.Genesis())} }

func (r *chainRecorder) Record(es []entry.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse != nil {
		return r.refuse
	}
	for i := range es {
		r.c.Append(&es[i])
		r.entries = append(r.entries, es[i])
	}
	return nil
}

func (r *chainRecorder) all() []entry.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]entry.Entry(nil), r.entries...)
}

// testBuild is a Builder that keeps what the checks read: the action
// type, the approval's fields, the sender, and its attributes as a map in
// Attributes (JSON).
func testBuild(ev Event) entry.Entry {
	attrs := map[string]any{}
	e := entry.Entry{TimeUnixNano: ev.At.UnixNano(), Sender: ev.Sender, StatusCode: "Ok"}
	switch ev.Kind {
	case EventPolicy:
		e.ActionType = entry.ActionApprovalPolicy
		e.ExecutionID = "agentaudit.approvals/c1"
		p := approvalpolicy.Canonical(ev.Policies)
		e.ProposedValue = &p
	default:
		a := ev.Approval
		e.ExecutionID, e.TargetSystem, e.TargetResource = a.ExecutionID, a.TargetSystem, a.TargetResource
		e.ProposedValue = a.ProposedValue
		attrs[entry.AttrApprovalID] = a.ID
		switch ev.Kind {
		case EventRequest:
			e.ActionType = "request_approval"
		case EventDecision:
			e.ActionType = a.Decision.Decision
			e.Approver = a.Decision.Approver
			attrs[entry.AttrApprovalRequestHash] = a.Request.EntryHash
		case EventExpiry:
			e.ActionType = entry.ActionApprovalExpired
			attrs[entry.AttrApprovalRequestHash] = a.Request.EntryHash
		}
	}
	b, _ := json.Marshal(attrs)
	e.Attributes = string(b)
	return e
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	agent    = Identity{ID: "crm-agent"}
	alice    = Identity{ID: "alice@example.com"}
	mallory  = Identity{ID: "mallory"}
	policies = []approvalpolicy.Policy{
		{Name: "crm-contact-writes", Decide: approvalpolicy.DecidePerson, Systems: []string{"HubSpot CRM"}, Resources: []string{"Contact *"}},
		{Name: "sandbox", Decide: approvalpolicy.DecideAuto, Systems: []string{"Sandbox *"}},
	}
)

func testConfig(dir string, c *clock) Config {
	return Config{
		ChainID: "c1", StateDir: dir, Endpoint: "127.0.0.1:4320", Policies: policies,
		Reviewers: []string{"alice@example.com", "crm-agent-and-reviewer"}, DefaultExpiry: time.Hour, MaxExpiry: 24 * time.Hour,
		MaxWait: 2 * time.Second, Tick: time.Hour, Now: c.now,
	}
}

func start(t *testing.T, dir string, rec Recorder, c *clock) *Service {
	t.Helper()
	s := New(testConfig(dir, c), rec, testBuild, zap.NewNop())
	require.NoError(t, s.Start())
	t.Cleanup(s.Shutdown)
	return s
}

func ptr(s string) *string { return &s }

func contactChange() RequestInput {
	return RequestInput{
		ExecutionID: ptr("exec-1"), TargetSystem: ptr("HubSpot CRM"), TargetResource: ptr("Contact #48291 (email field)"),
		ProposedValue: ptr("jane@newdomain.com"), PreviousValue: ptr("jane@olddomain.com"), Reasoning: ptr("Email bounced"),
	}
}

func statusOf(t *testing.T, err error) int {
	t.Helper()
	var ae *apiError
	require.True(t, errors.As(err, &ae), "error %v is an API error", err)
	return ae.status
}

func TestRequestDecideAndWait(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	require.Len(t, rec.all(), 1)
	assert.Equal(t, entry.ActionApprovalPolicy, rec.all()[0].ActionType, "the policies in force are recorded first")

	a, created, err := s.Request(agent, contactChange())
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, Pending, a.Status)
	assert.Equal(t, "crm-contact-writes", *a.Policy)
	assert.Equal(t, "crm-agent", *a.Requester)
	req := rec.all()[1]
	assert.Equal(t, "request_approval", req.ActionType)
	assert.Equal(t, "crm-agent", *req.Sender, "the request entry's sender is the requester")
	assert.Equal(t, Ref{ChainID: "c1", Seq: 1, EntryHash: req.EntryHash}, a.Request)

	// The agent waits; the reviewer decides meanwhile.
	got := make(chan Approval, 1)
	go func() {
		w, err := s.Get(agent, a.ID, time.Minute, nil)
		assert.NoError(t, err)
		got <- w
	}()
	time.Sleep(50 * time.Millisecond)
	d, err := s.Decide(alice, a.ID, "approve", ptr("looks right"))
	require.NoError(t, err)
	assert.Equal(t, Approved, d.Status)
	select {
	case w := <-got:
		assert.Equal(t, Approved, w.Status, "the long poll answers with the decision")
		require.NotNil(t, w.Decision)
		assert.Equal(t, "alice@example.com", *w.Decision.Approver)
	case <-time.After(time.Second):
		t.Fatal("the long poll did not answer once decided")
	}
	dec := rec.all()[2]
	assert.Equal(t, "approve", dec.ActionType)
	assert.Equal(t, "alice@example.com", *dec.Approver)
	assert.Equal(t, "alice@example.com", *dec.Sender)
	assert.Contains(t, dec.Attributes, req.EntryHash, "the decision names the request's entry hash")
	assert.Equal(t, dec.EntryHash, d.Decision.EntryHash)

	_, err = s.Decide(alice, a.ID, "reject", nil)
	assert.Equal(t, 409, statusOf(t, err), "decided once")
	_, err = s.Decide(alice, "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "approve", nil)
	assert.Equal(t, 404, statusOf(t, err))
	assert.Len(t, rec.all(), 3, "refused decisions record nothing")

	// The first checkpoint over the decision is given with it.
	s.Checkpointed(dec.Seq, []byte("too early\n"))
	s.Checkpointed(dec.Seq+1, []byte("checkpoint\n"))
	require.Eventually(t, func() bool {
		w, _ := s.Get(agent, a.ID, 0, nil)
		return w.Checkpoint != nil
	}, 2*time.Second, 10*time.Millisecond)
	w, _ := s.Get(agent, a.ID, 0, nil)
	assert.Equal(t, "checkpoint\n", *w.Checkpoint)
}

func TestWhoMayDoWhat(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	both := Identity{ID: "crm-agent-and-reviewer"}
	a, _, err := s.Request(both, contactChange())
	require.NoError(t, err)

	_, err = s.Decide(both, a.ID, "approve", nil)
	assert.Equal(t, 403, statusOf(t, err), "a reviewer may not decide their own request")
	assert.Contains(t, err.Error(), "self_approval")
	_, err = s.Decide(agent, a.ID, "approve", nil)
	assert.Equal(t, 403, statusOf(t, err), "an agent is no reviewer")
	_, err = s.Decide(Identity{}, a.ID, "approve", nil)
	assert.Equal(t, 403, statusOf(t, err), "no identity, no decision")
	_, err = s.Get(mallory, a.ID, 0, nil)
	assert.Equal(t, 404, statusOf(t, err), "another agent's approval is not shown")
	_, err = s.List(agent, Pending, 10)
	assert.Equal(t, 403, statusOf(t, err))
	_, err = s.Context(agent, a.ID)
	assert.Equal(t, 403, statusOf(t, err))
	l, err := s.List(alice, Pending, 10)
	require.NoError(t, err)
	require.Len(t, l, 1)
	_, err = s.Decide(alice, a.ID, "maybe", nil)
	assert.Equal(t, 400, statusOf(t, err))
	assert.Len(t, rec.all(), 2, "only the policy and the request are recorded")

	// A reviewer by claim (oidcauth gives claims as claims.<name>).
	s.cfg.ReviewerClaim = &Claim{Name: "groups", Value: "approvers"}
	bob := Identity{ID: "bob", Attr: func(name string) any {
		if name == "claims.groups" {
			return []any{"staff", "approvers"}
		}
		return nil
	}}
	assert.True(t, s.IsReviewer(bob))
	assert.False(t, s.IsReviewer(Identity{ID: "eve", Attr: func(string) any { return []any{"staff"} }}))
}

func TestBadRequests(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	for name, mutate := range map[string]func(*RequestInput){
		"execution_id":    func(in *RequestInput) { in.ExecutionID = nil },
		"target_system":   func(in *RequestInput) { in.TargetSystem = ptr("") },
		"target_resource": func(in *RequestInput) { in.TargetResource = nil },
		"trace_id":        func(in *RequestInput) { in.TraceID = "xyz" },
		"span_id":         func(in *RequestInput) { in.SpanID = "0011" },
		"expires_in":      func(in *RequestInput) { in.ExpiresIn = "48h" },
		"idempotency_key": func(in *RequestInput) { in.IdempotencyKey = strings.Repeat("k", 300) },
	} {
		in := contactChange()
		mutate(&in)
		_, _, err := s.Request(agent, in)
		assert.Equal(t, 400, statusOf(t, err), name)
		assert.Contains(t, err.Error(), `"`+name+`"`, "the error names the field")
	}
	assert.Len(t, rec.all(), 1, "nothing recorded for bad requests")
}

func TestIdempotentRetry(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	in := contactChange()
	in.IdempotencyKey = "step-12"
	a, created, err := s.Request(agent, in)
	require.NoError(t, err)
	require.True(t, created)
	b, created, err := s.Request(agent, in)
	require.NoError(t, err)
	assert.False(t, created, "a retry is the same request")
	assert.Equal(t, a.ID, b.ID)
	other := in
	other.ProposedValue = ptr("someone@else.example")
	_, _, err = s.Request(agent, other)
	assert.Equal(t, 409, statusOf(t, err), "a key used for another action is a conflict, not that action's approval")
	assert.Contains(t, err.Error(), `"proposed_value"`)
	o, created, err := s.Request(mallory, in)
	require.NoError(t, err)
	assert.True(t, created, "the key is the requester's own")
	assert.NotEqual(t, a.ID, o.ID)
	assert.Len(t, rec.all(), 3)
}

func TestAutoPolicy(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	in := contactChange()
	in.TargetSystem = ptr("Sandbox CRM")
	a, _, err := s.Request(agent, in)
	require.NoError(t, err)
	assert.Equal(t, Approved, a.Status, "an auto policy decides at once")
	require.NotNil(t, a.Decision)
	assert.True(t, a.Decision.Auto)
	assert.Equal(t, "sandbox", *a.Decision.Approver, "the policy's name is the approver")
	es := rec.all()
	require.Len(t, es, 3)
	assert.Equal(t, "approve", es[2].ActionType)
	assert.Nil(t, es[2].Sender, "no person decided")

	// No policy matches: a person decides, and no policy is named.
	in.TargetSystem = ptr("Elsewhere")
	b, _, err := s.Request(agent, in)
	require.NoError(t, err)
	assert.Equal(t, Pending, b.Status)
	assert.Nil(t, b.Policy)
}

func TestExpiry(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	in := contactChange()
	in.ExpiresIn = "10m"
	a, _, err := s.Request(agent, in)
	require.NoError(t, err)
	c.add(9 * time.Minute)
	s.tick()
	w, _ := s.Get(agent, a.ID, 0, nil)
	assert.Equal(t, Pending, w.Status)
	c.add(time.Minute)
	s.tick()
	w, _ = s.Get(agent, a.ID, 0, nil)
	assert.Equal(t, Expired, w.Status)
	assert.Equal(t, "expire", w.Decision.Decision)
	assert.Nil(t, w.Decision.Approver)
	es := rec.all()
	assert.Equal(t, entry.ActionApprovalExpired, es[len(es)-1].ActionType)
	_, err = s.Decide(alice, a.ID, "approve", nil)
	assert.Equal(t, 409, statusOf(t, err), "an expired request cannot be approved")

	// Expired but not yet swept: the decision expires it first.
	b, _, err := s.Request(agent, in)
	require.NoError(t, err)
	c.add(11 * time.Minute)
	_, err = s.Decide(alice, b.ID, "approve", nil)
	assert.Equal(t, 409, statusOf(t, err))
	w, _ = s.Get(agent, b.ID, 0, nil)
	assert.Equal(t, Expired, w.Status)
}

func TestHistoryIsForgotten(t *testing.T) {
	dir := t.TempDir()
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, dir, rec, c)
	in := contactChange()
	in.IdempotencyKey = "k"
	a, _, err := s.Request(agent, in)
	require.NoError(t, err)
	_, err = s.Decide(alice, a.ID, "approve", nil)
	require.NoError(t, err)
	c.add(History - time.Second)
	s.tick()
	_, err = s.Get(agent, a.ID, 0, nil)
	require.NoError(t, err, "kept for History")
	c.add(time.Second)
	s.tick()
	_, err = s.Get(agent, a.ID, 0, nil)
	assert.Equal(t, 404, statusOf(t, err), "forgotten after History")
	assert.NoFileExists(t, filepath.Join(dir, a.ID+".json"))
	b, created, err := s.Request(agent, in)
	require.NoError(t, err)
	assert.True(t, created, "its idempotency key is forgotten too")
	assert.NotEqual(t, a.ID, b.ID)
}

func TestRestartKeepsApprovals(t *testing.T) {
	dir := t.TempDir()
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := New(testConfig(dir, c), rec, testBuild, zap.NewNop())
	require.NoError(t, s.Start())
	in := contactChange()
	in.IdempotencyKey = "k"
	pending, _, err := s.Request(agent, in)
	require.NoError(t, err)
	in.IdempotencyKey = ""
	decided, _, err := s.Request(agent, in)
	require.NoError(t, err)
	_, err = s.Decide(alice, decided.ID, "reject", ptr("no"))
	require.NoError(t, err)
	s.Shutdown()

	// A write cut short left a temporary file: it is ignored and removed.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "."+pending.ID+".json.tmp-1"), []byte("{"), 0o600))
	s2 := start(t, dir, rec, c)
	w, err := s2.Get(agent, pending.ID, 0, nil)
	require.NoError(t, err)
	assert.Equal(t, pending, w, "a pending approval is still pending, as it was")
	w, err = s2.Get(agent, decided.ID, 0, nil)
	require.NoError(t, err)
	assert.Equal(t, Rejected, w.Status)
	in.IdempotencyKey = "k"
	again, created, err := s2.Request(agent, in)
	require.NoError(t, err)
	assert.False(t, created, "idempotency keys survive a restart")
	assert.Equal(t, pending.ID, again.ID)
	_, err = s2.Decide(alice, pending.ID, "approve", nil)
	require.NoError(t, err)
	names, _ := filepath.Glob(filepath.Join(dir, ".*"))
	assert.Empty(t, names)

	// A state file that cannot be read stops the service: it must not
	// forget an approval.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa.json"), []byte("{"), 0o600))
	err = New(testConfig(dir, c), rec, testBuild, zap.NewNop()).Start()
	assert.ErrorContains(t, err, "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa.json")
}

func TestRefusedTrail(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	rec.refuse = &UnavailableError{Err: errors.New("the spool is full")}
	s := start(t, t.TempDir(), rec, c)
	_, _, err := s.Request(agent, contactChange())
	assert.Equal(t, 503, statusOf(t, err), "no policy entry yet: requests wait")
	rec.mu.Lock()
	rec.refuse = nil
	rec.mu.Unlock()
	s.tick()
	a, _, err := s.Request(agent, contactChange())
	require.NoError(t, err)
	rec.mu.Lock()
	rec.refuse = &UnavailableError{Err: errors.New("the spool is full")}
	rec.mu.Unlock()
	_, _, err = s.Request(agent, contactChange())
	assert.Equal(t, 503, statusOf(t, err))
	_, err = s.Decide(alice, a.ID, "approve", nil)
	assert.Equal(t, 503, statusOf(t, err))
	w, _ := s.Get(agent, a.ID, 0, nil)
	assert.Equal(t, Pending, w.Status, "a decision not recorded is not made")
}

func TestTimeline(t *testing.T) {
	tl := newTimelines(2, 3)
	add := func(exec string, seq int64) {
		tl.add([]entry.Entry{{ExecutionID: exec, Seq: seq, ActionType: "read", TargetResource: strings.Repeat("é", 300)}})
	}
	for i := range 5 {
		add("a", int64(i))
	}
	got := tl.get("a")
	require.Len(t, got, 3)
	assert.Equal(t, []int64{2, 3, 4}, []int64{got[0].Seq, got[1].Seq, got[2].Seq}, "the newest entries, oldest first")
	assert.LessOrEqual(t, len(got[0].TargetResource), maxTimelineText+len("…"))
	add("b", 10)
	add("a", 5) // a is now the most recent
	add("c", 11)
	assert.Empty(t, tl.get("b"), "the least recently active execution goes first")
	assert.Len(t, tl.get("a"), 3)
	assert.Len(t, tl.get("c"), 1)
}

func TestHTTP(t *testing.T) {
	rec, c := newChainRecorder(), &clock{t: time.Unix(1_800_000_000, 0)}
	s := start(t, t.TempDir(), rec, c)
	tokens := map[string]Identity{"agent-token": agent, "alice-token": alice}
	authenticate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]; !ok {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	identify := func(r *http.Request) Identity {
		return tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	}
	srv := httptest.NewServer(s.Handler(authenticate, identify))
	defer srv.Close()
	do := func(method, path, token, contentType, body string) (int, http.Header, map[string]any) {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header, out
	}
	body := `{"execution_id":"e","target_system":"HubSpot CRM","target_resource":"Contact 1","proposed_value":"b"}`

	code, _, _ := do("POST", "/v1/approvals", "", "application/json", body)
	assert.Equal(t, 401, code, "the API needs the auth extension")
	code, h, out := do("POST", "/v1/approvals", "agent-token", "application/json", body)
	require.Equal(t, 201, code, out)
	id := out["id"].(string)
	assert.Equal(t, "/v1/approvals/"+id, h.Get("Location"))
	code, _, out = do("POST", "/v1/approvals", "agent-token", "application/json", `{"execution_id":"e","target_sytem":"x"}`)
	assert.Equal(t, 400, code)
	assert.Contains(t, out["error"], "target_sytem", "unknown fields are refused, named")
	code, _, _ = do("POST", "/v1/approvals", "agent-token", "text/plain", body)
	assert.Equal(t, 415, code)
	code, _, _ = do("POST", "/v1/approvals", "agent-token", "application/json", `{"reasoning":"`+strings.Repeat("x", maxBody)+`"}`)
	assert.Equal(t, 413, code)
	code, _, _ = do("POST", "/v1/approvals", "agent-token", "application/json", body+body)
	assert.Equal(t, 400, code)

	code, _, out = do("GET", "/v1/approvals/"+id+"?wait=50ms", "agent-token", "", "")
	assert.Equal(t, 200, code)
	assert.Equal(t, "pending", out["status"])
	code, _, _ = do("GET", "/v1/approvals/"+id+"?wait=soon", "agent-token", "", "")
	assert.Equal(t, 400, code)
	code, _, out = do("GET", "/v1/approvals?status=pending", "alice-token", "", "")
	assert.Equal(t, 200, code)
	assert.Len(t, out["approvals"], 1)
	code, _, _ = do("GET", "/v1/approvals?status=maybe", "alice-token", "", "")
	assert.Equal(t, 400, code)
	code, _, out = do("GET", "/v1/approvals/"+id+"/context", "alice-token", "", "")
	assert.Equal(t, 200, code)
	assert.Len(t, out["timeline"], 1, "the request itself")
	code, _, _ = do("POST", "/v1/approvals/"+id+"/decision", "agent-token", "application/json", `{"decision":"approve"}`)
	assert.Equal(t, 403, code)
	code, _, out = do("POST", "/v1/approvals/"+id+"/decision", "alice-token", "application/json", `{"decision":"approve","comment":"ok"}`)
	assert.Equal(t, 200, code)
	assert.Equal(t, "approved", out["status"])
	code, _, _ = do("POST", "/v1/approvals/"+id+"/decision", "alice-token", "application/json", `{"decision":"approve"}`)
	assert.Equal(t, 409, code)
	code, _, _ = do("GET", "/v1/nothing", "alice-token", "", "")
	assert.Equal(t, 404, code)

	rec.mu.Lock()
	rec.refuse = &UnavailableError{Err: errors.New("the spool is full")}
	rec.mu.Unlock()
	code, h, _ = do("POST", "/v1/approvals", "agent-token", "application/json", body)
	assert.Equal(t, 503, code)
	assert.Equal(t, "5", h.Get("Retry-After"))

	// The page holds no data and needs no token; it loads only its script.
	code, h, _ = do("GET", "/", "", "", "")
	assert.Equal(t, 200, code)
	assert.Contains(t, h.Get("Content-Security-Policy"), "script-src 'self'")
	assert.Contains(t, h.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	code, h, _ = do("GET", "/inbox.js", "", "", "")
	assert.Equal(t, 200, code)
	assert.Equal(t, "text/javascript; charset=utf-8", h.Get("Content-Type"))
}
