package scan

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/diskd/diskd/service/diskstate"
)

// fakeTree writes files (path relative to root: content) and symlinks
// (path: target) under root.
func fakeTree(t *testing.T, root string, files, links map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range links {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAttrsFakeSysfs reads device attributes from a sysfs tree and udev
// database files built here: a USB stick's partition (udev knows it), an
// NVMe namespace (sysfs only, no udev data) and a SATA disk whose udev data
// carries an encoded model.
func TestAttrsFakeSysfs(t *testing.T) {
	root := t.TempDir()
	usb := "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
	nvme := "sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"
	sata := "sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
	fakeTree(t, root, map[string]string{
		usb + "/dev": "8:16\n", usb + "/size": "61440000\n", usb + "/ro": "0\n", usb + "/removable": "1\n",
		usb + "/queue/rotational": "1\n", usb + "/device/model": "Cruzer Blade    \n", usb + "/device/vendor": "SanDisk \n",
		usb + "/sdb1/dev": "8:17\n", usb + "/sdb1/partition": "1\n", usb + "/sdb1/size": "61438976\n", usb + "/sdb1/ro": "0\n",
		"dev/sdb1": "", // a stand-in for the device node
		"run/udev/data/b8:17": "S:disk/by-id/usb-SanDisk_Cruzer_Blade_4C530001-0:0-part1\nE:ID_BUS=usb\nE:ID_MODEL=Cruzer_Blade\n" +
			"E:ID_MODEL_ENC=Cruzer\\x20Blade\\x20\\x20\\x20\\x20\nE:ID_VENDOR_ENC=SanDisk\\x20\nE:ID_SERIAL=SanDisk_Cruzer_Blade_4C530001-0:0\n" +
			"E:ID_SERIAL_SHORT=4C530001\nE:ID_SERIAL_SHORT=second-ignored\nG:systemd\n",

		nvme + "/dev": "259:0\n", nvme + "/size": "1953525168\n", nvme + "/ro": "0\n", nvme + "/removable": "0\n",
		nvme + "/queue/rotational": "0\n", nvme + "/wwid": "eui.0025388b91b2c3d4\n",
		nvme + "/device/model": "Samsung SSD 970 EVO Plus 1TB            \n", nvme + "/device/serial": "S4EWNX0R123456  \n",

		sata + "/dev": "8:0\n", sata + "/size": "7814037168\n", sata + "/ro": "1\n", sata + "/removable": "0\n",
		sata + "/queue/rotational": "1\n", sata + "/device/model": "WDC WD40EFRX-68N\n",
		"run/udev/data/b8:0": "E:ID_BUS=ata\nE:ID_ATA_SATA=1\nE:ID_MODEL_ENC=WDC\\x20WD40EFRX-68N32N0\nE:ID_SERIAL_SHORT=WD-WCC7K1234567\n" +
			"E:ID_WWN=0x50014ee2b1234567\nE:ID_WWN_WITH_EXTENSION=0x50014ee2b1234567\n",
	}, map[string]string{
		"sys/class/block/sdb":     "../../" + strings.TrimPrefix(usb, "sys/"),
		"sys/class/block/sdb1":    "../../" + strings.TrimPrefix(usb, "sys/") + "/sdb1",
		"sys/class/block/nvme0n1": "../../" + strings.TrimPrefix(nvme, "sys/"),
		"sys/class/block/sda":     "../../" + strings.TrimPrefix(sata, "sys/"),
		"dev/mapper/stick":        "../sdb1", // resolved under the root
	})
	for _, c := range []struct {
		device string
		want   diskstate.Disk
	}{
		{"/dev/sdb1", diskstate.Disk{Size: 61438976 * 512, Removable: true, Rotational: true, Transport: "usb",
			Model: "Cruzer Blade", Vendor: "SanDisk", Serial: "4C530001"}},
		{"/dev/mapper/stick", diskstate.Disk{Size: 61438976 * 512, Removable: true, Rotational: true, Transport: "usb",
			Model: "Cruzer Blade", Vendor: "SanDisk", Serial: "4C530001"}},
		{"/dev/nvme0n1", diskstate.Disk{Size: 1953525168 * 512, Transport: "nvme",
			Model: "Samsung SSD 970 EVO Plus 1TB", Serial: "S4EWNX0R123456", WWN: "eui.0025388b91b2c3d4"}},
		{"/dev/sda", diskstate.Disk{Size: 7814037168 * 512, ReadOnly: true, Rotational: true, Transport: "sata",
			Model: "WDC WD40EFRX-68N32N0", Serial: "WD-WCC7K1234567", WWN: "0x50014ee2b1234567"}},
		{"/dev/sdz", diskstate.Disk{}}, // unknown: nothing invented
	} {
		d := diskstate.Disk{Device: c.device}
		Attrs{Root: root}.Fill(&d)
		c.want.Device = c.device
		if !reflect.DeepEqual(d, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.device, d, c.want)
		}
	}
}

func TestParseUdevData(t *testing.T) {
	env := parseUdevData(strings.NewReader("I:123\nE:A=1\nE:=x\nE:B\nE:C=a=b\nE:A=2\nS:link\n"))
	want := udevEnv{"A": "1", "C": "a=b"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("got %v, want %v", env, want)
	}
}

// TestFillFSOtherFilesystem: a mount point that holds another filesystem
// than the disk's (a sandbox's stand-in directory) gives no fill level.
func TestFillFSOtherFilesystem(t *testing.T) {
	for _, d := range []diskstate.Disk{
		{Device: "/dev/null", Mountpoints: []string{"/"}},
		{Device: "/dev/nonexistent-diskd", Mountpoints: []string{"/"}},
		{Device: "/dev/null", Mountpoints: []string{"/nonexistent-diskd"}},
	} {
		Attrs{}.fillFS(&d)
		if d.FSSize != 0 || d.FSAvail != 0 || d.FSUsed != 0 {
			t.Errorf("%s on %s: fill level %d/%d/%d, want none", d.Device, d.Mountpoints[0], d.FSSize, d.FSAvail, d.FSUsed)
		}
	}
}
