// Package tsa gets and checks RFC 3161 timestamps for checkpoints: a
// timestamp authority (TSA) the auditor trusts signs that a checkpoint
// existed at a time, so an operator cannot later write a checkpoint for a
// batch and pass it off as written when the batch was sealed.
//
// The timestamped message is the checkpoint note's bytes; the request
// carries their SHA-256 (the message imprint), a random nonce, and certReq
// true, so the token names the TSA's certificate. What is stored beside the
// checkpoint is the TSA's whole DER TimeStampResp, the form `openssl ts
// -reply` prints and `openssl ts -verify -in` checks:
//
//	openssl ts -verify -in <size>.checkpoint.tsr -data <size>.checkpoint \
//	    -CAfile tsa-root.pem -untrusted tsa-chain.pem
//
// [Verify] accepts a token only when its CMS signature verifies, its signer
// is one of the configured TSA certificates or chains to one of them (with
// the time-stamping extended key usage, valid at the token's time), its
// imprint is SHA-256 of the message, its nonce is the one asked for (when
// given), and its time lies in the batch's window. Each failure has its own
// error (ErrUntrustedTSA, ErrImprint, ErrOutsideWindow, ...), to check with
// errors.Is.
//
// Dependencies: the CMS and RFC 3161 parsing is github.com/digitorus/timestamp
// and github.com/digitorus/pkcs7, the versions sigstore's timestamp-authority
// v2.1.3 verifies its own tokens with; both import only the standard
// library. Chain building is crypto/x509's. The package imports nothing of
// OpenTelemetry, so `auditctl verify` can use it.
package tsa // import "github.com/agentaudit/agentaudit/internal/tsa"

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
)

var (
	// ErrMalformed: the bytes are not a DER TimeStampResp holding a
	// TimeStampToken (a CMS SignedData over a TSTInfo).
	ErrMalformed = errors.New("tsa: malformed timestamp response")
	// ErrRefused: the TSA answered with a status other than granted; the
	// message carries its status and status strings.
	ErrRefused = errors.New("tsa: timestamp refused")
	// ErrSignature: the token's CMS signature does not verify with the
	// certificate it names (a token changed after signing).
	ErrSignature = errors.New("tsa: token signature does not verify")
	// ErrUntrustedTSA: the token is validly signed, but not by the
	// configured TSA: its signer is not one of the configured certificates
	// and does not chain to one, is not a time-stamping certificate, or was
	// not valid at the token's time.
	ErrUntrustedTSA = errors.New("tsa: token not signed by the configured TSA")
	// ErrImprint: the token timestamps another message (see ImprintError).
	ErrImprint = errors.New("tsa: token is over another message")
	// ErrNonce: the token does not carry the nonce asked for (see
	// NonceError): a replayed or misdirected response.
	ErrNonce = errors.New("tsa: nonce mismatch")
	// ErrOutsideWindow: the token's time is outside the window it must lie
	// in (see WindowError).
	ErrOutsideWindow = errors.New("tsa: time outside the window")
)

// ImprintError reports a token whose message imprint is not SHA-256 of the
// message. errors.Is(err, ErrImprint) holds.
type ImprintError struct {
	Hash      crypto.Hash // the token's imprint algorithm
	Got, Want []byte      // the token's imprint; SHA-256 of the message
}

func (e *ImprintError) Error() string {
	if e.Hash != crypto.SHA256 {
		return fmt.Sprintf("tsa: token imprint uses %v, want SHA-256", e.Hash)
	}
	return fmt.Sprintf("tsa: token imprint %x, want SHA-256 of the message %x", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrImprint) hold.
func (e *ImprintError) Is(target error) bool { return target == ErrImprint }

// NonceError reports a token without the nonce asked for; Got is nil when
// the token carries none. errors.Is(err, ErrNonce) holds.
type NonceError struct {
	Got, Want *big.Int
}

func (e *NonceError) Error() string {
	if e.Got == nil {
		return fmt.Sprintf("tsa: token has no nonce, want %v", e.Want)
	}
	return fmt.Sprintf("tsa: token nonce %v, want %v", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrNonce) hold.
func (e *NonceError) Is(target error) bool { return target == ErrNonce }

// WindowError reports a token time outside [NotBefore, NotAfter]; a zero
// bound is open. errors.Is(err, ErrOutsideWindow) holds.
type WindowError struct {
	Time, NotBefore, NotAfter time.Time
}

func (e *WindowError) Error() string {
	return fmt.Sprintf("tsa: token time %s outside the window [%s, %s]",
		e.Time.UTC().Format(time.RFC3339Nano), fmtBound(e.NotBefore), fmtBound(e.NotAfter))
}

func fmtBound(t time.Time) string {
	if t.IsZero() {
		return "open"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Is makes errors.Is(err, ErrOutsideWindow) hold.
func (e *WindowError) Is(target error) bool { return target == ErrOutsideWindow }

// VerifyOptions are what a token is checked against.
type VerifyOptions struct {
	// TSA holds the configured TSA certificates: the TSA's own certificate,
	// or the root (and any intermediate) it chains to. A token verifies when
	// its signer is one of them or chains to one of them; the token's own
	// certificates serve only as intermediates. At least one is required.
	TSA []*x509.Certificate
	// NotBefore and NotAfter bound the token's time (genTime), inclusive;
	// a zero bound is open. For a checkpoint they are the batch's window.
	// The TSA's stated accuracy does not widen them.
	NotBefore, NotAfter time.Time
	// Nonce, when not nil, must be the token's nonce.
	Nonce *big.Int
}

// Stamp is what a verified token says.
type Stamp struct {
	Time         time.Time     // genTime: when the TSA signed
	Accuracy     time.Duration // the TSA's stated accuracy of Time; 0 if none
	SerialNumber *big.Int      // the token's serial number at its TSA
	Nonce        *big.Int      // nil if the token has none
	Signer       *x509.Certificate
}

// Verify checks that resp, a DER TimeStampResp, timestamps message and was
// signed by the TSA of opts, within opts' window. In this order it returns
// ErrMalformed or ErrRefused (not a granted token), ErrSignature (the CMS
// signature fails), ErrUntrustedTSA (signed, but not by the configured TSA),
// an *ImprintError, a *NonceError, or a *WindowError, so a forged or
// foreign token is reported as such before its contents are judged.
func Verify(resp, message []byte, opts VerifyOptions) (*Stamp, error) {
	if len(opts.TSA) == 0 {
		return nil, errors.New("tsa: no TSA certificate configured")
	}
	p7, ts, err := parse(resp, opts.TSA)
	if err != nil {
		return nil, err
	}
	signer := p7.GetOnlySigner()
	if err := verifySigner(signer, p7.Certificates, opts.TSA, ts.Time); err != nil {
		return nil, err
	}
	if err := checkImprint(ts, message); err != nil {
		return nil, err
	}
	if opts.Nonce != nil && (ts.Nonce == nil || ts.Nonce.Cmp(opts.Nonce) != 0) {
		return nil, &NonceError{Got: ts.Nonce, Want: opts.Nonce}
	}
	if (!opts.NotBefore.IsZero() && ts.Time.Before(opts.NotBefore)) ||
		(!opts.NotAfter.IsZero() && ts.Time.After(opts.NotAfter)) {
		return nil, &WindowError{Time: ts.Time, NotBefore: opts.NotBefore, NotAfter: opts.NotAfter}
	}
	return &Stamp{
		Time:         ts.Time,
		Accuracy:     ts.Accuracy,
		SerialNumber: ts.SerialNumber,
		Nonce:        ts.Nonce,
		Signer:       signer,
	}, nil
}

// ParseCertificates reads the PEM CERTIFICATE blocks of data, as a TSA
// publishes its chain (sigstore's GET /api/v1/timestamp/certchain) and as
// the configured TSA certificate file holds them.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tsa: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("tsa: no PEM CERTIFICATE block")
	}
	return certs, nil
}

// timeStampResp is RFC 3161's TimeStampResp (section 2.4.2), read here
// only to tell a refusal from a token: digitorus/timestamp keeps its own
// copy unexported and verifies the signature while parsing, so its errors
// cannot tell a forged token from a malformed one.
type timeStampResp struct {
	Status struct {
		Status       int
		StatusString []string       `asn1:"optional,utf8"`
		FailInfo     asn1.BitString `asn1:"optional"`
	}
	TimeStampToken asn1.RawValue `asn1:"optional"`
}

// parse unwraps resp to its token, checks the token's CMS signature with
// the certificate it names (looked up in the token, else in fallback), and
// parses its TSTInfo. It says nothing yet of whom the signer is.
func parse(resp []byte, fallback []*x509.Certificate) (*pkcs7.PKCS7, *timestamp.Timestamp, error) {
	var r timeStampResp
	rest, err := asn1.Unmarshal(resp, &r)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(rest) > 0 {
		return nil, nil, fmt.Errorf("%w: %d bytes after the response", ErrMalformed, len(rest))
	}
	// 0 granted, 1 grantedWithMods; anything else carries no token.
	if r.Status.Status > 1 {
		return nil, nil, fmt.Errorf("%w: status %d %q", ErrRefused, r.Status.Status, strings.Join(r.Status.StatusString, "; "))
	}
	if len(r.TimeStampToken.FullBytes) == 0 {
		return nil, nil, fmt.Errorf("%w: granted without a token", ErrMalformed)
	}
	token := r.TimeStampToken.FullBytes

	p7, err := pkcs7.Parse(token)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: token: %v", ErrMalformed, err)
	}
	if len(p7.Signers) != 1 {
		return nil, nil, fmt.Errorf("%w: token has %d signers, want 1", ErrMalformed, len(p7.Signers))
	}
	if p7.GetOnlySigner() == nil {
		// Without certReq the token names its signer by issuer and serial
		// only; the configured certificates may hold it.
		p7.Certificates = append(p7.Certificates, fallback...)
		if p7.GetOnlySigner() == nil {
			return nil, nil, fmt.Errorf("%w: the token's signer certificate is neither in the token nor configured", ErrUntrustedTSA)
		}
	}
	// No trust store: this checks the signature alone; verifySigner judges
	// the signer against the configured TSA at the token's time.
	if err := p7.Verify(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	// timestamp.Parse verifies the signature again when the token embeds
	// certificates; it has just verified, so an error here is the TSTInfo.
	ts, err := timestamp.Parse(token)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: TSTInfo: %v", ErrMalformed, err)
	}
	return p7, ts, nil
}

// verifySigner checks that signer is a time-stamping certificate that is
// one of trusted or chains to one of them, valid at the token's time (not
// now: a token stays good after its TSA certificate expires).
func verifySigner(signer *x509.Certificate, tokenCerts, trusted []*x509.Certificate, at time.Time) error {
	roots := x509.NewCertPool()
	for _, c := range trusted {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range tokenCerts {
		inter.AddCert(c)
	}
	// A signer that is itself configured chains to itself (crypto/x509
	// accepts a leaf found in Roots), still checked for EKU and validity.
	if _, err := signer.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
		CurrentTime:   at,
	}); err != nil {
		return fmt.Errorf("%w: signer %q (issuer %q): %v", ErrUntrustedTSA, signer.Subject, signer.Issuer, err)
	}
	// RFC 3161 section 2.3: the TSA's certificate is an end entity with
	// exactly one extended key usage, time stamping, marked critical.
	if signer.IsCA {
		return fmt.Errorf("%w: signer %q is a CA certificate", ErrUntrustedTSA, signer.Subject)
	}
	if len(signer.ExtKeyUsage) != 1 || signer.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(signer.UnknownExtKeyUsage) > 0 {
		return fmt.Errorf("%w: signer %q has extended key usages other than time stamping alone", ErrUntrustedTSA, signer.Subject)
	}
	if !criticalEKU(signer) {
		return fmt.Errorf("%w: signer %q does not mark its extended key usage critical", ErrUntrustedTSA, signer.Subject)
	}
	return nil
}

var oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}

func criticalEKU(c *x509.Certificate) bool {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidExtKeyUsage) {
			return ext.Critical
		}
	}
	return false
}

func checkImprint(ts *timestamp.Timestamp, message []byte) error {
	want := sha256.Sum256(message)
	if ts.HashAlgorithm != crypto.SHA256 || !bytes.Equal(ts.HashedMessage, want[:]) {
		return &ImprintError{Hash: ts.HashAlgorithm, Got: ts.HashedMessage, Want: want[:]}
	}
	return nil
}

// newNonce returns a random 64-bit nonce, the size OpenSSL's client sends:
// some TSAs refuse longer ones.
func newNonce() (*big.Int, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("tsa: nonce: %w", err)
	}
	return new(big.Int).SetBytes(b[:]), nil
}
