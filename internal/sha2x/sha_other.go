//go:build !amd64 || purego

package sha2x

const useSHANI = false

func compress2(ha, hb *[8]uint32, a, b []byte) { panic("sha2x: no SHA-NI") }

func compress1(h *[8]uint32, a []byte) { panic("sha2x: no SHA-NI") }
