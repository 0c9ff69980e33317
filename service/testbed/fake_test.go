package testbed_test

import (
	"testing"

	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

// TestFakeDisks needs no root: FakeDisks gives n disks that wire.Encode
// accepts, and FakeInventory holds them all plus its own local disk.
func TestFakeDisks(t *testing.T) {
	const peers, n = 3, 16
	disks := testbed.FakeDisks(1, n)
	if len(disks) != n {
		t.Fatalf("FakeDisks(1, %d) gives %d disks", n, len(disks))
	}
	m := wire.Message{Kind: wire.KindAnnounce, HostID: "0123456789abcdef0123456789abcdef",
		BootID: "fedcba9876543210fedcba9876543210", Hostname: "fake", Seq: 1, Interval: 10e9, Disks: disks}
	if grams, err := wire.Encode(m, 1500-28, nil); err != nil || len(grams) == 0 {
		t.Fatalf("wire.Encode: %d datagrams, %v", len(grams), err)
	}
	inv, err := testbed.FakeInventory(peers, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(inv.Disks()); got != peers*n+1 {
		t.Errorf("FakeInventory(%d, %d) holds %d disks, want %d", peers, n, got, peers*n+1)
	}
}
