package present

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "BACKUP-2019", "BACKUP-2019"},
		{"empty", "", ""},
		{"printable UTF-8", "Straße 日本 💾", "Straße 日本 💾"},
		{"no-break space stays", "a\u00a0b", "a\u00a0b"},
		{"replacement character stays", "a\uFFFDb", "a\uFFFDb"},
		{"clear screen", "\x1b[2J", `\x1b[2J`},
		{"OSC 52 clipboard", "\x1b]52;c;aGVsbG8=\x07", `\x1b]52;c;aGVsbG8=\x07`},
		{"OSC 52 with ST", "\x1b]52;c;aGVsbG8=\x1b\\", `\x1b]52;c;aGVsbG8=\x1b\\`},
		{"carriage return", "ok\rEVIL", `ok\rEVIL`},
		{"newline and tab", "a\nb\tc", `a\nb\tc`},
		{"NUL", "a\x00b", `a\x00b`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"bell and backspace", "\a\b", `\x07\x08`},
		{"invalid UTF-8", "a\xff\xfeb", `a\xff\xfeb`},
		{"truncated sequence", "x\xc3", `x\xc3`},
		{"overlong encoding", "\xc0\xaf", `\xc0\xaf`},
		{"C1 CSI", "a\u009b2Jb", `a\u009b2Jb`},
		{"C1 NEL", "\u0085", `\u0085`},
		{"bidi override", "txt\u202Egpj.exe", `txt\u202egpj.exe`},
		{"bidi embeddings", "\u202A\u202B\u202C\u202D", `\u202a\u202b\u202c\u202d`},
		{"bidi isolates", "\u2066a\u2067b\u2068c\u2069", `\u2066a\u2067b\u2068c\u2069`},
		{"bidi marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"zero width", "ad\u200bmin\ufeff", `ad\u200bmin\ufeff`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"private use", "\ue000\U0010fffd", `\ue000\U0010fffd`},
		{"backslash", `C:\dir`, `C:\\dir`},
		{"forged escape", `\x1b`, `\\x1b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Escape(tc.in); got != tc.want {
				t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// unescape inverts Escape, to check that Escape loses nothing.
func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		i++
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[s[i]]
			if i+n >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", false
			}
			if s[i] == 'x' {
				b.WriteByte(byte(v))
			} else {
				b.WriteRune(rune(v))
			}
			i += n
		default:
			return "", false
		}
	}
	return b.String(), true
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2J", "\xff", "a\\b", "\u202e", "日本", "\x00\r\n\t", "\U0010fffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q is not valid UTF-8", s, e)
		}
		for _, r := range e {
			if needsEscape(r, utf8.RuneLen(r)) && r != '\\' {
				t.Fatalf("Escape(%q) = %q keeps %U", s, e, r)
			}
		}
		if back, ok := unescape(e); !ok || back != s {
			t.Fatalf("Escape(%q) = %q does not unescape back (got %q, %v)", s, e, back, ok)
		}
	})
}
