package control

import "testing"

func TestGuardLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a\nb\n", "a\nb\n"},
		{"OK\n", `\x4fK` + "\n"},
		{"x\nERR\nERR y\nERRx\nOKAY\n", "x\n" + `\x45RR` + "\n" + `\x45RR y` + "\nERRx\nOKAY\n"},
	} {
		if got := string(guardLines([]byte(tc.in))); got != tc.want {
			t.Errorf("guardLines(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
