package query

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// sanitizeByRune is Sanitize as it was written first, a rune at a time
// through printable: the reference its ASCII fast path must equal.
func sanitizeByRune(b []byte, max int) string {
	var sb strings.Builder
	n := 0
	for len(b) > 0 {
		if n >= max {
			sb.WriteString("…")
			break
		}
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&sb, `\x%02x`, b[0])
		case r == '\\':
			sb.WriteString(`\\`)
		case r < utf8.RuneSelf && !printable(r):
			fmt.Fprintf(&sb, `\x%02x`, r)
		case !printable(r):
			fmt.Fprintf(&sb, `\u{%04x}`, r)
		default:
			sb.Write(b[:size])
		}
		b = b[size:]
		n++
	}
	return sb.String()
}

// TestSanitizeEqualsRuneByRune: every byte value, and random mixes of
// ASCII, controls, backslashes, UTF-8 (bidi controls, fillers) and invalid
// bytes, at every cap, give what the rune-by-rune escaping gives.
func TestSanitizeEqualsRuneByRune(t *testing.T) {
	for c := range 256 {
		b := []byte{'a', byte(c), 'z'}
		for max := range 5 {
			if got, want := Sanitize(b, max), sanitizeByRune(b, max); got != want {
				t.Fatalf("Sanitize(%q, %d) = %q, want %q", b, max, got, want)
			}
		}
	}
	pieces := []string{"203.0.113.7", ", ", "\\", "\x00", "\x1b[31m", "\x7f", "\u202e", "\u3164", "é", "\xff", "\xe2\x80", " ", "GET /a?b=c", "=cmd", "\u00ad"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		max := rng.IntN(len(b) + 3)
		if rng.IntN(4) == 0 {
			max = uncapped
		}
		if got, want := Sanitize(b, max), sanitizeByRune(b, max); got != want {
			t.Fatalf("Sanitize(%q, %d) = %q, want %q", b, max, got, want)
		}
	}
}
