// Package sha2x computes SHA-256 of two independent messages at once: on
// amd64 CPUs with the SHA extensions (SHA-NI), whose instructions have a
// latency several times their throughput, two messages interleaved take
// little more time than one. Elsewhere, and with -tags purego,
// crypto/sha256 computes them. The results equal crypto/sha256's
// (sha_test.go).
//
// The caller pads the messages itself (AppendPadding), once, into buffers
// it reuses: the functions allocate nothing.
package sha2x // import "github.com/agentaudit/agentaudit/internal/sha2x"

import (
	"crypto/sha256"
	"encoding/binary"
)

// sha256IV is the initial hash value of SHA-256.
var sha256IV = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

var zeros64 [64]byte

// AppendPadding appends to b, a message, the SHA-256 padding: 0x80, zeros
// and the bit length, making its length a multiple of 64. It writes in
// place when b has the capacity (at most 72 bytes more than its length).
func AppendPadding(b []byte) []byte {
	n := len(b)
	b = append(b, 0x80)
	b = append(b, zeros64[:(119-n%64)%64]...)
	return binary.BigEndian.AppendUint64(b, uint64(n)<<3)
}

// digest is the SHA-256 hash value h as bytes.
func digest(h *[8]uint32) (d [32]byte) {
	for i, v := range h {
		binary.BigEndian.PutUint32(d[4*i:], v)
	}
	return d
}

// Sum2Padded returns the SHA-256 of the messages a[:na] and b[:nb], where
// a and b are the messages with AppendPadding applied.
func Sum2Padded(a []byte, na int, b []byte, nb int) (da, db [32]byte) {
	if !useSHANI {
		return sha256.Sum256(a[:na]), sha256.Sum256(b[:nb])
	}
	ha, hb := sha256IV, sha256IV
	compress2(&ha, &hb, a, b)
	return digest(&ha), digest(&hb)
}

// SumPadded returns the SHA-256 of the message a[:na], a with
// AppendPadding applied.
func SumPadded(a []byte, na int) [32]byte {
	if !useSHANI {
		return sha256.Sum256(a[:na])
	}
	h := sha256IV
	compress1(&h, a)
	return digest(&h)
}
