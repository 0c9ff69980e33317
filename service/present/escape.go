package present

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape makes a string that came from the network or from a disk safe to
// show on a terminal. Printable UTF-8 (letters, marks, numbers, punctuation,
// symbols and spaces, e.g. "Straße", "日本") is kept as is. Everything else
// becomes a visible escape, so nothing can move the cursor, clear the screen,
// set the clipboard, reorder text or break a line:
//
//   - a backslash becomes \\ (so escapes cannot be forged);
//   - newline, carriage return and tab become \n, \r and \t;
//   - the other C0 controls and DEL become \xNN (ESC is \x1b);
//   - a byte that is not part of valid UTF-8 becomes \xNN (e.g. \xff);
//   - C1 controls, Unicode format characters (among them the bidi overrides
//     and isolates U+202A–U+202E and U+2066–U+2069, zero-width characters,
//     U+FEFF), line and paragraph separators, private-use, surrogate and
//     unassigned code points become \uNNNN (or \UNNNNNNNN above U+FFFF).
func Escape(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !needsEscape(r, size) {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		switch {
		case r == utf8.RuneError && size <= 1:
			writeHex(&b, `\x`, uint32(s[i]), 2)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			writeHex(&b, `\x`, uint32(r), 2)
		case r <= 0xffff:
			writeHex(&b, `\u`, uint32(r), 4)
		default:
			writeHex(&b, `\U`, uint32(r), 8)
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size <= 1:
		return true // invalid UTF-8
	case r == '\\':
		return true
	case r >= 0x20 && r < 0x7f:
		return false // printable ASCII, the common case
	}
	return r != ' ' && !unicode.IsGraphic(r)
}

func writeHex(b *strings.Builder, prefix string, v uint32, digits int) {
	b.WriteString(prefix)
	h := strconv.FormatUint(uint64(v), 16)
	for range digits - len(h) {
		b.WriteByte('0')
	}
	b.WriteString(h)
}
