package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestGossipFlags: the gossip flags turn the mesh on, take their defaults,
// and refuse what cannot work in one line naming the flag.
func TestGossipFlags(t *testing.T) {
	none := func(string) bool { return false }
	for _, c := range []struct {
		name string
		args []string
		want string // error text, or "" for success
		bind string // want GossipBind when it succeeds
		join []string
	}{
		{"off by default", []string{"-d"}, "", "", nil},
		{"join with a key", []string{"-d", "--key-file", "/k", "--join", "10.0.1.5", "--join", "seed.example.org:4300"}, "", "0.0.0.0:4278", []string{"10.0.1.5", "seed.example.org:4300"}},
		{"bind alone, insecure", []string{"-d", "--gossip-bind", "10.0.0.2", "--gossip-insecure", "--no-multicast"}, "", "10.0.0.2:4278", nil},
		{"bind ipv6", []string{"-d", "--gossip-bind", "[fd00::1]:5000", "--gossip-insecure"}, "", "[fd00::1]:5000", nil},
		{"no key", []string{"-d", "--join", "10.0.1.5"}, "needs --key-file", "", nil},
		{"no multicast alone", []string{"-d", "--no-multicast"}, "flag --no-multicast needs --join", "", nil},
		{"advertise without mesh", []string{"-d", "--gossip-advertise", "1.2.3.4"}, "flag --gossip-advertise needs --join", "", nil},
		{"insecure without mesh", []string{"-d", "--gossip-insecure"}, "flag --gossip-insecure needs --join", "", nil},
		{"bad seed", []string{"-d", "--gossip-insecure", "--join", "a b"}, "flag --join: \"a b\" is not HOST[:PORT]", "", nil},
		{"bad seed port", []string{"-d", "--gossip-insecure", "--join", "h:99999"}, "flag --join: \"h:99999\" has no port", "", nil},
		{"bad bind", []string{"-d", "--gossip-insecure", "--gossip-bind", "nope"}, "flag --gossip-bind: \"nope\" is not ADDR[:PORT]", "", nil},
		{"unspecified advertise", []string{"-d", "--gossip-insecure", "--join", "h", "--gossip-advertise", "0.0.0.0"}, "flag --gossip-advertise: \"0.0.0.0\" is not an address", "", nil},
		{"client", []string{"--join", "h"}, "flag --join needs -d", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseArgs(c.args, env(nil), 0, none)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line containing %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			bind := ""
			if o.cfg.GossipBind.IsValid() {
				bind = o.cfg.GossipBind.String()
			}
			if bind != c.bind || !slices.Equal(o.cfg.Join, c.join) {
				t.Errorf("bind %q join %q, want %q %q", bind, o.cfg.Join, c.bind, c.join)
			}
		})
	}
	o, err := parseArgs([]string{"-d", "--gossip-insecure", "--join", "h", "--gossip-advertise", "203.0.113.9:4400", "--no-multicast"}, env(nil), 0, none)
	if err != nil || o.cfg.GossipAdvertise != netip.MustParseAddrPort("203.0.113.9:4400") || !o.cfg.NoMulticast || !o.cfg.GossipInsecure {
		t.Errorf("advertise: %+v %v", o.cfg, err)
	}
}
