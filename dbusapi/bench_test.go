package dbusapi

// Benchmark of the scale case on D-Bus: List of 16,001 disks (1,000
// peers of 16 disks and one local disk) through a private dbus-daemon, call
// to decoded reply, with the server and a godbus client in this process
// (so that a CPU profile shows both sides). Target: ≤ 100 ms.

import (
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/testbed"
)

// BenchmarkList16000 is D-Bus List of every disk at scale.
func BenchmarkList16000(b *testing.B) {
	bus := dbustest.System(b, dbustest.File(b, "packaging/dbus/org.diskd.conf"))
	inv, err := testbed.FakeInventory(1000, 16)
	if err != nil {
		b.Fatal(err)
	}
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
