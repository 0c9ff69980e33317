package testbed

import (
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DiskOpts describes a disk to create.
type DiskOpts struct {
	// Label is the filesystem label (ext4: ≤ 16 bytes, vfat: ≤ 11).
	Label string
	// FSType is "ext4", "ext2", "ext3", "vfat", "swap", or "" for a blank
	// disk with no filesystem.
	FSType string
	// SizeMB is the image size; 0 means 32. Images are sparse.
	SizeMB int
}

// Disk is an image file in the lab directory attached as a loop device.
type Disk struct {
	// Path is the loop device, such as /dev/loop3. Detach and Attach keep
	// it, so the host's --device flag keeps matching.
	Path string
	// Image is the backing image file.
	Image string
	// Opts is what the disk was made with.
	Opts DiskOpts

	host     *Host
	mu       sync.Mutex
	attached bool
	mountDir string
}

// AddDisk creates a sparse image, formats it as opts says and attaches it
// with "losetup -f --show". The lab records the loop device and detaches it
// in Close. A daemon started on the host afterwards gets --device Path.
func (h *Host) AddDisk(opts DiskOpts) (*Disk, error) {
	if opts.SizeMB == 0 {
		opts.SizeMB = 32
	}
	if opts.SizeMB < 0 {
		return nil, fmt.Errorf("testbed: bad disk size %d MB", opts.SizeMB)
	}
	var mkfs []string
	switch opts.FSType {
	case "ext2", "ext3", "ext4":
		mkfs = []string{"mkfs." + opts.FSType, "-q", "-F"}
		if opts.Label != "" {
			mkfs = append(mkfs, "-L", opts.Label)
		}
	case "vfat":
		mkfs = []string{"mkfs.vfat"}
		if opts.Label != "" {
			mkfs = append(mkfs, "-n", opts.Label)
		}
	case "swap":
		mkfs = []string{"mkswap"}
		if opts.Label != "" {
			mkfs = append(mkfs, "-L", opts.Label)
		}
	case "":
		if opts.Label != "" {
			return nil, errors.New("testbed: a blank disk (FSType \"\") cannot have a label")
		}
	default:
		return nil, fmt.Errorf("testbed: unsupported FSType %q", opts.FSType)
	}

	l := h.lab
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("testbed: lab is closed")
	}
	image := filepath.Join(l.Dir, h.Name+"-d"+strconv.Itoa(len(l.disks)+1)+".img")
	d := &Disk{Image: image, Opts: opts, host: h}
	l.disks = append(l.disks, d) // a placeholder until the path is known
	l.mu.Unlock()

	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	err = f.Truncate(int64(opts.SizeMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	if mkfs != nil {
		if err := run(mkfs[0], append(mkfs[1:], image)...); err != nil {
			return nil, err
		}
	}
	// Every disk gets a loop device made for it, numbered from 1000 up,
	// never the first free one ("losetup -f"): while a disk is detached its
	// device is free, and another test's "losetup -f" would take it and
	// its disk would show up as this host's.
	dev, err := attachOwnLoop(image)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.Path = dev
	d.attached = true
	d.mu.Unlock()

	h.mu.Lock()
	h.disks = append(h.disks, d)
	h.mu.Unlock()
	return d, nil
}

// Host returns the host the disk belongs to.
func (d *Disk) Host() *Host { return d.host }

// Attached reports whether the image is attached to Path.
func (d *Disk) Attached() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attached
}

// Detach detaches the loop device (unmounting it first if Mount mounted
// it) and waits until the kernel has let go of it (≤ 5s: a device that a
// prober holds open is detached when the prober closes it).
func (d *Disk) Detach() error {
	if err := d.Unmount(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.attached {
		return fmt.Errorf("testbed: %s is not attached", d.Path)
	}
	if err := run("losetup", "-d", d.Path); err != nil {
		return err
	}
	d.attached = false
	deadline := time.Now().Add(5 * time.Second)
	for backingFile(d.Path) != "" {
		if time.Now().After(deadline) {
			return fmt.Errorf("testbed: %s still attached 5s after losetup -d", d.Path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Attach re-attaches the image to the same loop device (losetup PATH IMAGE).
// It fails if something else took that device meanwhile.
func (d *Disk) Attach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.attached {
		return fmt.Errorf("testbed: %s is attached already", d.Path)
	}
	if err := run("losetup", d.Path, d.Image); err != nil {
		return err
	}
	d.attached = true
	return nil
}

// Mount mounts the disk on dir, or on a new directory in the lab's MountDir
// when dir is "" (daemons already running see only such mounts for sure).
// Mountpoint tells where. Close unmounts it. The running kernel must know
// the filesystem (some VM kernels have ext4 but no vfat).
func (d *Disk) Mount(dir string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mountDir != "" {
		return fmt.Errorf("testbed: %s is mounted on %s already", d.Path, d.mountDir)
	}
	if !d.attached {
		return fmt.Errorf("testbed: %s is not attached", d.Path)
	}
	if dir == "" {
		var err error
		dir, err = os.MkdirTemp(d.host.lab.MountDir, d.host.Name+"-")
		if err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
	}
	if err := run("mount", d.Path, dir); err != nil {
		return err
	}
	d.mountDir = dir
	return nil
}

// Unmount unmounts what Mount mounted; without a mount it does nothing.
func (d *Disk) Unmount() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mountDir == "" {
		return nil
	}
	if err := run("umount", d.mountDir); err != nil {
		return err
	}
	d.mountDir = ""
	return nil
}

// Mountpoint returns where Mount mounted the disk, or "".
func (d *Disk) Mountpoint() string { return d.mountpoint() }

func (d *Disk) mountpoint() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mountDir
}

func (d *Disk) clearMount() {
	d.mu.Lock()
	d.mountDir = ""
	d.mu.Unlock()
}

// release detaches the loop device in Close, but only while it is still
// backed by this disk's image, and then removes the device made for it.
func (d *Disk) release() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer removeLoop(d.Path)
	if d.Path == "" || !d.attached {
		return nil
	}
	if bf := backingFile(d.Path); bf != d.Image {
		d.attached = false
		return nil
	}
	if err := run("losetup", "-d", d.Path); err != nil {
		return err
	}
	d.attached = false
	deadline := time.Now().Add(5 * time.Second)
	for backingFile(d.Path) == d.Image {
		if time.Now().After(deadline) {
			return fmt.Errorf("testbed: %s still attached 5s after losetup -d", d.Path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// backingFile returns the file behind a loop device, or "" when the device
// is not attached.
func backingFile(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
}

// Numbers of the loop devices made for disks.
const (
	ownLoopFirst = 1000
	ownLoopCount = 3000
)

// attachOwnLoop attaches image to a loop device that does not exist yet,
// which losetup creates, and returns its path.
func attachOwnLoop(image string) (string, error) {
	var errs []error
	for range 10 {
		n := ownLoopFirst + mathrand.IntN(ownLoopCount)
		if _, err := os.Stat("/sys/block/loop" + strconv.Itoa(n)); err == nil {
			continue // somebody else's
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		if err := run("losetup", dev, image); err != nil {
			removeLoop(dev)
			errs = append(errs, err)
			continue
		}
		return dev, nil
	}
	return "", fmt.Errorf("testbed: no loop device of its own for %s: %w", image, errors.Join(errs...))
}

// loopCtlRemove is LOOP_CTL_REMOVE of linux/loop.h.
const loopCtlRemove = 0x4C81

// removeLoop deletes a loop device, best effort: the kernel refuses
// (EBUSY) while it is attached or open, so it never removes one in use.
func removeLoop(dev string) {
	n, err := strconv.Atoi(strings.TrimPrefix(dev, "/dev/loop"))
	if err != nil || !strings.HasPrefix(dev, "/dev/loop") {
		return
	}
	f, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer f.Close()
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), loopCtlRemove, uintptr(n))
}
