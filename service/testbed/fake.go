package testbed

// Fake peers for benchmarks and the load generator (cmd/diskd-bench): what
// the benchmarks' scale case is made of. Unlike the rest of the package, these
// need neither root nor any external tool.

import (
	"fmt"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
)

// FakeDisks returns fake peer number peer's n disks, as blkid reports a file
// server's, in the order diskd announces them (by device): /dev/sda1 to
// /dev/sda4, /dev/sdb1 and so on, ext4, with UUIDs and labels unique to the
// peer and every other disk mounted at /srv/data/NN. Each call returns a new
// slice.
func FakeDisks(peer, n int) []diskstate.Disk {
	disks := make([]diskstate.Disk, n)
	for i := range disks {
		disks[i] = diskstate.Disk{
			Device:   fmt.Sprintf("/dev/sd%c%d", 'a'+i/4, i%4+1),
			UUID:     fmt.Sprintf("%08x-%04x-4d5e-8f90-%012x", peer, i, peer*7919+i),
			PartUUID: fmt.Sprintf("%08x-%04x-4c0d-9e0f-%012x", peer, i, i*31),
			Label:    fmt.Sprintf("L%04d-DATA-%02d", peer, i),
			Type:     "ext4",
		}
		if i%2 == 0 {
			disks[i].Mountpoints = []string{fmt.Sprintf("/srv/data/%02d", i)}
		}
	}
	return disks
}

// FakeInventory returns an inventory of this host (one local disk) that
// holds peers fake peers of n disks each (FakeDisks), as a daemon in steady
// state does: the benchmarks' scale case.
func FakeInventory(peers, n int) (*inventory.Inventory, error) {
	inv := inventory.New(inventory.Options{HostID: "bench-local", Hostname: "s"})
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/loop0", UUID: "0b7e2a1c-1b2c-4d5e-8f90-123456789abc",
		Label: "S-ROOT", Type: "ext4"}}, nil)
	for p := range peers {
		a := inventory.Announcement{
			HostID: fmt.Sprintf("%032x", 0xbe7c4000+p), Hostname: fmt.Sprintf("load-%04d", p),
			BootID: fmt.Sprintf("%032x", p), Seq: 1, Interval: 10 * time.Second, Address: "10.77.0.2",
		}
		a.Disks = FakeDisks(p, n)
		if err := inv.Apply(a); err != nil {
			return nil, fmt.Errorf("fake peer %d: %w", p, err)
		}
	}
	return inv, nil
}
