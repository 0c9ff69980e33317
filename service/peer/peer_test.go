package peer

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/wire"
)

func TestReceiveAppliesAndCounts(t *testing.T) {
	s, inv, _, feed := receiver(t, nil)
	feed(datagram(t, msg(wire.KindAnnounce, "peer", 5, diskstate.Disk{Device: "/dev/loop1", UUID: "u", Label: "L", Type: "ext4"}), nil))
	if d := inv.Disks(); len(d) != 1 || d[0].Hostname != "peer-name" || d[0].Label != "L" {
		t.Fatalf("announcement not applied: %+v", d)
	}
	if p := inv.Peers(); len(p) != 1 || p[0].Address != "10.77.0.2" || p[0].Authenticated {
		t.Fatalf("peer %+v", p)
	}
	feed(datagram(t, msg(wire.KindAnnounce, "peer", 5), nil))  // replay
	feed(datagram(t, msg(wire.KindAnnounce, "self", 99), nil)) // our own id
	feed([]byte("garbage"))
	feed([]byte("DSKD\x09\x00"))
	junk := make([]byte, 300)
	rand.Read(junk)
	feed(junk)
	st := s.Stats()
	want := map[string]uint64{DropReplay: 1, DropSelf: 1, "magic": 1, "version": 1}
	for r, n := range want {
		if st.Drops[r] < n {
			t.Errorf("drops[%s] = %d, want %d (all: %v)", r, st.Drops[r], n, st.Drops)
		}
	}
	if st.Dropped != 5 {
		t.Errorf("dropped %d, want 5: %v", st.Dropped, st.Drops)
	}
	if len(inv.Disks()) != 1 {
		t.Fatal("a dropped datagram changed the inventory")
	}
	feed(datagram(t, msg(wire.KindBye, "peer", 6), nil))
	if len(inv.Disks()) != 0 || len(inv.Peers()) != 0 {
		t.Fatal("bye did not remove the peer")
	}
}

func TestPingAnswerLimits(t *testing.T) {
	_, inv, pings, feed := receiver(t, nil)
	seq := uint64(1)
	announce := func(host string) {
		seq++
		feed(datagram(t, msg(wire.KindAnnounce, host, seq), nil))
	}
	ping := func(host string) {
		seq++
		feed(datagram(t, msg(wire.KindPing, host, seq), nil))
	}
	// 100 pings within a second from one host: one answer.
	announce("a")
	for range 100 {
		ping("a")
	}
	if n := pings.Load(); n != 1 {
		t.Fatalf("100 pings from one host got %d answers, want 1", n)
	}
	// Pings from 100 different hosts: the total rate cap holds.
	pings.Store(0)
	for i := range 100 {
		h := string(rune('A'+i%26)) + string(rune('a'+i/26))
		announce(h)
		ping(h)
	}
	if n := pings.Load(); n > PingRateLimit {
		t.Fatalf("pings from 100 hosts got %d answers, want at most %d", n, PingRateLimit)
	}
	if len(inv.Peers()) != 101 {
		t.Fatalf("%d peers", len(inv.Peers()))
	}
}

func TestSealedOnlyWithKey(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	ring, err := wire.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	s, inv, _, feed := receiver(t, ring)
	feed(datagram(t, msg(wire.KindAnnounce, "rogue", 1, diskstate.Disk{Device: "/dev/x", UUID: "u"}), nil))
	if len(inv.Disks()) != 0 || s.Stats().Drops["unsealed"] != 1 {
		t.Fatalf("unsealed datagram accepted by a keyed host: %v", s.Stats().Drops)
	}
	feed(datagram(t, msg(wire.KindAnnounce, "friend", 1, diskstate.Disk{Device: "/dev/x", UUID: "u"}), ring))
	if p := inv.Peers(); len(p) != 1 || !p[0].Authenticated {
		t.Fatalf("sealed announcement: %+v", p)
	}
}

// TestEncodeLeavesOutDisksThatCannotFit: a local disk that fits no
// datagram is left out of the announcement; the others are announced.
func TestEncodeLeavesOutDisksThatCannotFit(t *testing.T) {
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("/srv/a/rather/long/path/to/a/bind/mount/number/%02d", i))
	}
	inv := inventory.New(inventory.Options{HostID: "me", Hostname: "me-name"})
	inv.SetLocal([]diskstate.Disk{
		{Device: "/dev/sda1", UUID: "u1"},
		{Device: "/dev/sdb1", UUID: "u2", Mountpoints: many}, // ~1.5 kB: fits no datagram
		{Device: "/dev/sdc1", UUID: "u3"},
	}, nil)
	n := peertest.NewNetwork("mem", 1200)
	t.Cleanup(n.Close)
	s := New(inv, Options{Identity: Identity{HostID: "me", Hostname: "me-name", BootID: "b1"}, Interval: time.Second},
		endpoint(t, n, "me", selfAddr))
	ear := endpoint(t, n, "ear", peerAddr)
	if err := s.Announce(context.Background()); err != nil {
		t.Fatal(err)
	}
	grams := s.Stats().Out
	asm := wire.NewAssembler(4, time.Second)
	buf := make([]byte, wire.MaxDatagram)
	var got wire.Message
	for range grams {
		n, _, err := ear.Recv(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > 1200 {
			t.Errorf("datagram of %d bytes, over the budget of 1200", n)
		}
		d, err := wire.Decode(buf[:n], nil)
		if err != nil {
			t.Fatal(err)
		}
		if whole, ok := asm.Add(d, time.Now()); ok {
			got = whole
		}
	}
	if len(got.Disks) != 2 || got.Disks[0].Device != "/dev/sda1" || got.Disks[1].Device != "/dev/sdc1" {
		t.Fatalf("announced %+v, want sda1 and sdc1", got.Disks)
	}
}

func TestDiskCapCounted(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me", MaxDisks: 1})
	s, feed := hear(t, inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"}, Interval: time.Second,
		AssemblerPending: 4})
	two := msg(wire.KindAnnounce, "peer", 1, diskstate.Disk{Device: "/dev/a", UUID: "1"}, diskstate.Disk{Device: "/dev/b", UUID: "2"})
	feed(datagram(t, two, nil))
	if st := s.Stats(); st.Drops[DropDiskCap] != 1 || len(inv.Peers()) != 0 {
		t.Fatalf("drops %v, %d peers: want one diskcap drop and no peer", st.Drops, len(inv.Peers()))
	}
}
