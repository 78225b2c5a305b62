//go:build amd64 && !purego

package sha2x

//go:noescape
func blocks1(h *[8]uint32, p *byte, n int)

//go:noescape
func blocks2(ha, hb *[8]uint32, pa, pb *byte, n int)

func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// useSHANI: the CPU has the SHA extensions (and SSSE3, SSE4.1) that
// blocks1 and blocks2 use.
var useSHANI = func() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, c1, _ := cpuid(1, 0)
	_, b7, _, _ := cpuid(7, 0)
	return c1&(1<<9) != 0 && c1&(1<<19) != 0 && b7&(1<<29) != 0
}()

// compress2 runs the SHA-256 compression function over the 64-byte blocks of
// a (into ha) and b (into hb), two blocks at a time while both have one.
func compress2(ha, hb *[8]uint32, a, b []byte) {
	na, nb := len(a)/64, len(b)/64
	n := min(na, nb)
	if n > 0 {
		blocks2(ha, hb, &a[0], &b[0], n)
	}
	if na > n {
		blocks1(ha, &a[n*64], na-n)
	}
	if nb > n {
		blocks1(hb, &b[n*64], nb-n)
	}
}

// compress1 runs the compression function over the blocks of a.
func compress1(h *[8]uint32, a []byte) {
	if len(a) >= 64 {
		blocks1(h, &a[0], len(a)/64)
	}
}
