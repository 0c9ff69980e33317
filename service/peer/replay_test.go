package peer

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/wire"
)

func testRing(t *testing.T) *wire.Keyring {
	t.Helper()
	key := make([]byte, wire.KeySize)
	rand.Read(key)
	ring, err := wire.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// capture runs a sender "beta" whose clock is off by offset, lets it
// announce, ping and announce again, and returns the datagrams it sent,
// in order.
func capture(t *testing.T, ring *wire.Keyring, offset time.Duration) [][]byte {
	t.Helper()
	n := peertest.NewNetwork("mem", 0)
	t.Cleanup(n.Close)
	local := inventory.New(inventory.Options{HostID: "beta", Hostname: "beta"})
	local.SetLocal([]diskstate.Disk{{Device: "/dev/sdz1", UUID: "u-detached", Label: "DETACHED"}}, nil)
	s := New(local, Options{Identity: Identity{HostID: "beta", Hostname: "beta", BootID: "beta-1"},
		Interval: time.Second, Keyring: ring, Now: func() time.Time { return time.Now().Add(offset) }},
		endpoint(t, n, "beta", peerAddr))
	ear := endpoint(t, n, "ear", selfAddr)
	ctx := context.Background()
	for _, send := range []func(context.Context) error{s.Announce, s.Ping, s.Announce} {
		if err := send(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var out [][]byte
	buf := make([]byte, wire.MaxDatagram)
	for range s.Stats().Out {
		k, _, err := ear.Recv(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[:k]...))
	}
	return out
}

// TestClockSkewWindow: a sealed message sent further than MaxClockSkew
// from the receiver's clock, either way, is dropped as stale and shows
// nothing; within it, it is applied.
func TestClockSkewWindow(t *testing.T) {
	ring := testRing(t)
	cases := []struct {
		name   string
		offset time.Duration
		held   bool
	}{
		{"now", 0, true},
		{"4s behind", -4 * time.Second, true},
		{"4s ahead", 4 * time.Second, true},
		{"captured 6s ago", -6 * time.Second, false},
		{"an hour ago", -time.Hour, false},
		{"6s ahead", 6 * time.Second, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			grams := capture(t, ring, c.offset)
			inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
			s, feed := hear(t, inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"},
				Interval: time.Second, Keyring: ring, MaxClockSkew: 5 * time.Second})
			for _, g := range grams {
				feed(g)
			}
			st := s.Stats()
			if held := len(inv.Peers()) == 1; held != c.held {
				t.Fatalf("beta held %v, want %v (drops %v)", held, c.held, st.Drops)
			}
			want := uint64(0)
			if !c.held {
				want = uint64(len(grams))
			}
			if st.Drops[DropStale] != want || st.Dropped != want {
				t.Errorf("drops %v, want %d stale and nothing else", st.Drops, want)
			}
		})
	}
}

// TestUnsealedAndOldNotTimeChecked: without a key nothing is checked
// against the clock (anyone can forge the time anyway), and a sealed
// message without a send time, from an older diskd, is accepted.
func TestUnsealedAndOldNotTimeChecked(t *testing.T) {
	unsealed := capture(t, nil, -time.Hour)
	inv := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	_, feed := hear(t, inv, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"},
		Interval: time.Second, MaxClockSkew: time.Second})
	for _, g := range unsealed {
		feed(g)
	}
	if len(inv.Peers()) != 1 {
		t.Fatal("an unsealed announcement with an old time was refused")
	}

	ring := testRing(t)
	old := wire.Message{Kind: wire.KindAnnounce, HostID: "old", Hostname: "old", BootID: "o1", Seq: 9,
		Interval: time.Second, Disks: []diskstate.Disk{{Device: "/dev/sda1"}}} // no SentAt, no Gen
	sealed := datagram(t, old, ring)
	inv2 := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	s2, feed2 := hear(t, inv2, Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"},
		Interval: time.Second, Keyring: ring, MaxClockSkew: time.Second})
	feed2(sealed)
	if p := inv2.Peers(); len(p) != 1 || !p[0].Authenticated {
		t.Fatalf("a sealed announcement without a time: peers %+v, drops %v", p, s2.Stats().Drops)
	}
}

// TestReplayAfterRestart: a capture of a peer's sealed datagrams,
// replayed in order to a receiver that has just restarted, shows the peer
// again within the clock-skew window, but not to a receiver that restored
// its marks; and every datagram of the capture is refused once its time
// is out of the window.
func TestReplayAfterRestart(t *testing.T) {
	ring := testRing(t)
	grams := capture(t, ring, 0)
	opts := Options{Identity: Identity{HostID: "self", Hostname: "me", BootID: "i1"},
		Interval: time.Second, Keyring: ring, MaxClockSkew: 5 * time.Second}

	// The receiver before its restart hears the real thing and saves its marks.
	before := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	_, feed := hear(t, before, opts)
	for _, g := range grams {
		feed(g)
	}
	if len(before.Peers()) != 1 {
		t.Fatal("beta not held before the restart")
	}
	marks := before.Marks()
	if m := marks["beta"]; m.BootID != "beta-1" || m.Seq == 0 || m.SentAt.IsZero() ||
		time.Since(m.SentAt) > time.Minute {
		t.Fatalf("beta's mark %+v", m)
	}

	// Restarted without its marks, within the window: the capture is
	// accepted (that is what the window bounds).
	bare := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	_, feed = hear(t, bare, opts)
	for _, g := range grams {
		feed(g)
	}
	if len(bare.Peers()) != 1 {
		t.Fatal("within the window, a receiver without marks should accept the capture")
	}

	// Restarted with its marks restored: refused as replays.
	restored := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	restored.RestoreMarks(marks)
	s, feed := hear(t, restored, opts)
	for _, g := range grams {
		feed(g)
	}
	if len(restored.Peers()) != 0 {
		t.Fatal("a receiver with restored marks showed a replayed peer")
	}
	if st := s.Stats(); st.Drops[DropReplay] != uint64(len(grams)) {
		t.Errorf("drops %v, want %d replays", st.Drops, len(grams))
	}

	// The same capture, as old as the window: refused by anyone.
	late := inventory.New(inventory.Options{HostID: "self", Hostname: "me"})
	s, feed = hear(t, late, Options{Identity: opts.Identity, Interval: time.Second, Keyring: ring,
		MaxClockSkew: 5 * time.Second, Now: time.Now})
	stale := capture(t, ring, -6*time.Second)
	for _, g := range stale {
		feed(g)
	}
	if len(late.Peers()) != 0 || s.Stats().Drops[DropStale] != uint64(len(stale)) {
		t.Fatalf("a capture older than the window: peers %d, drops %v", len(late.Peers()), s.Stats().Drops)
	}
}
