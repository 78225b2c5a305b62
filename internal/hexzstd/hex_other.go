//go:build !amd64 || purego

package hexzstd

// hexRev writes the hex digits of src, last byte first, into dst
// (2*len(src) bytes).
func hexRev(dst, src []byte) { hexRevGeneric(dst, src) }
