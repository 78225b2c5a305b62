// Package zstdtest builds zstd frames for tests of decompression bounds:
// frames that are tiny on disk and huge once decompressed, with or without
// an honest content size. It is its own package because the Parquet
// checks (internal/parquetfile) and the verifier's tests of hostile files
// (internal/verify) both need the same frames.
package zstdtest // import "github.com/agentaudit/agentaudit/internal/zstdtest"

import "encoding/binary"

// RLEFrame is a zstd frame (RFC 8878) of n bytes 'a' in RLE blocks of
// 128 KiB, 4 bytes each: 1 GiB in 32 KiB. fcs >= 0 is written as its
// Frame_Content_Size, whatever n is.
func RLEFrame(n, fcs int64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	fhd := byte(0) // no content size, not single segment
	if fcs >= 0 {
		fhd = 3 << 6 // an 8-byte content size
	}
	b = append(b, fhd, (17-10)<<3) // window 128 KiB
	if fcs >= 0 {
		b = binary.LittleEndian.AppendUint64(b, uint64(fcs))
	}
	if n == 0 {
		return append(b, 1, 0, 0) // one empty last raw block
	}
	for n > 0 {
		m := min(n, 128<<10)
		n -= m
		h := uint32(m)<<3 | 1<<1 // RLE
		if n == 0 {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 'a')
	}
	return b
}
