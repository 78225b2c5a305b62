package auditexporter // import "github.com/agentaudit/agentaudit/exporter/auditexporter"

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
)

// Who sent a request: the identity the collector authenticated, read from
// the context the receiver handed down the pipeline (every consumer between
// the OTLP receiver and this exporter passes it on, and the exporter has no
// queue that would drop it). In this order, the first that gives one:
//
//  1. the receiver's auth extension's attribute "subject" (oidcauth: the
//     token's sub claim, or its username_claim), else "username" (basicauth),
//     a non-empty string. A subject is unique only within the issuer that
//     issued it, and oidcauth takes tokens of several issuers: when the
//     extension also gives the token's iss claim (oidcauth's attribute
//     "claims.iss"), the sender is "<issuer>#<subject>", the form
//     Kubernetes gives an OIDC user;
//  2. over OTLP/gRPC with mTLS, the subject of the client certificate, when
//     the TLS handshake verified it (configtls client_ca_file); the OTLP/HTTP
//     receiver does not hand the TLS state on, so mTLS alone names no sender
//     there;
//  3. the bearer token of the request's authorization header (which the
//     receiver hands on with include_metadata: true), when its SHA-256 is a
//     sender's token_sha256: that sender's name. bearertokenauth checks the
//     token but names no one, so the configuration does.
//
// None: the request was not authenticated, and its entries' sender is NULL.

// Auth attributes read as the sender, in this order.
var authAttributes = [...]string{"subject", "username"}

// authIssuer is the auth attribute of the issuer of a subject: oidcauth
// gives every claim of the token as "claims.<name>".
const authIssuer = "claims.iss"

// authorization is the metadata key of the bearer token, and bearerScheme
// the scheme before it (bearertokenauth's default).
const (
	authorization = "authorization"
	bearerScheme  = "bearer "
)

// senders resolves a request's sender and applies the senders policy.
type senders struct {
	byToken map[[sha256.Size]byte]string
	// agents are the globs each listed sender may write for; nil: no
	// policy, any sender may write for any agent.
	agents map[string][]string
}

func newSenders(cfg map[string]SenderConfig) *senders {
	s := &senders{}
	for id, sc := range cfg {
		if s.agents == nil {
			s.agents = make(map[string][]string, len(cfg))
		}
		s.agents[id] = sc.Agents
		if sc.TokenSHA256 == "" {
			continue
		}
		var sum [sha256.Size]byte
		if _, err := hex.Decode(sum[:], []byte(strings.ToLower(sc.TokenSHA256))); err != nil {
			continue // Validate refused it
		}
		if s.byToken == nil {
			s.byToken = map[[sha256.Size]byte]string{}
		}
		s.byToken[sum] = id
	}
	return s
}

// identify returns the authenticated sender of the request ctx belongs to,
// by the rule above, and false when it was not authenticated.
func (s *senders) identify(ctx context.Context) (string, bool) {
	info := client.FromContext(ctx)
	if info.Auth != nil {
		for _, name := range authAttributes {
			if v, ok := info.Auth.GetAttribute(name).(string); ok && v != "" {
				if iss, ok := info.Auth.GetAttribute(authIssuer).(string); ok && iss != "" && name == "subject" {
					return iss + "#" + v, true
				}
				return v, true
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st := tlsInfo.State
			if len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
				return st.PeerCertificates[0].Subject.String(), true
			}
		}
	}
	if len(s.byToken) > 0 {
		if vals := info.Metadata.Get(authorization); len(vals) > 0 {
			token := vals[0]
			if len(token) >= len(bearerScheme) && strings.EqualFold(token[:len(bearerScheme)], bearerScheme) {
				token = token[len(bearerScheme):]
			}
			if id, ok := s.byToken[sha256.Sum256([]byte(token))]; ok {
				return id, true
			}
		}
	}
	return "", false
}

// check applies the senders policy to e, sent by sender: the problems of
// each agent e names that sender may not write for. The agent an entry
// names is its agent_id and agent_name, or, when it has neither, its
// service_name (what names the agent of a run in auditctl runs).
func (s *senders) check(sender string, e *entry.Entry) []entry.Problem {
	if s.agents == nil {
		return nil
	}
	globs, listed := s.agents[sender]
	var ps []entry.Problem
	claim := func(field string, v *string) {
		if v != nil && !matchesAny(globs, *v) {
			ps = append(ps, auditspan.SenderMismatch(sender, field, *v, listed))
		}
	}
	claim("agent_id", e.AgentID)
	claim("agent_name", e.AgentName)
	if e.AgentID == nil && e.AgentName == nil {
		claim("service_name", e.ServiceName)
	}
	return ps
}

// matchesAny reports whether one of globs (path.Match, valid) matches v.
func matchesAny(globs []string, v string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, v); ok {
			return true
		}
	}
	return false
}

// setSenders sets the sender of entries, sent by sender, and merges the
// problems of storing it and of the policy into their validation. It
// returns how many entries the policy flagged.
func (s *senders) setSenders(entries []entry.Entry, sender string, opts auditspan.Options) (mismatched int) {
	col, stored := auditspan.SenderColumn(sender, opts)
	for i := range entries {
		e := &entries[i]
		e.Sender = &col
		ps := s.check(col, e)
		if len(ps) > 0 {
			mismatched++
		}
		if len(ps)+len(stored) > 0 {
			auditspan.MergeProblems(e, append(ps, stored...)...)
		}
	}
	return mismatched
}

// errUnauthenticated refuses the audit spans of a request without an
// authenticated sender (require_authenticated_source): permanent, since
// sending it again cannot succeed; the OTLP receiver answers gRPC
// UNAUTHENTICATED, HTTP 401.
var errUnauthenticated = consumererror.NewPermanent(status.Error(codes.Unauthenticated,
	`agentaudit exporter: audit spans need an authenticated sender ("require_authenticated_source"): `+
		`send them through a receiver with an auth extension, or with a token named in "senders"`))
