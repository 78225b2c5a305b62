package auditexporter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/oidcauthextension"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/agentaudit/agentaudit/internal/auditspan"
	"github.com/agentaudit/agentaudit/internal/entry"
	"github.com/agentaudit/agentaudit/internal/storetest"
	"github.com/agentaudit/agentaudit/internal/wal"
)

// fakeAuth is what a receiver's auth extension puts in client.Info.
type fakeAuth map[string]any

func (a fakeAuth) GetAttribute(name string) any { return a[name] }

func (a fakeAuth) GetAttributeNames() []string {
	var names []string
	for k := range a {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// withAuth is ctx as a receiver with an auth extension hands it on.
func withAuth(auth client.AuthData) context.Context {
	return client.NewContext(context.Background(), client.Info{
		Addr: &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)},
		Auth: auth,
	})
}

// withMetadata is ctx as a receiver with include_metadata: true hands it
// on.
func withMetadata(md map[string][]string) context.Context {
	return client.NewContext(context.Background(), client.Info{Metadata: client.NewMetadata(md)})
}

// withPeerCert is ctx as the OTLP/gRPC receiver hands it on for a client
// that presented cert, verified by the handshake or not.
func withPeerCert(t *testing.T, subject pkix.Name, verified bool) context.Context {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	state := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if verified {
		state.VerifiedChains = [][]*x509.Certificate{{cert}}
	}
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4317},
		AuthInfo: credentials.TLSInfo{State: state},
	})
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestSenderFromContext: the sender of every entry of a request is what
// the context the exporter is handed says, through exporterhelper (no
// queue drops it), by the documented rule.
func TestSenderFromContext(t *testing.T) {
	const token = "s3cret-token-of-the-billing-bot"
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want *string
	}{
		{"unauthenticated", context.Background(), nil},
		{"client info without auth", withAuth(nil), nil},
		{"oidcauth subject", withAuth(fakeAuth{"subject": "alice@idp.example", "membership": []string{"agents"}, "raw": "eyJ..."}), new("alice@idp.example")},
		{"oidcauth subject and issuer", withAuth(fakeAuth{"subject": "alice", "claims.iss": "https://idp.example", "claims.sub": "alice"}), new("https://idp.example#alice")},
		{"an issuer does not name a username", withAuth(fakeAuth{"username": "bob", "claims.iss": "https://idp.example"}), new("bob")},
		{"subject before username", withAuth(fakeAuth{"subject": "sub-1", "username": "bob"}), new("sub-1")},
		{"basicauth username", withAuth(fakeAuth{"username": "bob", "raw": "Ym9i"}), new("bob")},
		{"empty subject", withAuth(fakeAuth{"subject": ""}), nil},
		{"subject not a string", withAuth(fakeAuth{"subject": 42}), nil},
		{"verified client certificate", withPeerCert(t, pkix.Name{CommonName: "crm-agent", Organization: []string{"Example"}}, true), new("CN=crm-agent,O=Example")},
		{"unverified client certificate", withPeerCert(t, pkix.Name{CommonName: "crm-agent"}, false), nil},
		{"named bearer token", withMetadata(map[string][]string{"Authorization": {"Bearer " + token}}), new("billing-bot")},
		{"named bearer token, lower-case scheme, gRPC key", withMetadata(map[string][]string{"authorization": {"bearer " + token}}), new("billing-bot")},
		{"unknown bearer token", withMetadata(map[string][]string{"Authorization": {"Bearer guessed"}}), nil},
		{"auth before token", client.NewContext(context.Background(), client.Info{
			Auth: fakeAuth{"subject": "alice"}, Metadata: client.NewMetadata(map[string][]string{"authorization": {"Bearer " + token}}),
		}), new("alice")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Senders = map[string]SenderConfig{
				"billing-bot": {Agents: []string{"*"}, TokenSHA256: sha256Hex(token)},
				// Every other sender may write for any agent too: this test
				// is about who, not what.
				"alice@idp.example": {Agents: []string{"*"}}, "sub-1": {Agents: []string{"*"}}, "bob": {Agents: []string{"*"}},
				"alice": {Agents: []string{"*"}}, "CN=crm-agent,O=Example": {Agents: []string{"*"}},
				"https://idp.example#alice": {Agents: []string{"*"}},
			}
			st := storetest.NewMemory()
			_, te := newTestExporter(t, cfg, st)
			require.NoError(t, te.Start(context.Background(), componenttest.NewNopHost()))
			require.NoError(t, te.ConsumeTraces(tc.ctx, traces(4, "exec-1")))
			require.NoError(t, te.Shutdown(context.Background()))
			es := readTrail(t, st, "collector-1")
			require.Len(t, es, 2)
			for _, e := range es {
				assert.Equal(t, tc.want, e.Sender)
				assert.Nil(t, e.Validation)
			}
		})
	}
}

// TestRequireAuthenticatedSource: an unauthenticated request's audit spans
// are refused, permanently, counted, and nothing of them reaches the log
// or the chain; an authenticated one is accepted; a request with no audit
// span is not refused.
func TestRequireAuthenticatedSource(t *testing.T) {
	cfg := testConfig(t)
	cfg.RequireAuthenticatedSource = true
	st := storetest.NewMemory()
	te, tel := newObservedExporter(t, cfg, st)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))

	err := te.ConsumeTraces(ctx, traces(6, "exec-anon")) // 3 audit spans
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err), "retrying cannot help: %v", err)
	st0, ok := status.FromError(err)
	require.True(t, ok, "a gRPC status, which the OTLP receiver passes on: %v", err)
	assert.Equal(t, codes.Unauthenticated, st0.Code(), "HTTP 401")
	assert.Contains(t, err.Error(), `audit spans need an authenticated sender ("require_authenticated_source")`)
	assert.Equal(t, int64(3), metricValue(t, tel, "otelcol_agentaudit_entries_unauthenticated"))
	assert.Zero(t, metricValue(t, tel, "otelcol_agentaudit_entries_accepted"))
	assert.Equal(t, int64(0), metricValue(t, tel, "otelcol_agentaudit_chain_head_seq"), "nothing chained but the start marker")
	segs, err := wal.Recover(filepath.Join(cfg.Spool.Directory, "wal"), "collector-1")
	require.NoError(t, err)
	for _, s := range segs {
		for _, e := range s.Entries {
			assert.True(t, isMarker(e), "nothing of a refused request is in the write-ahead log: %+v", e)
		}
	}

	unaudited := traces(2, "x")
	unaudited.ResourceSpans().At(0).ScopeSpans().At(0).Spans().RemoveIf(auditspan.IsAudit)
	require.NoError(t, te.ConsumeTraces(ctx, unaudited), "no audit span: nothing to refuse")

	require.NoError(t, te.ConsumeTraces(withAuth(fakeAuth{"subject": "svc-crm"}), traces(4, "exec-auth")))
	assert.Equal(t, int64(2), metricValue(t, tel, "otelcol_agentaudit_entries_accepted"))
	require.NoError(t, te.Shutdown(ctx))
	es := readTrail(t, st, "collector-1")
	require.Len(t, es, 2, "only the authenticated request's entries")
	for i, e := range es {
		assert.Equal(t, int64(i+1), e.Seq, "the chain starts with them, after the start marker")
		assert.Equal(t, "exec-auth", e.ExecutionID)
		assert.Equal(t, new("svc-crm"), e.Sender)
	}
	assert.Equal(t, int64(3), metricValue(t, tel, "otelcol_agentaudit_entries_unauthenticated"))
}

// TestSenderMismatch: with a senders policy, an entry naming an agent its
// sender may not write for is recorded, flagged sender_mismatch (merged
// into its validation, sorted), and counted; allowed ones are left alone.
func TestSenderMismatch(t *testing.T) {
	cfg := testConfig(t)
	cfg.Senders = map[string]SenderConfig{
		"svc-billing": {Agents: []string{"billing-*", "Billing agent"}},
	}
	st := storetest.NewMemory()
	te, tel := newObservedExporter(t, cfg, st)
	ctx := context.Background()
	require.NoError(t, te.Start(ctx, componenttest.NewNopHost()))

	// Spans 0, 2, 4, 6, 8 are audit spans (traces).
	td := traces(10, "exec-1")
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	spans.At(0).Attributes().PutStr(entry.KeyAgentID, "billing-7")       // allowed
	spans.At(0).Attributes().PutStr(entry.KeyAgentName, "Billing agent") // allowed
	spans.At(2).Attributes().PutStr(entry.KeyAgentID, "crm-agent")       // not
	spans.At(4).Attributes().PutStr(entry.KeyAgentID, "billing-7")       // allowed
	spans.At(4).Attributes().PutStr(entry.KeyAgentName, "CRM agent")     // not
	// 6: no agent_id nor agent_name: the service (crm-agent) names it: not
	spans.At(8).Attributes().PutStr(entry.KeyAgentName, "Billing agent") // allowed; service not checked
	spans.At(8).Attributes().PutStr(entry.KeyTargetSystem, "")           // a problem of its own
	require.NoError(t, te.ConsumeTraces(withAuth(fakeAuth{"subject": "svc-billing"}), td))

	// A sender not listed may write for no agent.
	require.NoError(t, te.ConsumeTraces(withAuth(fakeAuth{"subject": "svc-other"}), traces(2, "exec-2")))
	// Unauthenticated: no sender, nothing to check.
	require.NoError(t, te.ConsumeTraces(ctx, traces(2, "exec-3")))
	assert.Equal(t, int64(4), metricValue(t, tel, "otelcol_agentaudit_entries_sender_mismatch"))
	require.NoError(t, te.Shutdown(ctx))

	es := readTrail(t, st, "collector-1")
	require.Len(t, es, 7)
	mismatch := func(detail string) string {
		return `{"field":"sender","problem":"sender_mismatch","detail":"` + detail + `"}`
	}
	for i, want := range []*string{
		nil,
		new(`[` + mismatch(`sender \"svc-billing\" may not write for agent_id \"crm-agent\"`) + `]`),
		new(`[` + mismatch(`sender \"svc-billing\" may not write for agent_name \"CRM agent\"`) + `]`),
		new(`[` + mismatch(`sender \"svc-billing\" may not write for service_name \"crm-agent\"`) + `]`),
		new(`[{"field":"audit.target.system","problem":"missing"}]`),
		new(`[` + mismatch(`sender \"svc-other\" is not listed in senders, so may not write for service_name \"crm-agent\"`) + `]`),
		nil,
	} {
		assert.Equal(t, want, es[i].Validation, "seq %d", i)
	}
	assert.Equal(t, new("svc-billing"), es[0].Sender)
	assert.Equal(t, new("svc-other"), es[5].Sender)
	assert.Nil(t, es[6].Sender)
}

// TestSenderMismatchMergesSorted: a sender_mismatch joins the problems the
// mapping found, in the canonical order (by field, then kind).
func TestSenderMismatchMergesSorted(t *testing.T) {
	s := newSenders(map[string]SenderConfig{"svc": {Agents: []string{"a-*"}}})
	td := traces(1, "")
	span := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	span.Attributes().PutStr(entry.KeyAgentID, "crm")
	span.Attributes().PutStr(entry.KeyAgentName, "a-1")
	span.Attributes().PutStr("audit.unknown", "x")
	es := []entry.Entry{auditspan.FromSpan(td.ResourceSpans().At(0).Resource(), span, auditspan.Options{})}
	require.NotNil(t, es[0].Validation)
	assert.Equal(t, 1, s.setSenders(es, "svc\xff", auditspan.Options{}), "one entry flagged")
	assert.Equal(t, "svc\uFFFD", *es[0].Sender)
	// The repaired sender is not the one listed: neither agent is allowed.
	assert.Equal(t, `[{"field":"audit.execution.id","problem":"defaulted","detail":"defaulted to trace id"},`+
		`{"field":"audit.execution.id","problem":"empty"},`+
		`{"field":"audit.unknown","problem":"unknown_key","detail":"kept in attributes"},`+
		`{"field":"sender","problem":"invalid_utf8","detail":"replaced with U+FFFD"},`+
		`{"field":"sender","problem":"sender_mismatch","detail":"sender \"svc�\" is not listed in senders, so may not write for agent_id \"crm\""},`+
		`{"field":"sender","problem":"sender_mismatch","detail":"sender \"svc�\" is not listed in senders, so may not write for agent_name \"a-1\""}]`,
		*es[0].Validation)
}

// A token_sha256 in upper-case hex names its sender all the same.
func TestSenderTokenHexCase(t *testing.T) {
	sum := sha256.Sum256([]byte("t0ken"))
	upper := []byte(hex.EncodeToString(sum[:]))
	for i, c := range upper {
		if c >= 'a' {
			upper[i] = c - 'a' + 'A'
		}
	}
	s := newSenders(map[string]SenderConfig{"svc": {Agents: []string{"*"}, TokenSHA256: string(upper)}})
	got, ok := s.identify(withMetadata(map[string][]string{"Authorization": {"Bearer t0ken"}}))
	assert.True(t, ok)
	assert.Equal(t, "svc", got)
}

// TestSenderOIDC: with the real oidc extension (contrib v0.165.1), whose
// auth data gives the token's claims as "claims.<name>", the sender is
// "<issuer>#<subject>": the same sub of two issuers names two senders.
func TestSenderOIDC(t *testing.T) {
	dir := t.TempDir()
	type idp struct {
		issuer string
		key    *ecdsa.PrivateKey
	}
	var idps []idp
	var providers []oidcauthextension.ProviderCfg
	for i, issuer := range []string{"https://idp-a.example", "https://idp-b.example"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		idps = append(idps, idp{issuer, key})
		// A JWKS file: the extension verifies with it, offline.
		jwk := map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
			"x": b64(key.X.FillBytes(make([]byte, 32))), "y": b64(key.Y.FillBytes(make([]byte, 32)))}
		jwks, err := json.Marshal(map[string]any{"keys": []any{jwk}})
		require.NoError(t, err)
		file := filepath.Join(dir, fmt.Sprintf("jwks-%d.json", i))
		require.NoError(t, os.WriteFile(file, jwks, 0o600))
		providers = append(providers, oidcauthextension.ProviderCfg{IssuerURL: issuer, Audience: "agentaudit", PublicKeysFile: file})
	}
	f := oidcauthextension.NewFactory()
	cfg := f.CreateDefaultConfig().(*oidcauthextension.Config)
	cfg.Providers = providers
	require.NoError(t, cfg.Validate())
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, ext.Shutdown(context.Background())) }()
	// extensionauth.Server, which the OTLP receiver calls.
	auth := ext.(interface {
		Authenticate(context.Context, map[string][]string) (context.Context, error)
	})

	s := newSenders(nil)
	for _, p := range idps {
		token := signES256(t, p.key, map[string]any{"iss": p.issuer, "sub": "alice", "aud": "agentaudit",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
		ctx, err := auth.Authenticate(context.Background(), map[string][]string{"authorization": {"Bearer " + token}})
		require.NoError(t, err)
		sender, ok := s.identify(ctx)
		assert.True(t, ok)
		assert.Equal(t, p.issuer+"#alice", sender)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signES256 is a JWT of claims signed with key (ES256, kid k1).
func signES256(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": "k1"})
	require.NoError(t, err)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	signed := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(signed))
	r, sig, err := ecdsa.Sign(rand.Reader, key, sum[:])
	require.NoError(t, err)
	return signed + "." + b64(append(r.FillBytes(make([]byte, 32)), sig.FillBytes(make([]byte, 32))...))
}
