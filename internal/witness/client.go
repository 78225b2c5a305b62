package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Client submits checkpoints to witnesses speaking C2SP tlog-witness.
// The zero value uses http.DefaultClient.
type Client struct {
	// HTTPClient makes the requests; its Timeout (or the context's
	// deadline) bounds a slow witness.
	HTTPClient *http.Client
}

// maxAnswerBytes bounds a witness's answer: a few cosignature lines
// (ML-DSA-44 ones are about 3.3 KB each).
const maxAnswerBytes = 64 << 10

// Add sends checkpoint (a signed note) with a consistency proof from
// oldSize to the witness whose submission prefix is witnessURL, and
// returns the cosignature lines it answers (each "— <name> <base64>\n";
// check them with VerifyCosignatures before storing them).
//
// Errors: *ConflictError with the witness's size (resend from there),
// ErrBadProof, ErrBadSignature, ErrUnknownLog, ErrMalformed (the
// witness refused the request), and ErrUnavailable for a network error,
// a timeout, 5xx or 429, which a later retry may cure. Any other answer
// is an error wrapping none of them.
func (c *Client) Add(ctx context.Context, witnessURL string, oldSize uint64, proof [][]byte, checkpoint []byte) ([]byte, error) {
	url := strings.TrimSuffix(witnessURL, "/") + AddCheckpointPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(EncodeRequest(oldSize, proof, checkpoint)))
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", witnessURL, err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w: %w", witnessURL, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w: reading the answer: %w", witnessURL, ErrUnavailable, err)
	}
	if len(body) > maxAnswerBytes {
		return nil, fmt.Errorf("witness %s: answer (%s) larger than %d bytes", witnessURL, resp.Status, maxAnswerBytes)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if err := checkSignatureLines(body); err != nil {
			return nil, fmt.Errorf("witness %s: 200 answer: %w", witnessURL, err)
		}
		return body, nil
	case code == http.StatusConflict:
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != SizeContentType {
			return nil, fmt.Errorf("witness %s: 409 answer of type %q, not %s", witnessURL, resp.Header.Get("Content-Type"), SizeContentType)
		}
		num, ok := bytes.CutSuffix(body, []byte("\n"))
		size, err := parseDecimal(string(num))
		if !ok || err != nil {
			return nil, fmt.Errorf("witness %s: 409 answer %q is not a size line", witnessURL, clip(body))
		}
		return nil, &ConflictError{Size: size}
	case code == http.StatusUnprocessableEntity:
		return nil, fmt.Errorf("witness %s: %w (%s)", witnessURL, ErrBadProof, message(body))
	case code == http.StatusForbidden:
		return nil, fmt.Errorf("witness %s: %w (%s)", witnessURL, ErrBadSignature, message(body))
	case code == http.StatusNotFound:
		return nil, fmt.Errorf("witness %s: %w (%s)", witnessURL, ErrUnknownLog, message(body))
	case code == http.StatusBadRequest:
		return nil, fmt.Errorf("witness %s: %w (%s)", witnessURL, ErrMalformed, message(body))
	case code == http.StatusTooManyRequests || code >= 500:
		return nil, fmt.Errorf("witness %s: %w: %s (%s)", witnessURL, ErrUnavailable, resp.Status, message(body))
	default:
		return nil, fmt.Errorf("witness %s: unexpected answer %s (%s)", witnessURL, resp.Status, message(body))
	}
}

// ProofFunc returns the consistency proof from the tree of oldSize to the
// tree of the checkpoint being submitted.
type ProofFunc func(ctx context.Context, oldSize uint64) ([][]byte, error)

// Submit is Add with the conflict handled: it sends checkpoint with a
// proof from oldSize (the size this client believes the witness has; 0
// if it does not know) and, when the witness answers that it has another
// size no larger than the checkpoint's, sends it once more with a proof
// from that size. It returns the cosignature lines and the size the
// witness had. A witness ahead of the checkpoint (it cosigned a larger
// tree) is a *ConflictError: no proof can go backwards. proofFrom is
// called only for a non-zero old size.
func (c *Client) Submit(ctx context.Context, witnessURL string, oldSize uint64, checkpoint []byte, proofFrom ProofFunc) (cosigs []byte, witnessSize uint64, err error) {
	text, _, err := splitNote(checkpoint)
	if err != nil {
		return nil, 0, err
	}
	cp, err := parseCheckpointText(string(text))
	if err != nil {
		return nil, 0, err
	}
	for attempt := 0; ; attempt++ {
		if oldSize > cp.size {
			return nil, oldSize, &ConflictError{Size: oldSize}
		}
		var p [][]byte
		if oldSize > 0 {
			if p, err = proofFrom(ctx, oldSize); err != nil {
				return nil, oldSize, fmt.Errorf("consistency proof from size %d to %d: %w", oldSize, cp.size, err)
			}
		}
		cosigs, err = c.Add(ctx, witnessURL, oldSize, p, checkpoint)
		var conflict *ConflictError
		if attempt == 0 && errors.As(err, &conflict) {
			oldSize = conflict.Size
			continue
		}
		return cosigs, oldSize, err
	}
}

// checkSignatureLines checks that b is one or more note signature lines.
func checkSignatureLines(b []byte) error {
	if len(b) == 0 {
		return errors.New("no cosignature line")
	}
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(line, []byte("— ")) || !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte(" ")) != 2 {
			return fmt.Errorf("%q is not a signature line", clip(line))
		}
	}
	return nil
}

// message is a refusal's body, for an error message.
func message(body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return "no message"
	}
	return clip([]byte(s))
}
