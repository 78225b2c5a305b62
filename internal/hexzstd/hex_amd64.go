//go:build amd64 && !purego

package hexzstd

import "golang.org/x/sys/cpu"

//go:noescape
func hexRevSSSE3(dst, src *byte, n int)

var useSSSE3 = cpu.X86.HasSSSE3

// hexRev writes the hex digits of src, last byte first, into dst
// (2*len(src) bytes): 16 bytes at a time with SSSE3 where the CPU has it.
func hexRev(dst, src []byte) {
	if n := len(src) / 16; useSSSE3 && n > 0 {
		_ = dst[32*n-1]
		hexRevSSSE3(&dst[0], &src[len(src)-16*n], n)
		dst, src = dst[32*n:], src[:len(src)-16*n]
	}
	hexRevGeneric(dst, src)
}
