package tlogtree

import (
	"bytes"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

// CheckConsistency checks that p proves the tree of newSize with root
// newRoot extends the tree of oldSize with root oldRoot, with
// transparency-dev/merkle's proof.VerifyConsistency: it needs only the two
// sizes and roots, O(log n) hashes. A failed proof gives an error wrapping
// ErrProofFailed and the verifier's error (errors.As finds a
// proof.RootMismatchError when a root differs). From size 0 any tree is
// consistent (the proof must be empty); between equal sizes, the roots must
// be equal and the proof empty.
func CheckConsistency(oldSize int64, oldRoot tlog.Hash, newSize int64, newRoot tlog.Hash, p []tlog.Hash) error {
	if oldSize < 0 || newSize < 0 {
		return fmt.Errorf("%w: negative size (%d, %d)", ErrProofFailed, oldSize, newSize)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(oldSize), uint64(newSize), byteSlices(p), oldRoot[:], newRoot[:]); err != nil {
		return fmt.Errorf("%w: consistency from size %d (root %v) to %d (root %v): %w", ErrProofFailed, oldSize, oldRoot, newSize, newRoot, err)
	}
	return nil
}

// CheckInclusion checks that p proves the entry with entryHash is entry
// index of the tree of size with root root (proof.VerifyInclusion over its
// leaf hash). Errors as CheckConsistency's.
func CheckInclusion(entryHash [32]byte, index, size int64, root tlog.Hash, p []tlog.Hash) error {
	if index < 0 || size < 0 {
		return fmt.Errorf("%w: negative index or size (%d, %d)", ErrProofFailed, index, size)
	}
	leaf := LeafHash(entryHash)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(index), uint64(size), leaf[:], byteSlices(p), root[:]); err != nil {
		return fmt.Errorf("%w: inclusion of entry %d at size %d (root %v): %w", ErrProofFailed, index, size, root, err)
	}
	return nil
}

func byteSlices(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// maxProofLines bounds a parsed proof: an inclusion proof in a tree of at
// most 2^63 entries has at most 63 hashes, a consistency proof at most 64.
const maxProofLines = 64

// MarshalProof returns the text form of a proof: each hash in standard
// base64, one per line, each line ending in "\n", as C2SP tlog-witness
// sends a consistency proof. The empty proof is the empty text.
func MarshalProof(p []tlog.Hash) []byte {
	var b bytes.Buffer
	for _, h := range p {
		b.WriteString(h.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseProof is the inverse of MarshalProof. It refuses anything else: a
// line that is not one base64 hash of 32 bytes (an empty line, spaces, a
// "\r"), or more than 64 lines. A missing final "\n" is accepted.
func ParseProof(text []byte) ([]tlog.Hash, error) {
	if len(text) == 0 {
		return []tlog.Hash{}, nil
	}
	text = bytes.TrimSuffix(text, []byte("\n"))
	lines := bytes.Split(text, []byte("\n"))
	if len(lines) > maxProofLines {
		return nil, fmt.Errorf("tlogtree: proof of %d lines, at most %d", len(lines), maxProofLines)
	}
	p := make([]tlog.Hash, len(lines))
	for i, l := range lines {
		// ParseHash's decoder skips "\r" and "\n": the line must be the
		// hash's one encoding.
		h, err := tlog.ParseHash(string(l))
		if err != nil || h.String() != string(l) {
			return nil, fmt.Errorf("tlogtree: proof line %d %q is not a base64 hash of 32 bytes", i+1, l)
		}
		p[i] = h
	}
	return p, nil
}
