package scan

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// mountinfoPath is the mount table WatchMounts watches.
const mountinfoPath = "/proc/self/mountinfo"

// WatchMounts calls fn each time the mount table of this process's mount
// namespace changes (a mount, an unmount, a remount), until ctx is done; it
// then returns nil. It returns an error at once when /proc/self/mountinfo
// cannot be opened (the caller then falls back to polling), and later only
// if polling it fails.
//
// The kernel reports a change by POLLPRI on an open mountinfo file; fn is
// called synchronously, once per wake-up, which may cover several changes.
// The caller should debounce.
func WatchMounts(ctx context.Context, fn func()) error {
	mw, err := openMountWatch()
	if err != nil {
		return err
	}
	return mw.run(ctx, fn)
}

// mountWatch is an open mount table, ready to be watched.
type mountWatch struct{ fd int }

func openMountWatch() (*mountWatch, error) {
	fd, err := unix.Open(mountinfoPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mount watch: cannot open %s: %w", mountinfoPath, err)
	}
	return &mountWatch{fd: fd}, nil
}

// run watches until ctx is done and closes the file.
func (mw *mountWatch) run(ctx context.Context, fn func()) error {
	err := pollLoop(ctx, mw.fd, unix.POLLPRI|unix.POLLERR, func(rev int16) error {
		// mounts_poll() (fs/proc_namespace.c) reports a change once per
		// event counter value and remembers it: no read is needed.
		if rev&(unix.POLLPRI|unix.POLLERR) == 0 {
			return fmt.Errorf("unexpected poll events %#x on %s", rev, mountinfoPath)
		}
		fn()
		return nil
	})
	if err != nil {
		return fmt.Errorf("mount watch: %w", err)
	}
	return nil
}
