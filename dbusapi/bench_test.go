package dbusapi

// Benchmarks of the scale case on D-Bus: List of 16,001 disks (1,000 peers
// of 16 disks and one local disk) through a private dbus-daemon, call to
// decoded reply, with the server and a godbus client in this process (so
// that a CPU profile shows both sides).
//
//   - BenchmarkList16000 is Client.List, what diskctl sees: the ListTable
//     form. Target: ≤ 100 ms.
//   - BenchmarkListDict16000 is List's aa{sv}, what busctl and other
//     clients get (no target: tens of thousands of variants).
//   - BenchmarkList16000Changing is Client.List while the inventory changes
//     between calls, so that every call builds its reply anew.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
)

// benchServer serves FakeInventory(1000, 16) on a private system bus until
// the benchmark ends and returns it and a client that List answers.
func benchServer(b *testing.B) (*inventory.Inventory, *Client) {
	bus := dbustest.System(b, dbustest.File(b, "packaging/dbus/org.diskd.conf"))
	inv, err := testbed.FakeInventory(1000, 16)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{Bus: bus.Address, Inv: inv}) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	c := dial(b, bus.Address)
	testbed.Eventually(b, 10*time.Second, func() (bool, string) {
		_, err := c.List(context.Background())
		return err == nil, fmt.Sprintf("org.diskd does not answer List: %v", err)
	})
	return inv, c
}

// benchList calls Client.List in a loop, each time after change (untimed)
// unless it is nil, and fails unless the last answer has want disks.
func benchList(b *testing.B, c *Client, change func(), want int) {
	b.ReportAllocs()
	var n int
	for b.Loop() {
		if change != nil {
			b.StopTimer()
			change()
			b.StartTimer()
		}
		disks, err := c.List(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n = len(disks)
	}
	if n != want {
		b.Fatalf("List returned %d disks, want %d", n, want)
	}
}

// BenchmarkList16000 is D-Bus List of every disk at scale, as diskctl
// calls it (Client.List, the ListTable form).
func BenchmarkList16000(b *testing.B) {
	_, c := benchServer(b)
	benchList(b, c, nil, 16001)
}

// BenchmarkList16000Changing is BenchmarkList16000 with one peer
// re-announcing a changed disk before every call.
func BenchmarkList16000Changing(b *testing.B) {
	inv, c := benchServer(b)
	seq := uint64(1 << 40)
	benchList(b, c, func() {
		seq++
		disks := testbed.FakeDisks(1000, 16)
		disks[0].Label = fmt.Sprint("changed-", seq)
		if err := inv.Apply(inventory.Announcement{HostID: "changing-peer", Hostname: "changing", BootID: "b",
			Seq: seq, Interval: time.Hour, Disks: disks}); err != nil {
			b.Fatal(err)
		}
		// The change reaches the server through its subscription.
		time.Sleep(5 * time.Millisecond)
	}, 16017)
}

// BenchmarkListDict16000 is List's aa{sv} of every disk at scale.
func BenchmarkListDict16000(b *testing.B) {
	_, c := benchServer(b)
	obj := c.conn.Object(BusName, ObjectPath)
	var disks []map[string]dbus.Variant
	b.ReportAllocs()
	for b.Loop() {
		if err := obj.Call(Interface+".List", 0).Store(&disks); err != nil {
			b.Fatal(err)
		}
	}
	if len(disks) != 16001 {
		b.Fatalf("List returned %d disks, want 16001", len(disks))
	}
}
