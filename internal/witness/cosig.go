package witness

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/mldsa"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Cosignature is a witness cosignature that verified.
type Cosignature struct {
	// Name and KeyHash name the witness key (its verifier key's
	// "name+hash").
	Name    string
	KeyHash uint32
	// Time is when the witness cosigned: it then had no larger
	// consistent tree of the log.
	Time time.Time
}

// NewVerifier returns the tlog-cosignature v1 verifier of a witness's
// verifier key: Ed25519 (type 0x04, or a plain note key 0x01 taken as
// one) or ML-DSA-44 (0x06).
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("witness key %q: %w", clip([]byte(vkey)), err)
	}
	return v, nil
}

// NewSigner returns the tlog-cosignature v1 signer of a witness's signer
// key ("PRIVATE+KEY+<name>+<hash>+<base64>", Ed25519 or ML-DSA-44).
func NewSigner(skey string) (note.Signer, error) {
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness signer key: %w", err)
	}
	return s, nil
}

// GenerateKey returns a new witness key pair named name: an Ed25519
// signer key and its cosignature v1 verifier key (type 0x04), as
// transparency-dev's generate_keys makes them, or ML-DSA-44 ones.
func GenerateKey(name string, mldsa bool) (skey, vkey string, err error) {
	if mldsa {
		return fnote.GenerateMLDSAKey(name)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", err
	}
	vkey, err = fnote.VKeyToCosignatureV1(vkey)
	return skey, vkey, err
}

// VerifierKey derives the cosignature v1 verifier key of a witness's
// signer key, as GenerateKey prints it: what a witness operator hands to
// logs and auditors.
func VerifierKey(skey string) (string, error) {
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("witness signer key: not PRIVATE+KEY+<name>+<hash>+<key>")
	}
	name := parts[2]
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) == 0 {
		return "", errors.New("witness signer key: key is not base64")
	}
	var pub []byte
	switch alg, k := key[0], key[1:]; {
	case (alg == algEd25519 || alg == algEd25519CosignatureV1) && len(k) == ed25519.SeedSize:
		pub = append([]byte{algEd25519CosignatureV1}, ed25519.NewKeyFromSeed(k).Public().(ed25519.PublicKey)...)
	case alg == algMLDSA44:
		sk, err := mldsa.NewPrivateKey(mldsa.MLDSA44(), k)
		if err != nil {
			return "", fmt.Errorf("witness signer key: %w", err)
		}
		pub = append([]byte{algMLDSA44}, sk.PublicKey().Bytes()...)
	default:
		return "", fmt.Errorf("witness signer key: unknown algorithm %d or key size %d", alg, len(k))
	}
	// The key ID of tlog-cosignature: SHA-256(name || "\n" || type || key)[:4].
	h := sha256.Sum256(append([]byte(name+"\n"), pub...))
	vkey := fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(h[:4]), base64.StdEncoding.EncodeToString(pub))
	if _, err := NewVerifier(vkey); err != nil {
		return "", err
	}
	return vkey, nil
}

// Key types of C2SP signed-note and tlog-cosignature.
const (
	algEd25519              = 1
	algEd25519CosignatureV1 = 4
	algMLDSA44              = 6
)

// VerifyCosignatures checks cosignature lines against a checkpoint and
// returns the valid ones of the given witness keys, one per key. The
// checkpoint is the signed note (or its text alone); sigs are signature
// lines as a witness answers them (Client.Add) and may be empty when the
// checkpoint already carries the cosignatures. Lines of other keys (the
// log's own signature among them) are ignored; a line of a given key
// that does not verify is ErrBadCosignature: a witness never makes one,
// so it was forged or altered.
func VerifyCosignatures(checkpoint, sigs []byte, witnesses ...note.Verifier) ([]Cosignature, error) {
	msg := checkpoint
	if i := bytes.LastIndex(checkpoint, []byte("\n\n")); i < 0 {
		msg = append(bytes.Clone(checkpoint), '\n')
	}
	msg = append(bytes.Clone(msg), sigs...)
	n, err := note.Open(msg, note.VerifierList(witnesses...))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return nil, nil
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("%w: %s+%08x", ErrBadCosignature, invalid.Name, invalid.Hash)
	case err != nil:
		return nil, fmt.Errorf("checkpoint with cosignatures: %w", err)
	}
	out := make([]Cosignature, 0, len(n.Sigs))
	for _, s := range n.Sigs {
		t, err := fnote.CoSigV1Timestamp(s)
		if err != nil {
			return nil, fmt.Errorf("cosignature of %s+%08x: %w", s.Name, s.Hash, err)
		}
		out = append(out, Cosignature{Name: s.Name, KeyHash: s.Hash, Time: t})
	}
	return out, nil
}

// RequireCosignatures is VerifyCosignatures asking for valid cosignatures
// of at least n distinct witness keys; fewer is ErrTooFewCosignatures.
func RequireCosignatures(checkpoint, sigs []byte, n int, witnesses ...note.Verifier) ([]Cosignature, error) {
	cs, err := VerifyCosignatures(checkpoint, sigs, witnesses...)
	if err != nil {
		return cs, err
	}
	if len(cs) < n {
		return cs, fmt.Errorf("%w: %d valid of the %d required", ErrTooFewCosignatures, len(cs), n)
	}
	return cs, nil
}
