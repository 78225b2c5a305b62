// Package checkpoint signs and checks the chain checkpoints the exporter
// writes after each batch, in the C2SP signed-note format
// (golang.org/x/mod/sumdb/note) with Ed25519 keys.
//
// A checkpoint commits to the whole chain up to a point (its size, the root
// of the chain's tree and the hash of its last entry) and to the batch just
// sealed (its seq range and Merkle root). An auditor who keeps one can later
// prove that the trail still reaches it and agrees with it: a truncated tail
// or rewritten history no longer matches, and the signature shows who wrote
// it.
//
// A checkpoint of format 2 is a C2SP tlog-checkpoint of the chain's tree
// (internal/tlogtree), its first three lines those a witness cosigns,
// followed by two extension lines:
//
//	agentaudit/<chain_id>
//	<size: number of entries, last seq + 1>
//	<root of the chain's tree at size, base64>
//	agentaudit-head <entry_hash of entry size-1, base64>
//	agentaudit-batch <first seq> <last seq> <batch Merkle root, base64>
//
// A checkpoint of format 1, written before the chain had a tree, has four
// lines: the same first two, then the head and the batch:
//
//	agentaudit/<chain_id>
//	<size>
//	<entry_hash of entry size-1, base64>
//	batch <first seq> <last seq> <batch Merkle root, base64>
//
// The two are told apart by their lines. Either is followed by a blank
// line and the signature lines of the note format.
//
// Where checkpoints and verifier keys are stored beside the trail is the
// store's layout (store.CheckpointKey, store.VerifierKeyKey).
package checkpoint // import "github.com/agentaudit/agentaudit/internal/checkpoint"

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// OriginPrefix starts the first line of every checkpoint.
const OriginPrefix = "agentaudit/"

// Errors. Check with errors.Is.
var (
	// ErrMalformed: the text is not a checkpoint of this format.
	ErrMalformed = errors.New("checkpoint: malformed")
	// ErrBadSignature: no signature verifies with the keys given.
	ErrBadSignature = errors.New("checkpoint: bad signature")
	// ErrBadKey: a verifier key given is not a note verifier key.
	ErrBadKey = errors.New("checkpoint: not a verifier key")
)

// Checkpoint is what a signed checkpoint states about one chain.
type Checkpoint struct {
	ChainID string
	// Size is the number of entries in the chain: the last seq + 1.
	Size int64
	// Root is the hex root of the chain's tree at Size (format 2); "" in a
	// checkpoint of format 1.
	Root string
	// Head is the hex entry_hash of entry Size-1.
	Head string
	// BatchFirst and BatchLast are the seq range of the batch sealed with
	// this checkpoint; BatchRoot its hex Merkle root (footer key
	// agentaudit.merkle_root).
	BatchFirst, BatchLast int64
	BatchRoot             string
}

// Format returns 2 for a checkpoint with the chain's tree root, 1 for one
// without.
func (c Checkpoint) Format() int {
	if c.Root != "" {
		return 2
	}
	return 1
}

// Text returns the signed body of c: of format 2 when c has a Root, of
// format 1 when not.
func (c Checkpoint) Text() (string, error) {
	head, err := hash32(c.Head)
	if err != nil {
		return "", fmt.Errorf("%w: head: %w", ErrMalformed, err)
	}
	broot, err := hash32(c.BatchRoot)
	if err != nil {
		return "", fmt.Errorf("%w: batch root: %w", ErrMalformed, err)
	}
	b64 := base64.StdEncoding.EncodeToString
	if c.Root == "" {
		return fmt.Sprintf("%s%s\n%d\n%s\nbatch %d %d %s\n", OriginPrefix, c.ChainID, c.Size,
			b64(head), c.BatchFirst, c.BatchLast, b64(broot)), nil
	}
	root, err := hash32(c.Root)
	if err != nil {
		return "", fmt.Errorf("%w: root: %w", ErrMalformed, err)
	}
	return fmt.Sprintf("%s%s\n%d\n%s\n%s %s\n%s %d %d %s\n", OriginPrefix, c.ChainID, c.Size, b64(root),
		headExt, b64(head), batchExt, c.BatchFirst, c.BatchLast, b64(broot)), nil
}

// The extension lines' keywords (format 2).
const (
	headExt  = "agentaudit-head"
	batchExt = "agentaudit-batch"
)

// Parse reads a checkpoint body (the text of a note, signatures removed)
// of either format.
func Parse(text string) (Checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	var c Checkpoint
	var ok bool
	if len(lines) < 2 {
		return Checkpoint{}, fmt.Errorf("%w: %d lines", ErrMalformed, len(lines))
	}
	if c.ChainID, ok = strings.CutPrefix(lines[0], OriginPrefix); !ok || c.ChainID == "" {
		return Checkpoint{}, fmt.Errorf("%w: origin %q does not start with %q", ErrMalformed, lines[0], OriginPrefix)
	}
	var err error
	if c.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || c.Size < 1 {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrMalformed, lines[1])
	}
	var batchLine string
	switch {
	case len(lines) == 4 && strings.HasPrefix(lines[3], "batch "): // format 1
		if c.Head, err = unb64(lines[2]); err != nil {
			return Checkpoint{}, fmt.Errorf("%w: head: %w", ErrMalformed, err)
		}
		batchLine = lines[3]
	case len(lines) == 5: // format 2
		if c.Root, err = unb64(lines[2]); err != nil {
			return Checkpoint{}, fmt.Errorf("%w: root: %w", ErrMalformed, err)
		}
		h, ok := strings.CutPrefix(lines[3], headExt+" ")
		if !ok {
			return Checkpoint{}, fmt.Errorf("%w: head line %q", ErrMalformed, lines[3])
		}
		if c.Head, err = unb64(h); err != nil {
			return Checkpoint{}, fmt.Errorf("%w: head: %w", ErrMalformed, err)
		}
		b, ok := strings.CutPrefix(lines[4], batchExt+" ")
		if !ok {
			return Checkpoint{}, fmt.Errorf("%w: batch line %q", ErrMalformed, lines[4])
		}
		batchLine = "batch " + b
	default:
		return Checkpoint{}, fmt.Errorf("%w: %d lines, want 5 (or 4, format 1)", ErrMalformed, len(lines))
	}
	f := strings.Split(batchLine, " ")
	if len(f) != 4 || f[0] != "batch" {
		return Checkpoint{}, fmt.Errorf("%w: batch line %q", ErrMalformed, batchLine)
	}
	if c.BatchFirst, err = strconv.ParseInt(f[1], 10, 64); err != nil || c.BatchFirst < 0 {
		return Checkpoint{}, fmt.Errorf("%w: batch first seq %q", ErrMalformed, f[1])
	}
	if c.BatchLast, err = strconv.ParseInt(f[2], 10, 64); err != nil || c.BatchLast < c.BatchFirst || c.BatchLast != c.Size-1 {
		return Checkpoint{}, fmt.Errorf("%w: batch last seq %q (size %d)", ErrMalformed, f[2], c.Size)
	}
	if c.BatchRoot, err = unb64(f[3]); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: batch root: %w", ErrMalformed, err)
	}
	return c, nil
}

// Sign returns c as a signed note.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	text, err := c.Text()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: text}, s)
}

// Open checks a signed checkpoint against the verifier keys (note format,
// "name+hash+key", surrounding space ignored) and returns it with the
// verifier key whose signature verified. A key that is not a verifier key
// wraps ErrBadKey; a note that no key verifies, ErrBadSignature; one whose
// signed text is not a checkpoint, ErrMalformed.
func Open(msg []byte, vkeys ...string) (Checkpoint, string, error) {
	var vs []note.Verifier
	byID := map[string]string{}
	for _, k := range vkeys {
		k = strings.TrimSpace(k)
		v, err := note.NewVerifier(k)
		if err != nil {
			return Checkpoint{}, "", fmt.Errorf("%w: %q: %w", ErrBadKey, k, err)
		}
		vs = append(vs, v)
		byID[KeyID(k)] = k
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		return Checkpoint{}, "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	c, err := Parse(n.Text)
	if err != nil {
		return Checkpoint{}, "", err
	}
	s := n.Sigs[0]
	return c, byID[fmt.Sprintf("%s+%08x", s.Name, s.Hash)], nil
}

// UnverifiedChain is the chain id a signed checkpoint claims, read without
// checking its signature (to choose the keys to check it with, and to file
// a bad signature under a chain); "" when it does not parse.
func UnverifiedChain(msg []byte) string {
	text, _, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return ""
	}
	c, err := Parse(string(text) + "\n")
	if err != nil {
		return ""
	}
	return c.ChainID
}

// SplitNotes splits text holding one or more signed notes, each followed by
// a blank line (or the end), as `auditctl checkpoint` prints them.
func SplitNotes(text []byte) [][]byte {
	var notes [][]byte
	var cur []byte
	inSigs := false
	for line := range bytes.Lines(text) {
		blank := len(bytes.TrimSpace(line)) == 0
		switch {
		case blank && !inSigs && len(cur) > 0:
			inSigs = true
		case blank && inSigs:
			notes = append(notes, cur)
			cur, inSigs = nil, false
			continue
		case blank:
			continue // blank lines between notes
		}
		cur = append(cur, line...)
	}
	if len(cur) > 0 {
		notes = append(notes, cur)
	}
	return notes
}

// KeyName is the signer name of chainID's key.
func KeyName(chainID string) string { return "agentaudit-" + chainID }

// GenerateKey returns a new Ed25519 signer key and its verifier key for
// chainID, in the note format.
func GenerateKey(chainID string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, KeyName(chainID))
}

// VerifierKey derives the verifier key of a signer key
// ("PRIVATE+KEY+name+hash+key").
func VerifierKey(skey string) (string, error) {
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("checkpoint: signer key: %w", err)
	}
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return "", errors.New("checkpoint: signer key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

func hash32(h string) ([]byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%q is not 32 bytes of hex", h)
	}
	return b, nil
}

func unb64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not 32 bytes of base64", s)
	}
	return hex.EncodeToString(b), nil
}
