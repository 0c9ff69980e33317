package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed/testclock"
)

func newTest(t *testing.T, opts Options) (*Inventory, *testclock.Clock, *Subscription) {
	t.Helper()
	c := testclock.New(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	opts.Now = c.Now
	if opts.HostID == "" {
		opts.HostID, opts.Hostname = "self", "selfhost"
	}
	inv := New(opts)
	sub := inv.Subscribe(0)
	t.Cleanup(sub.Close)
	return inv, c, sub
}

// drain returns the pending events as "kind host device" strings.
func drain(sub *Subscription) []string {
	var out []string
	for {
		select {
		case e := <-sub.C():
			switch e.Kind {
			case PeerJoined, PeerLost:
				out = append(out, fmt.Sprintf("%v %s %s", e.Kind, e.Peer.HostID, e.Reason))
			case DiskChanged:
				out = append(out, fmt.Sprintf("%v %s %s %s", e.Kind, e.Disk.HostID, e.Disk.Device, strings.Join(e.Changed, ",")))
			default:
				out = append(out, fmt.Sprintf("%v %s %s", e.Kind, e.Disk.HostID, e.Disk.Device))
			}
		default:
			return out
		}
	}
}

func disk(dev, uuid, label string, mounts ...string) diskstate.Disk {
	return diskstate.Disk{Device: dev, UUID: uuid, Label: label, Type: "ext4", Mountpoints: mounts}
}

func ann(host string, seq uint64, disks ...diskstate.Disk) Announcement {
	return Announcement{HostID: host, Hostname: host + "-name", BootID: "b1", Seq: seq,
		Interval: 10 * time.Second, Address: "10.0.0.2", Disks: disks}
}

func TestSetLocalEvents(t *testing.T) {
	steps := []struct {
		name  string
		disks []diskstate.Disk
		err   error
		want  []string
		local int
	}{
		{"first scan", []diskstate.Disk{disk("/dev/sda1", "u1", "A"), disk("/dev/sdb1", "u2", "B")}, nil,
			[]string{"appeared self /dev/sda1", "appeared self /dev/sdb1"}, 2},
		{"same again", []diskstate.Disk{disk("/dev/sdb1", "u2", "B"), disk("/dev/sda1", "u1", "A")}, nil, nil, 2},
		{"mounted", []diskstate.Disk{disk("/dev/sda1", "u1", "A", "/mnt/a"), disk("/dev/sdb1", "u2", "B")}, nil,
			[]string{"changed self /dev/sda1 mountpoints"}, 2},
		{"mount order does not matter", []diskstate.Disk{disk("/dev/sda1", "u1", "A", "/mnt/a", "/mnt/a"), disk("/dev/sdb1", "u2", "B")}, nil, nil, 2},
		{"relabelled", []diskstate.Disk{disk("/dev/sda1", "u1", "A2", "/mnt/a"), disk("/dev/sdb1", "u2", "B")}, nil,
			[]string{"changed self /dev/sda1 label"}, 2},
		{"reformatted", []diskstate.Disk{disk("/dev/sda1", "u9", "A2", "/mnt/a"), disk("/dev/sdb1", "u2", "B")}, nil,
			[]string{"disappeared self /dev/sda1", "appeared self /dev/sda1"}, 2},
		{"scan failed keeps the list", nil, errors.New("blkid: no answer"), nil, 2},
		{"detached", []diskstate.Disk{disk("/dev/sdb1", "u2", "B")}, nil, []string{"disappeared self /dev/sda1"}, 1},
	}
	inv, _, sub := newTest(t, Options{})
	for _, s := range steps {
		changed := inv.SetLocal(s.disks, s.err)
		got := drain(sub)
		if !slices.Equal(got, s.want) {
			t.Fatalf("%s: events %q, want %q", s.name, got, s.want)
		}
		if changed != (len(s.want) > 0) {
			t.Errorf("%s: SetLocal reported changed=%v", s.name, changed)
		}
		if n := len(inv.LocalDisks()); n != s.local {
			t.Errorf("%s: %d local disks, want %d", s.name, n, s.local)
		}
		if (inv.Scan().Err != nil) != (s.err != nil) {
			t.Errorf("%s: scan error %v", s.name, inv.Scan().Err)
		}
	}
	for _, d := range inv.Disks() {
		if !d.Local || d.HostID != "self" || d.Hostname != "selfhost" || d.Mountpoints == nil {
			t.Errorf("local disk not filled in: %+v", d)
		}
	}
}

func TestPeerLifecycle(t *testing.T) {
	inv, c, sub := newTest(t, Options{})
	if err := inv.Apply(ann("b", 10, disk("/dev/loop1", "u1", "X"))); err != nil {
		t.Fatal(err)
	}
	want := []string{"peer-joined b ", "appeared b /dev/loop1"}
	if got := drain(sub); !slices.Equal(got, want) {
		t.Fatalf("join: %q, want %q", got, want)
	}
	p := inv.Peers()
	if len(p) != 1 || p[0].Timeout != 30*time.Second || p[0].Disks != 1 || p[0].Hostname != "b-name" {
		t.Fatalf("peer %+v: want timeout 3 × interval and one disk", p)
	}
	d := inv.Disks()
	if len(d) != 1 || d[0].Local || d[0].Hostname != "b-name" || !d[0].LastSeen.Equal(c.Now()) {
		t.Fatalf("remote disk %+v", d)
	}

	// A second disk and a change of the first.
	if err := inv.Apply(ann("b", 11, disk("/dev/loop1", "u1", "X", "/m"), disk("/dev/loop2", "u2", "Y"))); err != nil {
		t.Fatal(err)
	}
	want = []string{"changed b /dev/loop1 mountpoints", "appeared b /dev/loop2"}
	if got := drain(sub); !slices.Equal(got, want) {
		t.Fatalf("update: %q, want %q", got, want)
	}

	// Replays and duplicates change nothing.
	for _, seq := range []uint64{11, 10, 1} {
		if err := inv.Apply(ann("b", seq)); !errors.Is(err, ErrReplay) {
			t.Fatalf("seq %d: %v, want ErrReplay", seq, err)
		}
		if err := inv.Bye("b", "b1", seq); !errors.Is(err, ErrReplay) {
			t.Fatalf("bye seq %d: %v, want ErrReplay", seq, err)
		}
	}
	if got := drain(sub); len(got) != 0 || len(inv.Disks()) != 2 {
		t.Fatalf("replay changed something: %q", got)
	}

	// Expiry at the timeout, not before.
	c.Add(29 * time.Second)
	inv.Expire()
	if len(inv.Peers()) != 1 {
		t.Fatal("peer expired before its timeout")
	}
	if err := inv.Touch("b", "b1", 12); err != nil {
		t.Fatal(err)
	}
	c.Add(29 * time.Second)
	inv.Expire()
	if len(inv.Peers()) != 1 {
		t.Fatal("a ping did not count as being heard")
	}
	c.Add(2 * time.Second)
	inv.Expire()
	want = []string{"disappeared b /dev/loop1", "disappeared b /dev/loop2", "peer-lost b timeout"}
	if got := drain(sub); !slices.Equal(got, want) {
		t.Fatalf("expiry: %q, want %q", got, want)
	}

	// A captured announcement replayed after expiry brings nothing back.
	if err := inv.Apply(ann("b", 11, disk("/dev/loop1", "u1", "X"))); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after expiry: %v", err)
	}
	if len(inv.Disks()) != 0 {
		t.Fatal("replay after expiry brought a disk back")
	}
	// The peer itself, restarted (new instance, later sequence), comes back.
	a := ann("b", 100, disk("/dev/loop1", "u1", "X"))
	a.BootID = "b2"
	if err := inv.Apply(a); err != nil {
		t.Fatal(err)
	}
	drain(sub)
	if err := inv.Bye("b", "b2", 101); err != nil {
		t.Fatal(err)
	}
	want = []string{"disappeared b /dev/loop1", "peer-lost b bye"}
	if got := drain(sub); !slices.Equal(got, want) {
		t.Fatalf("bye: %q, want %q", got, want)
	}
}

func TestRefusals(t *testing.T) {
	inv, _, sub := newTest(t, Options{MaxPeers: 3, MaxDisksPerPeer: 2})
	if err := inv.Apply(ann("self", 1, disk("/dev/x", "u", "L"))); !errors.Is(err, ErrSelf) {
		t.Fatalf("own id: %v", err)
	}
	for i := range 10 {
		err := inv.Apply(ann(fmt.Sprintf("h%d", i), 1))
		if (i < 3) != (err == nil) {
			t.Fatalf("peer %d: %v", i, err)
		}
		if i >= 3 && !errors.Is(err, ErrPeerCap) {
			t.Fatalf("peer %d: %v, want ErrPeerCap", i, err)
		}
	}
	if err := inv.Apply(ann("h0", 2, disk("/a", "1", ""), disk("/b", "2", ""), disk("/c", "3", ""))); err != nil {
		t.Fatal(err)
	}
	st := inv.Stats()
	if st.PeerCapHits != 7 || st.DiskCapHits != 1 || len(inv.Peers()) != 3 || len(inv.Disks()) != 2 {
		t.Fatalf("caps not applied: %+v, %d peers, %d disks", st, len(inv.Peers()), len(inv.Disks()))
	}
	drain(sub)
}

func TestTombstonesBounded(t *testing.T) {
	inv, _, _ := newTest(t, Options{MaxPeers: 10, MaxTombstones: 5})
	for i := range 50 {
		id := fmt.Sprintf("h%d", i)
		if err := inv.Apply(ann(id, 1)); err != nil {
			t.Fatal(err)
		}
		if err := inv.Bye(id, "b1", 2); err != nil {
			t.Fatal(err)
		}
	}
	// The five last to leave are remembered: their replays are refused.
	for i := 45; i < 50; i++ {
		if err := inv.Apply(ann(fmt.Sprintf("h%d", i), 2)); !errors.Is(err, ErrReplay) {
			t.Fatalf("h%d: %v, want ErrReplay", i, err)
		}
	}
	if n := inv.tombs.len(); n != 5 {
		t.Fatalf("%d tombstones, want 5", n)
	}
	// A host that comes back is forgotten as a tombstone; the oldest go
	// first when a new one needs room.
	if err := inv.Apply(ann("h47", 3)); err != nil {
		t.Fatal(err)
	}
	if _, ok := inv.tombs.get("h47"); ok || inv.tombs.len() != 4 {
		t.Fatalf("h47 came back but is still a tombstone (%d held)", inv.tombs.len())
	}
	for _, id := range []string{"x1", "x2"} {
		if err := inv.Apply(ann(id, 1)); err != nil {
			t.Fatal(err)
		}
		if err := inv.Bye(id, "b1", 2); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]bool{"h45": false, "h46": true, "h48": true, "h49": true, "x1": true, "x2": true} {
		if _, ok := inv.tombs.get(id); ok != want {
			t.Errorf("tombstone of %s held: %v, want %v", id, ok, want)
		}
	}
}

func TestTotalDiskCap(t *testing.T) {
	inv, _, sub := newTest(t, Options{MaxDisks: 5})
	three := []diskstate.Disk{disk("/a", "1", ""), disk("/b", "2", ""), disk("/c", "3", "")}
	if err := inv.Apply(ann("h1", 1, three...)); err != nil {
		t.Fatal(err)
	}
	if err := inv.Apply(ann("h2", 1, three...)); !errors.Is(err, ErrDiskCap) {
		t.Fatalf("6 disks past a cap of 5: %v, want ErrDiskCap", err)
	}
	if len(inv.Peers()) != 1 {
		t.Fatal("a refused announcement added its peer")
	}
	if err := inv.Apply(ann("h2", 2, three[:2]...)); err != nil {
		t.Fatal(err)
	}
	// h1 growing past the cap keeps its old list; shrinking frees room.
	if err := inv.Apply(ann("h1", 2, append(three, disk("/d", "4", ""))...)); !errors.Is(err, ErrDiskCap) {
		t.Fatalf("growth past the cap: %v", err)
	}
	if err := inv.Apply(ann("h1", 3, three[:1]...)); err != nil {
		t.Fatal(err)
	}
	if err := inv.Bye("h2", "b1", 3); err != nil {
		t.Fatal(err)
	}
	if err := inv.Apply(ann("h3", 1, append(three, disk("/d", "4", ""))...)); err != nil {
		t.Fatalf("room freed by a shrink and a goodbye not reused: %v", err)
	}
	if _, n := inv.Counts(); n != len(inv.Disks()) {
		t.Fatalf("Counts says %d disks, Disks lists %d", n, len(inv.Disks()))
	}
	if got, st := len(inv.Disks()), inv.Stats(); got != 5 || st.TotalDiskCapHits != 2 {
		t.Fatalf("%d disks, %d refusals; want 5 and 2", got, st.TotalDiskCapHits)
	}
	drain(sub)
}

func TestMatchAndFind(t *testing.T) {
	inv, _, _ := newTest(t, Options{})
	inv.SetLocal([]diskstate.Disk{
		{Device: "/dev/sda1", UUID: "1111-aaaa", Label: "BACKUP-2019", Type: "ext4"},
		{Device: "/dev/sdb1", UUID: "2222-bbbb", Label: "backup-2020", Type: "vfat"},
		{Device: "/dev/sdc1", UUID: "3333-cccc", PartUUID: "p-3333", Label: "photos", Type: "ext4"},
	}, nil)
	if err := inv.Apply(ann("nas", 1, diskstate.Disk{Device: "/dev/md0", UUID: "4444-dddd", Label: "old-BACKUP"})); err != nil {
		t.Fatal(err)
	}
	devs := func(ds []diskstate.Disk) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Device)
		}
		return out
	}
	for _, c := range []struct {
		op, arg string
		want    []string
	}{
		{"match", "", []string{"/dev/md0", "/dev/sda1", "/dev/sdb1", "/dev/sdc1"}},
		{"match", "backup", []string{"/dev/md0", "/dev/sda1", "/dev/sdb1"}},
		{"match", "BACKUP-*", []string{"/dev/sda1"}},
		{"match", "/dev/sd?1", []string{"/dev/sda1", "/dev/sdb1", "/dev/sdc1"}},
		{"match", "nas", []string{"/dev/md0"}},
		{"match", "p-3333", []string{"/dev/sdc1"}},
		{"match", "zzz", nil},
		{"find", "BACKUP-2019", []string{"/dev/sda1"}},                  // exact
		{"find", "backup-2019", []string{"/dev/sda1"}},                  // exact, ignoring case
		{"find", "backup", []string{"/dev/sda1", "/dev/sdb1"}},          // prefix beats substring
		{"find", "BACKUP", []string{"/dev/sda1", "/dev/sdb1"}},          // prefix ignores case
		{"find", "old", []string{"/dev/md0"}},                           // prefix
		{"find", "cccc", []string{"/dev/sdc1"}},                         // substring of the uuid
		{"find", "p-3333", []string{"/dev/sdc1"}},                       // partuuid
		{"find", "ack", []string{"/dev/md0", "/dev/sda1", "/dev/sdb1"}}, // substring
		{"find", "", nil},
		{"find", "sda", []string{"/dev/sda1"}}, // devices are find terms, as they are list patterns
	} {
		var got []diskstate.Disk
		if c.op == "match" {
			got = inv.Match(c.arg)
		} else {
			got = inv.Find(c.arg)
		}
		if !slices.Equal(devs(got), c.want) {
			t.Errorf("%s %q = %q, want %q", c.op, c.arg, devs(got), c.want)
		}
	}
}

func TestSlowSubscriberNeverBlocks(t *testing.T) {
	inv, _, _ := newTest(t, Options{})
	slow := inv.Subscribe(2)
	defer slow.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			inv.SetLocal([]diskstate.Disk{disk(fmt.Sprintf("/dev/x%d", i), "u", "")}, nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a full subscriber blocked the inventory")
	}
	if slow.Dropped() == 0 || inv.Stats().EventsDropped == 0 {
		t.Fatal("dropped events were not counted")
	}
	slow.Close()
	slow.Close() // twice is fine
	if _, open := <-slow.C(); open {
		// drain what was buffered; the channel must end closed
		for range slow.C() {
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	inv, c, sub := newTest(t, Options{})
	go func() {
		for range sub.C() {
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				host := fmt.Sprintf("h%d", w)
				_ = inv.Apply(ann(host, uint64(i+1), disk(fmt.Sprintf("/dev/d%d", i%5), "u", "L")))
				inv.SetLocal([]diskstate.Disk{disk("/dev/l", fmt.Sprint(i%3), "")}, nil)
				inv.Disks()
				inv.Peers()
				inv.Find("L")
				inv.Match("h")
				c.Add(time.Millisecond)
				inv.Expire()
			}
		})
	}
	wg.Wait()
	if p, n := inv.Counts(); p != 4 || n != len(inv.Disks()) {
		t.Fatalf("%d peers (want 4), %d disks counted, %d listed", p, n, len(inv.Disks()))
	}
}

// TestDropAndVia: a transport drops a peer with its reason; a copy heard on
// a second transport is a duplicate that records the transport, not a
// replay; a supervised peer is not timed out.
func TestDropAndVia(t *testing.T) {
	now := time.Unix(1000, 0)
	inv := New(Options{HostID: "self", Now: func() time.Time { return now }})
	sub := inv.Subscribe(16)
	defer sub.Close()
	a := Announcement{HostID: "a", Hostname: "a", BootID: "b1", Seq: 5, Interval: time.Second, Via: "multicast",
		Disks: []diskstate.Disk{{Device: "/dev/sda1", UUID: "u"}}}
	if err := inv.Apply(a); err != nil {
		t.Fatal(err)
	}
	a.Via, a.Supervised = "gossip", true
	if err := inv.Apply(a); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("copy on gossip: %v, want ErrDuplicate", err)
	}
	if err := inv.Apply(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("second copy on gossip: %v, want ErrReplay", err)
	}
	a.Seq = 6
	if err := inv.Apply(a); err != nil {
		t.Fatal(err)
	}
	if p := inv.Peers(); len(p) != 1 || p[0].Via != "both" {
		t.Fatalf("peers %+v, want a heard on both", p)
	}
	now = now.Add(time.Hour)
	inv.Expire()
	if p, _ := inv.Counts(); p != 1 {
		t.Fatalf("a supervised peer was timed out")
	}
	if !inv.Drop("a", ReasonBye) || inv.Drop("a", ReasonBye) {
		t.Fatal("Drop: want true for a held peer, then false")
	}
	var lost *Event
	for len(sub.C()) > 0 {
		if e := <-sub.C(); e.Kind == PeerLost {
			lost = e
		}
	}
	if lost == nil || lost.Reason != ReasonBye {
		t.Fatalf("lost event %+v, want reason bye", lost)
	}
	if err := inv.Apply(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("old announcement after Drop: %v, want ErrReplay", err)
	}
}
