// Package scan learns which disks are attached to the local host.
//
// What it is: the part of diskd that looks at this host's block devices. It
// runs blkid and parses its output into [diskstate.Disk] values (device, filesystem
// type, UUID, partition UUID, label), reads the kernel mount table to attach
// mount points, and watches the kernel for changes: block-device uevents
// ([WatchUevents]) and mount table changes ([WatchMounts]).
//
// What it is not: it is not the scheduler (it runs no periodic loop of its
// own beyond the two watchers), it keeps no state between scans (every
// [Prober.Probe] is a fresh, complete answer), and it knows nothing about the
// network or about peers.
//
// # Running blkid
//
// blkid is run as
//
//	blkid -c /dev/null -o export -s TYPE -s UUID -s LABEL -s PARTUUID [--] [DEVICE...]
//
// "-c /dev/null" keeps blkid's cache out of the answer. The export format
// was chosen because, as util-linux 2.38 prints it, its line structure is
// unambiguous: each device starts with DEVNAME=, each tag is one NAME=value
// line, and no value ever contains a raw control character (a newline in a
// label is printed as "^J", other bytes below 32 and DEL in ^-notation, bytes
// of 128 and above in M-notation, so "ß" is printed as "M-CM-^_"), while
// space, backslash, both quotes, '$', '`', '<' and '>' are backslash-escaped
// (except right after a '^': "^\" is the byte 0x1c, and "本" is printed as
// "M-fM-^\M-,"). The default format shares the encoding; "-o udev" is
// lossless but does not name the device, so it cannot describe several
// devices at once; "-d" (raw bytes) would let a newline in a label forge
// lines.
//
// That encoding has one flaw: a literal '^' or "M-" in a label is printed as
// is, so such values cannot be decoded with certainty. [ParseBlkid] decodes
// them as blkid most likely meant them; [Prober.Probe] goes further and asks
// blkid again about just those devices with "-o udev", whose *_ENC values
// are lossless (\xNN escapes, a backslash always escaped), and takes that
// value when it encodes back to exactly what the export output showed.
//
// blkid reports a filesystem's version only in low-level probing mode, so
// Probe runs "blkid -p -o export -s VERSION -- DEVICE..." as well, on the
// disks found whose device, UUID and type its previous Probe did not find
// (a new filesystem has a new UUID): a rescan of unchanged disks runs blkid
// once.
//
// Devices with neither a filesystem type nor a UUID are not disks: empty
// devices and devices holding only a partition table (PTUUID/PTTYPE) are
// skipped. Every string that leaves this package is valid UTF-8 (invalid
// bytes and NUL become U+FFFD) and bounded (see [diskstate.MaxLabelLen] and its
// siblings).
//
// blkid runs in its own process group with LC_ALL=C; when it outlives
// [Prober.Timeout] (or the context ends) the whole group is killed with
// SIGKILL, and a grandchild that holds the output pipe open cannot delay
// Probe by more than half a second. Exit status 2 with no output means that
// nothing was found and is not an error.
//
// # Mount points
//
// Mount points come from /proc/self/mountinfo (github.com/moby/sys/mountinfo)
// and are matched by device number (major:minor of the device node), which
// is robust to symlinks and /dev/mapper names. Mounts with an anonymous
// device number (major 0, as btrfs reports) are matched through their source
// path instead. A device mounted several times (bind mounts) gets all its
// mount points, sorted and deduplicated.
//
// # Watchers
//
// [WatchUevents] listens to the kernel's uevent netlink socket (it works in
// network namespaces too) and reports block-device events; [WatchMounts]
// reports changes of the mount table. Both call their callback synchronously
// for every event, so a burst (a disk with ten partitions, a systemd boot
// mounting fifty filesystems) produces a burst of calls: the caller should
// debounce (for instance coalesce events for 100–500 ms before rescanning)
// and keep the callback quick. When the uevent socket overflows, the
// callback receives a synthetic Uevent with Action "overflow", meaning
// "events were lost, rescan everything". Both watchers return an error at
// once when they cannot start, so that the caller can fall back to polling,
// and return nil when their context ends.
package scan
