package e2e

// Who sent it (issue 15): the collector process with bearertokenauth on its
// OTLP/HTTP receiver records each entry's authenticated sender, which
// DuckDB reads from the trail; a second receiver without authentication
// lets the exporter's require_authenticated_source policy be exercised (on
// the authenticated receiver the extension refuses unauthenticated
// requests itself). Every identifier here starts with "au" (this package
// is shared).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/e2e/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// auConfig: two OTLP/HTTP receivers into the embedded default's pipelines
// (memory_limiter, the connector, the processors): otlp with
// bearertokenauth, tokens from a file, and otlp/open without; both hand
// the request's metadata on (include_metadata), so the exporter can name
// a bearer token's sender.
const auConfig = `
extensions:
  bearertokenauth:
    filename: {{TOKENS}}
receivers:
  otlp:
    protocols:
      http:
        endpoint: {{HTTP}}
        include_metadata: true
        auth:
          authenticator: bearertokenauth
  otlp/open:
    protocols:
      http:
        endpoint: {{OPEN}}
        include_metadata: true
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 384
    spike_limit_mib: 128
  agentaudit/audit:
    mode: audit
  agentaudit/monitoring:
    mode: monitoring
connectors:
  agentaudit_split:
    audit_pipelines: [traces/audit]
    monitoring_pipelines: [traces/monitoring]
exporters:
  agentaudit:
    chain_id: e2e-auth
    file:
      directory: {{DATA}}
    spool:
      directory: {{SPOOL}}
    batch:
      max_age: 1h
    require_authenticated_source: true
    senders:
      "billing-bot":
        agents: ["billing-*"]
        token_sha256: {{BILLING_SHA}}
      "crm-bot":
        agents: ["crm-*"]
        token_sha256: {{CRM_SHA}}
  otlp_http/monitoring:
    endpoint: {{MONITORING}}
    compression: none
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
service:
  extensions: [bearertokenauth]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {{METRICS_PORT}}
  pipelines:
    traces:
      receivers: [otlp, otlp/open]
      processors: [memory_limiter]
      exporters: [agentaudit_split]
    traces/audit:
      receivers: [agentaudit_split]
      processors: [agentaudit/audit]
      exporters: [agentaudit]
    traces/monitoring:
      receivers: [agentaudit_split]
      processors: [agentaudit/monitoring]
      exporters: [otlp_http/monitoring]
`

// auSpan is one span of a request: audit-tagged when execID is set.
type auSpan struct {
	name, execID, agentID string
}

// auRequest is an OTLP/HTTP protobuf request of spans, service agent-host.
func auRequest(t *testing.T, spans ...auSpan) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent-host")
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	start := time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC)
	for i, sp := range spans {
		s := ss.AppendEmpty()
		s.SetName(sp.name)
		id := sha256.Sum256([]byte(sp.name))
		s.SetTraceID(pcommon.TraceID(id[:16]))
		s.SetSpanID(pcommon.SpanID(id[16:24]))
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(i) * time.Second)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(i)*time.Second + 250*time.Millisecond)))
		if sp.execID != "" {
			s.Attributes().PutStr("audit.action.type", "write")
			s.Attributes().PutStr("audit.execution.id", sp.execID)
			s.Attributes().PutStr("audit.target.system", "ledger")
			s.Attributes().PutStr("audit.value.proposed", "secret payload "+sp.name)
		}
		if sp.agentID != "" {
			s.Attributes().PutStr("gen_ai.agent.id", sp.agentID)
		}
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(t, err)
	return body
}

// auPost sends body to the OTLP/HTTP receiver at addr, with Authorization
// "Bearer token" unless token is "", and returns the status and body.
func auPost(t *testing.T, addr, token string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/traces", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func auSHA(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestAuthSender(t *testing.T) {
	const billingToken, crmToken = "billing-token-4f1c9a7e", "crm-token-b2d83e55"
	tmp := t.TempDir()
	tokens := filepath.Join(tmp, "tokens")
	// One token per line; what follows it is a comment (bearertokenauth).
	require.NoError(t, os.WriteFile(tokens, []byte(billingToken+" billing-bot\n"+crmToken+" crm-bot\n"), 0o600))
	dataDir := filepath.Join(tmp, "audit-data")
	httpAddr, openAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	_, metricsPort, _ := net.SplitHostPort(metricsAddr)
	mon := harness.NewBackend(t)
	cfg := strings.NewReplacer(
		"{{TOKENS}}", tokens, "{{HTTP}}", httpAddr, "{{OPEN}}", openAddr,
		"{{DATA}}", dataDir, "{{SPOOL}}", filepath.Join(tmp, "spool"),
		"{{BILLING_SHA}}", auSHA(billingToken), "{{CRM_SHA}}", auSHA(crmToken),
		"{{MONITORING}}", mon.URL, "{{METRICS_PORT}}", metricsPort,
	).Replace(auConfig)
	cfgPath := filepath.Join(tmp, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	p := harness.StartProcess(t, harness.CollectorBin(), cfgPath, tmp, nil)
	p.WaitListening(t, httpAddr, openAddr, metricsAddr)

	// The authenticated receiver: the extension refuses what it cannot
	// authenticate before any pipeline sees it.
	code, _ := auPost(t, httpAddr, "", auRequest(t, auSpan{name: "no-token", execID: "exec-x", agentID: "billing-1"}))
	assert.Equal(t, http.StatusUnauthorized, code, "no token")
	code, _ = auPost(t, httpAddr, "guessed", auRequest(t, auSpan{name: "bad-token", execID: "exec-x", agentID: "billing-1"}))
	assert.Equal(t, http.StatusUnauthorized, code, "a token not in the file")
	// The token file is read at start, maybe after the port opens: the
	// right token is accepted once it is (a request without audit spans
	// writes nothing).
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := auPost(t, httpAddr, billingToken, auRequest(t, auSpan{name: "probe"}))
		if code == http.StatusOK {
			break
		}
		require.True(t, time.Now().Before(deadline), "the billing token is still refused: %d %s", code, body)
		time.Sleep(100 * time.Millisecond)
	}

	// billing-bot writes for its own agent, and claims the CRM agent.
	code, body := auPost(t, httpAddr, billingToken, auRequest(t,
		auSpan{name: "billing-write", execID: "exec-billing", agentID: "billing-7"},
		auSpan{name: "billing-claims-crm", execID: "exec-billing", agentID: "crm-1"},
		auSpan{name: "billing-plain"}))
	require.Equal(t, http.StatusOK, code, body)
	// crm-bot through the receiver without authentication: its token, which
	// the exporter knows by its SHA-256, names it all the same.
	code, body = auPost(t, openAddr, crmToken, auRequest(t, auSpan{name: "crm-write", execID: "exec-crm", agentID: "crm-1"}))
	require.Equal(t, http.StatusOK, code, body)
	// Unauthenticated, under require_authenticated_source: refused, not
	// retryable, and nothing of it is written; monitoring still gets it.
	code, body = auPost(t, openAddr, "", auRequest(t,
		auSpan{name: "anon-write", execID: "exec-anon", agentID: "billing-7"},
		auSpan{name: "anon-plain"}))
	assert.Equal(t, http.StatusUnauthorized, code, body)
	assert.Contains(t, body, `audit spans need an authenticated sender ("require_authenticated_source")`)
	code, body = auPost(t, openAddr, "not-a-known-token", auRequest(t, auSpan{name: "unknown-write", execID: "exec-anon", agentID: "crm-1"}))
	assert.Equal(t, http.StatusUnauthorized, code, "a token the exporter does not know authenticates no one: %s", body)
	// A request without audit spans needs no sender.
	code, body = auPost(t, openAddr, "", auRequest(t, auSpan{name: "anon-plain-only"}))
	assert.Equal(t, http.StatusOK, code, body)

	var monitored []string
	for _, s := range mon.Received() {
		monitored = append(monitored, s.Name())
		if s.Name() == "anon-write" {
			_, payload := s.Attributes().Get("audit.value.proposed")
			assert.False(t, payload, "the monitoring side strips the refused audit span's payload as any other's")
		}
	}
	for _, name := range []string{"probe", "billing-write", "billing-claims-crm", "billing-plain", "crm-write", "anon-write", "anon-plain", "unknown-write", "anon-plain-only"} {
		assert.Contains(t, monitored, name, "monitoring receives every span that passed the receiver, refused audit spans included")
	}
	assert.NotContains(t, monitored, "no-token", "the receiver's authentication refused it")

	samples := harness.ScrapeSamples(t, metricsAddr)
	metric := func(name string) float64 {
		sum := 0.0
		for _, s := range samples {
			if s.Name == name {
				sum += s.Value
			}
		}
		return sum
	}
	assert.Equal(t, 2.0, metric("otelcol_agentaudit_entries_unauthenticated"), "anon-write and unknown-write")
	assert.Equal(t, 1.0, metric("otelcol_agentaudit_entries_sender_mismatch"))
	assert.Equal(t, 3.0, metric("otelcol_agentaudit_entries_accepted"))
	p.Terminate(t)

	db := harness.TrailDB(t, dataDir)
	rows, err := db.Query(`SELECT action_type, execution_id, coalesce(agent_id, ''), coalesce(sender, ''), coalesce(validation, '') FROM audit_entries ORDER BY seq`)
	require.NoError(t, err)
	defer rows.Close()
	var got [][5]string
	for rows.Next() {
		var r [5]string
		require.NoError(t, rows.Scan(&r[0], &r[1], &r[2], &r[3], &r[4]))
		got = append(got, r)
	}
	require.NoError(t, rows.Err())
	const recorder = "agentaudit.recorder/e2e-auth"
	assert.Equal(t, [][5]string{
		{harness.ActionRecorderStart, recorder, "", "", ""}, // the collector's own: no sender
		{"write", "exec-billing", "billing-7", "billing-bot", ""},
		{"write", "exec-billing", "crm-1", "billing-bot", `[{"field":"sender","problem":"sender_mismatch","detail":"sender \"billing-bot\" may not write for agent_id \"crm-1\""}]`},
		{"write", "exec-crm", "crm-1", "crm-bot", ""},
		{harness.ActionRecorderStop, recorder, "", "", ""},
	}, got, "nothing of the refused requests is written")

	assert.Empty(t, harness.VerifySQL(t, db), "verify.sql")
	rep := harness.Verify(t, dataDir)
	assert.True(t, rep.Intact, "auditctl verify: %v", rep.Violations)
	assert.Empty(t, harness.ReportKeys(rep))
}

// auCert is a certificate signed by parent (itself when nil) and its key.
type auCert struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func auIssue(t *testing.T, subject pkix.Name, parent *auCert, isCA bool, usage x509.ExtKeyUsage) *auCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: isCA, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if !isCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &auCert{cert: cert, der: der, key: key}
}

// write stores the certificate and its key as PEM files dir/name.crt and
// dir/name.key.
func (c *auCert) write(t *testing.T, dir, name string) (crt, key string) {
	t.Helper()
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	require.NoError(t, os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600))
	k, err := x509.MarshalECPrivateKey(c.key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k}), 0o600))
	return crt, key
}

const auMTLSConfig = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{GRPC}}
        tls:
          cert_file: {{SERVER_CRT}}
          key_file: {{SERVER_KEY}}
          client_ca_file: {{CA_CRT}}
exporters:
  agentaudit:
    chain_id: e2e-mtls
    file:
      directory: {{DATA}}
    spool:
      directory: {{SPOOL}}
    batch:
      max_age: 1h
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [agentaudit]
`

// TestAuthSenderMTLS: over OTLP/gRPC with mTLS (the receiver's
// client_ca_file), the sender is the subject of the client certificate
// the handshake verified.
func TestAuthSenderMTLS(t *testing.T) {
	tmp := t.TempDir()
	ca := auIssue(t, pkix.Name{CommonName: "e2e test CA"}, nil, true, 0)
	server := auIssue(t, pkix.Name{CommonName: "127.0.0.1"}, ca, false, x509.ExtKeyUsageServerAuth)
	client := auIssue(t, pkix.Name{CommonName: "crm-agent", Organization: []string{"Example Corp"}}, ca, false, x509.ExtKeyUsageClientAuth)
	caCrt, _ := ca.write(t, tmp, "ca")
	serverCrt, serverKey := server.write(t, tmp, "server")

	dataDir := filepath.Join(tmp, "audit-data")
	grpcAddr := harness.FreeAddr(t)
	cfg := strings.NewReplacer(
		"{{GRPC}}", grpcAddr, "{{SERVER_CRT}}", serverCrt, "{{SERVER_KEY}}", serverKey, "{{CA_CRT}}", caCrt,
		"{{DATA}}", dataDir, "{{SPOOL}}", filepath.Join(tmp, "spool"),
	).Replace(auMTLSConfig)
	cfgPath := filepath.Join(tmp, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	p := harness.StartProcess(t, harness.CollectorBin(), cfgPath, tmp, nil)
	p.WaitListening(t, grpcAddr)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	creds := credentials.NewTLS(&tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{client.der}, PrivateKey: client.key, Leaf: client.cert}},
		MinVersion:   tls.VersionTLS12,
	})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	req := ptraceotlp.NewExportRequest()
	require.NoError(t, req.UnmarshalProto(auRequest(t, auSpan{name: "mtls-write", execID: "exec-mtls", agentID: "crm-1"})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, req)
	require.NoError(t, err)
	p.Terminate(t)

	db := harness.TrailDB(t, dataDir)
	var sender string
	require.NoError(t, db.QueryRow(`SELECT sender FROM audit_entries WHERE execution_id = 'exec-mtls'`).Scan(&sender))
	assert.Equal(t, "CN=crm-agent,O=Example Corp", sender)
	assert.Empty(t, harness.VerifySQL(t, db), "verify.sql")
}
