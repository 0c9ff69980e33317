package scan

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/testbed"
)

func TestParseUevent(t *testing.T) {
	msg := func(parts ...string) []byte { return []byte(strings.Join(parts, "\x00") + "\x00") }
	loop := []string{"change@/devices/virtual/block/loop3", "ACTION=change", "DEVPATH=/devices/virtual/block/loop3",
		"SUBSYSTEM=block", "DEVNAME=loop3", "DEVTYPE=disk", "DISKSEQ=12", "SEQNUM=4242", "MAJOR=7", "MINOR=3"}
	with := func(i int, s string) []string { c := append([]string(nil), loop...); c[i] = s; return c }
	tests := []struct {
		name string
		in   []byte
		want *Uevent
	}{
		{"loop change", msg(loop...), &Uevent{Action: "change", DevName: "/dev/loop3", Subsystem: "block", DevType: "disk", DevPath: "/devices/virtual/block/loop3"}},
		{"no trailing NUL", []byte(strings.Join(loop, "\x00")), &Uevent{Action: "change", DevName: "/dev/loop3", Subsystem: "block", DevType: "disk", DevPath: "/devices/virtual/block/loop3"}},
		{"partition add", msg("add@/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", "ACTION=add",
			"DEVPATH=/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", "SUBSYSTEM=block", "DEVNAME=sda1", "DEVTYPE=partition", "PARTN=1", "SEQNUM=1"),
			&Uevent{Action: "add", DevName: "/dev/sda1", Subsystem: "block", DevType: "partition", DevPath: "/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1"}},
		{"no DEVNAME", msg("remove@/devices/virtual/net/veth0", "ACTION=remove", "DEVPATH=/devices/virtual/net/veth0", "SUBSYSTEM=net"),
			&Uevent{Action: "remove", Subsystem: "net", DevPath: "/devices/virtual/net/veth0"}},
		{"DEVNAME in a subdirectory", msg(with(4, "DEVNAME=mapper/x")...), &Uevent{Action: "change", DevName: "/dev/mapper/x", Subsystem: "block", DevType: "disk", DevPath: "/devices/virtual/block/loop3"}},
		{"libudev", append([]byte("libudev\x00\xfe\xed\xca\xfe"), msg(loop...)...), nil},
		{"empty", nil, nil},
		{"NULs only", []byte("\x00\x00\x00"), nil},
		{"header only", msg("change@/devices/x"), nil},
		{"no @ in header", msg(with(0, "change/devices/virtual/block/loop3")...), nil},
		{"header action differs", msg(with(0, "add@/devices/virtual/block/loop3")...), nil},
		{"header path differs", msg(with(0, "change@/devices/virtual/block/loop4")...), nil},
		{"unknown action", msg("explode@/devices/virtual/block/loop3", "ACTION=explode", "DEVPATH=/devices/virtual/block/loop3", "SUBSYSTEM=block"), nil},
		{"missing SUBSYSTEM", msg(with(3, "X=1")...), nil},
		{"relative DEVPATH", msg("change@devices/x", "ACTION=change", "DEVPATH=devices/x", "SUBSYSTEM=block"), nil},
		{"field without =", msg(with(6, "DISKSEQ")...), nil},
		{"empty field inside", msg(with(6, "")...), nil},
		{"lower-case key", msg(with(6, "diskseq=1")...), nil},
		{"repeated key", msg(with(6, "DEVNAME=loop4")...), nil},
		{"DEVNAME escapes /dev", msg(with(4, "DEVNAME=../etc/passwd")...), nil},
		{"DEVNAME not clean", msg(with(4, "DEVNAME=a//b")...), nil},
		{"DEVNAME empty", msg(with(4, "DEVNAME=")...), nil},
		{"absolute DEVNAME outside /dev", msg(with(4, "DEVNAME=/etc/shadow")...), nil},
		{"too long", msg(append(loop, "X="+strings.Repeat("x", maxUevent))...), nil},
		{"value too long", msg(append(loop, "X="+strings.Repeat("x", maxUeventValue+1))...), nil},
		{"too many fields", msg(append(loop, strings.Split(strings.Repeat("X=1,", maxUeventFields), ",")...)...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseUevent(tt.in)
			if tt.want == nil {
				if ok {
					t.Errorf("accepted: %+v", got)
				}
				return
			}
			if !ok || got != *tt.want {
				t.Errorf("got %+v (ok %v), want %+v", got, ok, *tt.want)
			}
		})
	}
}

// waitReturn waits for a watcher's error channel, failing after d.
func waitReturn(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	if err := testbed.Await(t, done, d, "return of the watcher after cancel"); err != nil {
		t.Errorf("watcher returned %v, want nil after cancel", err)
	}
}

// noLeak waits for the goroutine count to fall back to base.
func noLeak(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchUeventsCancel needs no privilege: opening the socket and
// stopping on cancel.
func TestWatchUeventsCancel(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchUevents(ctx, func(Uevent) {}) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	waitReturn(t, done, time.Second)
	t.Logf("returned %v after cancel", time.Since(start).Round(time.Microsecond))
	noLeak(t, base)
}

// runUevents runs s until cancel, passing its events on (up to 1024
// waiting; more are dropped); done has what run returned.
func runUevents(s *ueventSocket) (events <-chan Uevent, done <-chan error, cancel context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Uevent, 1024)
	errc := make(chan error, 1)
	go func() {
		errc <- s.run(ctx, func(ev Uevent) {
			select {
			case ch <- ev:
			default:
			}
		})
	}()
	return ch, errc, cancel
}

// TestWatchUeventsLoop attaches a loop device and waits for its event (root).
func TestWatchUeventsLoop(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "losetup")
	base := runtime.NumGoroutine()
	img := newImage(t, t.TempDir(), "ev.img", 4<<20)

	s, err := openUevents()
	if err != nil {
		t.Fatal(err)
	}
	events, done, cancel := runUevents(s)
	defer cancel()

	start := time.Now()
	dev := attachLoop(t, img)
	timeout := time.After(2 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-events:
			if ev.Subsystem != "block" {
				t.Errorf("non-block event passed on: %+v", ev)
			}
			if ev.DevName == dev && (ev.Action == "change" || ev.Action == "add") {
				t.Logf("%+v after %v", ev, time.Since(start).Round(time.Microsecond))
				found = true
			}
		case <-timeout:
			t.Fatalf("no change/add event for %s within 2s", dev)
		}
	}
	cancel()
	waitReturn(t, done, time.Second)
	noLeak(t, base)
}

// TestWatchUeventsOverflow fills a tiny receive buffer with synthetic
// uevents before reading: the watcher must report "overflow" (root).
func TestWatchUeventsOverflow(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "losetup")
	dev := attachLoop(t, newImage(t, t.TempDir(), "ovf.img", 4<<20))
	s, err := openUevents()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1); err != nil {
		unix.Close(s.fd)
		t.Fatal(err)
	}
	trigger := filepath.Join("/sys/class/block", filepath.Base(dev), "uevent")
	for i := 0; i < 200; i++ {
		if err := os.WriteFile(trigger, []byte("change"), 0o200); err != nil {
			unix.Close(s.fd)
			t.Fatalf("trigger uevent: %v", err)
		}
	}
	got, done, cancel := runUevents(s)
	defer cancel()
	timeout := time.After(2 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-got:
			seen = ev.Action == ActionOverflow
			if seen && ev != (Uevent{Action: ActionOverflow}) {
				t.Errorf("overflow event %+v", ev)
			}
		case <-timeout:
			t.Fatal("no overflow event within 2s")
		}
	}
	cancel()
	waitReturn(t, done, time.Second)
}
