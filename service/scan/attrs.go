package scan

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/diskstate"
)

// maxAttrFile caps how much of one sysfs attribute or udev database file is
// read.
const maxAttrFile = 64 << 10

// Attrs reads what the kernel and udev know about block devices: sysfs
// attributes under Root/sys/class/block and the udev database under
// Root/run/udev/data. Root is "/" on a real host; tests build a tree of
// their own. It runs no program and never writes. A value that is not there
// stays empty or zero.
type Attrs struct {
	Root string // "" means "/"
}

func (a Attrs) path(p string) string {
	root := a.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, p)
}

// Fill sets d's device attributes (size, read_only, removable, rotational,
// transport, model, vendor, serial, wwn) from sysfs and the udev database.
// d.Device names the device node (/dev/sdb1, or a symlink such as
// /dev/mapper/x, which is resolved under Root).
func (a Attrs) Fill(d *diskstate.Disk) {
	sys, ok := a.sysDir(d.Device)
	if !ok {
		return
	}
	whole := sys
	if exists(filepath.Join(sys, "partition")) {
		whole = filepath.Dir(sys)
	}
	if n, ok := readUint(filepath.Join(sys, "size")); ok {
		d.Size = n * 512 // sysfs counts 512-byte sectors, whatever the device's block size
	}
	d.ReadOnly = readBool(filepath.Join(sys, "ro")) || readBool(filepath.Join(whole, "ro"))
	d.Removable = readBool(filepath.Join(whole, "removable"))
	d.Rotational = readBool(filepath.Join(whole, "queue", "rotational"))

	env := a.udev(sys)
	if whole != sys {
		for k, v := range a.udev(whole) {
			if _, ok := env[k]; !ok {
				env[k] = v
			}
		}
	}
	dev := filepath.Join(whole, "device")
	d.Model = first(env.enc("ID_MODEL_ENC"), env["ID_MODEL"], readText(filepath.Join(dev, "model")))
	d.Vendor = first(env.enc("ID_VENDOR_ENC"), env["ID_VENDOR"], readText(filepath.Join(dev, "vendor")))
	d.Serial = first(env["ID_SERIAL_SHORT"], readText(filepath.Join(dev, "serial")))
	d.WWN = first(env["ID_WWN_WITH_EXTENSION"], env["ID_WWN"], readText(filepath.Join(whole, "wwid")),
		readText(filepath.Join(dev, "wwid")))
	d.Transport = transport(env, whole)
}

// sysDir returns the sysfs directory of a device node, resolved.
func (a Attrs) sysDir(device string) (string, bool) {
	names := []string{filepath.Base(device)}
	if real, err := filepath.EvalSymlinks(a.path(device)); err == nil {
		names = append(names, filepath.Base(real))
	}
	for _, n := range names {
		if n == "." || n == "/" || n == ".." {
			continue
		}
		dir, err := filepath.EvalSymlinks(a.path(filepath.Join("sys/class/block", n)))
		if err == nil && exists(filepath.Join(dir, "dev")) {
			return dir, true
		}
	}
	return "", false
}

// udevEnv is the E: properties of one device in the udev database.
type udevEnv map[string]string

// enc returns a property in udev's \xNN encoding, decoded.
func (e udevEnv) enc(key string) string { return decodeUdev([]byte(e[key])) }

// udev reads the udev database entry of the device whose sysfs directory
// is sys: the file b<major>:<minor>, its E:KEY=VALUE lines.
func (a Attrs) udev(sys string) udevEnv {
	env := udevEnv{}
	dev := readText(filepath.Join(sys, "dev"))
	if dev == "" || strings.ContainsAny(dev, "/.") {
		return env
	}
	f, err := os.Open(a.path(filepath.Join("run/udev/data", "b"+dev)))
	if err != nil {
		return env
	}
	defer f.Close()
	return parseUdevData(io.LimitReader(f, maxAttrFile))
}

// parseUdevData parses a udev database file: of its lines, those of the
// form E:KEY=VALUE are properties; the first value of a key counts.
func parseUdevData(r io.Reader) udevEnv {
	env := udevEnv{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxAttrFile)
	for sc.Scan() {
		line, ok := bytes.CutPrefix(sc.Bytes(), []byte("E:"))
		if !ok {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok || len(k) == 0 {
			continue
		}
		if _, dup := env[string(k)]; !dup {
			env[string(k)] = string(v)
		}
	}
	return env
}

// transport names how the disk is attached, as lsblk's TRAN column does:
// from udev's ID_BUS where it says, else from the device's place in sysfs.
func transport(env udevEnv, whole string) string {
	switch env["ID_BUS"] {
	case "usb":
		return "usb"
	case "ata":
		if env["ID_ATA_SATA"] == "1" {
			return "sata"
		}
		return "ata"
	case "ieee1394":
		return "ieee1394"
	}
	name := filepath.Base(whole)
	switch {
	case strings.HasPrefix(name, "nvme"):
		return "nvme"
	case strings.HasPrefix(name, "mmcblk"):
		return "mmc"
	}
	// The device's place in the device tree: its sysfs directory resolved.
	real := whole
	switch {
	case strings.Contains(real, "/usb"):
		return "usb"
	case strings.Contains(real, "/ata"):
		return "sata"
	case strings.Contains(real, "/nvme"):
		return "nvme"
	}
	return ""
}

// fillFS sets a mounted filesystem's fs_size, fs_avail and fs_used from
// statfs of its first mount point, as df counts them: size is all blocks,
// avail what an unprivileged user may still write, used all blocks minus
// the free ones.
func (a Attrs) fillFS(d *diskstate.Disk) {
	if len(d.Mountpoints) == 0 {
		return
	}
	mp := a.path(d.Mountpoints[0])
	// The mount point must hold this very filesystem: in a sandbox (the
	// unit's ProtectHome=, PrivateTmp=) the path may name another one, or
	// nothing. A filesystem with an anonymous device number (btrfs) cannot
	// be told by it and is taken as found.
	var ms, ds unix.Stat_t
	if err := unix.Stat(mp, &ms); err != nil {
		return
	}
	if unix.Major(ms.Dev) != 0 {
		if err := unix.Stat(a.path(d.Device), &ds); err != nil || ds.Rdev != ms.Dev {
			return
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil || st.Blocks == 0 {
		return
	}
	bs := uint64(st.Bsize)
	if st.Frsize > 0 {
		bs = uint64(st.Frsize)
	}
	d.FSSize = st.Blocks * bs
	d.FSAvail = st.Bavail * bs
	d.FSUsed = (st.Blocks - min(st.Bfree, st.Blocks)) * bs
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// readText returns a small file's content without surrounding blanks,
// valid UTF-8; "" when it cannot be read.
func readText(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAttrFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readUint(p string) (uint64, bool) {
	n, err := strconv.ParseUint(readText(p), 10, 64)
	return n, err == nil
}

func readBool(p string) bool {
	n, ok := readUint(p)
	return ok && n != 0
}

// first returns the first of vs that is not blank, trimmed.
func first(vs ...string) string {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
