package scan

import (
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestBlockMountsLeavesOutWhatNoDiskHas(t *testing.T) {
	disks := []*mountinfo.Info{
		{Major: 8, Minor: 1, Mountpoint: "/srv/a", Source: "/dev/sda1"},
		{Major: 0, Minor: 45, Mountpoint: "/data", Source: "/dev/sdb1"}, // btrfs: anonymous device
		{Major: 7, Minor: 3, Mountpoint: "/mnt/x", Source: "/dev/loop3"},
	}
	others := []*mountinfo.Info{
		{Major: 0, Minor: 4, Mountpoint: "/run/netns/lab-a", Source: "nsfs"},
		{Major: 0, Minor: 22, Mountpoint: "/tmp", Source: "tmpfs"},
		{Major: 0, Minor: 60, Mountpoint: "/var/lib/docker/overlay2/x/merged", Source: "overlay"},
	}
	base := blockMounts(disks)
	if want := "0:45 /dev/sdb1 /data\n7:3 /dev/loop3 /mnt/x\n8:1 /dev/sda1 /srv/a\n"; base != want {
		t.Fatalf("blockMounts = %q, want %q", base, want)
	}
	if got := blockMounts(append(append([]*mountinfo.Info{}, others...), disks...)); got != base {
		t.Errorf("other mounts changed it: %q", got)
	}
	reordered := []*mountinfo.Info{disks[2], disks[0], disks[1]}
	if got := blockMounts(reordered); got != base {
		t.Errorf("the order of the mount table changed it: %q", got)
	}
	for _, m := range []*mountinfo.Info{
		{Major: 8, Minor: 1, Mountpoint: "/srv/bind", Source: "/dev/sda1"}, // a bind mount of a disk
		{Major: 8, Minor: 2, Mountpoint: "/srv/b", Source: "/dev/sda2"},
		{Major: 0, Minor: 46, Mountpoint: "/data/sub", Source: "/dev/sdb1"},
	} {
		if got := blockMounts(append(append([]*mountinfo.Info{}, disks...), m)); got == base {
			t.Errorf("mounting %s on %s did not change it", m.Source, m.Mountpoint)
		}
	}
	if got := blockMounts(disks[1:]); got == base {
		t.Error("unmounting /srv/a did not change it")
	}
}

func TestBlockMountsReadsTheMountTable(t *testing.T) {
	s, err := BlockMounts()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d block mounts", len(s))
}
