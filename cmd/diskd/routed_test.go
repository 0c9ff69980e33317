package main_test

// --ttl across a router: two segments (subnets) of simulated hosts, and a
// router between them whose smcrouted forwards diskd's IPv4 and IPv6
// groups (service/testbed). With --ttl 1 nothing of one subnet reaches the
// other, counted on the far subnet; with --ttl 2 everything does, as fast
// as on one link. Each test runs for IPv4 and for IPv6. The helpers node,
// disk, findDisk, describe, diskdBin, seenWithin, awaitPeer and
// eventBound come from integration_test.go and events_test.go.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// group6 is the IPv6 group the tests give with --group: the one README
// and diskd(8) document.
const group6 = "[ff15::d15c]:4277"

// netFamily is what a test's daemons speak.
type netFamily struct {
	name  string
	fam   testbed.Family
	group netip.AddrPort
}

var (
	ipv4 = netFamily{"IPv4", testbed.IPv4, netip.MustParseAddrPort(group)}
	ipv6 = netFamily{"IPv6", testbed.IPv6, netip.MustParseAddrPort(group6)}
)

// flags are the daemon flags of the family: the IPv4 group is the
// default, the IPv6 one is given.
func (f netFamily) flags() []string {
	if f.fam == testbed.IPv6 {
		return []string{"--group", f.group.String()}
	}
	return nil
}

// addr is h's address of the family.
func (f netFamily) addr(h *testbed.Host) string {
	if f.fam == testbed.IPv6 {
		return h.Addr6
	}
	return h.Addr
}

// routedNet is two segments of one family and a router between them that
// forwards diskd's groups of both families.
type routedNet struct {
	lab       *testbed.Lab
	near, far *testbed.Segment
	router    *testbed.Router
}

func newRoutedNet(t *testing.T, f netFamily) *routedNet {
	t.Helper()
	testbed.RequireTools(t, "smcrouted", "smcroutectl")
	lab := testbed.NewT(t)
	near := lab.AddSegmentT(t, "near", f.fam)
	far := lab.AddSegmentT(t, "far", f.fam)
	r, err := lab.AddRouter("router", []*testbed.Segment{near, far}, testbed.RouterOptions{
		Groups: []netip.Addr{ipv4.group.Addr(), ipv6.group.Addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &routedNet{lab: lab, near: near, far: far, router: r}
}

// node adds a host with one ext4 disk labelled NAME-1 to seg.
func (rn *routedNet) node(t *testing.T, seg *testbed.Segment, name string) *node {
	t.Helper()
	return addNodes(t, seg.AddHost, name)[0]
}

// forwarded returns the router's multicast counters of the family: what
// came in on the near side and went out on each side.
func (rn *routedNet) forwarded(t *testing.T, f netFamily) (inNear, outFar, outNear uint64) {
	t.Helper()
	st, err := rn.router.MulticastStats(f.fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st {
		switch v.Iface {
		case rn.router.Iface(rn.near):
			inNear, outNear = v.PktsIn, v.PktsOut
		case rn.router.Iface(rn.far):
			outFar = v.PktsOut
		}
	}
	return inNear, outFar, outNear
}

// killAndTimeOut makes peer announce, kills it 20ms later and checks that
// watcher, whose peer timeout is 3s, keeps peer's disk until shortly before
// that timeout (3s after the last announcement, at most 1s before the kill)
// and drops it within 5s of the kill. It returns how long after the kill
// the disk left watcher's list.
func killAndTimeOut(t *testing.T, watcher, peer *node) time.Duration {
	t.Helper()
	if _, err := peer.d.Do("announce"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	killed := time.Now()
	if err := peer.d.Kill(); err != nil {
		t.Fatal(err)
	}
	for time.Since(killed) < 1900*time.Millisecond {
		if ok, desc := watcher.has(peer); !ok {
			t.Fatalf("%s's disk gone %v after SIGKILL, before %s's 3s peer timeout: %s",
				peer.Name, ms(time.Since(killed)), watcher.Name, desc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	testbed.Eventually(t, 5*time.Second-time.Since(killed), func() (bool, string) {
		ok, desc := watcher.has(peer)
		return !ok, desc
	})
	return time.Since(killed)
}

// acrossRouter runs test once per family, in parallel, with alpha on the
// near subnet and beta on the far one of a routed net of that family. No
// daemon is started.
func acrossRouter(t *testing.T, test func(t *testing.T, f netFamily, rn *routedNet, a, b *node)) {
	t.Helper()
	for _, f := range []netFamily{ipv4, ipv6} {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			rn := newRoutedNet(t, f)
			test(t, f, rn, rn.node(t, rn.near, "alpha"), rn.node(t, rn.far, "beta"))
		})
	}
}

// TestRoutedTTL1StaysHome: with --ttl 1 (the default), alpha on the near
// subnet and beta on the far one never see each other. The proof is not
// only beta's list: a listener joined to the group on beta's host counts
// nothing from alpha, beta's daemon counts no datagram in, and the router
// counts alpha's datagrams coming in and none going out. At the end a
// datagram sent from alpha's host with TTL 2 does reach the listener, so
// the zero was not a deaf listener.
func TestRoutedTTL1StaysHome(t *testing.T) {
	t.Parallel()
	acrossRouter(t, func(t *testing.T, f netFamily, rn *routedNet, a, b *node) {
		ln, err := b.Listen(f.group)
		if err != nil {
			t.Fatal(err)
		}
		src := netip.MustParseAddr(f.addr(a.Host))
		launch(t, b, append(append(fastFlags(), "--ttl", "1"), f.flags()...)...)
		launch(t, a, append(append(fastFlags(), "--ttl", "1"), f.flags()...)...)

		// Three seconds: three periodic announcements, the start's ping
		// and answers, and three announcements on demand.
		end := time.Now().Add(3 * time.Second)
		for i := 0; time.Now().Before(end); i++ {
			if ok, desc := b.has(a); ok {
				t.Fatalf("beta lists alpha's disk across the router with --ttl 1: %s", desc)
			}
			if ok, desc := a.has(b); ok {
				t.Fatalf("alpha lists beta's disk across the router with --ttl 1: %s", desc)
			}
			if i%10 == 0 {
				if _, err := a.d.Do("announce"); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		inNear, outFar, outNear := rn.forwarded(t, f)
		bIn := b.status(t).PacketsIn
		aOut := a.status(t).PacketsOut
		t.Logf("alpha sent %d datagrams; the router took %d in from the near subnet and sent %d to the far one (%d back); "+
			"the far listener heard %d from alpha; beta's packets_in %d",
			aOut, inNear, outFar, outNear, ln.From(src), bIn)
		switch {
		case aOut < 5:
			t.Errorf("alpha sent only %d datagrams in 3s", aOut)
		case inNear < 5:
			t.Errorf("the router took in only %d datagrams from the near subnet: alpha's did not reach it", inNear)
		case outFar != 0 || outNear != 0:
			t.Errorf("the router forwarded TTL-1 datagrams: %d to the far subnet, %d to the near one", outFar, outNear)
		case ln.From(src) != 0:
			t.Errorf("the far listener heard %d datagrams from alpha", ln.From(src))
		case bIn != 0:
			t.Errorf("beta counted %d datagrams in; nothing should reach it", bIn)
		}

		// The control: TTL 2 from the same host reaches the listener.
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			if err := a.Send(f.group, 2, [][]byte{[]byte("control")}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			return ln.From(src) > 0, "a TTL-2 datagram from alpha's host did not reach the far listener"
		})
	})
}

// byeBound is how soon after SIGTERM alpha's goodbye must remove its disk
// from beta's list. Alpha announces every second and beta's peer timeout is
// 3 s, so without the goodbye the disk would stay at least 2 s.
const byeBound = 1500 * time.Millisecond

// TestRoutedTTL2Crosses: with --ttl 2 beta, on the far subnet, lists a disk
// attached on alpha within eventBound and drops it within eventBound of its
// detach; a clean stop of alpha removes it within byeBound, a kill after
// beta's peer timeout (3 s); `peers` shows alpha with its near-subnet
// address.
func TestRoutedTTL2Crosses(t *testing.T) {
	t.Parallel()
	acrossRouter(t, func(t *testing.T, f netFamily, rn *routedNet, a, b *node) {
		// Default scan interval (60s): only the event path can find
		// the attach in time. Alpha announces every second, beta's
		// peer timeout is 3s.
		aFlags := append([]string{"--ttl", "2", "--announce-interval", "1s"}, f.flags()...)
		bFlags := append([]string{"--ttl", "2", "--peer-timeout", "3s"}, f.flags()...)
		if err := a.disk.Detach(); err != nil {
			t.Fatal(err)
		}
		launch(t, b, bFlags...)
		launch(t, a, aFlags...)
		awaitPeer(t, b, a)
		awaitPeer(t, a, b)

		ps := peersOf(t, b)
		p := findPeer(ps, a.HostID)
		addr, err := netip.ParseAddr(p.Address)
		prefix := rn.near.Prefix4()
		if f.fam == testbed.IPv6 {
			prefix = rn.near.Prefix6()
		}
		if err != nil || p.Address != f.addr(a.Host) || !prefix.Contains(addr) {
			t.Errorf("beta's peers show alpha at %q, want %s (in %s, across the router)", p.Address, f.addr(a.Host), prefix)
		}
		t.Logf("beta's peers: alpha at %s", p.Address)

		present := func(d *disk) bool { return d != nil && d.Label == "ALPHA-1" }
		absent := func(d *disk) bool { return d == nil }
		step := func(name string, do func() error, want func(*disk) bool, bound time.Duration) time.Duration {
			t.Helper()
			start := time.Now()
			if err := do(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			took, desc := seenWithin(b, a, start, bound+4*time.Second, want)
			switch {
			case took < 0:
				t.Fatalf("%s: beta's list did not follow within %v: %s", name, bound+4*time.Second, desc)
			case took >= bound:
				t.Errorf("%s: beta's list followed after %v, not within %v", name, ms(took), bound)
			}
			t.Logf("%s on alpha → beta's list: %v", name, ms(took))
			return took
		}
		step("attach", a.disk.Attach, present, eventBound)
		step("detach", a.disk.Detach, absent, eventBound)
		step("attach again", a.disk.Attach, present, eventBound)
		// A clean stop: the goodbye crosses the router too. Timed from
		// SIGTERM, watched while alpha stops (a -race build of diskd
		// exits about a second after its goodbye).
		stopStart := time.Now()
		var took time.Duration
		var desc string
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			took, desc = seenWithin(b, a, stopStart, 5*time.Second, absent)
		}()
		if err := a.d.Stop(); err != nil {
			t.Errorf("alpha on SIGTERM: %v", err)
		}
		exited := time.Since(stopStart)
		<-watched
		switch {
		case took < 0:
			t.Fatalf("clean stop: alpha's disk still in beta's list 5s after SIGTERM: %s", desc)
		case took >= byeBound:
			t.Errorf("clean stop: alpha's disk left beta's list %v after SIGTERM, not within %v", ms(took), byeBound)
		}
		t.Logf("clean stop: alpha's disk left beta's list %v after SIGTERM; alpha exited after %v", ms(took), ms(exited))
		if p := findPeer(peersOf(t, b), a.HostID); p != nil {
			t.Errorf("beta still lists alpha among its peers after its goodbye: %+v", *p)
		}

		launch(t, a, aFlags...)
		awaitPeerDisk(t, b, a)
		took = killAndTimeOut(t, b, a)
		t.Logf("killed alpha's disk left beta's list after %v (peer timeout 3s)", ms(took))
		_, outFar, outNear := rn.forwarded(t, f)
		if outFar == 0 || outNear == 0 {
			t.Errorf("the router forwarded %d datagrams to the far subnet and %d to the near one; want both > 0", outFar, outNear)
		}
		t.Logf("the router forwarded %d datagrams to the far subnet, %d to the near one", outFar, outNear)
	})
}
