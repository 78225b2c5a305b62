//go:build !amd64 || purego

package verify

const useSHANI = false

func compress2(ha, hb *[8]uint32, a, b []byte) { panic("verify: no SHA-NI") }

func compress1(h *[8]uint32, a []byte) { panic("verify: no SHA-NI") }
