package dbusapi

// Benchmark of issue 7's scale case on D-Bus: List of 16,001 disks (1,000
// peers of 16 disks and one local disk) through a private dbus-daemon, call
// to decoded reply, with the server and a godbus client in this process
// (so that a CPU profile shows both sides). Target of issue 7: ≤ 100 ms.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/inventory"
)

func benchInventory(b *testing.B, peers, disks int) *inventory.Inventory {
	b.Helper()
	inv := inventory.New(inventory.Options{HostID: "bench-local", Hostname: "s"})
	inv.SetLocal([]inventory.Disk{{Device: "/dev/loop0", UUID: "0b7e2a1c-1b2c-4d5e-8f90-123456789abc",
		Label: "S-ROOT", Type: "ext4"}}, nil)
	for p := range peers {
		a := inventory.Announcement{
			HostID: fmt.Sprintf("%032x", 0xbe7c4000+p), Hostname: fmt.Sprintf("load-%04d", p),
			BootID: fmt.Sprintf("%032x", p), Seq: 1, Interval: 10 * time.Second, Address: "10.77.0.2",
		}
		for i := range disks {
			d := inventory.Disk{
				Device:   fmt.Sprintf("/dev/sd%c%d", 'a'+i/4, i%4+1),
				UUID:     fmt.Sprintf("%08x-%04x-4d5e-8f90-%012x", p, i, p*7919+i),
				PartUUID: fmt.Sprintf("%08x-%04x-4c0d-9e0f-%012x", p, i, i*31),
				Label:    fmt.Sprintf("L%04d-DATA-%02d", p, i),
				Type:     "ext4",
			}
			if i%2 == 0 {
				d.Mountpoints = []string{fmt.Sprintf("/srv/data/%02d", i)}
			}
			a.Disks = append(a.Disks, d)
		}
		if err := inv.Apply(a); err != nil {
			b.Fatal(err)
		}
	}
	return inv
}

// BenchmarkList16000 is D-Bus List of every disk at scale.
func BenchmarkList16000(b *testing.B) {
	bus := dbustest.System(b, dbustest.File(b, "packaging/dbus/org.diskd.conf"))
	inv := benchInventory(b, 1000, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{Bus: bus.Address, Inv: inv}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	c, err := dbus.Connect(bus.Address)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	obj := c.Object(BusName, ObjectPath)
	var disks []map[string]dbus.Variant
	deadline := time.Now().Add(10 * time.Second)
	for obj.Call(Interface+".List", 0).Store(&disks) != nil {
		if time.Now().After(deadline) {
			b.Fatal("org.diskd does not answer List")
		}
		time.Sleep(20 * time.Millisecond)
	}
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
