package testbed_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

var (
	group4 = netip.MustParseAddrPort("239.255.77.79:4998")
	group6 = netip.MustParseAddrPort("[ff15::d15d]:4998")
)

// grams returns n datagrams saying what they are.
func grams(what string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(what + " " + strconv.Itoa(i))
	}
	return out
}

// twoSegments builds segments "near" and "far" of fam, a host on each and
// a router between them with o.
func twoSegments(t *testing.T, fam testbed.Family, o testbed.RouterOptions) (l *testbed.Lab, near, far *testbed.Host, r *testbed.Router) {
	t.Helper()
	testbed.RequireTools(t, "smcrouted", "smcroutectl", "nft")
	l = testbed.NewT(t)
	sn := l.AddSegmentT(t, "near", fam)
	sf := l.AddSegmentT(t, "far", fam)
	near = sn.AddHostT(t, "h1")
	// The router comes between the hosts: h1's default route is added
	// when the router is, h2's when h2 is.
	r, err := l.AddRouter("rt", []*testbed.Segment{sn, sf}, o)
	if err != nil {
		t.Fatal(err)
	}
	far = sf.AddHostT(t, "h2")
	return l, near, far, r
}

// unicastReaches sends one UDP datagram from a to b's address of the
// family and reports whether it arrived within a second.
func unicastReaches(t *testing.T, a, b *testbed.Host, v6 bool) bool {
	t.Helper()
	addr, network := b.Addr, "udp4"
	if v6 {
		addr, network = b.Addr6, "udp6"
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr(addr), 4997)
	var conn *net.UDPConn
	if err := b.InNetns(func() error {
		var err error
		conn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var send net.Conn
	if err := a.InNetns(func() error {
		var err error
		send, err = net.Dial(network, dst.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	if _, err := send.Write([]byte("unicast")); err != nil {
		t.Fatalf("unicast %s → %s: %v", a.Name, dst, err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	n, _, err := conn.ReadFromUDPAddrPort(buf)
	return err == nil && string(buf[:n]) == "unicast"
}

func TestRouterForwardsGroupsByTTL(t *testing.T) {
	t.Parallel()
	_, near, far, r := twoSegments(t, testbed.DualStack, testbed.RouterOptions{
		Groups: []netip.Addr{group4.Addr(), group6.Addr()},
	})
	if r.PID() == 0 {
		t.Fatal("no smcrouted")
	}
	for _, c := range []struct {
		fam   testbed.Family
		group netip.AddrPort
		src   string
	}{
		{testbed.IPv4, group4, near.Addr},
		{testbed.IPv6, group6, near.Addr6},
	} {
		ln, err := far.Listen(c.group)
		if err != nil {
			t.Fatal(err)
		}
		src := netip.MustParseAddr(c.src)
		// The router learns a new source from its first datagram (an
		// upcall to smcrouted) and holds only a few datagrams meanwhile:
		// prime it until one crosses, then count.
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			if err := near.Send(c.group, 2, grams("primer", 1)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			return ln.From(src) > 0, fmt.Sprintf("%v: no primer crossed the router", c.fam)
		})
		time.Sleep(100 * time.Millisecond)
		stats := func() (in, out uint64) {
			st, err := r.MulticastStats(c.fam)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range st {
				if v.Iface == r.Iface(near.Segment) {
					in = v.PktsIn
				}
				if v.Iface == r.Iface(far.Segment) {
					out = v.PktsOut
				}
			}
			return in, out
		}
		before := ln.From(src)
		in0, out0 := stats()
		// TTL 1 first: if it crossed, the count below would be 20.
		if err := near.Send(c.group, 1, grams("ttl1", 10)); err != nil {
			t.Fatal(err)
		}
		if err := near.Send(c.group, 2, grams("ttl2", 10)); err != nil {
			t.Fatal(err)
		}
		testbed.Eventually(t, 10*time.Second, func() (bool, string) {
			n := ln.From(src) - before
			return n >= 10, fmt.Sprintf("%v: %d datagrams from %s on the far segment", c.fam, n, src)
		})
		time.Sleep(200 * time.Millisecond)
		if n := ln.From(src) - before; n != 10 {
			t.Errorf("%v: %d datagrams crossed the router, want the 10 sent with TTL 2", c.fam, n)
		}
		in, out := stats()
		in, out = in-in0, out-out0
		t.Logf("%v: far host got %d; the router counted %d in on %s, %d out on %s",
			c.fam, ln.From(src)-before, in, r.Iface(near.Segment), out, r.Iface(far.Segment))
		if in < 10 || out != 10 {
			t.Errorf("%v: router counted %d in on the near side, %d out on the far side; want ≥ 10 and 10", c.fam, in, out)
		}
		ln.Close()
		if !unicastReaches(t, near, far, c.fam == testbed.IPv6) {
			t.Errorf("%v: unicast from %s did not reach %s through the router", c.fam, near.Name, far.Name)
		}
	}
}

func TestRouterDropsMulticastForwardsUnicast(t *testing.T) {
	t.Parallel()
	// smcrouted would forward the groups; the firewall drops them.
	_, near, far, _ := twoSegments(t, testbed.DualStack, testbed.RouterOptions{
		Groups: []netip.Addr{group4.Addr(), group6.Addr()}, DropMulticast: true,
	})
	ln4, err := far.Listen(group4)
	if err != nil {
		t.Fatal(err)
	}
	ln6, err := far.Listen(group6)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []netip.AddrPort{group4, group6} {
		if err := near.Send(g, 8, grams("hop", 10)); err != nil {
			t.Fatal(err)
		}
	}
	// Unicast crosses (which also shows the datagrams above had time to).
	for _, v6 := range []bool{false, true} {
		if !unicastReaches(t, near, far, v6) {
			t.Errorf("unicast (IPv6 %v) did not cross the router", v6)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n4, n6 := ln4.Total(), ln6.Total(); n4 != 0 || n6 != 0 {
		t.Errorf("multicast crossed a router that drops it: %d IPv4, %d IPv6 datagrams", n4, n6)
	}
}

func TestSegmentFamilies(t *testing.T) {
	t.Parallel()
	l := testbed.NewT(t)
	seg := l.AddSegmentT(t, "mixed", testbed.DualStack)
	if got := seg.Prefix4().String() + " " + seg.Prefix6().String(); got != "10.77.1.0/24 fd77:0:0:1::/64" {
		t.Errorf("segment 1's subnets: %s", got)
	}
	for _, c := range []struct {
		name       string
		fam        testbed.Family
		has4, has6 bool
	}{
		{"v4", testbed.IPv4, true, false},
		{"v6", testbed.IPv6, false, true},
		{"both", 0, true, true}, // the segment's
	} {
		h := l.AddHostWithT(t, c.name, testbed.HostOptions{Segment: seg, Family: c.fam})
		b, err := exec.Command("ip", "-n", h.NS, "-o", "addr", "show", "dev", testbed.Interface).Output()
		if err != nil {
			t.Fatal(err)
		}
		out := string(b)
		has4, has6 := strings.Contains(out, " inet "), strings.Contains(out, " inet6 ")
		if has4 != c.has4 || has6 != c.has6 || (h.Addr != "") != c.has4 || (h.Addr6 != "") != c.has6 {
			t.Errorf("%s: inet %v inet6 %v, Addr %q Addr6 %q; want %v %v:\n%s", c.name, has4, has6, h.Addr, h.Addr6, c.has4, c.has6, out)
		}
		if c.has6 && !strings.Contains(out, h.Addr6+"/64") {
			t.Errorf("%s: no %s/64 on e0:\n%s", c.name, h.Addr6, out)
		}
	}
	if _, err := l.AddSegment("mixed", testbed.IPv6); err == nil {
		t.Error("a second segment named mixed was accepted")
	}
	if _, err := l.AddRouter("r", []*testbed.Segment{seg}, testbed.RouterOptions{}); err == nil {
		t.Error("a router on one segment was accepted")
	}
	if _, err := l.AddRouter("r", []*testbed.Segment{seg, l.DefaultSegment()}, testbed.RouterOptions{
		Groups: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}); err == nil {
		t.Error("a router forwarding a unicast address as a group was accepted")
	}
}

// TestRouterCleanup: Close stops smcrouted (by PID) and removes the router's
// namespace and the segments' bridges with the hub.
func TestRouterCleanup(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "losetup", "smcrouted", "smcroutectl")
	l, err := testbed.New(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := l.AddSegmentT(t, "a", testbed.IPv4)
	b := l.AddSegmentT(t, "b", testbed.IPv6)
	r, err := l.AddRouter("rt", []*testbed.Segment{a, b, l.DefaultSegment()}, testbed.RouterOptions{
		Groups: []netip.Addr{group4.Addr(), group6.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	pid := r.PID()
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("smcrouted pid %d is not running", pid)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("smcrouted %d still there after Close: %v", pid, err)
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Errorf("left after Close: %v", left)
	}
	if _, err := os.Stat("/var/run/netns/" + r.NS); err == nil {
		t.Errorf("router namespace %s left", r.NS)
	}
}

// TestThreeSegmentsUnicastOnly is the network later transports need: three
// subnets behind one router that routes unicast between all of them and
// forwards no multicast (no smcrouted, and nftables drops it anyway).
func TestThreeSegmentsUnicastOnly(t *testing.T) {
	t.Parallel()
	testbed.RequireTools(t, "nft")
	l := testbed.NewT(t)
	var segs []*testbed.Segment
	var hosts []*testbed.Host
	for _, name := range []string{"a", "b", "c"} {
		s := l.AddSegmentT(t, name, testbed.IPv4)
		h := s.AddHostT(t, "h"+name)
		segs, hosts = append(segs, s), append(hosts, h)
	}
	r, err := l.AddRouter("r", segs, testbed.RouterOptions{DropMulticast: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.PID() != 0 {
		t.Errorf("a router without groups runs smcrouted (pid %d)", r.PID())
	}
	var lns []*testbed.Listener
	for _, h := range hosts[1:] {
		ln, err := h.Listen(group4)
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	if err := hosts[0].Send(group4, 8, grams("hop", 10)); err != nil {
		t.Fatal(err)
	}
	for i, a := range hosts {
		for j, b := range hosts {
			if i != j && !unicastReaches(t, a, b, false) {
				t.Errorf("unicast %s → %s did not cross the router", a.Name, b.Name)
			}
		}
	}
	for i, ln := range lns {
		if n := ln.Total(); n != 0 {
			t.Errorf("%s heard %d multicast datagrams from another subnet", hosts[i+1].Name, n)
		}
	}
}
