package gossip_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/gossip"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/wire"
)

// lostEvents reads the PeerLost events waiting in sub: "host reason" each.
func lostEvents(sub *inventory.Subscription) []string {
	var out []string
	for len(sub.C()) > 0 {
		if e := <-sub.C(); e.Kind == inventory.PeerLost {
			out = append(out, e.Peer.HostID+" "+e.Reason)
		}
	}
	return out
}

// TestCleanStopWithoutLeaveGossip: a node stops while its leave's gossip
// and best-effort packets are lost; the direct message over a stream still
// has every member drop it with reason bye within 1 s, and memberlist's
// failure detection, which finds it dead seconds later, drops nothing
// again.
func TestCleanStopWithoutLeaveGossip(t *testing.T) {
	nodes := mesh(t, 26000+int(time.Now().UnixNano()%2000), [][]byte{key(2)}, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	// c tells the members it knows (disks may come before memberlist's
	// join, by direct messages; a member c has not heard of yet learns
	// of the leave from the gossip that this test makes lost).
	for _, n := range []*node{a, b, c} {
		waitFor(t, 10*time.Second, n.name+" has every member", func() bool { return n.tr.Status().Alive == 3 })
	}
	subA, subB := a.inv.Subscribe(64), b.inv.Subscribe(64)
	defer subA.Close()
	defer subB.Close()

	gossip.LoseLeave(c.tr)
	began := time.Now()
	c.stop()
	closed := time.Since(began)
	waitFor(t, time.Second-time.Since(began), "c gone from a and b within 1 s of its stop", func() bool {
		return hosts(a.inv) == "a:/dev/a,b:/dev/b" && hosts(b.inv) == "a:/dev/a,b:/dev/b"
	})
	t.Logf("c's Close took %v; c was dropped everywhere %v after its stop began",
		closed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

	// memberlist finds c dead in 1.5-3 s with these timings (it never
	// heard that c left): nothing more may happen.
	waitFor(t, 10*time.Second, "a and b's memberlist see c gone", func() bool {
		return a.tr.Status().Alive == 2 && b.tr.Status().Alive == 2
	})
	time.Sleep(500 * time.Millisecond)
	for _, n := range []struct {
		name string
		node *node
		sub  *inventory.Subscription
	}{{"a", a, subA}, {"b", b, subB}} {
		if got := lostEvents(n.sub); len(got) != 1 || got[0] != "c bye" {
			t.Errorf("%s's PeerLost events: %q, want exactly [\"c bye\"]", n.name, got)
		}
		if st := n.node.tr.Status(); st.Left != 1 || st.Dead != 0 {
			t.Errorf("%s's status %+v: want 1 left, 0 dead", n.name, st)
		}
	}
}

// TestLeavingRefused: the message that a member leaves is refused when it
// is malformed, names this node, or carries a sequence number older than
// the member's latest announcement (a recording replayed).
func TestLeavingRefused(t *testing.T) {
	a := mesh(t, 28000+int(time.Now().UnixNano()%2000), nil, "a", "b")[0]
	both := "a:/dev/a,b:/dev/b"
	seq := seqOf(a, "b")
	sub := a.inv.Subscribe(64)
	defer sub.Close()
	for _, tc := range []struct {
		name string
		send func()
	}{
		{"older sequence number", func() { gossip.Leaving(a.tr, "b", seq-1) }},
		{"sequence number 0", func() { gossip.Leaving(a.tr, "b", 0) }},
		{"this node's own name", func() { gossip.Leaving(a.tr, "a", seq) }},
		{"unknown member", func() { gossip.Leaving(a.tr, "z", seq) }},
		{"old format: name only", func() { gossip.Deliver(a.tr, []byte("lb")) }},
		{"length past the end", func() { gossip.Deliver(a.tr, []byte{'l', 9, 'b'}) }},
		{"short sequence number", func() { gossip.Deliver(a.tr, []byte{'l', 1, 'b', 0, 0, 1}) }},
		{"invalid name", func() { gossip.Deliver(a.tr, append([]byte{'l', 2, 'b', '\n'}, make([]byte, 8)...)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.send()
			if h := hosts(a.inv); h != both {
				t.Errorf("a lists %s, want %s", h, both)
			}
			if got := lostEvents(sub); len(got) != 0 {
				t.Errorf("PeerLost events %q, want none", got)
			}
		})
	}
	// The same sequence number as b's latest announcement is b leaving.
	gossip.Leaving(a.tr, "b", seq)
	if h := hosts(a.inv); h != "a:/dev/a" {
		t.Errorf("after b said it leaves, a lists %s", h)
	}
	gossip.Leaving(a.tr, "b", seq) // the copy over the other path
	if got := lostEvents(sub); len(got) != 1 || got[0] != "b bye" {
		t.Errorf("PeerLost events %q, want exactly [\"b bye\"]", got)
	}
	// b runs on (the message was forged): once memberlist still finds it
	// alive ten probe intervals (5 s) later, a asks it to announce afresh.
	began := time.Now()
	waitFor(t, 15*time.Second, "b back in a's list", func() bool { return hosts(a.inv) == both })
	t.Logf("b, alive, was back in a's list %v after the forged message", time.Since(began).Round(time.Millisecond))
}

// blackHole listens on a loopback port whose accept queue is full, so
// that a further dial hangs (its SYNs are dropped) until it gives up.
func blackHole(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
	// The one connection the queue holds.
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Check that the next dial hangs.
	if c2, err := net.DialTimeout("tcp", addr.String(), 300*time.Millisecond); err == nil {
		c2.Close()
		t.Fatalf("a dial to %s was accepted: the black hole does not hold", addr)
	}
	return addr
}

// TestCloseBoundedByDeadMember: a member that does not answer does not
// hold up Close (memberlist's own timeout here is 10 s).
func TestCloseBoundedByDeadMember(t *testing.T) {
	base := 30000 + int(time.Now().UnixNano()%2000)
	hole := blackHole(t)
	slow := fast
	slow.TCPTimeout = 10 * time.Second
	a := startTimed(t, "a", base, nil, slow)
	gossip.AddMember(a.tr, "ghost", hole)
	began := time.Now()
	a.stop()
	took := time.Since(began)
	t.Logf("Close with a member that does not answer took %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("Close took %v with a member that does not answer, want well under memberlist's 10 s", took)
	}
}

// TestLateJoinAfterGoodbye: memberlist may tell a node of a member's join
// only after the member said it leaves (it stopped right after joining).
// That join does not undo the goodbye: when memberlist then finds the
// member gone, nothing is dropped again and it counts as left, not dead.
func TestLateJoinAfterGoodbye(t *testing.T) {
	base := 32000 + int(time.Now().UnixNano()%2000)
	a := mesh(t, base, nil, "a", "b")[0]
	seq := seqOf(a, "b")
	sub := a.inv.Subscribe(64)
	defer sub.Close()
	bAddr := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", base+1))
	gossip.Leaving(a.tr, "b", seq)
	gossip.MemberEvent(a.tr, "join", "b", bAddr)
	gossip.MemberEvent(a.tr, "leave", "b", bAddr)
	if got := lostEvents(sub); len(got) != 1 || got[0] != "b bye" {
		t.Errorf("PeerLost events %q, want exactly [\"b bye\"]", got)
	}
	if st := a.tr.Status(); st.Left != 1 || st.Dead != 0 {
		t.Errorf("status %+v: want 1 left, 0 dead", st)
	}
}

// TestOrphanDropped: a host whose announcement reaches a node through the
// mesh (relayed by others) but that is no live member there, as one found
// dead before the node joined, is dropped with reason timeout after
// orphanAfter probe intervals; a member that is alive is not.
func TestOrphanDropped(t *testing.T) {
	base := 30000 + int(time.Now().UnixNano()%2000)
	keys := [][]byte{key(3)}
	ring, err := wire.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	a := mesh(t, base, keys, "a", "b")[0]
	sub := a.inv.Subscribe(64)
	defer sub.Close()

	parts, err := wire.Encode(wire.Message{Kind: wire.KindAnnounce, HostID: "ghost", Hostname: "ghost", BootID: "b-ghost",
		Seq: 1, Interval: time.Second, SentAt: time.Now(), Disks: []diskstate.Disk{{Device: "/dev/ghost", UUID: "u-ghost", Type: "ext4"}}},
		1100, ring)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for _, p := range parts {
		gossip.Deliver(a.tr, append([]byte{'d'}, p...))
	}
	waitFor(t, 5*time.Second, "a lists the relayed host", func() bool { return hosts(a.inv) == "a:/dev/a,b:/dev/b,ghost:/dev/ghost" })
	// 20 probe intervals of 500 ms.
	waitFor(t, 30*time.Second, "the host that is no member dropped", func() bool { return hosts(a.inv) == "a:/dev/a,b:/dev/b" })
	took := time.Since(began)
	t.Logf("the orphan was dropped %v after it was heard", took.Round(time.Millisecond))
	if took < 9*time.Second {
		t.Errorf("the orphan was dropped after %v, before its 10 s of grace", took)
	}
	if got := lostEvents(sub); len(got) != 1 || got[0] != "ghost timeout" {
		t.Errorf("PeerLost events %q, want exactly [\"ghost timeout\"]", got)
	}
	// Nothing more: the orphan is dropped once, and b, a live member, stays.
	time.Sleep(2 * time.Second)
	if got := lostEvents(sub); len(got) != 0 {
		t.Errorf("later PeerLost events %q, want none", got)
	}
	if h := hosts(a.inv); h != "a:/dev/a,b:/dev/b" {
		t.Errorf("a lists %s, want a and b", h)
	}
}
