package auditspan

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestValidUTF8 checks validUTF8 against utf8.ValidString on every length
// up to 100 with each kind of non-ASCII byte sequence (valid, truncated,
// overlong, surrogate, out of range, stray continuation) at every position,
// so that each loop (32 bytes, 8 bytes, single bytes) and each hand-over to
// the standard library is exercised.
func TestValidUTF8(t *testing.T) {
	seqs := []string{
		"é", "€", "𝄞", "\xff", "\xc3", "\xe2\x82", "\xf0\x9d\x84",
		"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "\xbf\xbf",
	}
	checked, invalid := 0, 0
	for n := 0; n <= 100; n++ {
		base := strings.Repeat("a", n)
		if got, want := validUTF8(base), utf8.ValidString(base); got != want {
			t.Fatalf("len %d ASCII: got %v, want %v", n, got, want)
		}
		for pos := 0; pos <= n; pos++ {
			for _, seq := range seqs {
				s := base[:pos] + seq + base[pos:]
				want := utf8.ValidString(s)
				if got := validUTF8(s); got != want {
					t.Fatalf("%q: got %v, want %v", s, got, want)
				}
				checked++
				if !want {
					invalid++
				}
			}
		}
	}
	if invalid == 0 || invalid == checked {
		t.Fatalf("%d of %d inputs invalid: the cases do not cover both answers", invalid, checked)
	}
}

// TestValidText checks validText against its definition (valid UTF-8 and
// no NUL byte) the way TestValidUTF8 checks validUTF8, with a NUL byte and
// bytes next to zero (0x01, 0x80, 0xff) among the sequences, so that the
// zero-byte test of each loop is exercised at every position.
func TestValidText(t *testing.T) {
	seqs := []string{"\x00", "\x01", "\x00\x80", "é\x00", "\x7f", "é", "\xff", "\xe2\x82", "\x00\x00"}
	checked, rejected := 0, 0
	for n := 0; n <= 100; n++ {
		base := strings.Repeat("a", n)
		for pos := 0; pos <= n; pos++ {
			for _, seq := range seqs {
				s := base[:pos] + seq + base[pos:]
				want := utf8.ValidString(s) && !strings.Contains(s, "\x00")
				if got := validText(s); got != want {
					t.Fatalf("%q: got %v, want %v", s, got, want)
				}
				checked++
				if !want {
					rejected++
				}
			}
		}
	}
	if rejected == 0 || rejected == checked {
		t.Fatalf("%d of %d inputs rejected: the cases do not cover both answers", rejected, checked)
	}
}

func FuzzValidUTF8(f *testing.F) {
	for _, s := range []string{"", "abc", strings.Repeat("x", 40) + "é", "\xff" + strings.Repeat("y", 33), strings.Repeat("z", 31) + "\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validUTF8(s), utf8.ValidString(s); got != want {
			t.Fatalf("%q: got %v, want %v", s, got, want)
		}
		if got, want := validText(s), utf8.ValidString(s) && !strings.Contains(s, "\x00"); got != want {
			t.Fatalf("validText(%q): got %v, want %v", s, got, want)
		}
	})
}

// BenchmarkValidUTF8 compares validUTF8 with utf8.ValidString on the values
// of a typical audit span.
func BenchmarkValidUTF8(b *testing.B) {
	values := []string{
		"customer asked in ticket 48213 to update the phone number on file; verified caller identity",
		"https://example.my.salesforce.com/services/data/v59.0/sobjects/Account/001",
		"salesforce", "write", "run-3-40", "+1 555 0100", "Account/000123/Phone", "crm-agent", "alice@example.com",
	}
	var ok bool
	b.Run("validUTF8", func(b *testing.B) {
		for b.Loop() {
			for _, v := range values {
				ok = validUTF8(v)
			}
		}
	})
	b.Run("utf8.ValidString", func(b *testing.B) {
		for b.Loop() {
			for _, v := range values {
				ok = utf8.ValidString(v)
			}
		}
	})
	_ = ok
}
