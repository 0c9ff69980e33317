package peer

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/wire"
)

// The in-memory endpoint is a Transport.
var _ Transport = (*peertest.Endpoint)(nil)

var (
	selfAddr = netip.MustParseAddr("10.77.0.1")
	peerAddr = netip.MustParseAddr("10.77.0.2")
)

func endpoint(t *testing.T, n *peertest.Network, name string, addr netip.Addr) *peertest.Endpoint {
	t.Helper()
	e, err := n.Add(name, addr)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// twoNetworks returns the in-memory networks "multicast" and "gossip",
// with the given budgets (0: the default), closed when the test ends.
func twoNetworks(t *testing.T, multicastBudget, gossipBudget int) (mnet, gnet *peertest.Network) {
	mnet, gnet = peertest.NewNetwork("multicast", multicastBudget), peertest.NewNetwork("gossip", gossipBudget)
	t.Cleanup(mnet.Close)
	t.Cleanup(gnet.Close)
	return mnet, gnet
}

// run runs s.Receive until the test ends, and then checks that it stopped
// without an error.
func run(t *testing.T, s *Service) {
	t.Helper()
	peertest.Serve(t, s.Receive)
}

// idle waits until e has read and handled everything sent to it.
func idle(t *testing.T, e *peertest.Endpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Idle(ctx); err != nil {
		t.Fatal(err)
	}
}

// hear runs a Service for inv on an in-memory network (endpoint "self",
// 10.77.0.1) and returns it with feed, which sends a datagram from another
// endpoint of that network (10.77.0.2) and returns once the Service has
// handled it.
func hear(t *testing.T, inv *inventory.Inventory, opts Options) (*Service, func(b []byte)) {
	t.Helper()
	n := peertest.NewNetwork("mem", 0)
	t.Cleanup(n.Close)
	self := endpoint(t, n, "self", selfAddr)
	other := endpoint(t, n, "peer", peerAddr)
	s := New(inv, opts, self)
	run(t, s)
	return s, func(b []byte) {
		t.Helper()
		if _, err := other.Send(b); err != nil {
			t.Fatal(err)
		}
		idle(t, self)
	}
}

// receiver is a Service that hears datagrams, encoded by the real encoder,
// from a peer at 10.77.0.2 on an in-memory network.
func receiver(t *testing.T, ring *wire.Keyring) (*Service, *inventory.Inventory, *atomic.Int32, func(b []byte)) {
	t.Helper()
	inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	var pings atomic.Int32
	s, feed := hear(t, inv, Options{
		Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"},
		Interval: time.Second, Keyring: ring, AssemblerPending: 16,
		OnPing: func(d time.Duration) {
			if d < 0 || d >= PingReplyDelay {
				t.Errorf("ping reply delay %v outside [0, %v)", d, PingReplyDelay)
			}
			pings.Add(1)
		},
	})
	return s, inv, &pings, feed
}

func datagram(t *testing.T, m wire.Message, ring *wire.Keyring) []byte {
	t.Helper()
	g, err := wire.Encode(m, 1200, ring)
	if err != nil || len(g) != 1 {
		t.Fatalf("encode: %v (%d datagrams)", err, len(g))
	}
	return g[0]
}

func msg(kind wire.Kind, host string, seq uint64, disks ...diskstate.Disk) wire.Message {
	return wire.Message{Kind: kind, HostID: host, Hostname: host + "-name", BootID: "b1", Seq: seq,
		Interval: time.Second, Disks: disks}
}
