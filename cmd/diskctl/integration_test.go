package main

// Integration tests with real components: real dbus-daemon processes
// (dbustest), the real diskctl binary, dbusapi.Serve and a control socket
// server on one real inventory in this process, and for notifications a
// real notification daemon (dunst on Xvfb). The tests on simulated hosts
// with the real diskd binary are in twohosts_test.go.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/present"
	"github.com/diskd/diskd/service/testbed"
)

// network returns an inventory with a local disk and a peer with three.
func network(t *testing.T) *inventory.Inventory {
	t.Helper()
	inv := inventory.New(inventory.Options{HostID: "host-a", Hostname: "alpha"})
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sda1", UUID: "aaaa-1111", Label: "SYSTEM", Type: "ext4",
		Mountpoints: []string{"/"}}}, nil)
	err := inv.Apply(inventory.Announcement{HostID: "host-b", Hostname: "beta", BootID: "b1", Seq: 1,
		Interval: 10 * time.Second, Address: "10.77.0.2", Disks: []diskstate.Disk{
			{Device: "/dev/sdb1", UUID: "bbbb-2222", Label: "BACKUP-2019", Type: "ext4", Mountpoints: []string{"/mnt/backup"}},
			{Device: "/dev/sdc1", UUID: "cccc-3333", Label: "My Passport", Type: "exfat"},
			{Device: "/dev/sdd1", UUID: "dddd-4444", Label: "evil\x1b[2J\u202e<b>", Type: "vfat"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// TestSameAnswersAsControlSocket: diskctl over D-Bus prints what the
// control socket prints, in JSON and in tables.
func TestSameAnswersAsControlSocket(t *testing.T) {
	bus := dbustest.Session(t)
	d := startDaemon(t, bus.Address, network(t))
	bin := buildDiskctl(t)
	tests := []struct {
		name    string
		args    []string
		request string
		json    bool
	}{
		{"list --json", []string{"list", "--json"}, "list --json", true},
		{"list", []string{"list"}, "list", false},
		{"list glob", []string{"list", "BACK*"}, "list BACK*", false},
		{"list substring --json", []string{"--json", "list", "beta"}, "list --json beta", true},
		{"list nothing --json", []string{"list", "--json", "zzz"}, "list --json zzz", true},
		{"find label --json", []string{"find", "BACKUP-2019", "--json"}, "find --json BACKUP-2019", true},
		{"find words", []string{"find", "My", "Passport"}, "find My Passport", false},
		{"find escaped", []string{"find", "evil"}, "find evil", false},
		{"peers --json", []string{"peers", "--json"}, "peers --json", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := diskctl(t, bin, nil, false, append([]string{"--bus", bus.Address}, tc.args...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			want := controlDo(t, d.socket, tc.request)
			if tc.json {
				if !sameJSON(t, r.stdout, want, false) {
					t.Errorf("diskctl:\n%s\ncontrol socket:\n%s", r.stdout, want)
				}
				if strings.Count(r.stdout, "\n") != 1 {
					t.Errorf("JSON is not one line:\n%s", r.stdout)
				}
				return
			}
			if r.stdout != want {
				t.Errorf("diskctl:\n%s\ncontrol socket:\n%s", r.stdout, want)
			}
			if strings.ContainsAny(r.stdout, "\x1b\u202e") {
				t.Errorf("raw control characters in %q", r.stdout)
			}
		})
	}

	t.Run("peers table", func(t *testing.T) {
		r := diskctl(t, bin, nil, false, "--bus", bus.Address, "peers")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "HOSTNAME  HOST-ID  ADDRESS") ||
			!strings.HasPrefix(lines[1], "beta      host-b   10.77.0.2  3      ") {
			t.Errorf("exit %d:\n%s", r.code, r.stdout)
		}
	})
	t.Run("find nothing", func(t *testing.T) {
		r := diskctl(t, bin, nil, false, "--bus", bus.Address, "find", "zzz")
		if r.code != 1 || r.stdout != "" || r.stderr != "diskctl: no disk matches \"zzz\"\n" {
			t.Errorf("got %+v", r)
		}
		r = diskctl(t, bin, nil, false, "--bus", bus.Address, "find", "--json", "zzz")
		if r.code != 1 || r.stdout != "[]\n" || r.stderr != "" {
			t.Errorf("--json: got %+v", r)
		}
	})
	t.Run("status", func(t *testing.T) {
		r := diskctl(t, bin, nil, false, "--bus", bus.Address, "status", "--json")
		var got, want map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		if err := json.Unmarshal([]byte(controlDo(t, d.socket, "status --json")), &want); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"hostname", "host_id", "peers", "disks", "scan_error"} {
			if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
				t.Errorf("%s: diskctl %v, control socket %v", k, got[k], want[k])
			}
		}
		scanned, _ := time.Parse(time.RFC3339, fmt.Sprint(want["last_scan"]))
		if fmt.Sprint(got["last_scan"]) != scanned.Truncate(time.Second).Format(time.RFC3339) || got["version"] != "test" {
			t.Errorf("last_scan %v (control: %v), version %v", got["last_scan"], want["last_scan"], got["version"])
		}
		r = diskctl(t, bin, nil, false, "--bus", bus.Address, "status")
		for _, line := range []string{"version: test\n", "host: alpha\n", "host id: host-a\n", "peers: 1\n", "disks: 4\n", "scan error: none\n"} {
			if !strings.Contains(r.stdout, line) {
				t.Errorf("status lacks %q:\n%s", line, r.stdout)
			}
		}
	})
	t.Run("refresh without actions", func(t *testing.T) {
		r := diskctl(t, bin, nil, false, "--bus", bus.Address, "refresh")
		if r.code != 4 || r.stderr != "diskctl: refresh: refresh is not available in this daemon\n" {
			t.Errorf("got %+v", r)
		}
	})
}

// TestDaemonNotRunning: every command exits 3 and says how to start diskd;
// monitor waits for it instead.
func TestDaemonNotRunning(t *testing.T) {
	bus := dbustest.Session(t)
	bin := buildDiskctl(t)
	missing := t.TempDir() + "/none"
	systemMsg := "diskctl: diskd is not running on the system bus (org.diskd): start it with: systemctl start diskd\n"
	tests := []struct {
		env  []string
		args []string
		msg  string
	}{
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"list"}, systemMsg},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"find", "x", "--json"}, systemMsg},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"peers"}, systemMsg},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"status"}, systemMsg},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"refresh"}, systemMsg},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"announce"}, systemMsg},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, []string{"ping"}, systemMsg},
		{nil, []string{"--bus", bus.Address, "list"},
			"diskctl: diskd is not running on the bus at " + bus.Address + " (org.diskd): start it with: diskd -d --bus " + bus.Address + "\n"},
		{[]string{"DBUS_SESSION_BUS_ADDRESS=" + bus.Address}, []string{"--bus", "session", "list"},
			"diskctl: diskd is not running on the session bus (org.diskd): start it with: diskd -d --bus session\n"},
		{[]string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + missing}, []string{"list"},
			"diskctl: cannot reach the system bus: dial unix " + missing + ": connect: no such file or directory (is dbus running? systemctl status dbus)\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := diskctl(t, bin, tc.env, false, tc.args...)
			if r.code != 3 || r.stdout != "" || r.stderr != tc.msg {
				t.Errorf("exit %d, stderr %q; want exit 3 and %q", r.code, r.stderr, tc.msg)
			}
		})
	}

	t.Run("monitor waits", func(t *testing.T) {
		m := start(t, nil, bin, "--bus", bus.Address, "monitor", "--json")
		ok, _ := testbed.Poll(10*time.Second, func() (bool, string) {
			_, errs := m.output()
			return strings.Contains(errs, "diskd is not running on the bus at "+bus.Address+" (org.diskd); waiting for it"), ""
		})
		if !ok {
			_, errs := m.output()
			t.Fatalf("monitor did not say it waits: %q", errs)
		}
		inv := inventory.New(inventory.Options{HostID: "h", Hostname: "late"})
		startDaemon(t, bus.Address, inv)
		inv.SetLocal([]diskstate.Disk{{Device: "/dev/x", UUID: "u", Label: "LATE"}}, nil)
		line := m.waitLine(t, 10*time.Second, "LATE")
		var ev struct {
			Signal string
			Disk   diskstate.Disk
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Signal != "DiskAppeared" || !ev.Disk.Local {
			t.Errorf("monitor printed %s (%v)", line, err)
		}
		if err := m.stop(t); err != nil {
			t.Errorf("monitor after SIGTERM: %v, want exit 0", err)
		}
		if _, errs := m.output(); !strings.Contains(errs, "diskctl: diskd is running on the bus at") {
			t.Errorf("stderr %q lacks the arrival of diskd", errs)
		}
	})
}

// syncMonitor waits until a monitor is subscribed on the bus, then makes a
// local disk appear and waits until the monitor prints it.
func syncMonitor(t *testing.T, address string, inv *inventory.Inventory, m *proc) {
	t.Helper()
	waitSubscribed(t, address, m.cmd.Process.Pid)
	disk := diskstate.Disk{Device: "/dev/sync", UUID: "sync-uuid", Label: "LOCAL-SYNC", Type: "ext4"}
	inv.SetLocal(append(inv.LocalDisks(), disk), nil)
	m.waitLine(t, 10*time.Second, "LOCAL-SYNC")
}

// TestMonitorNotify: remote disks that appear become notifications of a
// real notification daemon, with their strings escaped; local ones do not.
func TestMonitorNotify(t *testing.T) {
	desk := startDesktop(t)
	bus := dbustest.Session(t) // diskd's bus, not the desktop's
	inv := inventory.New(inventory.Options{HostID: "host-a", Hostname: "alpha"})
	startDaemon(t, bus.Address, inv)
	bin := buildDiskctl(t)
	m := start(t, desk.env, bin, "--bus", bus.Address, "monitor", "--notify")
	syncMonitor(t, bus.Address, inv, m)

	hostile := "<b>Fotos & Co</b>\x1b[31m"
	err := inv.Apply(inventory.Announcement{HostID: "host-b", Hostname: "beta<i>", BootID: "b", Seq: 1,
		Interval: 10 * time.Second, Authenticated: true, Disks: []diskstate.Disk{
			{Device: "/dev/sdb1", UUID: "bbbb-2222", Label: "BACKUP-2019", Type: "ext4"},
			{Device: "/dev/sdc1", UUID: "cccc-3333", Label: hostile, Type: "vfat"},
			{Device: "/dev/sdd1", UUID: "dddd-4444", Type: "xfs"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	var got []shown
	ok, _ := testbed.Poll(10*time.Second, func() (bool, string) {
		got = desk.history(t)
		return len(got) >= 3, ""
	})
	if !ok {
		lines, errs := m.output()
		t.Fatalf("dunst has %d notifications, want 3: %+v\nmonitor:\n%s\n%s", len(got), got, strings.Join(lines, "\n"), errs)
	}
	want := map[string]string{ // summary → body
		"BACKUP-2019":           "on beta&lt;i&gt;: /dev/sdb1 (ext4)",
		present.Escape(hostile): "on beta&lt;i&gt;: /dev/sdc1 (vfat)",
		"dddd-4444":             "on beta&lt;i&gt;: /dev/sdd1 (xfs)",
	}
	for _, n := range got {
		body, ok := want[n.Summary]
		if !ok {
			t.Errorf("unexpected notification %+v (a local disk?)", n)
			continue
		}
		if n.Body != body || n.AppName != "diskd" || n.Category != "device.added" {
			t.Errorf("notification %+v, want body %q, app diskd, category device.added", n, body)
		}
		delete(want, n.Summary)
	}
	if len(want) > 0 {
		t.Errorf("missing notifications: %v", want)
	}
	if out := desk.dunstctl(t, "count", "history"); strings.TrimSpace(out) != "3" {
		t.Errorf("dunstctl count history = %q, want 3", out)
	}
	if err := m.stop(t); err != nil {
		t.Errorf("monitor --notify after SIGTERM: %v, want exit 0", err)
	}
}

// TestNotifyQuietAfterDiskdStarts: the disks a freshly started diskd
// learns from its peers are not news.
func TestNotifyQuietAfterDiskdStarts(t *testing.T) {
	desk := startDesktop(t)
	bus := dbustest.Session(t)
	bin := buildDiskctl(t)
	m := start(t, desk.env, bin, "--bus", bus.Address, "monitor", "--notify")
	waitSubscribed(t, bus.Address, m.cmd.Process.Pid)
	inv := inventory.New(inventory.Options{HostID: "host-a", Hostname: "alpha"})
	startDaemon(t, bus.Address, inv)
	err := inv.Apply(inventory.Announcement{HostID: "host-b", Hostname: "beta", BootID: "b", Seq: 1,
		Interval: 10 * time.Second, Disks: []diskstate.Disk{{Device: "/dev/sdb1", UUID: "u-b", Label: "OLD-NEWS", Type: "ext4"}}})
	if err != nil {
		t.Fatal(err)
	}
	m.waitLine(t, 10*time.Second, "OLD-NEWS")
	// monitor handles one signal at a time: once it printed the next one,
	// it is done with OLD-NEWS, notification or not.
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/x", UUID: "u-x", Label: "NEXT"}}, nil)
	m.waitLine(t, 10*time.Second, "NEXT")
	if got := desk.history(t); len(got) != 0 {
		t.Errorf("notifications right after diskd started: %+v", got)
	}
	if _, errs := m.output(); !strings.Contains(errs, "diskctl: diskd is running on the bus at") {
		t.Errorf("stderr %q lacks the arrival of diskd", errs)
	}
}

// TestNotifyWithoutSessionBus: --notify needs a session bus and says so.
func TestNotifyWithoutSessionBus(t *testing.T) {
	bus := dbustest.Session(t)
	bin := buildDiskctl(t)
	r := diskctl(t, bin, []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=" + t.TempDir() + "/none"}, false,
		"--bus", bus.Address, "monitor", "--notify")
	if r.code != 4 || !strings.HasPrefix(r.stderr, "diskctl: monitor --notify: cannot reach the session bus for notifications") {
		t.Errorf("got %+v", r)
	}
}

// TestAsNobody: with the real policy on a system-like bus, a user who is
// not root can list and monitor, but not refresh.
func TestAsNobody(t *testing.T) {
	requireRoot(t)
	bus := dbustest.System(t, dbustest.File(t, "packaging/dbus/org.diskd.conf"))
	inv := network(t)
	d := startDaemon(t, bus.Address, inv)
	bin := buildDiskctl(t)
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}

	r := diskctl(t, bin, env, true, "list", "--json")
	if r.code != 0 || !sameJSON(t, r.stdout, controlDo(t, d.socket, "list --json"), false) {
		t.Errorf("list as nobody: %+v", r)
	}
	for _, cmd := range []string{"refresh", "announce", "ping"} {
		r = diskctl(t, bin, env, true, cmd)
		want := fmt.Sprintf("diskctl: %s: access denied: only root may %s (try: sudo diskctl %s)\n", cmd, cmd, cmd)
		if r.code != 4 || r.stderr != want {
			t.Errorf("%s as nobody: exit %d %q, want 4 %q", cmd, r.code, r.stderr, want)
		}
	}
	m := start(t, env, "setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups", bin, "monitor", "--json")
	syncMonitor(t, bus.Address, inv, m)
	if err := m.stop(t); err != nil {
		t.Errorf("monitor as nobody: %v", err)
	}
}
