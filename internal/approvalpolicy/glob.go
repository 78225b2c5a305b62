package approvalpolicy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrBadGlob is wrapped by the errors ValidateGlob returns.
var ErrBadGlob = errors.New("invalid glob")

// ValidateGlob reports whether g is a glob policies may hold: valid UTF-8,
// without '[', ']' or '\\'. Brackets and escapes are left out so that every
// glob means the same to Match and to docs/verify.sql (which matches with
// SQL's LIKE, '*' as '%' and '?' as '_'), and a literal '[' cannot be
// mistaken for a class.
func ValidateGlob(g string) error {
	if !utf8.ValidString(g) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrBadGlob, g)
	}
	if i := strings.IndexAny(g, `[]\`); i >= 0 {
		return fmt.Errorf("%w: %q: %q is not allowed (globs have only * and ?)", ErrBadGlob, g, g[i])
	}
	return nil
}

// Match reports whether glob matches all of s: '*' matches any run of
// characters, '/' included, the empty run too; '?' matches exactly one
// character (a UTF-8 sequence; each byte of invalid UTF-8 is one); every
// other character matches itself, letter case included. It is SQL's GLOB
// without brackets, but for '?', which DuckDB's GLOB takes as one byte
// and SQL's LIKE '_' (what docs/verify.sql uses) as one character. Match
// does not check glob (ValidateGlob does): '[', ']' and '\\' match
// themselves. Its time is at most proportional to len(glob)*len(s).
func Match(glob, s string) bool {
	px, sx := 0, 0
	// Where to resume after a mismatch: the glob after its last '*', and
	// the text one character further than that '*' was last tried at.
	starPx, starSx := -1, 0
	for px < len(glob) || sx < len(s) {
		if px < len(glob) {
			switch c := glob[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += n
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		// Mismatch: let the last '*' take one more character.
		if starPx < 0 || starSx >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starSx:])
		starSx += n
		px, sx = starPx+1, starSx
	}
	return true
}
