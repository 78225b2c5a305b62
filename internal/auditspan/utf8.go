package auditspan

import (
	"strings"
	"unicode/utf8"
)

// validUTF8 is utf8.ValidString, about twice as fast on the mostly ASCII
// values of audit spans: it skips ASCII 32 bytes at a time (the standard
// library skips 8) and hands the rest to utf8.ValidString from the first
// word with a byte of 0x80 or more. Every ASCII byte is a whole rune, so
// validating from there gives the same answer as from the start.
func validUTF8(s string) bool {
	for len(s) >= 32 {
		if (le64(s)|le64(s[8:])|le64(s[16:])|le64(s[24:]))&asciiMask != 0 {
			return utf8.ValidString(s)
		}
		s = s[32:]
	}
	for len(s) >= 8 {
		if le64(s)&asciiMask != 0 {
			return utf8.ValidString(s)
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// asciiMask has the high bit of each byte of a word: a word of ASCII
// bytes has none of them.
const asciiMask = 0x8080808080808080

// le64 returns the first 8 bytes of s as a little-endian word (the compiler
// makes it one load).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// lowBits has the low bit of each byte of a word.
const lowBits = 0x0101010101010101

// validText reports whether s is valid UTF-8 without a NUL byte: what a
// column may store without a problem. It is validUTF8 with one more
// operation per word: (w - lowBits) | w has a byte's high bit set exactly
// when the word has a byte of 0x80 or more or a zero byte (the lowest zero
// byte borrows from nothing, so it becomes 0xff), and such words go to the
// standard library.
func validText(s string) bool {
	if len(s) < 8 {
		for i := 0; i < len(s); i++ {
			if s[i]-1 >= utf8.RuneSelf-1 { // 0 wraps to 0xff
				return slowText(s[i:])
			}
		}
		return true
	}
	full := s
	for len(s) >= 32 {
		w0, w1, w2, w3 := le64(s), le64(s[8:]), le64(s[16:]), le64(s[24:])
		if ((w0-lowBits)|w0|(w1-lowBits)|w1|(w2-lowBits)|w2|(w3-lowBits)|w3)&asciiMask != 0 {
			return slowText(s)
		}
		s = s[32:]
	}
	for len(s) > 8 {
		if w := le64(s); ((w-lowBits)|w)&asciiMask != 0 {
			return slowText(s)
		}
		s = s[8:]
	}
	// The last 1 to 8 bytes, as the word that ends the string: the bytes
	// it shares with the words before are ASCII, so it starts at a rune.
	s = full[len(full)-8:]
	if w := le64(s); ((w-lowBits)|w)&asciiMask != 0 {
		return slowText(s)
	}
	return true
}

func slowText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
