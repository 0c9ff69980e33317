package scan

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/diskstate"
)

func TestMountsOf(t *testing.T) {
	// Fake device nodes: path -> device number.
	nodes := map[string]uint64{
		"/dev/sda1":          unix.Mkdev(8, 1),
		"/dev/sdb1":          unix.Mkdev(8, 17),
		"/dev/mapper/vg-lv":  unix.Mkdev(253, 0),
		"/dev/disk/by-x/lnk": unix.Mkdev(8, 1), // a symlink to sda1
		"/dev/nvme0n1p2":     unix.Mkdev(259, 2),
	}
	rdev := func(p string) (uint64, bool) { d, ok := nodes[p]; return d, ok }
	many := make([]*mountinfo.Info, 0, diskstate.MaxMountpoints+10)
	for i := range diskstate.MaxMountpoints + 10 {
		many = append(many, &mountinfo.Info{Major: 259, Minor: 2, Mountpoint: fmt.Sprintf("/bind/%03d", i), Source: "/dev/nvme0n1p2"})
	}
	infos := append([]*mountinfo.Info{
		{Major: 8, Minor: 1, Mountpoint: "/srv/b", Source: "/dev/disk/by-x/lnk"},
		{Major: 8, Minor: 1, Mountpoint: "/srv/a", Source: "/dev/sda1"},
		{Major: 8, Minor: 1, Mountpoint: "/srv/a", Source: "/dev/sda1"}, // same mount point twice (stacked)
		{Major: 253, Minor: 0, Mountpoint: "/home", Source: "/dev/dm-0"},
		{Major: 0, Minor: 45, Mountpoint: "/data", Source: "/dev/sdb1"},     // btrfs: anonymous device
		{Major: 0, Minor: 46, Mountpoint: "/data/sub", Source: "/dev/sdb1"}, // btrfs subvolume
		{Major: 0, Minor: 22, Mountpoint: "/tmp", Source: "tmpfs"},
		{Major: 0, Minor: 47, Mountpoint: "/gone", Source: "/dev/nonexistent"},
		{Major: 8, Minor: 2, Mountpoint: "/other", Source: "/dev/sda2"},
		{Major: 8, Minor: 1, Mountpoint: "/bad\xff", Source: "/dev/sda1"},
	}, many...)
	disks := []diskstate.Disk{
		{Device: "/dev/sda1"}, {Device: "/dev/sdb1"}, {Device: "/dev/mapper/vg-lv"},
		{Device: "/dev/nvme0n1p2"}, {Device: "/dev/unmounted"}, {Device: "/tmp/image-file"},
	}
	mountsOf(disks, infos, rdev)
	want := map[string][]string{
		"/dev/sda1":         {"/bad\uFFFD", "/srv/a", "/srv/b"},
		"/dev/sdb1":         {"/data", "/data/sub"},
		"/dev/mapper/vg-lv": {"/home"},
	}
	for _, d := range disks[:3] {
		if !reflect.DeepEqual(d.Mountpoints, want[d.Device]) {
			t.Errorf("%s: %q, want %q", d.Device, d.Mountpoints, want[d.Device])
		}
	}
	if n := len(disks[3].Mountpoints); n != diskstate.MaxMountpoints || disks[3].Mountpoints[0] != "/bind/000" {
		t.Errorf("bind mounts: %d kept (first %q), want %d", n, disks[3].Mountpoints[0], diskstate.MaxMountpoints)
	}
	for _, d := range disks[4:] {
		if d.Mountpoints != nil {
			t.Errorf("%s: %q, want none", d.Device, d.Mountpoints)
		}
	}
}
