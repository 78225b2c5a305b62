// Package witness speaks C2SP tlog-witness (https://c2sp.org/tlog-witness):
// a witness cosigns a log's checkpoint only when it is a consistent
// extension of the last one it cosigned for that log, so that a log
// operator who rewrites history is caught by the witness's memory, not
// by an auditor's.
//
// Server is a witness: per log origin it keeps the size and root hash of
// the last checkpoint it cosigned, durably, and answers add-checkpoint
// with tlog-cosignature v1 cosignatures (https://c2sp.org/tlog-cosignature)
// from github.com/transparency-dev/formats/note. Client submits
// checkpoints to witnesses (ours or anyone's); Submitter, the log's side,
// keeps one witness cosigning a log's newest checkpoint in the background
// (never making the log wait, retrying until the witness is back); and
// VerifyCosignatures checks the cosignatures an auditor requires.
//
// The add-checkpoint request body is
//
//	old <size the witness last cosigned, decimal>
//	<consistency proof hash 1, base64>
//	...
//	<empty line>
//	<signed checkpoint note>
//
// and the answers are 200 with the cosignature lines ("— <name>
// <base64>\n"), 409 with the witness's size (text/x.tlog.size), 422 for a
// proof that does not verify, 403 for a checkpoint without a valid
// signature of the log, 404 for a log the witness does not know and 400
// for a malformed request. The errors of this package name each case on
// both sides.
//
// The package imports no OpenTelemetry: auditctl, which auditors run,
// serves it.
//
// Interoperability with transparency-dev's witness is tested in the
// separate module in interop/ (its dependencies stay out of the
// collector's build); TestInterop runs it.
package witness // import "github.com/agentaudit/agentaudit/internal/witness"

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/rfc6962"
)

// AddCheckpointPath is the add-checkpoint call's path below a witness's
// submission prefix.
const AddCheckpointPath = "/add-checkpoint"

// SizeContentType is the media type of a 409 answer's body: the witness's
// size in decimal and a newline.
const SizeContentType = "text/x.tlog.size"

// MaxProofLines is the most consistency proof lines a request may carry
// (the spec's limit: enough for any tree of up to 2^63 leaves).
const MaxProofLines = 63

// MaxRequestBytes bounds an add-checkpoint body: a checkpoint with a few
// signatures and extension lines and 63 proof lines fit many times over.
const MaxRequestBytes = 64 << 10

// Errors, on the server's side and the client's alike (the client maps
// each answer's status back to them). Check with errors.Is; a conflict
// is a *ConflictError (errors.As).
var (
	// ErrUnknownLog: the witness is not configured for the checkpoint's
	// origin (404).
	ErrUnknownLog = errors.New("unknown log")
	// ErrBadSignature: the checkpoint has no valid signature of a key the
	// witness trusts for the log, or a signature of such a key that does
	// not verify (403).
	ErrBadSignature = errors.New("no valid signature of the log")
	// ErrBadProof: the consistency proof does not prove that the
	// checkpoint extends the one the witness cosigned, or a size-zero
	// checkpoint does not have the empty tree's root (422). This is what
	// a forked or rewritten log gets.
	ErrBadProof = errors.New("checkpoint not consistent with the witnessed one")
	// ErrMalformed: the request does not follow the protocol (400).
	ErrMalformed = errors.New("malformed request")
	// ErrUnavailable: the witness could not be reached, or answered 5xx
	// or 429. Retrying later may succeed.
	ErrUnavailable = errors.New("witness unavailable")
	// ErrBadCosignature: a cosignature line of a witness key given to
	// VerifyCosignatures does not verify.
	ErrBadCosignature = errors.New("cosignature does not verify")
	// ErrTooFewCosignatures: RequireCosignatures found fewer valid
	// cosignatures than required.
	ErrTooFewCosignatures = errors.New("too few witness cosignatures")
)

// ConflictError is the witness's 409: the old size sent is not the size
// of the last checkpoint it cosigned for the log, which is Size. Resend
// with a consistency proof from Size.
type ConflictError struct {
	Size uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness has cosigned size %d, not the old size sent", e.Size)
}

// emptyRoot is RFC 6962's root of the empty tree, SHA-256 of nothing.
var emptyRoot = rfc6962.DefaultHasher.EmptyRoot()

// EncodeRequest returns the add-checkpoint body for checkpoint (a signed
// note) with a consistency proof from oldSize.
func EncodeRequest(oldSize uint64, proof [][]byte, checkpoint []byte) []byte {
	var b bytes.Buffer
	b.Grow(16 + len(proof)*45 + 1 + len(checkpoint))
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(checkpoint)
	return b.Bytes()
}

// ParseRequest reads an add-checkpoint body. Errors wrap ErrMalformed.
func ParseRequest(body []byte) (oldSize uint64, proof [][]byte, checkpoint []byte, err error) {
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return 0, nil, nil, fmt.Errorf("%w: no old size line", ErrMalformed)
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return 0, nil, nil, fmt.Errorf("%w: first line %q is not \"old <size>\"", ErrMalformed, clip(line))
	}
	if oldSize, err = parseDecimal(string(num)); err != nil {
		return 0, nil, nil, fmt.Errorf("%w: old size: %w", ErrMalformed, err)
	}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return 0, nil, nil, fmt.Errorf("%w: no empty line before the checkpoint", ErrMalformed)
		}
		if len(line) == 0 {
			break
		}
		if len(proof) == MaxProofLines {
			return 0, nil, nil, fmt.Errorf("%w: more than %d consistency proof lines", ErrMalformed, MaxProofLines)
		}
		h, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(h) != 32 {
			return 0, nil, nil, fmt.Errorf("%w: proof line %d %q is not a base64 SHA-256 hash", ErrMalformed, len(proof)+1, clip(line))
		}
		proof = append(proof, h)
	}
	return oldSize, proof, rest, nil
}

// checkpointBody is the part of a checkpoint a witness vouches for: the
// first three lines of the note text (C2SP tlog-checkpoint).
type checkpointBody struct {
	origin string
	size   uint64
	root   []byte
}

// parseCheckpointText reads the first three lines of a checkpoint note's
// text; extension lines may follow. Errors wrap ErrMalformed.
func parseCheckpointText(text string) (checkpointBody, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return checkpointBody{}, fmt.Errorf("%w: checkpoint has fewer than three lines", ErrMalformed)
	}
	c := checkpointBody{origin: lines[0]}
	if c.origin == "" {
		return checkpointBody{}, fmt.Errorf("%w: checkpoint origin line is empty", ErrMalformed)
	}
	var err error
	if c.size, err = parseDecimal(lines[1]); err != nil {
		return checkpointBody{}, fmt.Errorf("%w: checkpoint size: %w", ErrMalformed, err)
	}
	if c.root, err = base64.StdEncoding.Strict().DecodeString(lines[2]); err != nil || len(c.root) != 32 {
		return checkpointBody{}, fmt.Errorf("%w: checkpoint root hash %q is not a base64 SHA-256 hash", ErrMalformed, clip([]byte(lines[2])))
	}
	return c, nil
}

// splitNote splits a signed note into its text (ending in a newline) and
// its signature lines.
func splitNote(msg []byte) (text, sigs []byte, err error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, nil, fmt.Errorf("%w: checkpoint is not a signed note (no empty line before the signatures)", ErrMalformed)
	}
	return msg[:i+1], msg[i+2:], nil
}

// parseDecimal reads a size: ASCII decimal without leading zeroes.
func parseDecimal(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("%q is not a decimal size", clip([]byte(s)))
	}
	return n, nil
}

// clip shortens what an error message quotes from a request.
func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
