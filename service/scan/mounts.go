package scan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/diskstate"
)

// attachMounts fills in the Mountpoints of disks from /proc/self/mountinfo.
func attachMounts(disks []diskstate.Disk) error {
	if len(disks) == 0 {
		return nil
	}
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("mount table: cannot read /proc/self/mountinfo: %w", err)
	}
	mountsOf(disks, infos, rdevOf)
	return nil
}

// rdevOf returns the device number of the block device at path.
func rdevOf(path string) (uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return st.Rdev, true
}

// mountsOf attaches the mount points in infos to disks, matching by device
// number. Mounts with an anonymous device number (major 0: btrfs, for
// instance, reports one per subvolume) are matched through the device number
// of their source path instead. rdev stats a path.
func mountsOf(disks []diskstate.Disk, infos []*mountinfo.Info, rdev func(string) (uint64, bool)) {
	byDev := make(map[uint64][]string)
	for _, m := range infos {
		dev := unix.Mkdev(uint32(m.Major), uint32(m.Minor))
		if m.Major == 0 {
			if !strings.HasPrefix(m.Source, "/dev/") {
				continue
			}
			d, ok := rdev(m.Source)
			if !ok {
				continue
			}
			dev = d
		}
		byDev[dev] = append(byDev[dev], m.Mountpoint)
	}
	for i := range disks {
		d, ok := rdev(disks[i].Device)
		if !ok {
			continue // not a block device (an image file, or gone)
		}
		disks[i].Mountpoints = cleanMountpoints(byDev[d])
	}
}

// cleanMountpoints returns mps cleaned, sorted, deduplicated and bounded.
func cleanMountpoints(mps []string) []string {
	if len(mps) == 0 {
		return nil
	}
	out := make([]string, 0, len(mps))
	for _, mp := range mps {
		out = append(out, clean(mp, diskstate.MaxMountpointLen))
	}
	sort.Strings(out)
	uniq := out[:0]
	for i, mp := range out {
		if i > 0 && mp == uniq[len(uniq)-1] {
			continue
		}
		uniq = append(uniq, mp)
	}
	if len(uniq) > diskstate.MaxMountpoints {
		uniq = uniq[:diskstate.MaxMountpoints]
	}
	return uniq
}

// BlockMounts returns the mounts of /proc/self/mountinfo that can be a
// disk's (the ones attachMounts reads: a device number with a major, or a
// /dev/ source), one "major:minor source mountpoint" line each, sorted. A
// caller that watches the mount table (WatchMounts) compares it across
// changes and rescans only when it differs: mounting a network namespace
// (ip netns add), a tmpfs or a container's overlay changes no disk's mount
// points and needs no blkid run (measured: each `ip netns add`
// on the machine made every diskd run blkid).
func BlockMounts() (string, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", fmt.Errorf("mount table: cannot read /proc/self/mountinfo: %w", err)
	}
	return blockMounts(infos), nil
}

func blockMounts(infos []*mountinfo.Info) string {
	lines := make([]string, 0, len(infos))
	for _, m := range infos {
		if m.Major == 0 && !strings.HasPrefix(m.Source, "/dev/") {
			continue
		}
		lines = append(lines, fmt.Sprintf("%d:%d %s %s\n", m.Major, m.Minor, m.Source, m.Mountpoint))
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}
