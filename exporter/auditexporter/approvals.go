package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

// The approval service (docs/APPROVALS.md, internal/approval) runs inside
// the exporter when its "approvals" section is set: it writes its entries
// into the exporter's chain, through the same mapping as spans, and names
// who calls its API as the exporter names senders.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/agentaudit/agentaudit/internal/approval"
	"github.com/agentaudit/agentaudit/internal/approvalpolicy"
	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/recorder"
)

const (
	defaultApprovalsEndpoint = "127.0.0.1:4320"
	defaultApprovalExpiry    = time.Hour
	defaultApprovalMaxExpiry = 24 * time.Hour
	// maxApprovalWait bounds a long poll (docs/APPROVALS.md).
	maxApprovalWait = 60 * time.Second
)

// ApprovalsConfig turns the approval service on (docs/APPROVALS.md).
type ApprovalsConfig struct {
	// The HTTP server: endpoint (loopback by default), tls, cors, and auth,
	// which the API requires (the inbox page itself holds no data).
	confighttp.ServerConfig `mapstructure:",squash"`

	// Reviewers are the identities that may decide.
	Reviewers []string `mapstructure:"reviewers"`
	// ReviewerClaim makes a reviewer of whoever the auth extension gives
	// this claim's value.
	ReviewerClaim *ReviewerClaimConfig `mapstructure:"reviewer_claim"`
	Expiry        ApprovalExpiryConfig `mapstructure:"expiry"`
	// Policies name the actions that need approval and who decides, first
	// match first.
	Policies []ApprovalPolicyConfig `mapstructure:"policies"`

	_ struct{}
}

// ReviewerClaimConfig is a claim that makes a reviewer.
type ReviewerClaimConfig struct {
	Name  string `mapstructure:"name"`
	Value string `mapstructure:"value"`

	_ struct{}
}

// ApprovalExpiryConfig bounds how long a request waits for a decision.
type ApprovalExpiryConfig struct {
	Default time.Duration `mapstructure:"default"`
	Max     time.Duration `mapstructure:"max"`

	_ struct{}
}

// ApprovalPolicyConfig is one policy.
type ApprovalPolicyConfig struct {
	Name      string   `mapstructure:"name"`
	Decide    string   `mapstructure:"decide"` // person or auto
	Systems   []string `mapstructure:"systems"`
	Resources []string `mapstructure:"resources"`
	Tools     []string `mapstructure:"tools"`

	_ struct{}
}

func defaultApprovalsConfig() ApprovalsConfig {
	sc := confighttp.NewDefaultServerConfig()
	sc.NetAddr.Endpoint = defaultApprovalsEndpoint
	// A long poll answers after up to maxApprovalWait.
	sc.WriteTimeout = maxApprovalWait + 30*time.Second
	return ApprovalsConfig{
		ServerConfig: sc,
		Expiry:       ApprovalExpiryConfig{Default: defaultApprovalExpiry, Max: defaultApprovalMaxExpiry},
	}
}

// Validate checks the approvals settings, each problem naming its key.
func (cfg *ApprovalsConfig) Validate() error {
	var errs []error
	if !cfg.Auth.HasValue() {
		errs = append(errs, errors.New(`"auth" must name an authenticator: a decision records the reviewer's authenticated identity`))
	}
	if len(cfg.Reviewers) == 0 && cfg.ReviewerClaim == nil {
		errs = append(errs, errors.New(`"reviewers" or "reviewer_claim" must say who may decide`))
	}
	for i, r := range cfg.Reviewers {
		if r == "" {
			errs = append(errs, fmt.Errorf(`"reviewers" [%d] is empty`, i))
		}
	}
	if c := cfg.ReviewerClaim; c != nil && (c.Name == "" || c.Value == "") {
		errs = append(errs, errors.New(`"reviewer_claim" needs a "name" and a "value"`))
	}
	if cfg.Expiry.Default <= 0 || cfg.Expiry.Max <= 0 {
		errs = append(errs, errors.New(`"expiry": "default" and "max" must be positive`))
	} else if cfg.Expiry.Default > cfg.Expiry.Max {
		errs = append(errs, fmt.Errorf(`"expiry": "default" %v is past "max" %v`, cfg.Expiry.Default, cfg.Expiry.Max))
	}
	if _, err := cfg.policies(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// policies returns the configured policies, checked.
func (cfg *ApprovalsConfig) policies() ([]approvalpolicy.Policy, error) {
	var errs []error
	ps := make([]approvalpolicy.Policy, 0, len(cfg.Policies))
	names := map[string]bool{}
	for i, pc := range cfg.Policies {
		where := fmt.Sprintf(`"policies" [%d]`, i)
		if pc.Name != "" && names[pc.Name] {
			errs = append(errs, fmt.Errorf(`%s: "name" %q is used twice`, where, pc.Name))
		}
		names[pc.Name] = true
		p := approvalpolicy.Policy{Name: pc.Name, Decide: pc.Decide, Systems: pc.Systems, Resources: pc.Resources, Tools: pc.Tools}
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		ps = append(ps, p)
	}
	return ps, errors.Join(errs...)
}

// approvals is the running service and its server.
type approvals struct {
	svc    *approval.Service
	server *http.Server
	done   chan struct{}
}

// startApprovals starts the service and its server, after the recorder.
func (e *auditExporter) startApprovals(ctx context.Context, host component.Host) error {
	cfg := e.cfg.Approvals.Get()
	policies, _ := cfg.policies() // Validate checked them
	var claim *approval.Claim
	if c := cfg.ReviewerClaim; c != nil {
		claim = &approval.Claim{Name: c.Name, Value: c.Value}
	}
	svc := approval.New(approval.Config{
		ChainID:       e.cfg.ChainID,
		StateDir:      filepath.Join(e.cfg.Spool.Directory, "approvals"),
		Endpoint:      cfg.NetAddr.Endpoint,
		Policies:      policies,
		Reviewers:     cfg.Reviewers,
		ReviewerClaim: claim,
		DefaultExpiry: cfg.Expiry.Default,
		MaxExpiry:     cfg.Expiry.Max,
		MaxWait:       maxApprovalWait,
		Now:           func() time.Time { return e.now() },
		Count:         e.tel.approvalEvent,
	}, approvalRecorder{e}, e.approvalEntry, e.logger)

	// The API needs the auth extension; the page does not: the server
	// itself gets no auth, and the API's routes go through it here.
	sc := cfg.ServerConfig
	authCfg := *sc.Auth.Get() // a copy: sc.Auth is cleared next
	sc.Auth = configoptional.None[confighttp.AuthConfig]()
	authn, err := authCfg.Config.GetServerAuthenticator(ctx, host.GetExtensions())
	if err != nil {
		return fmt.Errorf("approvals: \"auth\": %w", err)
	}
	authenticate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sources := r.Header.Clone()
			q := r.URL.Query()
			for _, p := range authCfg.RequestParameters {
				if v, ok := q[p]; ok {
					sources[p] = v
				}
			}
			actx, err := authn.Authenticate(r.Context(), sources)
			if err != nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = fmt.Fprintf(w, "{\"error\":%s}\n", strconv.Quote("not authenticated: "+err.Error()))
				return
			}
			next.ServeHTTP(w, r.WithContext(actx))
		})
	}

	if err := svc.Start(); err != nil {
		return err
	}
	if err := e.tel.observeApprovals(e.telemetrySettings, svc.Pending); err != nil {
		svc.Shutdown()
		return err
	}
	ln, err := sc.ToListener(ctx)
	if err != nil {
		svc.Shutdown()
		return fmt.Errorf("approvals: \"endpoint\" %q: %w", sc.NetAddr.Endpoint, err)
	}
	srv, err := sc.ToServer(ctx, host.GetExtensions(), e.telemetrySettings, svc.Handler(authenticate, e.identifyHTTP))
	if err != nil {
		ln.Close()
		svc.Shutdown()
		return fmt.Errorf("approvals: %w", err)
	}
	a := &approvals{svc: svc, server: srv, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.logger.Error("The approvals server stopped", zap.Error(err))
		}
	}()
	e.approvals.Store(a)
	e.logger.Info("Approval service listening", zap.String("endpoint", ln.Addr().String()), zap.Int("policies", len(policies)))
	return nil
}

// shutdownApprovals stops the server and the service, before the recorder:
// long polls answer with the approval as it is.
func (e *auditExporter) shutdownApprovals(ctx context.Context) {
	a := e.approvals.Load()
	if a == nil {
		return
	}
	a.svc.Shutdown()
	if err := a.server.Shutdown(ctx); err != nil {
		_ = a.server.Close()
	}
	<-a.done
}

// approvalRecorder records the service's entries in the exporter's chain.
type approvalRecorder struct{ e *auditExporter }

func (r approvalRecorder) Record(entries []entry.Entry) error {
	err := r.e.rec.Append(entries)
	if err == nil {
		r.e.tel.entriesAccepted(context.Background(), entries, 0)
		return nil
	}
	var refused *recorder.RefusedError
	if errors.As(err, &refused) || errors.Is(err, recorder.ErrShutdown) {
		return &approval.UnavailableError{Err: err}
	}
	return err
}

// identifyHTTP names who sent an API request, as the exporter names
// senders: the auth extension's subject or username, or the name of the
// sender whose token_sha256 is the request's bearer token; over TLS with a
// verified client certificate, its subject.
func (e *auditExporter) identifyHTTP(r *http.Request) approval.Identity {
	info := client.FromContext(r.Context())
	var who approval.Identity
	if info.Auth != nil {
		who.Attr = info.Auth.GetAttribute
	}
	md := map[string][]string{}
	if v := r.Header.Values("Authorization"); len(v) > 0 {
		md[authorization] = v
	}
	info.Metadata = client.NewMetadata(md)
	ctx := client.NewContext(r.Context(), info)
	if id, ok := e.sender.identify(ctx); ok {
		who.ID = id
	} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		who.ID = r.TLS.PeerCertificates[0].Subject.String()
	}
	return who
}

// approvalEntry maps an event of the service to its entry, through the
// mapping every span goes through, so that its columns are bounded and
// validated the same way.
func (e *auditExporter) approvalEntry(ev approval.Event) entry.Entry {
	res := pcommon.NewResource()
	span := ptrace.NewSpan()
	ts := pcommon.NewTimestampFromTime(ev.At)
	span.SetStartTimestamp(ts)
	span.SetEndTimestamp(ts)
	span.Status().SetCode(ptrace.StatusCodeOk)
	attrs := span.Attributes()
	putOpt := func(k string, v *string) {
		if v != nil {
			attrs.PutStr(k, *v)
		}
	}
	var action string
	switch ev.Kind {
	case approval.EventPolicy:
		action = entry.ActionApprovalPolicy
		id := sha256.Sum256([]byte(fmt.Sprintf("agentaudit.approval_policy\x00%s\x00%d", e.cfg.ChainID, ev.At.UnixNano())))
		span.SetTraceID(pcommon.TraceID(id[:16]))
		span.SetSpanID(pcommon.SpanID(id[16:24]))
		span.SetName(entry.ActionApprovalPolicy)
		res.Attributes().PutStr(entry.KeyServiceName, "agentaudit")
		attrs.PutStr(entry.KeyExecutionID, "agentaudit.approvals/"+e.cfg.ChainID)
		attrs.PutStr(entry.KeyTargetSystem, "agentaudit approvals")
		attrs.PutStr(entry.KeyTargetResource, ev.Endpoint)
		attrs.PutStr(entry.KeyValueProposed, approvalpolicy.Canonical(ev.Policies))
		attrs.PutStr(entry.KeyResult, "in force")
		reviewers := attrs.PutEmptySlice(entry.AttrApprovalReviewers)
		for _, r := range ev.Reviewers {
			reviewers.AppendEmpty().SetStr(r)
		}
	default:
		// The entries are children of the agent's span the request names
		// (or of none), each with a span id of its own.
		a := ev.Approval
		tid, _ := hex.DecodeString(a.TraceID)
		span.SetTraceID(pcommon.TraceID(tid))
		if pid, err := hex.DecodeString(a.SpanID); err == nil && len(pid) == 8 {
			span.SetParentSpanID(pcommon.SpanID(pid))
		}
		own := sha256.Sum256([]byte(fmt.Sprintf("agentaudit.approval\x00%s\x00%d", a.ID, ev.Kind)))
		span.SetSpanID(pcommon.SpanID(own[:8]))
		attrs.PutStr(entry.KeyExecutionID, a.ExecutionID)
		attrs.PutStr(entry.KeyTargetSystem, a.TargetSystem)
		attrs.PutStr(entry.KeyTargetResource, a.TargetResource)
		putOpt(entry.KeyValueProposed, a.ProposedValue)
		putOpt(entry.KeyValuePrevious, a.PreviousValue)
		putOpt(entry.KeyAgentID, a.AgentID)
		putOpt(entry.KeyAgentName, a.AgentName)
		putOpt(entry.KeyServiceName, a.ServiceName)
		attrs.PutStr(entry.AttrApprovalID, a.ID)
		if ev.Kind == approval.EventRequest {
			action = "request_approval"
			span.SetName("agentaudit.approval.request")
			putOpt(entry.KeyReasoning, a.Reasoning)
			putOpt(entry.KeyEndUserID, a.Principal)
			attrs.PutStr(entry.KeyResult, "pending")
			attrs.PutStr(entry.AttrApprovalExpiresAt, a.ExpiresAt)
			putOpt(entry.AttrApprovalPolicy, a.Policy)
			putOpt(entry.AttrApprovalTool, a.Tool)
			break
		}
		d := a.Decision
		attrs.PutStr(entry.AttrApprovalRequestHash, a.Request.EntryHash)
		putOpt(entry.KeyReasoning, d.Comment)
		putOpt(entry.KeyApprover, d.Approver)
		switch d.Decision {
		case "approve":
			action = "approve"
			attrs.PutStr(entry.KeyResult, "approved")
		case "reject":
			action = "reject"
			attrs.PutStr(entry.KeyResult, "rejected")
		default:
			action = entry.ActionApprovalExpired
			attrs.PutStr(entry.KeyResult, "expired")
		}
		span.SetName("agentaudit.approval." + d.Decision)
		if d.Auto {
			attrs.PutBool(entry.AttrApprovalAuto, true)
			putOpt(entry.AttrApprovalPolicy, a.Policy)
		}
	}
	attrs.PutStr(entry.KeyActionType, "error") // replaced below: no span can carry a reserved action type
	en := auditspan.FromOwnSpan(res, span, e.opts)
	en.ActionType = action
	switch {
	case ev.Sender == nil:
	case ev.Kind == approval.EventRequest:
		// The agent names itself in the request as on a span: the senders
		// policy applies (sender_mismatch).
		es := []entry.Entry{en}
		if e.sender.setSenders(es, *ev.Sender, e.opts) > 0 {
			e.tel.mismatchCount.Add(context.Background(), 1)
		}
		en = es[0]
	default:
		// A reviewer decides about the agent's action; it does not write
		// for the agent.
		col, ps := auditspan.SenderColumn(*ev.Sender, e.opts)
		en.Sender = &col
		if len(ps) > 0 {
			auditspan.MergeProblems(&en, ps...)
		}
	}
	return en
}
