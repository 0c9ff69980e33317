package scan

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// TestWatchChanges: attaching a loop device and mounting its filesystem
// each call changed (root); both watchers start and stop with ctx.
func TestWatchChanges(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "losetup", "mkfs.ext4")
	dir := t.TempDir()
	img := newImage(t, dir, "w.img", 16<<20)
	mustRun(t, "mkfs.ext4", "-q", "-F", img)

	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 1)
	unavailable := make(chan string, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchChanges(ctx, []string{"/dev/loop*"}, func() {
			select {
			case calls <- struct{}{}:
			default:
			}
		}, func(what string, err error) { unavailable <- what + ": " + err.Error() })
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("WatchChanges did not return after cancel")
		}
	}()
	time.Sleep(50 * time.Millisecond) // let both watchers start
	drain := func() {
		select {
		case <-calls:
		default:
		}
	}
	expect := func(what string) {
		t.Helper()
		select {
		case <-calls:
		case u := <-unavailable:
			t.Fatalf("%s: watcher unavailable: %s", what, u)
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: changed not called within 2s", what)
		}
	}
	drain()
	dev := attachLoop(t, img)
	expect("attach " + dev)

	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	drain()
	mountAt(t, dev, mnt, "ext4", 0, "")
	expect("mount of " + dev)
}
