package dbusapi

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
)

// nobody is the uid and gid that tests switch to with setpriv.
const nobody = "65534"

// requireRoot skips unless the test runs as root with setpriv and busctl
// (to call the bus as another user); under CI=true it fails instead.
func requireRoot(t *testing.T) {
	t.Helper()
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "setpriv", "busctl", "dbus-send")
}

// busctl runs busctl on address, as nobody when asNobody, and returns its
// combined output and whether it succeeded.
func busctl(t *testing.T, address string, asNobody bool, args ...string) (string, bool) {
	t.Helper()
	argv := append([]string{"busctl", "--address=" + address}, args...)
	if asNobody {
		argv = append([]string{"setpriv", "--reuid=" + nobody, "--regid=" + nobody, "--clear-groups"}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err == nil
}

// dbusSend calls method of the Finder with dbus-send as nobody and returns
// its output, which (unlike busctl's) has the error's name and message.
func dbusSend(t *testing.T, address, method string) (string, bool) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups",
		"dbus-send", "--bus="+address, "--print-reply", "--dest="+BusName, string(ObjectPath),
		Interface+"."+method).CombinedOutput()
	return string(out), err == nil
}

// TestSystemPolicy applies packaging/dbus/org.diskd.conf to a bus with the
// system bus's default policy: anyone may query, only root may act or own
// the name.
func TestSystemPolicy(t *testing.T) {
	requireRoot(t)
	bus := dbustest.System(t, dbustest.File(t, "packaging/dbus/org.diskd.conf"))
	acts := &fakeActions{}
	serve(t, Options{Bus: bus.Address, Inv: newInv("host-a", "alpha"), Actions: acts, Version: "1"})
	c := dial(t, bus.Address)
	waitServing(t, c, "host-a")

	obj := []string{"org.diskd", string(ObjectPath)}
	call := func(method string, args ...string) []string {
		return append(append([]string{"call"}, obj...), append([]string{Interface, method}, args...)...)
	}
	tests := []struct {
		name     string
		asNobody bool
		args     []string
		ok       bool
		want     string
	}{
		{"nobody lists", true, call("List"), true, "aa{sv} 0"},
		{"nobody finds", true, call("Find", "s", "x"), true, "aa{sv} 0"},
		{"nobody lists peers", true, call("Peers"), true, "aa{sv} 0"},
		{"nobody reads a property", true, append(append([]string{"get-property"}, obj...), Interface, "Hostname"), true, `s "alpha"`},
		{"nobody reads all properties", true, []string{"call", "org.diskd", string(ObjectPath), "org.freedesktop.DBus.Properties", "GetAll", "s", Interface}, true, "HostId"},
		{"nobody introspects", true, append([]string{"introspect"}, obj...), true, "org.diskd.Finder"},
		{"nobody may not refresh", true, call("Refresh"), false, "Access denied"},
		{"nobody may not announce", true, call("Announce"), false, "Access denied"},
		{"nobody may not ping", true, call("Ping"), false, "Access denied"},
		{"nobody may not set", true, append(append([]string{"set-property"}, obj...), Interface, "Hostname", "s", "evil"), false, "Access denied"},
		{"root refreshes", false, call("Refresh"), true, ""},
		{"root announces", false, call("Announce"), true, ""},
		{"root pings", false, call("Ping"), true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := busctl(t, bus.Address, tc.asNobody, tc.args...)
			if ok != tc.ok || !strings.Contains(out, tc.want) {
				t.Errorf("busctl %s: ok=%v, output %q; want ok=%v and %q", strings.Join(tc.args, " "), ok, out, tc.ok, tc.want)
			}
		})
	}
	// The bus refused them (dbus-send shows the bus's own message).
	for _, m := range []string{"Refresh", "Announce", "Ping"} {
		out, ok := dbusSend(t, bus.Address, m)
		if ok || !strings.Contains(out, ErrorAccessDenied) || !strings.Contains(out, "Rejected send message") {
			t.Errorf("dbus-send %s as nobody: ok=%v %q, want the bus's AccessDenied", m, ok, out)
		}
	}
	// The denied calls never reached the daemon.
	if acts.refresh.Load() != 1 || acts.announce.Load() != 1 || acts.ping.Load() != 1 {
		t.Errorf("actions ran %d/%d/%d times, want once each (root's calls only)",
			acts.refresh.Load(), acts.announce.Load(), acts.ping.Load())
	}

	// Only root may own the name.
	if got := ownAsNobody(t, bus.Address); !strings.Contains(got, "AccessDenied") {
		t.Errorf("nobody requesting org.diskd: %q, want AccessDenied", got)
	}
}

// TestDaemonChecksCaller: on a bus whose policy lets everyone call
// everything (a session or private bus), the daemon itself still refuses
// Refresh, Announce and Ping to other users.
func TestDaemonChecksCaller(t *testing.T) {
	requireRoot(t)
	open := filepath.Join(t.TempDir(), "open.conf")
	err := os.WriteFile(open, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><policy context="default"><allow own="*"/><allow send_type="method_call"/></policy></busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bus := dbustest.System(t, open)
	acts := &fakeActions{}
	serve(t, Options{Bus: bus.Address, Inv: newInv("h", "n"), Actions: acts})
	c := dial(t, bus.Address)
	waitServing(t, c, "h")
	for _, m := range []string{"Refresh", "Announce", "Ping"} {
		out, ok := dbusSend(t, bus.Address, m)
		want := ErrorAccessDenied + ": " + strings.ToLower(m) + " is allowed only for root; the caller is uid " + nobody
		if ok || !strings.Contains(out, want) {
			t.Errorf("%s as nobody: ok=%v %q, want a refusal with %q", m, ok, out, want)
		}
	}
	if out, ok := busctl(t, bus.Address, true, "call", BusName, string(ObjectPath), Interface, "List"); !ok {
		t.Errorf("List as nobody failed: %s", out)
	}
	if n := acts.refresh.Load() + acts.announce.Load() + acts.ping.Load(); n != 0 {
		t.Errorf("%d actions ran for nobody", n)
	}
	if err := c.Run(context.Background(), diskstate.ActionRefresh); err != nil {
		t.Errorf("Refresh as root: %v", err)
	}
}

// ownAsNobody runs this test binary as nobody to request org.diskd on
// address and returns what it printed.
func ownAsNobody(t *testing.T, address string) string {
	t.Helper()
	bin := filepath.Join(testbed.OpenTempDir(t), "dbusapi.test")
	testbed.CopyTestBinary(t, bin)
	cmd := exec.Command("setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups",
		bin, "-test.run=^TestHelperOwnName$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DISKD_TEST_OWN_ADDRESS="+address)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TestHelperOwnName is not a test: ownAsNobody runs it in a child process.
func TestHelperOwnName(t *testing.T) {
	address := os.Getenv("DISKD_TEST_OWN_ADDRESS")
	if address == "" {
		return // the helper of TestSystemPolicy, not a test of its own
	}
	conn, err := dbus.Connect(address)
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer conn.Close()
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		fmt.Printf("RequestName: %s: %v\n", err.(dbus.Error).Name, err)
		return
	}
	fmt.Println("RequestName:", reply)
}

// TestPolicyDaemonUser: the policy lets the service's own user (diskd on a
// real system; nobody here, in a copy) own the name.
func TestPolicyDaemonUser(t *testing.T) {
	requireRoot(t)
	data, err := os.ReadFile(dbustest.File(t, "packaging/dbus/org.diskd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.Replace(string(data), `<policy user="diskd">`, `<policy user="nobody">`, 1)
	if policy == string(data) {
		t.Fatal(`org.diskd.conf has no <policy user="diskd">`)
	}
	p := filepath.Join(t.TempDir(), "org.diskd.conf")
	if err := os.WriteFile(p, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	bus := dbustest.System(t, p)
	if got := ownAsNobody(t, bus.Address); !strings.Contains(got, "RequestName: primary owner") {
		t.Errorf("the service user requesting org.diskd: %q, want primary owner", got)
	}
}
