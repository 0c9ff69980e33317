package scan

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mustRun runs a command and returns its standard output; it fails the
// test with both outputs when the command fails.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\nstdout: %s\nstderr: %s", name, args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// newImage creates a sparse image file of the given size in a temp dir.
func newImage(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// attachLoop attaches img to a free loop device, detached again in
// t.Cleanup (also when the test fails).
func attachLoop(t *testing.T, img string) string {
	t.Helper()
	dev := strings.TrimSpace(mustRun(t, "losetup", "-f", "--show", img))
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("losetup printed %q", dev)
	}
	t.Cleanup(func() {
		// The kernel can be briefly busy right after an unmount.
		var out []byte
		var err error
		for i := 0; i < 20; i++ {
			out, err = exec.Command("losetup", "-d", dev).CombinedOutput()
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cleanup: losetup -d %s: %v: %s", dev, err, out)
	})
	return dev
}

// mountAt mounts src (fstype, flags, data) on dir and unmounts it in
// t.Cleanup, also when the test fails. The test may unmount it itself first.
func mountAt(t *testing.T, src, dir, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := unix.Mount(src, dir, fstype, flags, data); err != nil {
		t.Fatalf("mount %s on %s: %v", src, dir, err)
	}
	t.Cleanup(func() {
		err := unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return // unmounted now, or already
		}
		if err2 := unix.Unmount(dir, unix.MNT_DETACH); err2 != nil {
			t.Errorf("cleanup: unmount %s: %v, then %v", dir, err, err2)
		}
	})
}
