package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestIPv6GroupFlags: --group takes an IPv6 group, once per family, and
// both families together; the default is the IPv4 group alone.
func TestIPv6GroupFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // fmt of Config.Groups, or the start of the error
	}{
		{[]string{"-d"}, "[239.255.77.77:4277]"},
		{[]string{"-d", "--group", "[ff15::d15c]:4277"}, "[[ff15::d15c]:4277]"},
		{[]string{"-d", "--group", "239.255.77.77:4277", "--group", "[ff15::d15c]:4277"}, "[239.255.77.77:4277 [ff15::d15c]:4277]"},
		{[]string{"-d", "--group", "[ff15::d15c]:4000", "--group", "239.1.2.3:4001"}, "[[ff15::d15c]:4000 239.1.2.3:4001]"},
		{[]string{"-d", "--group", "[ff12::1]:9"}, "[[ff12::1]:9]"},
		{[]string{"-d", "--group", "ff15::d15c:4277"}, `flag --group: "ff15::d15c:4277" is not ADDR:PORT`},
		{[]string{"-d", "--group", "[ff15::d15c]"}, "flag --group"},
		{[]string{"-d", "--group", "[ff15::d15c]:0"}, "flag --group: port 0"},
		{[]string{"-d", "--group", "[ff15::1]:1", "--group", "[ff15::2]:1"}, "flag --group: two IPv6 groups"},
		{[]string{"-d", "--group", strings.Repeat("1", 100)}, "flag --group:"},
	} {
		o, err := parseArgs(c.args, env(nil), 0, none)
		got := fmt.Sprint(o.cfg.Groups)
		if err != nil {
			got = err.Error()
			if strings.Contains(got, "\n") || len(got) > 200 {
				t.Errorf("%q: error %q is not one short line", c.args, got)
			}
		}
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%q: %s, want %s", c.args, got, c.want)
		}
	}
}
