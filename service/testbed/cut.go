package testbed

import "fmt"

// cutTable is the nftables table in a router's namespace that holds the
// rules of Cut.
func cutTable(s *Segment) string { return fmt.Sprintf("dkcut%d", s.Index) }

// Cut partitions segment s off: the router stops forwarding anything, of
// either family, to or from s (an nftables table of its own in the
// router's namespace). Heal removes it. The hosts of s still reach one
// another.
func (r *Router) Cut(s *Segment) error {
	t, ifname := cutTable(s), r.Iface(s)
	return runAll(
		[]string{"ip", "netns", "exec", r.NS, "nft", "add", "table", "inet", t},
		[]string{"ip", "netns", "exec", r.NS, "nft", "add", "chain", "inet", t, "cutchain",
			"{ type filter hook forward priority -10; policy accept; }"},
		[]string{"ip", "netns", "exec", r.NS, "nft", "add", "rule", "inet", t, "cutchain", "iifname", ifname, "drop"},
		[]string{"ip", "netns", "exec", r.NS, "nft", "add", "rule", "inet", t, "cutchain", "oifname", ifname, "drop"},
	)
}

// Heal undoes Cut: the router forwards to and from s again.
func (r *Router) Heal(s *Segment) error {
	return run("ip", "netns", "exec", r.NS, "nft", "delete", "table", "inet", cutTable(s))
}
