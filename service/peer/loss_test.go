package peer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/testbed/testclock"
	"github.com/diskd/diskd/service/wire"
)

// link is a sender ("beta", with disks) and a receiver on one in-memory
// network, announcing every second; the receiver's inventory runs on
// clk, so that a round is: announce, wait until the receiver handled
// everything, advance the clock one interval, expire.
type link struct {
	net      *peertest.Network
	sender   *Service
	local    *inventory.Inventory
	receiver *Service
	inv      *inventory.Inventory
	rx       *peertest.Endpoint
	clk      *testclock.Clock
}

const linkInterval = time.Second

func newLink(t *testing.T, disks []diskstate.Disk, ring *wire.Keyring) *link {
	t.Helper()
	l := &link{net: peertest.NewNetwork("mem", peertest.DefaultBudget), clk: testclock.New(time.Unix(1_800_000_000, 0))}
	t.Cleanup(l.net.Close)
	l.local = inventory.New(inventory.Options{HostID: "beta", Hostname: "beta"})
	l.local.SetLocal(disks, nil)
	l.sender = New(l.local, Options{Identity: Identity{HostID: "beta", Hostname: "beta", BootID: "beta-1"},
		Interval: linkInterval, Keyring: ring}, endpoint(t, l.net, "beta", peerAddr))
	l.inv = inventory.New(inventory.Options{HostID: "alpha", Hostname: "alpha", Now: l.clk.Now})
	l.rx = endpoint(t, l.net, "alpha", selfAddr)
	l.receiver = New(l.inv, Options{Identity: Identity{HostID: "alpha", Hostname: "alpha", BootID: "alpha-1"},
		Interval: linkInterval, Keyring: ring}, l.rx)
	run(t, l.receiver)
	return l
}

// round announces once, lets the receiver handle it, then lets one
// interval pass on the receiver's clock and expires the peers it has not
// heard from within their timeout. It reports whether beta is then held.
func (l *link) round(t *testing.T) bool {
	t.Helper()
	if err := l.sender.Announce(context.Background()); err != nil {
		t.Fatal(err)
	}
	idle(t, l.rx)
	l.clk.Add(linkInterval)
	l.inv.Expire()
	return len(l.inv.Peers()) == 1
}

// dropPct drops each datagram with probability pct/100, from a generator
// seeded with seed, so that a test sees the same losses every run.
func dropPct(pct int, seed uint64) func(peertest.Datagram) peertest.Fate {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	return func(peertest.Datagram) peertest.Fate {
		mu.Lock()
		defer mu.Unlock()
		return peertest.Fate{Drop: r.IntN(100) < pct}
	}
}

// TestLossyLinkKeepsPeer: a peer of 300 disks (20-odd datagrams an
// announcement) stays in the view at every moment of 30 intervals, at 5 %
// and at 20 % loss, since any datagram of it keeps it alive and parts of
// its unchanged list combine across rounds; its disks arrive whole.
func TestLossyLinkKeepsPeer(t *testing.T) {
	for _, pct := range []int{5, 20} {
		t.Run(fmt.Sprintf("%d%%", pct), func(t *testing.T) {
			disks := testbed.FakeDisks(1, 300)
			l := newLink(t, disks, nil)
			l.net.SetFilter(dropPct(pct, uint64(pct)))
			first := -1
			for i := range 30 {
				held := l.round(t)
				if held && first < 0 {
					first = i
				}
				if first >= 0 && !held {
					t.Fatalf("%d%% loss: beta vanished in round %d (it arrived in round %d)", pct, i, first)
				}
			}
			if first < 0 || first > 2 {
				t.Fatalf("%d%% loss: beta arrived in round %d, want within the first 3", pct, first)
			}
			if n := len(l.inv.Disks()); n != 300 {
				t.Errorf("%d disks of beta held, want 300", n)
			}
			if st := l.receiver.Stats(); st.Drops[DropReplay] != 0 {
				t.Errorf("drops %v: lost datagrams are not replays", st.Drops)
			}
		})
	}
}

// TestChangeArrivesUnderLoss: at 20 % loss, a change to the peer's list
// reaches the receiver within 3 announce intervals, that is within 4
// announcements (the one the change triggers and the periodic ones of the
// next 3 intervals), in each of 40 runs with different losses: the first
// announcements of a new generation go out twice.
func TestChangeArrivesUnderLoss(t *testing.T) {
	for seed := range uint64(40) {
		disks := testbed.FakeDisks(1, 300)
		l := newLink(t, disks, nil)
		for range 3 { // a steady state before the change
			l.round(t)
		}
		if len(l.inv.Peers()) != 1 {
			t.Fatalf("seed %d: beta not held before the loss starts", seed)
		}
		l.net.SetFilter(dropPct(20, 1000+seed))
		disks[150].Label = "CHANGED"
		l.local.SetLocal(disks, nil)
		arrived := -1
		for i := range 6 {
			if !l.round(t) {
				t.Fatalf("seed %d: beta vanished in round %d after the change", seed, i)
			}
			if d := inventory.FindDisks(l.inv.Disks(), "CHANGED"); len(d) == 1 && d[0].HostID == "beta" {
				arrived = i
				break
			}
		}
		if arrived < 0 || arrived > 3 {
			grams, _ := wire.Encode(wire.Message{Kind: wire.KindAnnounce, HostID: "beta", Hostname: "beta", BootID: "b", Interval: time.Second, Disks: disks}, peertest.DefaultBudget, nil)
			t.Logf("%d parts, stats %+v", len(grams), l.receiver.Stats())
			t.Fatalf("seed %d: the change arrived in round %d, want within 4 announcements", seed, arrived)
		}
		if n := len(l.inv.Disks()); n != 300 {
			t.Fatalf("seed %d: %d disks held after the change, want 300", seed, n)
		}
	}
}

// partOf decodes the part index of an unsealed announcement datagram, or
// -1 for anything else.
func partOf(b []byte) int {
	m, err := wire.Decode(b, nil)
	if err != nil || m.Kind != wire.KindAnnounce {
		return -1
	}
	return m.Part
}

// TestPartsCombineAcrossRounds: an announcement of two parts whose first
// round loses part 1 and second round loses part 0 is complete after the
// second round; a sender of an older diskd (no generation) never completes
// that way, which is what made peers vanish on lossy links.
func TestPartsCombineAcrossRounds(t *testing.T) {
	disks := testbed.FakeDisks(2, 16) // two datagrams at an Ethernet budget
	l := newLink(t, disks, nil)
	var mu sync.Mutex
	round := 0
	l.net.SetFilter(func(d peertest.Datagram) peertest.Fate {
		mu.Lock()
		defer mu.Unlock()
		return peertest.Fate{Drop: partOf(d.Data) == 1-round%2}
	})
	// The first three announcements go out twice (a new generation): with
	// the same part lost in both copies.
	l.round(t)
	if len(l.inv.Peers()) != 0 {
		t.Fatal("beta held although part 1 of every copy was lost")
	}
	mu.Lock()
	round++
	mu.Unlock()
	if !l.round(t) {
		t.Fatal("beta not held after part 0 and part 1 arrived in different rounds")
	}
	if n := len(l.inv.Disks()); n != 16 {
		t.Fatalf("%d disks, want 16", n)
	}
	if st := l.receiver.Stats(); st.Dropped != 0 {
		t.Errorf("drops %v", st.Drops)
	}
}

// TestOldSenderPartsDoNotCombine: an announcement without a generation,
// as an older diskd sends, is still grouped by its sequence number: its
// parts from different rounds do not combine, and each complete one is
// applied.
func TestOldSenderPartsDoNotCombine(t *testing.T) {
	_, inv, _, feed := receiver(t, nil)
	disks := testbed.FakeDisks(3, 16)
	old := func(seq uint64) [][]byte {
		m := msg(wire.KindAnnounce, "old", seq, disks...)
		g, err := wire.Encode(m, peertest.DefaultBudget, nil)
		if err != nil || len(g) != 2 {
			t.Fatalf("encode: %v, %d datagrams, want 2", err, len(g))
		}
		return g
	}
	r1, r2 := old(10), old(11)
	feed(r1[0])
	feed(r2[1])
	if len(inv.Peers()) != 0 {
		t.Fatal("parts of two announcements without a generation combined")
	}
	feed(r2[0])
	if len(inv.Disks()) != 16 {
		t.Fatalf("%d disks after a whole announcement, want 16", len(inv.Disks()))
	}
}

// TestReorderedAndDuplicated: with every datagram duplicated and delayed
// at random (so reordered), a peer whose list changes every round ends up
// with its last list, is never shown a mixture of two lists, and each
// duplicate is refused once as a replay.
func TestReorderedAndDuplicated(t *testing.T) {
	disks := testbed.FakeDisks(4, 100)
	l := newLink(t, disks, nil)
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(7, 7))
	l.net.SetFilter(func(peertest.Datagram) peertest.Fate {
		mu.Lock()
		defer mu.Unlock()
		return peertest.Fate{Copies: 1, Delay: time.Duration(r.IntN(20)) * time.Millisecond}
	})
	sub := l.inv.Subscribe(0)
	defer sub.Close()
	for v := range 8 {
		for i := range disks {
			disks[i].Label = fmt.Sprintf("V%d-%03d", v, i)
		}
		l.local.SetLocal(disks, nil)
		l.round(t)
		// Whatever arrived, the held list is one version, whole.
		held := l.inv.Disks()
		if len(held) != 0 {
			version := held[0].Label[:2]
			for _, d := range held {
				if d.Label[:2] != version {
					t.Fatalf("round %d: a mixture of two lists held: %s and %s", v, version, d.Label)
				}
			}
			if len(held) != 100 {
				t.Fatalf("round %d: %d disks held, want 100", v, len(held))
			}
		}
	}
	held := l.inv.Disks()
	if len(held) != 100 || held[0].Label[:2] != "V7" {
		t.Fatalf("after the last round: %d disks, first %+v; want the 100 of version 7", len(held), held)
	}
	st := l.receiver.Stats()
	if st.Drops[DropReplay] < st.In/2 {
		t.Errorf("drops %v of %d in: want at least the duplicates (half) refused as replays", st.Drops, st.In)
	}
}

// TestRepeatedPartsOnlyTouch: a repeated announcement of an unchanged list
// keeps the peer alive; a sender that reuses a generation for another list
// is not believed (its bytes differ, so they are decoded and applied); and
// a peer lost meanwhile comes back with the same generation.
func TestRepeatedPartsOnlyTouch(t *testing.T) {
	disks := testbed.FakeDisks(5, 16)
	l := newLink(t, disks, nil)
	for range 4 {
		if !l.round(t) {
			t.Fatal("beta not held")
		}
	}
	// The same generation with other bytes: the sender's bug, not ours.
	// Its first part repeats the known bytes (and only keeps beta alive);
	// its second does not, which makes the generation untrusted, so the
	// next announcement is decoded whole.
	other := endpoint(t, l.net, "forger", netip.MustParseAddr("10.77.0.3"))
	var grams [][]byte
	for i := range uint64(2) {
		m := wire.Message{Kind: wire.KindAnnounce, HostID: "beta", Hostname: "beta", BootID: "beta-1",
			Seq: uint64(time.Now().UnixMicro()) + 1e9 + i, Interval: linkInterval, Gen: 1, Disks: disks[:15]}
		var err error
		if grams, err = wire.Encode(m, peertest.DefaultBudget, nil); err != nil || len(grams) != 2 {
			t.Fatalf("encode: %v (%d datagrams, want 2)", err, len(grams))
		}
		for _, g := range grams {
			other.Send(g)
		}
		idle(t, l.rx)
	}
	if n := len(l.inv.Disks()); n != 15 {
		t.Fatalf("%d disks after a list of 15 under the known generation, want 15 (%d datagrams, stats %+v)", n, len(grams), l.receiver.Stats())
	}
	// Lost, then heard again with an unchanged list.
	l.clk.Add(10 * linkInterval)
	l.inv.Expire()
	if len(l.inv.Peers()) != 0 {
		t.Fatal("beta not lost after 10 silent intervals")
	}
	l.sender.seq.Add(2e9) // past the forger's numbers
	if !l.round(t) || len(l.inv.Disks()) != 16 {
		t.Fatalf("beta not back with its 16 disks: %d", len(l.inv.Disks()))
	}
}

// TestFreshCopies: the first freshRounds announcements of a list of
// several datagrams go out twice, later ones once, and a list of one
// datagram always once.
func TestFreshCopies(t *testing.T) {
	for _, disks := range []int{1, 300} {
		l := newLink(t, testbed.FakeDisks(6, disks), nil)
		var outs []uint64
		for range freshRounds + 2 {
			before := l.sender.Stats().Out
			l.round(t)
			outs = append(outs, l.sender.Stats().Out-before)
		}
		parts := outs[len(outs)-1]
		if (disks > 1) != (parts > 1) {
			t.Fatalf("%d disks: %d datagrams an announcement", disks, parts)
		}
		for i, got := range outs {
			want := parts
			if i < freshRounds && parts > 1 {
				want *= 2
			}
			if got != want {
				t.Errorf("%d disks (%d datagrams), announcement %d: %d datagrams sent, want %d", disks, parts, i, got, want)
			}
		}
	}
}
