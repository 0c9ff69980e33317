package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
)

// run runs a command and fails the test with its output when it fails.
func mustCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gptLoop makes a 64 MiB image with a GPT of two partitions (20 MiB named
// ux-partlabel, 8 MiB named "second"), attaches it with losetup -P, makes
// sure the partition nodes exist (partx -a: no udev here) and returns the
// loop device. Cleanup detaches it.
func gptLoop(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(dir, "gpt.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	sf := exec.Command("sfdisk", "-q", img)
	sf.Stdin = strings.NewReader("label: gpt\nsize=20MiB, name=\"ux-partlabel\"\nsize=8MiB, name=\"second\"\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	dev := strings.TrimSpace(mustCmd(t, "losetup", "--find", "--show", "--partscan", img))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	if _, err := os.Stat(dev + "p1"); err != nil {
		_ = exec.Command("partx", "-a", dev).Run() // "already exists" is fine
	}
	ok, _ := testbed.Poll(5*time.Second, func() (bool, string) {
		_, err := os.Stat(dev + "p2")
		return err == nil, ""
	})
	if !ok {
		t.Fatalf("partition nodes of %s did not appear", dev)
	}
	return dev
}

// dfBytes returns df's size and available bytes of the filesystem at dir.
func dfBytes(t *testing.T, dir string) (size, avail uint64) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(mustCmd(t, "df", "-B1", "--output=size,avail", dir)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	size, err1 := strconv.ParseUint(f[0], 10, 64)
	avail, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || len(f) != 2 {
		t.Fatalf("df: %q", lines)
	}
	return size, avail
}

func within1Percent(got, want uint64) bool {
	d := max(got, want) - min(got, want)
	return d*100 <= want
}

// TestAttributesEndToEnd: a GPT loop device with a named partition and a
// read-only loop device on beta; alpha's control socket (list --json), its
// D-Bus List and diskctl info show their exact size, partlabel, fs
// version, read-only flag and, once mounted, a fill level within 1 % of df.
func TestAttributesEndToEnd(t *testing.T) {
	l := testbed.NewT(t)
	testbed.RequireTools(t, "sfdisk", "losetup", "partx", "mkfs.ext4", "mkfs.vfat", "df", "mount")
	dbustest.Require(t)
	diskd := testbed.Build(t)
	bin := buildDiskctl(t)
	dir := t.TempDir()

	dev := gptLoop(t, dir)
	part := dev + "p1"
	mustCmd(t, "mkfs.ext4", "-q", "-F", "-L", "attrs-data", part)
	mustCmd(t, "mkfs.vfat", "-n", "SECOND", dev+"p2")
	roImg := filepath.Join(dir, "ro.img")
	if err := os.WriteFile(roImg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(roImg, 24<<20); err != nil {
		t.Fatal(err)
	}
	mustCmd(t, "mkfs.ext4", "-q", "-F", "-L", "attrs-ro", roImg)
	ro := strings.TrimSpace(mustCmd(t, "losetup", "--find", "--show", "--read-only", roImg))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", ro).Run() })

	alpha := l.AddHostT(t, "alpha")
	beta := l.AddHostT(t, "beta")
	bus := dbustest.System(t, dbustest.File(t, "packaging/dbus/org.diskd.conf"))
	// Alpha probes nothing: the loop devices of this machine are beta's.
	if _, err := alpha.Start(diskd, "--bus", bus.Address, "--device", "/dev/diskd-attrs-none"); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.Start(diskd, "--device", part, "--device", dev+"p2", "--device", ro); err != nil {
		t.Fatal(err)
	}
	// Under the lab's shared MountDir: the daemons (in mount namespaces of
	// their own, made by ip netns exec) see mounts made there later.
	mnt, err := os.MkdirTemp(l.MountDir, "attrs-")
	if err != nil {
		t.Fatal(err)
	}
	mustCmd(t, "mount", part, mnt)
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	// Fill it a little, so that used is not just the metadata.
	if err := os.WriteFile(filepath.Join(mnt, "fill"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCmd(t, "sync")
	dfSize, dfAvail := dfBytes(t, mnt)

	// Alpha hears beta's disks with every attribute.
	byDev := map[string]diskstate.Disk{}
	testbed.Eventually(t, netTimeout, func() (bool, string) {
		var disks []diskstate.Disk
		out := controlDo(t, alpha.Socket, "list --json --host beta")
		if err := json.Unmarshal([]byte(out), &disks); err != nil {
			return false, out
		}
		clear(byDev)
		for _, d := range disks {
			byDev[d.Device] = d
		}
		p := byDev[part]
		return p.FSSize != 0 && byDev[ro].Device != "", out
	})
	check := func(where string, got map[string]diskstate.Disk) {
		t.Helper()
		p, r, s := got[part], got[ro], got[dev+"p2"]
		if p.Size != 20<<20 || p.PartLabel != "ux-partlabel" || p.FSVersion != "1.0" || p.ReadOnly || p.Label != "attrs-data" {
			t.Errorf("%s: partition %+v", where, p)
		}
		if s.Size != 8<<20 || s.PartLabel != "second" || s.FSVersion == "" || s.FSSize != 0 {
			t.Errorf("%s: second partition %+v", where, s)
		}
		if r.Size != 24<<20 || !r.ReadOnly || r.FSVersion != "1.0" || r.PartLabel != "" {
			t.Errorf("%s: read-only disk %+v", where, r)
		}
		if !within1Percent(p.FSSize, dfSize) || !within1Percent(p.FSAvail, dfAvail) || p.FSUsed == 0 ||
			p.FSUsed+p.FSAvail > p.FSSize {
			t.Errorf("%s: fill level size %d avail %d used %d, df says size %d avail %d", where,
				p.FSSize, p.FSAvail, p.FSUsed, dfSize, dfAvail)
		}
	}
	check("alpha list --json", byDev)

	// D-Bus List (the a{sv} form) on alpha's bus.
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var dicts []map[string]dbus.Variant
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Object(dbusapi.BusName, dbusapi.ObjectPath).CallWithContext(ctx, dbusapi.Interface+".List", 0).Store(&dicts); err != nil {
		t.Fatal(err)
	}
	fromBus := map[string]diskstate.Disk{}
	for _, m := range dicts {
		d, err := dbusapi.DiskFromDict(m)
		if err != nil {
			t.Fatal(err)
		}
		if d.Hostname == "beta" {
			fromBus[d.Device] = d
		}
		if d.Device == part {
			if v, ok := m["size"]; !ok || v.Signature().String() != "t" {
				t.Errorf("D-Bus size is %v, want a t", v)
			}
		}
	}
	check("D-Bus List", fromBus)

	// diskctl info, on alpha's bus.
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}
	// info's lines are "  key: value", the values aligned.
	infoLines := func(out string) []string {
		var l []string
		for _, line := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				line = k + ": " + strings.TrimSpace(v)
			}
			l = append(l, line)
		}
		return l
	}
	r := diskctl(t, bin, env, false, "info", "ux-partlabel")
	for _, want := range []string{part + " on beta: ", "  partlabel: ux-partlabel", "  size: 20M (20971520 bytes)",
		"  fs_version: 1.0", "  read_only: no", "  mountpoints: " + mnt} {
		if r.code != 0 || !slices.Contains(infoLines(r.stdout), want) {
			t.Errorf("diskctl info ux-partlabel: exit %d, lacks %q:\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	r = diskctl(t, bin, env, false, "info", "-b", "attrs-ro")
	if l := infoLines(r.stdout); !slices.Contains(l, "  read_only: yes") || !slices.Contains(l, fmt.Sprintf("  size: %d", 24<<20)) {
		t.Errorf("diskctl info -b attrs-ro:\n%s%s", r.stdout, r.stderr)
	}
	// find by partlabel, serial-less disks by hostname; --host.
	if r := diskctl(t, bin, env, false, "find", "-n", "-o", "DEVICE", "--sort", "DEVICE", "beta"); strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("diskctl find beta (hostname): %q %s", r.stdout, r.stderr)
	}
	if r := diskctl(t, bin, env, false, "find", "-n", "-o", "DEVICE", "UX-PART"); r.stdout != part+"\n" {
		t.Errorf("diskctl find UX-PART: %q %s", r.stdout, r.stderr)
	}
	if r := diskctl(t, bin, env, false, "list", "-n", "-r", "-o", "DEVICE,RO", "--host", "beta", "--sort", "RO"); !strings.HasSuffix(r.stdout, ro+" yes\n") ||
		!strings.Contains(r.stdout, part+" no\n") || strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("diskctl list --host beta: %q %s", r.stdout, r.stderr)
	}
	if r := diskctl(t, bin, env, false, "find", "--host", "alpha", "ux-partlabel"); r.code != exitNotFound || r.stdout != "" {
		t.Errorf("find --host alpha ux-partlabel: exit %d, want %d: %s", r.code, exitNotFound, r.stdout)
	}

	// monitor says what a DiskChanged changed: a relabel on beta, seen on
	// alpha's bus.
	mon := start(t, env, bin, "monitor")
	waitSubscribed(t, bus.Address, mon.cmd.Process.Pid)
	mustCmd(t, "e2label", part, "relabeled")
	controlDo(t, beta.Socket, "refresh")
	line := mon.waitLine(t, netTimeout, "DiskChanged")
	if !strings.Contains(line, "label: attrs-data → relabeled") {
		t.Errorf("monitor line %q does not say what changed", line)
	}
}
