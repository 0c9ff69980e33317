package main

// Tests on two simulated hosts (service/testbed: network namespaces, real
// loop disks, the real diskd binary), each with its own system-like
// dbus-daemon carrying packaging/dbus/org.diskd.conf; diskd is started with
// --bus unix:path=SOCKET. They need root (skip without it, fail under
// CI=true).

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
)

// netTimeout bounds what crosses the simulated network: a uevent, a scan,
// an announcement.
const netTimeout = 20 * time.Second

type twoHosts struct {
	lab          *testbed.Lab
	alpha, beta  *testbed.Host
	busA, busB   *dbustest.Bus
	diskA, diskB *testbed.Disk
	// blank is a loop device on beta without a filesystem: tests make a
	// disk appear on it with mkfs and go away with wipefs.
	blank *testbed.Disk
	// hot is beta's disk BETA-NEW, detached before diskd starts: tests
	// attach it (losetup) and detach it again, as a USB disk comes and goes.
	hot *testbed.Disk
	bin string // diskctl
}

func setupTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	l := testbed.NewT(t)
	dbustest.Require(t)
	if _, err := exec.LookPath("busctl"); err != nil {
		t.Fatal("busctl is not installed (Debian package systemd): ", err)
	}
	diskd := testbed.Build(t)
	h := &twoHosts{lab: l, bin: buildDiskctl(t)}
	h.alpha, h.beta = l.AddHostT(t, "alpha"), l.AddHostT(t, "beta")
	h.diskA = h.alpha.AddDiskT(t, testbed.DiskOpts{Label: "ALPHA-DISK", FSType: "ext4"})
	h.diskB = h.beta.AddDiskT(t, testbed.DiskOpts{Label: "BETA-DISK", FSType: "ext4"})
	h.blank = h.beta.AddDiskT(t, testbed.DiskOpts{})
	h.hot = h.beta.AddDiskT(t, testbed.DiskOpts{Label: "BETA-NEW", FSType: "ext4"})
	if err := h.hot.Detach(); err != nil {
		t.Fatal(err)
	}
	policy := dbustest.File(t, "packaging/dbus/org.diskd.conf")
	h.busA, h.busB = dbustest.System(t, policy), dbustest.System(t, policy)
	if _, err := h.alpha.Start(diskd, "--bus", h.busA.Address); err != nil {
		t.Fatal(err)
	}
	if _, err := h.beta.Start(diskd, "--bus", h.busB.Address); err != nil {
		t.Fatal(err)
	}
	for _, bus := range []*dbustest.Bus{h.busA, h.busB} {
		c, err := dbusapi.Dial(context.Background(), bus.Address)
		if err != nil {
			t.Fatal(err)
		}
		ok, _ := testbed.Poll(15*time.Second, func() (bool, string) {
			_, err := c.Status(context.Background())
			return err == nil, ""
		})
		c.Close()
		if !ok {
			t.Fatalf("diskd did not take org.diskd on %s within 15s: is dbusapi.Serve wired into service/daemon?", bus.Address)
		}
	}
	// Alpha knows beta's disk.
	testbed.Eventually(t, netTimeout, func() (bool, string) {
		out := controlDo(t, h.alpha.Socket, "list")
		return strings.Contains(out, "BETA-DISK"), out
	})
	return h
}

func TestTwoHosts(t *testing.T) {
	h := setupTwoHosts(t)

	t.Run("busctl List on alpha's bus has beta's disk", func(t *testing.T) {
		var disks []diskstate.Disk
		if err := json.Unmarshal([]byte(controlDo(t, h.alpha.Socket, "find --json BETA-DISK")), &disks); err != nil || len(disks) != 1 {
			t.Fatalf("control find: %v %v", disks, err)
		}
		out, err := exec.Command("busctl", "--address="+h.busA.Address, "call", "org.diskd", "/org/diskd/Finder",
			"org.diskd.Finder", "List").CombinedOutput()
		if err != nil {
			t.Fatalf("busctl: %v: %s", err, out)
		}
		for _, want := range []string{`"label" s "BETA-DISK"`, `"uuid" s "` + disks[0].UUID + `"`, `"hostname" s "beta"`,
			`"local" b false`, `"label" s "ALPHA-DISK"`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("busctl List lacks %s:\n%s", want, out)
			}
		}
		t.Logf("busctl --address=%s call org.diskd /org/diskd/Finder org.diskd.Finder List\n%s", h.busA.Address, out)
		out, err = exec.Command("busctl", "--address="+h.busA.Address, "introspect", "org.diskd", "/org/diskd/Finder",
			"org.diskd.Finder").CombinedOutput()
		if err != nil || !strings.Contains(string(out), ".DiskAppeared") {
			t.Errorf("busctl introspect: %v\n%s", err, out)
		}
		t.Logf("busctl --address=%s introspect org.diskd /org/diskd/Finder org.diskd.Finder\n%s", h.busA.Address, out)
	})

	t.Run("diskctl gives the control socket's data", func(t *testing.T) {
		env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + h.busA.Address}
		for _, tc := range []struct{ args, request string }{
			{"list --json", "list --json"},
			{"find BETA-DISK --json", "find --json BETA-DISK"},
			{"find --json ALPHA", "find --json ALPHA"},
			{"list --json beta", "list --json beta"},
		} {
			r := diskctl(t, h.bin, env, false, strings.Fields(tc.args)...)
			if r.code != 0 {
				t.Fatalf("diskctl %s: %+v", tc.args, r)
			}
			want := controlDo(t, h.alpha.Socket, tc.request)
			if !sameJSON(t, r.stdout, want, true) {
				t.Errorf("diskctl %s:\n%s\ncontrol %s:\n%s", tc.args, r.stdout, tc.request, want)
			}
		}
		r := diskctl(t, h.bin, env, false, "list")
		if want := controlDo(t, h.alpha.Socket, "list"); r.stdout != want {
			t.Errorf("diskctl list:\n%s\ncontrol list:\n%s", r.stdout, want)
		}
		t.Logf("diskctl list\n%s", r.stdout)
		r = diskctl(t, h.bin, env, false, "find", "BETA-DISK", "--json")
		t.Logf("diskctl find BETA-DISK --json\n%s", r.stdout)
		r = diskctl(t, h.bin, env, false, "peers")
		t.Logf("diskctl peers\n%s", r.stdout)
		r = diskctl(t, h.bin, env, false, "status")
		t.Logf("diskctl status\n%s", r.stdout)
		if r := diskctl(t, h.bin, env, false, "refresh"); r.code != 0 {
			t.Errorf("diskctl refresh as root: %+v", r)
		}
	})

	t.Run("a disk attached on beta is DiskAppeared on alpha's bus", func(t *testing.T) {
		c, err := dbusapi.Dial(context.Background(), h.busA.Address)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch := make(chan *dbus.Signal, 1024)
		w, err := c.Watch(context.Background(), ch)
		if err != nil {
			t.Fatal(err)
		}
		m := start(t, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + h.busA.Address}, h.bin, "monitor")
		waitSubscribed(t, h.busA.Address, m.cmd.Process.Pid)

		// No refresh: beta's diskd hears the kernel (uevent) by itself.
		if err := h.hot.Attach(); err != nil {
			t.Fatal(err)
		}
		ev := expectSignal(t, w, ch, dbusapi.SignalDiskAppeared, "BETA-NEW")
		if ev.Disk.Local || ev.Disk.Hostname != "beta" || ev.Disk.Device != h.hot.Path || ev.Disk.Type != "ext4" {
			t.Errorf("DiskAppeared %+v", ev.Disk)
		}
		line := m.waitLine(t, netTimeout, "DiskAppeared")
		if !strings.Contains(line, "beta") || !strings.Contains(line, "BETA-NEW") {
			t.Errorf("diskctl monitor printed %q", line)
		}
		if err := h.hot.Detach(); err != nil {
			t.Fatal(err)
		}
		expectSignal(t, w, ch, dbusapi.SignalDiskDisappeared, "BETA-NEW")
		m.waitLine(t, netTimeout, "DiskDisappeared")
		lines, _ := m.output()
		t.Logf("diskctl monitor\n%s", strings.Join(lines, "\n"))
	})

	t.Run("monitor --notify shows beta's new disk", func(t *testing.T) {
		desk := startDesktop(t)
		m := start(t, append([]string{"DBUS_SYSTEM_BUS_ADDRESS=" + h.busA.Address}, desk.env...), h.bin, "monitor", "--notify")
		waitSubscribed(t, h.busA.Address, m.cmd.Process.Pid)
		h.format(t, "BETA-NOTIFY")
		defer h.wipe(t)
		m.waitLine(t, netTimeout, "BETA-NOTIFY")
		var got []shown
		ok, _ := testbed.Poll(10*time.Second, func() (bool, string) {
			got = desk.history(t)
			return len(got) > 0, ""
		})
		want := shown{AppName: "diskd", Summary: "BETA-NOTIFY", Body: "on beta: " + h.blank.Path + " (ext4) — unauthenticated: no key, anyone on the network could have sent this", Category: "device.added"}
		if !ok || len(got) != 1 || got[0] != want {
			t.Errorf("dunst history %+v, want [%+v]", got, want)
		}
		t.Logf("dunstctl history: %+v", got)
		if err := m.stop(t); err != nil {
			t.Errorf("monitor --notify: %v", err)
		}
	})
}

// format makes a filesystem on beta's blank loop device and has beta's
// diskd rescan (with diskctl refresh on beta's bus, as root).
func (h *twoHosts) format(t *testing.T, label string) {
	t.Helper()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", label, h.blank.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", h.blank.Path, err, out)
	}
	h.refreshBeta(t)
}

// wipe removes the filesystem from beta's blank loop device again.
func (h *twoHosts) wipe(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("wipefs", "-a", "-q", h.blank.Path).CombinedOutput(); err != nil {
		t.Fatalf("wipefs %s: %v: %s", h.blank.Path, err, out)
	}
	h.refreshBeta(t)
}

func (h *twoHosts) refreshBeta(t *testing.T) {
	t.Helper()
	if r := diskctl(t, h.bin, nil, false, "--bus", h.busB.Address, "refresh"); r.code != 0 {
		t.Fatalf("diskctl refresh on beta: %+v", r)
	}
}

// expectSignal waits for a Finder signal about the disk with label.
func expectSignal(t *testing.T, w *dbusapi.Watch, ch chan *dbus.Signal, signal, label string) dbusapi.Event {
	t.Helper()
	deadline := time.After(netTimeout)
	for {
		select {
		case sig := <-ch:
			ev, ok, err := w.Parse(sig)
			if err != nil {
				t.Fatal(err)
			}
			if ok && ev.Signal == signal && ev.Disk.Label == label {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s for %s within %v", signal, label, netTimeout)
		}
	}
}
