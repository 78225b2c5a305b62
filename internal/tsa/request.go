package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"

	"github.com/digitorus/timestamp"
)

// maxResponseBytes bounds what is read of a TSA's answer: a token with its
// certificate chain is a few kilobytes.
const maxResponseBytes = 1 << 20

// Request asks the TSA at tsaURL (RFC 3161 over HTTP: POST
// application/timestamp-query) to timestamp message, with http.DefaultClient;
// see RequestWith.
func Request(ctx context.Context, tsaURL string, message []byte) ([]byte, error) {
	return RequestWith(ctx, http.DefaultClient, tsaURL, message)
}

// RequestWith asks the TSA at tsaURL to timestamp message and returns its
// DER TimeStampResp, the bytes to store beside the checkpoint. The request
// is over SHA-256 of message, with a fresh random nonce and certReq true.
//
// The answer is checked against the request: granted (else ErrRefused), a
// CMS signature that verifies with the certificate it names (ErrSignature),
// the imprint asked for (*ImprintError) and the nonce sent (*NonceError), so
// a replayed or misdirected response is refused here. Whether the signer is
// the TSA the auditor trusts, and the time, are Verify's to judge.
func RequestWith(ctx context.Context, hc *http.Client, tsaURL string, message []byte) ([]byte, error) {
	digest := sha256.Sum256(message)
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	query, err := (&timestamp.Request{
		HashAlgorithm: crypto.SHA256,
		HashedMessage: digest[:],
		Certificates:  true,
		Nonce:         nonce,
	}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("tsa: encoding the request: %w", err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tsaURL, bytes.NewReader(query))
	if err != nil {
		return nil, fmt.Errorf("tsa: %w", err)
	}
	req.Header.Set("Content-Type", "application/timestamp-query")
	req.Header.Set("Accept", "application/timestamp-reply")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tsa: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tsa: reading the response from %s: %w", tsaURL, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("tsa: %s answered %s: %q", tsaURL, resp.Status, truncate(body, 200))
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("%w: response from %s is over %d bytes", ErrMalformed, tsaURL, maxResponseBytes)
	}

	_, ts, err := parse(body, nil)
	if err != nil {
		return nil, err
	}
	if err := checkImprint(ts, message); err != nil {
		return nil, err
	}
	if ts.Nonce == nil || ts.Nonce.Cmp(nonce) != 0 {
		return nil, &NonceError{Got: ts.Nonce, Want: nonce}
	}
	return body, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
