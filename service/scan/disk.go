package scan

import (
	"unicode/utf8"
)

// Disk is one filesystem found on this host.
type Disk struct {
	Device      string   // device path as blkid names it, e.g. /dev/loop3
	UUID        string   // filesystem UUID (format depends on the type, e.g. "1234-ABCD" for vfat)
	PartUUID    string   // partition UUID from the partition table, if any
	Label       string   // filesystem label, may be empty
	Type        string   // filesystem type as blkid names it: ext4, vfat, swap, crypto_LUKS...
	Mountpoints []string // sorted, from the mount table; empty when not mounted
}

// Bounds on what this package returns. Longer strings are cut at a UTF-8
// character boundary; extra mount points and devices are dropped.
const (
	MaxDeviceLen     = 4096 // bytes of Disk.Device (PATH_MAX)
	MaxUUIDLen       = 128  // bytes of Disk.UUID and Disk.PartUUID
	MaxLabelLen      = 255  // bytes of Disk.Label (the longest labels, btrfs', are 255 bytes)
	MaxTypeLen       = 64   // bytes of Disk.Type
	MaxMountpointLen = 4096 // bytes of each mount point (PATH_MAX)
	MaxMountpoints   = 64   // mount points kept per disk
	MaxDisks         = 4096 // devices accepted from one blkid run

	// maxOutput caps how much of blkid's standard output is read.
	maxOutput = 16 << 20
	// maxStderr caps how much of blkid's standard error is kept.
	maxStderr = 64 << 10
)

// clean returns s as valid UTF-8 of at most max bytes: every byte that is
// not part of a valid UTF-8 sequence, and every NUL, becomes U+FFFD, and the
// result is cut at a character boundary.
func clean(s string, max int) string {
	ok := len(s) <= max
	if ok {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 || s[i] >= utf8.RuneSelf {
				ok = false
				break
			}
		}
	}
	if ok {
		return s // plain ASCII without NUL: the common case
	}
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0 {
			r = utf8.RuneError
		}
		// An invalid byte decodes as (RuneError, 1): one U+FFFD per byte.
		if len(b)+utf8.RuneLen(r) > max {
			break
		}
		b = utf8.AppendRune(b, r)
		i += size
	}
	return string(b)
}

// sanitize bounds and repairs every string of d.
func (d *Disk) sanitize() {
	d.Device = clean(d.Device, MaxDeviceLen)
	d.UUID = clean(d.UUID, MaxUUIDLen)
	d.PartUUID = clean(d.PartUUID, MaxUUIDLen)
	d.Label = clean(d.Label, MaxLabelLen)
	d.Type = clean(d.Type, MaxTypeLen)
}

// isDisk reports whether d names a filesystem: devices with neither a type
// nor a UUID (empty, or a partition table only) are not disks.
func (d *Disk) isDisk() bool {
	return d.Device != "" && (d.Type != "" || d.UUID != "")
}
