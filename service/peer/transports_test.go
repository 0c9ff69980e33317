package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

// listen reads the datagrams that e has received so far (all of them were
// queued by the time Send returned) and decodes them.
func listen(t *testing.T, e *peertest.Endpoint, count int) []wire.Message {
	t.Helper()
	buf := make([]byte, wire.MaxDatagram)
	var out []wire.Message
	for range count {
		n, _, err := e.Recv(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > e.Budget() {
			t.Errorf("%s: a datagram of %d bytes, over the budget of %d", e.Name(), n, e.Budget())
		}
		m, err := wire.Decode(buf[:n], nil)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, m)
	}
	return out
}

func localDisks(n int) []diskstate.Disk {
	var ds []diskstate.Disk
	for i := range n {
		ds = append(ds, diskstate.Disk{Device: fmt.Sprintf("/dev/sd%c1", 'a'+i), UUID: fmt.Sprintf("uuid-%02d", i),
			Label: fmt.Sprintf("a rather long label to fill datagrams %02d", i), Type: "ext4"})
	}
	return ds
}

// TestSendsOnEveryTransport: announcements, pings and goodbyes go out on
// every transport, each cut at its own budget, with one sequence number
// per message whatever the transport. The first announcement of a list
// goes out twice (a new generation), each copy with its own number.
func TestSendsOnEveryTransport(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "me", Hostname: "me-name"})
	inv.SetLocal(localDisks(20), nil)
	mnet, gnet := twoNetworks(t, 1472, 600)
	s := New(inv, Options{Identity: Identity{HostID: "me", Hostname: "me-name", BootID: "b1"}, Interval: time.Second},
		endpoint(t, mnet, "me", selfAddr), endpoint(t, gnet, "me", selfAddr))
	mear, gear := endpoint(t, mnet, "ear", peerAddr), endpoint(t, gnet, "ear", peerAddr)

	if err := s.Announce(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := s.Stats().Out
	var seqs, parts []uint64
	for _, ear := range []*peertest.Endpoint{mear, gear} {
		first := listen(t, ear, 1)[0]
		asm := wire.NewAssembler(4, time.Minute)
		whole, _ := asm.Add(first, time.Now())
		for _, m := range listen(t, ear, first.Parts-1) {
			whole, _ = asm.Add(m, time.Now())
		}
		if len(whole.Disks) != 20 || whole.HostID != "me" {
			t.Fatalf("%s: the announcement carried %d disks of %q, want 20 of \"me\"", ear.Name(), len(whole.Disks), whole.HostID)
		}
		again := listen(t, ear, first.Parts)
		if again[0].Seq != whole.Seq+1 || again[0].Gen != whole.Gen || whole.Gen == 0 {
			t.Errorf("%s: second copy seq %d gen %d, want seq %d gen %d (not 0)", ear.Name(), again[0].Seq, again[0].Gen, whole.Seq+1, whole.Gen)
		}
		seqs, parts = append(seqs, whole.Seq+1), append(parts, uint64(first.Parts))
	}
	if seqs[0] != seqs[1] {
		t.Errorf("one announcement, sequence numbers %d and %d", seqs[0], seqs[1])
	}
	if out != 2*(parts[0]+parts[1]) || parts[1] <= parts[0] {
		t.Errorf("%d datagrams counted out; received %d on multicast (budget 1472) and %d on gossip (600): "+
			"want twice the sum, and more parts where the budget is smaller", out, parts[0], parts[1])
	}

	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Bye(); err != nil {
		t.Fatal(err)
	}
	for _, ear := range []*peertest.Endpoint{mear, gear} {
		ms := listen(t, ear, 2)
		if ms[0].Kind != wire.KindPing || ms[0].Seq != seqs[0]+1 || ms[1].Kind != wire.KindBye || ms[1].Seq != seqs[0]+2 {
			t.Errorf("%s: got %v %d, %v %d; want ping %d, bye %d", ear.Name(), ms[0].Kind, ms[0].Seq, ms[1].Kind, ms[1].Seq,
				seqs[0]+1, seqs[0]+2)
		}
	}
}

// TestSendFailsOnOneTransport: a transport that cannot send does not keep
// the message from the others, and the error names it.
func TestSendFailsOnOneTransport(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "me", Hostname: "me-name"})
	mnet, gnet := twoNetworks(t, 0, 0)
	broken := endpoint(t, mnet, "me", selfAddr)
	s := New(inv, Options{Identity: Identity{HostID: "me", Hostname: "me-name", BootID: "b1"}, Interval: time.Second},
		broken, endpoint(t, gnet, "me", selfAddr))
	gear := endpoint(t, gnet, "ear", peerAddr)
	broken.Close()
	err := s.Ping(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "multicast: ") || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Ping with a closed transport: %v, want an error naming it", err)
	}
	if ms := listen(t, gear, 1); ms[0].Kind != wire.KindPing {
		t.Errorf("the other transport got %v, want the ping", ms[0].Kind)
	}
	if out := s.Stats().Out; out != 1 {
		t.Errorf("%d datagrams counted out, want 1", out)
	}
}

// TestReceivesOnEveryTransport: peers are heard on every transport, and a
// message heard on two is applied once.
func TestReceivesOnEveryTransport(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	mnet, gnet := twoNetworks(t, 0, 0)
	mself, gself := endpoint(t, mnet, "self", selfAddr), endpoint(t, gnet, "self", selfAddr)
	s := New(inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"}, Interval: time.Second}, mself, gself)
	run(t, s)
	a := endpoint(t, mnet, "a", netip.MustParseAddr("10.77.0.2"))
	b := endpoint(t, gnet, "b", netip.MustParseAddr("192.0.2.3"))
	ag := endpoint(t, gnet, "a", netip.MustParseAddr("192.0.2.2")) // a on the gossip transport too

	one := datagram(t, msg(wire.KindAnnounce, "a", 5, diskstate.Disk{Device: "/dev/sda1", UUID: "ua"}), nil)
	a.Send(one)
	b.Send(datagram(t, msg(wire.KindAnnounce, "b", 9, diskstate.Disk{Device: "/dev/sdb1", UUID: "ub"}), nil))
	idle(t, mself)
	idle(t, gself)
	ag.Send(one) // the same announcement, now on gossip
	idle(t, gself)

	peers, via := map[string]string{}, map[string]string{}
	for _, p := range inv.Peers() {
		peers[p.HostID], via[p.HostID] = p.Address, p.Via
	}
	if via["a"] != "both" || via["b"] != "gossip" {
		t.Errorf("via %v, want a heard on both, b on gossip", via)
	}
	if len(peers) != 2 || peers["a"] != "10.77.0.2" || peers["b"] != "192.0.2.3" {
		t.Errorf("peers %v, want a at 10.77.0.2 (multicast) and b at 192.0.2.3 (gossip)", peers)
	}
	if n := len(inv.Disks()); n != 2 {
		t.Errorf("%d disks, want 2", n)
	}
	if st := s.Stats(); st.In != 3 || st.Drops[DropDuplicate] != 1 || st.Drops[DropReplay] != 0 || st.Dropped != 1 {
		t.Errorf("stats %+v: want 3 in, the second copy dropped as a duplicate (not a replay)", st)
	}
	// The same copy again on gossip is a replay: gossip has delivered it.
	ag.Send(one)
	idle(t, gself)
	if st := s.Stats(); st.Drops[DropReplay] != 1 {
		t.Errorf("stats %+v: want a second copy on the same transport dropped as a replay", st)
	}
}

// TestReceiveStops: Receive returns nil when its context ends, having
// closed every transport; a transport that fails ends the other loops and
// Receive returns its error.
func TestReceiveStops(t *testing.T) {
	for _, c := range []struct {
		name string
		stop func(cancel context.CancelFunc, m, g *peertest.Endpoint)
		want string // "": no error
	}{
		{"context ends", func(cancel context.CancelFunc, _, _ *peertest.Endpoint) { cancel() }, ""},
		{"a transport closes", func(_ context.CancelFunc, _, g *peertest.Endpoint) { g.Close() }, "receiving on gossip: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
			mnet, gnet := twoNetworks(t, 0, 0)
			m, g := endpoint(t, mnet, "self", selfAddr), endpoint(t, gnet, "self", selfAddr)
			s := New(inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"}, Interval: time.Second}, m, g)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Receive(ctx) }()
			idle(t, m) // both loops are running
			idle(t, g)
			c.stop(cancel, m, g)
			switch err := testbed.Await(t, done, 10*time.Second, "return of Receive"); {
			case c.want == "" && err != nil:
				t.Errorf("Receive: %v, want nil", err)
			case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, net.ErrClosed)):
				t.Errorf("Receive: %v, want an error starting %q that wraps net.ErrClosed", err, c.want)
			}
			for _, e := range []*peertest.Endpoint{m, g} {
				if _, err := e.Send([]byte("x")); !errors.Is(err, net.ErrClosed) {
					t.Errorf("%s is still open after Receive returned", e.Name())
				}
			}
		})
	}
}

// TestDropLogNamesTransport: a dropped datagram is logged with its sender
// and the transport it came on, once a minute per reason.
func TestDropLogNamesTransport(t *testing.T) {
	var logged testbed.LockedBuffer
	inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	gnet := peertest.NewNetwork("gossip", 0)
	t.Cleanup(gnet.Close)
	self := endpoint(t, gnet, "self", selfAddr)
	s := New(inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"}, Interval: time.Second,
		Log: slog.New(slog.NewTextHandler(&logged, nil))}, self)
	run(t, s)
	other := endpoint(t, gnet, "other", peerAddr)
	other.Send([]byte("garbage"))
	other.Send([]byte("more garbage"))
	idle(t, self)
	out := logged.String()
	if !strings.Contains(out, "reason=magic from=10.77.0.2 transport=gossip") || strings.Count(out, "\n") != 1 {
		t.Errorf("log:\n%s\nwant one line for reason magic, from 10.77.0.2 on gossip", out)
	}
	if st := s.Stats(); st.Drops["magic"] != 2 {
		t.Errorf("drops %v, want 2 magic", st.Drops)
	}
}

// lossy is a Service hearing a peer on a network whose filter the test
// sets, and that peer's endpoint.
func lossy(t *testing.T) (*Service, *inventory.Inventory, *peertest.Network, *peertest.Endpoint, *peertest.Endpoint) {
	t.Helper()
	inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	n := peertest.NewNetwork("mem", 1200)
	t.Cleanup(n.Close)
	self := endpoint(t, n, "self", selfAddr)
	s := New(inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"}, Interval: time.Second}, self)
	run(t, s)
	return s, inv, n, self, endpoint(t, n, "peer", peerAddr)
}

// sendAnnouncement sends host's announcement of disks disks from e, cut at
// e's budget, and returns how many datagrams carried it.
func sendAnnouncement(t *testing.T, e *peertest.Endpoint, host string, seq uint64, disks int) int {
	t.Helper()
	var ds []diskstate.Disk
	for i := range disks {
		ds = append(ds, diskstate.Disk{Device: fmt.Sprintf("/dev/fake%03d", i), UUID: fmt.Sprint(i), Label: strings.Repeat("x", 40)})
	}
	grams, err := wire.Encode(msg(wire.KindAnnounce, host, seq, ds...), e.Budget(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grams {
		if _, err := e.Send(g); err != nil {
			t.Fatal(err)
		}
	}
	return len(grams)
}

// TestLostPartNeverHalfApplied: an announcement one of whose datagrams is
// lost is not applied at all; the next one is.
func TestLostPartNeverHalfApplied(t *testing.T) {
	s, inv, n, self, other := lossy(t)
	sent := 0
	n.SetFilter(func(d peertest.Datagram) peertest.Fate {
		sent++ // one sender: no concurrent calls
		return peertest.Fate{Drop: sent == 2}
	})
	if parts := sendAnnouncement(t, other, "peer", 1, 40); parts < 3 {
		t.Fatalf("%d parts, want at least 3", parts)
	}
	idle(t, self)
	if d, p := len(inv.Disks()), len(inv.Peers()); d != 0 || p != 0 {
		t.Fatalf("%d disks of %d peers after a part was lost, want none", d, p)
	}
	sendAnnouncement(t, other, "peer", 2, 40)
	idle(t, self)
	if d := len(inv.Disks()); d != 40 {
		t.Fatalf("%d disks after the next announcement, want 40", d)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Errorf("drops %v, want none", st.Drops)
	}
}

// TestDuplicatedAndReorderedParts: parts that arrive twice, and out of
// order, still make one whole announcement.
func TestDuplicatedAndReorderedParts(t *testing.T) {
	_, inv, n, self, other := lossy(t)
	sent := 0
	n.SetFilter(func(d peertest.Datagram) peertest.Fate {
		sent++
		if sent == 1 {
			return peertest.Fate{Copies: 1, Delay: 50 * time.Millisecond} // the first part, twice, last
		}
		return peertest.Fate{Copies: 1}
	})
	parts := sendAnnouncement(t, other, "peer", 1, 40)
	idle(t, self)
	if d := len(inv.Disks()); d != 40 || parts < 3 {
		t.Fatalf("%d disks from %d parts, each twice, the first last; want 40", d, parts)
	}
}
