package scan

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/testbed"
)

func TestWatchMountsCancel(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchMounts(ctx, func() {}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	waitReturn(t, done, time.Second)
	noLeak(t, base)
}

// TestWatchMountsTmpfs mounts and unmounts a tmpfs (root): each is seen
// within 2s.
func TestWatchMountsTmpfs(t *testing.T) {
	testbed.RequireRoot(t)
	base := runtime.NumGoroutine()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mw, err := openMountWatch()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- mw.run(ctx, func() {
			select {
			case calls <- struct{}{}:
			default:
			}
		})
	}()
	// Other mounts on this machine may already have signalled: start clean.
	time.Sleep(20 * time.Millisecond)
	select {
	case <-calls:
	default:
	}

	expect := func(what string) {
		t.Helper()
		start := time.Now()
		select {
		case <-calls:
			t.Logf("%s seen after %v", what, time.Since(start).Round(time.Microsecond))
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: fn not called within 2s", what)
		}
	}
	mountAt(t, "tmpfs", dir, "tmpfs", 0, "size=1m")
	expect("mount")
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	expect("unmount")
	cancel()
	waitReturn(t, done, time.Second)
	noLeak(t, base)
}
