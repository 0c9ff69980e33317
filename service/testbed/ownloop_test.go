package testbed_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// A disk keeps its high-numbered loop device across Detach and
// Attach, and Close removes the device.
func TestOwnLoop(t *testing.T) {
	l := testbed.NewT(t)
	h := l.AddHostT(t, "h1")
	d := h.AddDiskT(t, testbed.DiskOpts{Label: "OWN", FSType: "ext4"})
	n, err := strconv.Atoi(strings.TrimPrefix(d.Path, "/dev/loop"))
	if err != nil || n < 1000 {
		t.Fatalf("disk on %s, want /dev/loopN with N ≥ 1000", d.Path)
	}
	for range 2 {
		if err := d.Detach(); err != nil {
			t.Fatal(err)
		}
		if err := d.Attach(); err != nil {
			t.Fatal(err)
		}
	}
	sys := filepath.Join("/sys/block", filepath.Base(d.Path))
	if _, err := os.Stat(sys); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sys); !os.IsNotExist(err) {
		t.Errorf("%s still there after Close (%v)", sys, err)
	}
}

// A mount made after a process entered a host's namespace (as a daemon
// does) is visible to that process: Disk.Mount mounts below the lab's
// shared MountDir.
func TestMountReachesRunningProcesses(t *testing.T) {
	l := testbed.NewT(t)
	h := l.AddHostT(t, "h1")
	d := h.AddDiskT(t, testbed.DiskOpts{Label: "M", FSType: "ext4"})
	cmd := h.Command("sh", "-c", `read x; grep -c " `+l.MountDir+`/" /proc/self/mountinfo; read x; grep -c " `+l.MountDir+`/" /proc/self/mountinfo; exit 0`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	time.Sleep(100 * time.Millisecond) // let it enter its namespace
	if err := d.Mount(""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Mountpoint(), l.MountDir+"/") {
		t.Errorf("mount point %s is not below %s", d.Mountpoint(), l.MountDir)
	}
	stdin.Write([]byte("\n"))
	time.Sleep(100 * time.Millisecond)
	if err := d.Unmount(); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("\n"))
	stdin.Close()
	err = cmd.Wait()
	waited = true
	if err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got := strings.Fields(out.String()); len(got) != 2 || got[0] != "1" || got[1] != "0" {
		t.Errorf("mounts below MountDir seen by the running process: %q, want 1 while mounted, 0 after", got)
	}
}
