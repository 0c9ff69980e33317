package multicast_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/multicast"
	"github.com/diskd/diskd/service/peer"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/testbed"
)

// Conn is a peer.Transport.
var _ peer.Transport = (*multicast.Conn)(nil)

var group = netip.MustParseAddrPort("239.255.77.77:4277")

// openOn opens a Conn on testbed.Interface in h's network namespace.
func openOn(t *testing.T, h *testbed.Host) *multicast.Conn {
	t.Helper()
	var c *multicast.Conn
	err := h.InNetns(func() error {
		var err error
		c, err = multicast.Open(multicast.ConnOptions{Groups: []netip.AddrPort{group}, Interfaces: []string{testbed.Interface}, TTL: 1})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTransportBetweenNamespaces: Conn keeps the Transport contract on
// real multicast between two simulated hosts, and the peer protocol runs
// over it.
func TestTransportBetweenNamespaces(t *testing.T) {
	lab := testbed.NewT(t)
	alpha := lab.AddHostT(t, "alpha")
	beta := lab.AddHostT(t, "beta")
	a, b := openOn(t, alpha), openOn(t, beta)
	if a.Name() != "multicast" || a.Budget() != 1500-28 {
		t.Errorf("name %q, budget %d; want multicast, 1472 (veth MTU 1500)", a.Name(), a.Budget())
	}
	if k, err := a.Send([]byte("hello")); err != nil || k != 1 {
		t.Fatalf("Send = %d, %v; want 1 interface", k, err)
	}
	if got, src := peertest.RecvWithin(t, "beta", b); got != "hello" || src.String() != alpha.Addr {
		t.Fatalf("beta got %q from %s, want \"hello\" from %s", got, src, alpha.Addr)
	}

	// The protocol: alpha announces its disk, beta lists it; alpha leaves.
	invA := inventory.New(inventory.Options{HostID: "alpha-id", Hostname: "alpha"})
	invA.SetLocal([]diskstate.Disk{{Device: "/dev/loop7", UUID: "u-7", Label: "ALPHA", Type: "ext4"}}, nil)
	invB := inventory.New(inventory.Options{HostID: "beta-id", Hostname: "beta"})
	sa := peer.New(invA, peer.Options{Identity: peer.Identity{HostID: "alpha-id", Hostname: "alpha", BootID: "a1"}, Interval: time.Second}, a)
	sb := peer.New(invB, peer.Options{Identity: peer.Identity{HostID: "beta-id", Hostname: "beta", BootID: "b1"}, Interval: time.Second}, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := peertest.Serve(t, sb.Receive)
	if err := sa.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	ok, desc := testbed.Poll(10*time.Second, func() (bool, string) {
		p, d := invB.Peers(), invB.Disks()
		return len(p) == 1 && p[0].Address == alpha.Addr && len(d) == 1 && d[0].Label == "ALPHA",
			fmt.Sprintf("peers %+v, disks %+v", p, d)
	})
	if !ok {
		t.Fatalf("beta did not list alpha's disk: %s", desc)
	}
	if err := sa.Bye(); err != nil {
		t.Fatal(err)
	}
	if ok, desc := testbed.Poll(10*time.Second, func() (bool, string) {
		return len(invB.Peers()) == 0, fmt.Sprintf("peers %+v", invB.Peers())
	}); !ok {
		t.Fatalf("alpha's goodbye did not remove it: %s", desc)
	}

	// Receive closes the Conn when its context ends; Recv then says so.
	if !stop() {
		t.FailNow()
	}
	if _, _, err := b.Recv(make([]byte, 16)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Recv after Receive closed the Conn: %v, want net.ErrClosed", err)
	}
	if st := sb.Stats(); st.In < 2 || st.Dropped != 0 {
		t.Errorf("beta's stats %+v: want the announcement and the goodbye in, nothing dropped", st)
	}
}
