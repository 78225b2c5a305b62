package approvalclient_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeService implements the agent's side of the API of
// docs/APPROVALS.md (POST /v1/approvals, GET /v1/approvals/{id}?wait=)
// closely enough to test the client against: idempotency keys, long polls
// woken by a decision, unknown fields refused, errors as {"error": ...}.
// Its faults are scripted by the test; the real service is tested end to
// end in e2e.
type fakeService struct {
	t     *testing.T
	token string // when set, the bearer token required

	mu        sync.Mutex
	approvals map[string]*fakeApproval
	byKey     map[string]string
	n         int
	requests  int      // requests received
	posts     int      // POSTs that reached the handler
	polls     int      // GETs of one approval that reached the handler
	keys      []string // the idempotency key of each POST received
	waits     []string // the wait of each GET received

	// Faults, each consumed as it fires.
	unavailable int    // answer the next this many requests 503, Retry-After: retryAfter
	retryAfter  string // "1", or "" for none
	cutPost     int    // create, then cut the connection before answering, this many times
	cutPoll     []int  // cut these polls (1-based) after holding them a little
	failWith    int    // answer every request with this status
	approveAt   int    // the poll (1-based) during which a pending approval is approved; 0: never

	listener net.Listener
	server   *http.Server
	addr     string
}

type fakeApproval struct {
	body    map[string]any
	changed chan struct{}
}

func newFakeService(t *testing.T) *fakeService {
	t.Helper()
	f := &fakeService{t: t, approvals: map[string]*fakeApproval{}, byKey: map[string]string{}, retryAfter: "1"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.serve(l)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeService) url() string { return "http://" + f.addr }

func (f *fakeService) serve(l net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/approvals", f.post)
	mux.HandleFunc("GET /v1/approvals/{id}", f.get)
	f.listener, f.server = l, &http.Server{Handler: f.auth(mux)}
	go func() { _ = f.server.Serve(l) }()
}

// stop closes the listener and every connection, as a collector that
// exits does.
func (f *fakeService) stop() {
	if f.server != nil {
		_ = f.server.Close()
		f.server = nil
	}
}

// restart stops the service and starts it again on the same address
// after down, keeping the approvals (the real one keeps them on disk).
func (f *fakeService) restart(down time.Duration) {
	f.stop()
	time.Sleep(down)
	var l net.Listener
	var err error
	for range 50 { // the port may take a moment to be free again
		if l, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Errorf("listening again on %s: %v", f.addr, err)
		return
	}
	f.serve(l)
}

func (f *fakeService) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			writeErr(w, http.StatusUnauthorized, "no valid bearer token")
			return
		}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			var in struct {
				Key string `json:"idempotency_key"`
			}
			_ = json.Unmarshal(b, &in)
			f.mu.Lock()
			f.keys = append(f.keys, in.Key)
			f.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		f.mu.Lock()
		f.requests++
		if r.Method == http.MethodGet {
			f.waits = append(f.waits, r.URL.Query().Get("wait"))
		}
		status := f.failWith
		unavailable := f.unavailable > 0
		if unavailable {
			f.unavailable--
		}
		f.mu.Unlock()
		switch {
		case status != 0:
			writeErr(w, status, fmt.Sprintf("scripted %d", status))
		case unavailable:
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			writeErr(w, http.StatusServiceUnavailable, "the spool is full")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// cut closes the connection without an answer.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// The fields of POST /v1/approvals (the service refuses others).
var requestFields = map[string]bool{
	"execution_id": true, "target_system": true, "target_resource": true, "proposed_value": true,
	"previous_value": true, "reasoning": true, "tool": true, "agent_id": true, "agent_name": true,
	"service_name": true, "principal": true, "trace_id": true, "span_id": true, "expires_in": true,
	"idempotency_key": true,
}

func (f *fakeService) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeErr(w, http.StatusUnsupportedMediaType, "send application/json")
		return
	}
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	for k, v := range in {
		if !requestFields[k] {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("unknown field %q", k))
			return
		}
		if _, ok := v.(string); !ok && v != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("%q is not a string", k))
			return
		}
	}
	for _, k := range []string{"execution_id", "target_system"} {
		if s, _ := in[k].(string); s == "" {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("%q is required", k))
			return
		}
	}
	if _, ok := in["target_resource"].(string); !ok {
		writeErr(w, http.StatusBadRequest, `"target_resource" is required (it may be "")`)
		return
	}
	f.mu.Lock()
	f.posts++
	key, _ := in["idempotency_key"].(string)
	if id, ok := f.byKey[key]; ok && key != "" {
		a := f.approvals[id].body
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, a)
		return
	}
	f.n++
	id := fmt.Sprintf("apr_%04d", f.n)
	a := map[string]any{
		"id": id, "status": "pending", "requester": nil, "policy": nil,
		"requested_at": "2026-12-06T08:00:00.123456789Z", "expires_at": "2026-12-06T08:15:00.123456789Z",
		"request":  map[string]any{"chain_id": "c1", "seq": f.n, "entry_hash": fmt.Sprintf("%064x", f.n)},
		"decision": nil, "checkpoint": nil,
	}
	for k, v := range in {
		if k != "idempotency_key" && k != "expires_in" {
			a[k] = v
		}
	}
	f.approvals[id] = &fakeApproval{body: a, changed: make(chan struct{})}
	if key != "" {
		f.byKey[key] = id
	}
	cutNow := f.cutPost > 0
	if cutNow {
		f.cutPost--
	}
	f.mu.Unlock()
	if cutNow {
		cut(w)
		return
	}
	w.Header().Set("Location", "/v1/approvals/"+id)
	writeJSON(w, http.StatusCreated, a)
}

func (f *fakeService) get(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 60*time.Second {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("wait %q", v))
			return
		}
		wait = d
	}
	id := r.PathValue("id")
	f.mu.Lock()
	a, ok := f.approvals[id]
	if !ok {
		f.mu.Unlock()
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no approval %q", id))
		return
	}
	f.polls++
	n := f.polls
	if n == f.approveAt {
		// A reviewer decides while the poll is held: the decision must
		// wake it.
		go func() {
			time.Sleep(10 * time.Millisecond)
			f.mu.Lock()
			defer f.mu.Unlock()
			if a.body["status"] == "pending" {
				f.decideLocked(a, "approve")
			}
		}()
	}
	cutNow := len(f.cutPoll) > 0 && f.cutPoll[0] == n
	if cutNow {
		f.cutPoll = f.cutPoll[1:]
	}
	status, changed := a.body["status"], a.changed
	f.mu.Unlock()

	if cutNow {
		time.Sleep(wait / 4) // mid-poll
		cut(w)
		return
	}
	if status == "pending" && wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-changed:
		case <-t.C:
		case <-r.Context().Done():
		}
	}
	f.mu.Lock()
	body := a.body
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// decideLocked decides a (approve, reject or expire) and wakes its polls.
func (f *fakeService) decideLocked(a *fakeApproval, decision string) {
	next := map[string]any{}
	for k, v := range a.body {
		next[k] = v
	}
	status := map[string]string{"approve": "approved", "reject": "rejected", "expire": "expired"}[decision]
	var approver any = "alice@example.com"
	if decision == "expire" {
		approver = nil
	}
	next["status"] = status
	next["decision"] = map[string]any{
		"decision": decision, "approver": approver, "auto": false, "comment": "ok",
		"decided_at": "2026-12-06T08:05:00Z", "chain_id": "c1", "seq": 99, "entry_hash": strings.Repeat("d", 64),
	}
	a.body = next
	close(a.changed)
	a.changed = make(chan struct{})
}

// decideNow decides approval id as a reviewer would.
func (f *fakeService) decideNow(id, decision string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.approvals[id]
	if !ok {
		return errors.New("no such approval")
	}
	f.decideLocked(a, decision)
	return nil
}

func (f *fakeService) counts() (posts, polls, approvals int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts, f.polls, len(f.approvals)
}
