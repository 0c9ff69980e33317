package inventory

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// A peer's disks are held once, sorted by device and uuid: a list in any
// order, even one naming a disk twice (the last one counts, one disk per
// device and uuid), is held and diffed like the same list sorted.
func TestPeerDisksSortedOnePerKey(t *testing.T) {
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	inv := New(Options{HostID: "self", Hostname: "self", Now: func() time.Time { return now }})
	sub := inv.Subscribe(0)
	defer sub.Close()
	events := func() []string {
		var out []string
		for len(sub.C()) > 0 {
			e := <-sub.C()
			out = append(out, fmt.Sprintf("%v %s %s", e.Kind, e.Disk.Device, e.Disk.Label))
		}
		return out
	}
	ann := func(seq uint64, ds ...diskstate.Disk) Announcement {
		return Announcement{HostID: "p", Hostname: "peer", BootID: "b", Seq: seq, Interval: time.Second, Disks: ds}
	}
	d := func(dev, uuid, label string) diskstate.Disk {
		return diskstate.Disk{Device: dev, UUID: uuid, Label: label, Type: "ext4"}
	}
	if err := inv.Apply(ann(1, d("/dev/sdc", "u3", "C"), d("/dev/sda", "u1", "A-old"), d("/dev/sdb", "u2", "B"),
		d("/dev/sda", "u1", "A"))); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range inv.Disks() {
		if x.HostID == "p" {
			got = append(got, x.Device+" "+x.Label)
		}
	}
	if want := []string{"/dev/sda A", "/dev/sdb B", "/dev/sdc C"}; !slices.Equal(got, want) {
		t.Errorf("held %q, want %q", got, want)
	}
	if _, n := inv.Counts(); n != 3 {
		t.Errorf("Counts: %d disks, want 3", n)
	}
	if got, want := events(), []string{"peer-joined  ", "appeared /dev/sda A", "appeared /dev/sdb B",
		"appeared /dev/sdc C"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	// sdb goes, sdc changes, sdd comes: disappeared first, then the rest
	// in order.
	if err := inv.Apply(ann(2, d("/dev/sdd", "u4", "D"), d("/dev/sdc", "u3", "C2"), d("/dev/sda", "u1", "A"))); err != nil {
		t.Fatal(err)
	}
	if got, want := events(), []string{"disappeared /dev/sdb B", "changed /dev/sdc C2",
		"appeared /dev/sdd D"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if _, n := inv.Counts(); n != 3 {
		t.Errorf("Counts: %d disks, want 3", n)
	}
}

// EachHost hands out every disk of Disks, in the same order, one host at a
// time.
func TestEachHostWalksDisks(t *testing.T) {
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	inv := New(Options{HostID: "self", Hostname: "m-self", Now: func() time.Time { return now }})
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sdb", UUID: "l2"}, {Device: "/dev/sda", UUID: "l1"}}, nil)
	for i, host := range []string{"z-peer", "a-peer", "n-empty"} {
		now = now.Add(time.Second)
		var ds []diskstate.Disk
		if host != "n-empty" {
			ds = []diskstate.Disk{{Device: "/dev/sdc", UUID: host + "3"}, {Device: "/dev/sda", UUID: host + "1"}}
		}
		if err := inv.Apply(Announcement{HostID: host, Hostname: host, BootID: "b", Seq: uint64(i + 1), Interval: time.Second, Disks: ds}); err != nil {
			t.Fatal(err)
		}
	}
	var got []diskstate.Disk
	calls := 0
	inv.EachHost(func(ds []diskstate.Disk) {
		calls++
		for _, d := range ds[1:] {
			if d.HostID != ds[0].HostID {
				t.Errorf("one call holds disks of %s and %s", ds[0].HostID, d.HostID)
			}
			if !d.LastSeen.Equal(ds[0].LastSeen) {
				t.Errorf("%s's disks were last seen at %v and %v, want one time a host", d.HostID, ds[0].LastSeen, d.LastSeen)
			}
		}
		got = append(got, ds...)
	})
	want := inv.Disks()
	if calls != 3 || len(got) != 6 || !slices.EqualFunc(got, want, func(a, b diskstate.Disk) bool {
		return a.HostID == b.HostID && a.Device == b.Device && a.UUID == b.UUID && a.LastSeen.Equal(b.LastSeen)
	}) {
		t.Errorf("EachHost: %d calls, disks %+v; want 3 calls (no empty host), the disks of Disks: %+v", calls, got, want)
	}
}
