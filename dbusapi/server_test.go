package dbusapi

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
)

const waitSignal = 5 * time.Second

// TestServeSignalsPropertiesAndMethods runs Serve on a real dbus-daemon
// with a real inventory and checks every method, signal and property as a
// client sees them.
func TestServeSignalsPropertiesAndMethods(t *testing.T) {
	bus := dbustest.Session(t)
	inv := newInv("host-a", "alpha")
	acts := &fakeActions{}
	serve(t, Options{Bus: bus.Address, Inv: inv, Actions: acts, Version: "9.9-test"})
	c := dial(t, bus.Address)
	waitServing(t, c, "host-a")
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (diskstate.Status{HostID: "host-a", Hostname: "alpha", Version: "9.9-test"}); !reflect.DeepEqual(st, want) {
		t.Errorf("status before any scan: %+v, want %+v", st, want)
	}

	sigs := watch(t, c)
	iface, err := parseInterface()
	if err != nil {
		t.Fatal(err)
	}
	// checkSig checks a signal's body against the XML.
	checkSig := func(sig *dbus.Signal) {
		t.Helper()
		member := strings.TrimPrefix(sig.Name, Interface+".")
		i := slices.IndexFunc(iface.Signals, func(s introspect.Signal) bool { return s.Name == member })
		if i < 0 {
			t.Fatalf("signal %s is not in the XML", sig.Name)
		}
		var want string
		for _, a := range iface.Signals[i].Args {
			want += a.Type
		}
		if got := dbus.SignatureOf(sig.Body...).String(); got != want {
			t.Errorf("signal %s has signature %s, the XML says %s", member, got, want)
		}
	}
	expect := func(signal string, check func(Event)) {
		t.Helper()
		e, sig := sigs.next(waitSignal)
		if e.Signal != signal {
			t.Fatalf("got signal %s (%+v), want %s", e.Signal, e, signal)
		}
		checkSig(sig)
		if check != nil {
			check(e)
		}
	}

	// A local disk appears.
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/loop7", UUID: "u-1", Label: "LOCAL", Type: "ext4"}}, nil)
	expect(SignalDiskAppeared, func(e Event) {
		if e.Disk.Label != "LOCAL" || !e.Disk.Local || e.Disk.HostID != "host-a" || e.Disk.Hostname != "alpha" {
			t.Errorf("DiskAppeared %+v", e.Disk)
		}
	})
	sigs.waitProp(PropDiskCount, uint32(1), waitSignal)

	// A peer announces two disks.
	ann := inventory.Announcement{HostID: "host-b", Hostname: "beta", BootID: "boot", Seq: 1,
		Interval: 10 * time.Second, Address: "10.0.0.2", Via: "gossip", Disks: []diskstate.Disk{
			{Device: "/dev/sdb1", UUID: "u-2", Label: "BACKUP-2019", Type: "ext4", Mountpoints: []string{"/mnt/b"}},
			{Device: "/dev/sdc1", UUID: "u-3", Label: "<b>&x", Type: "vfat"},
		}}
	if err := inv.Apply(ann); err != nil {
		t.Fatal(err)
	}
	expect(SignalPeerJoined, func(e Event) {
		if e.HostID != "host-b" || e.Hostname != "beta" {
			t.Errorf("PeerJoined %+v", e)
		}
	})
	expect(SignalDiskAppeared, func(e Event) {
		if e.Disk.Label != "BACKUP-2019" || e.Disk.Local || !slices.Equal(e.Disk.Mountpoints, []string{"/mnt/b"}) {
			t.Errorf("remote DiskAppeared %+v", e.Disk)
		}
	})
	expect(SignalDiskAppeared, nil)
	sigs.waitProp(PropDiskCount, uint32(3), waitSignal)
	if st, err := c.Status(ctx); err != nil || st.Peers != 1 || st.Disks != 3 || st.LastScan.IsZero() {
		t.Errorf("status after the announcement: %+v, %v", st, err)
	}

	// The methods give what the inventory has, in the control socket's JSON.
	disks, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := jsonOf(t, disks), jsonOf(t, inv.Disks()); g != w {
		t.Errorf("List:\n got %s\nwant %s", g, w)
	}
	found, err := c.Find(ctx, "backup")
	if err != nil {
		t.Fatal(err)
	}
	if g, w := jsonOf(t, found), jsonOf(t, inv.Find("backup")); g != w || len(found) != 1 {
		t.Errorf("Find:\n got %s\nwant %s", g, w)
	}
	if found, err := c.Find(ctx, "no-such-disk"); err != nil || len(found) != 0 {
		t.Errorf("Find of nothing = %v, %v; want empty, nil", found, err)
	}
	if _, err := c.Find(ctx, ""); callErrName(err) != ErrorInvalidArgument {
		t.Errorf("Find(\"\") = %v, want %s", err, ErrorInvalidArgument)
	}
	peers, err := c.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := inv.Peers()[0]
	want.Seq = 0 // not part of the API
	if len(peers) != 1 || !peers[0].LastHeard.Equal(want.LastHeard) {
		t.Fatalf("Peers = %+v, want %+v", peers, want)
	}
	if peers[0].LastHeard = want.LastHeard; peers[0] != want {
		t.Errorf("Peers = %+v, want %+v", peers[0], want)
	}
	if peers[0].Via != "gossip" {
		t.Errorf("Peers: via %q, want gossip (the transport the peer was heard on)", peers[0].Via)
	}

	// A label changes, then the peer says goodbye.
	ann.Seq, ann.Disks[0].Label = 2, "BACKUP-2020"
	if err := inv.Apply(ann); err != nil {
		t.Fatal(err)
	}
	expect(SignalDiskChanged, func(e Event) {
		if e.Disk.Label != "BACKUP-2020" {
			t.Errorf("DiskChanged %+v", e.Disk)
		}
	})
	if err := inv.Bye("host-b", "boot", 3); err != nil {
		t.Fatal(err)
	}
	expect(SignalDiskDisappeared, nil)
	expect(SignalDiskDisappeared, nil)
	expect(SignalPeerLost, func(e Event) {
		if e.HostID != "host-b" || e.Hostname != "beta" || e.Reason != inventory.ReasonBye {
			t.Errorf("PeerLost %+v", e)
		}
	})
	sigs.waitProp(PropPeerCount, uint32(0), waitSignal)

	// A failed scan shows in ScanError.
	inv.SetLocal(nil, errors.New("blkid: exit status 2"))
	sigs.waitProp(PropScanError, "blkid: exit status 2", waitSignal)

	// The actions: our own uid may call them.
	for _, a := range diskstate.ActionList() {
		if err := c.Run(ctx, a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if acts.refresh.Load() != 1 || acts.announce.Load() != 1 || acts.ping.Load() != 1 {
		t.Errorf("actions called %d/%d/%d times, want 1 each", acts.refresh.Load(), acts.announce.Load(), acts.ping.Load())
	}

	// Introspection at the object and down the tree from /.
	var xmlText string
	if err := c.Conn().Object(BusName, ObjectPath).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xmlText); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<interface name="org.diskd.Finder">`, `name="DiskAppeared"`, `name="LastScan" type="x"`,
		"org.freedesktop.DBus.Properties"} {
		if !strings.Contains(xmlText, want) {
			t.Errorf("Introspect lacks %s:\n%s", want, xmlText)
		}
	}
	node, err := introspect.Call(c.Conn().Object(BusName, "/org/diskd"))
	if err != nil {
		t.Fatal(err)
	}
	if len(node.Children) != 1 || node.Children[0].Name != "Finder" {
		t.Errorf("/org/diskd has children %+v, want Finder", node.Children)
	}
}

func TestActionErrors(t *testing.T) {
	tests := []struct {
		name     string
		actions  diskstate.Actions
		wantName string
		wantMsg  string
	}{
		{"failing", &fakeActions{err: errors.New("blkid \x1b[31mexploded")}, ErrorFailed, "refresh failed: blkid \x1b[31mexploded"},
		{"no actions", nil, ErrorNotSupported, "refresh is not available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus := dbustest.Session(t)
			serve(t, Options{Bus: bus.Address, Inv: newInv("h", "n"), Actions: tc.actions})
			c := dial(t, bus.Address)
			waitServing(t, c, "h")
			err := c.Run(context.Background(), diskstate.ActionRefresh)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Name != tc.wantName || !strings.Contains(ce.Message, tc.wantMsg) {
				t.Errorf("Refresh = %#v, want %s with %q", err, tc.wantName, tc.wantMsg)
			}
		})
	}
}

// TestServeWaitsForTheBus: no bus at first (one warning however often it
// retries), then a bus (served), then the bus dies (one warning) and comes
// back (served again).
func TestServeWaitsForTheBus(t *testing.T) {
	dbustest.Require(t)
	socket := t.TempDir() + "/bus"
	address := "unix:path=" + socket
	logs := serve(t, Options{Bus: address, Inv: newInv("h", "n")})
	eventually(t, 5*time.Second, "a few retries", func() bool { return logs.count("D-Bus: retrying") >= 3 })
	if n := logs.count("cannot connect to the bus at " + address); n != 1 {
		t.Errorf("%d warnings about the missing bus, want 1:\n%s", n, logs)
	}

	bus := dbustest.At(t, socket)
	c := dial(t, address)
	waitServing(t, c, "h")
	if n := logs.count("D-Bus: serving org.diskd.Finder"); n != 1 {
		t.Errorf("%d 'serving' lines, want 1", n)
	}
	c.Close()

	if err := bus.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the loss is logged", func() bool { return logs.count("lost the connection") == 1 })
	dbustest.At(t, socket)
	c = dial(t, address)
	waitServing(t, c, "h")
	if n := logs.count("D-Bus: serving org.diskd.Finder"); n != 2 {
		t.Errorf("%d 'serving' lines, want 2", n)
	}
}

// TestNameTaken: a second daemon on the same bus waits for the name and
// takes over when the first one stops.
func TestNameTaken(t *testing.T) {
	bus := dbustest.Session(t)
	first, cancelFirst := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(first, Options{Bus: bus.Address, Inv: newInv("first", "one")}) }()
	defer func() { cancelFirst(); <-done }()
	c := dial(t, bus.Address)
	waitServing(t, c, "first")

	logs := serve(t, Options{Bus: bus.Address, Inv: newInv("second", "two")})
	eventually(t, 5*time.Second, "retries", func() bool { return logs.count("D-Bus: retrying") >= 3 })
	if n := logs.count("org.diskd is owned by another process"); n != 1 {
		t.Errorf("%d warnings about the taken name, want 1:\n%s", n, logs)
	}
	cancelFirst()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred receive
	waitServing(t, c, "second")
}

func TestServeOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"none returns at once", Options{Bus: "none"}, ""},
		{"empty returns at once", Options{}, ""},
		{"bad bus", Options{Bus: "sytem", Inv: newInv("h", "n")}, `"sytem" is not system`},
		{"no inventory", Options{Bus: "session"}, "needs an inventory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := Serve(ctx, tc.o)
			if ctx.Err() != nil {
				t.Fatal("Serve did not return at once")
			}
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Serve = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestClientNotRunning: a bus without diskd is a NotRunningError; no bus at
// all is a BusError.
func TestClientNotRunning(t *testing.T) {
	bus := dbustest.Session(t)
	c := dial(t, bus.Address)
	_, err := c.List(context.Background())
	var nr *NotRunningError
	if !errors.As(err, &nr) || nr.NoReply {
		t.Errorf("List without diskd = %#v, want NotRunningError", err)
	}
	if want := "diskd is not running on the bus at " + bus.Address + " (org.diskd)"; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}

	_, err = Dial(context.Background(), "unix:path="+t.TempDir()+"/nothing")
	var be *BusError
	if !errors.As(err, &be) {
		t.Errorf("Dial of a missing bus = %#v, want BusError", err)
	}
}

// TestWatchIgnoresForgedSignals: a Finder signal sent straight to a client
// by someone who does not own org.diskd is not taken for diskd's.
func TestWatchIgnoresForgedSignals(t *testing.T) {
	bus := dbustest.Session(t)
	inv := newInv("h", "n")
	serve(t, Options{Bus: bus.Address, Inv: inv})
	c := dial(t, bus.Address)
	waitServing(t, c, "h")
	sigs := watch(t, c)

	forger := dial(t, bus.Address)
	msg := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath: dbus.MakeVariant(ObjectPath), dbus.FieldInterface: dbus.MakeVariant(Interface),
		dbus.FieldMember:      dbus.MakeVariant(SignalDiskAppeared),
		dbus.FieldDestination: dbus.MakeVariant(c.Conn().Names()[0]),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(DiskDict(diskstate.Disk{}))),
	}, Body: []any{DiskDict(diskstate.Disk{Label: "FORGED"})}}
	if call := forger.Conn().Send(msg, nil); call.Err != nil {
		t.Fatal(call.Err)
	}
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/x", UUID: "u", Label: "REAL"}}, nil)
	e, _ := sigs.next(waitSignal)
	if e.Disk.Label != "REAL" {
		t.Errorf("first event %+v, want the REAL disk (the forged one must be dropped)", e)
	}
}

// TestServeWithoutPolicy: on a system bus without org.diskd.conf the name
// cannot be owned; Serve says what to install, once.
func TestServeWithoutPolicy(t *testing.T) {
	bus := dbustest.System(t)
	logs := serve(t, Options{Bus: bus.Address, Inv: newInv("h", "n")})
	eventually(t, 5*time.Second, "retries", func() bool { return logs.count("D-Bus: retrying") >= 3 })
	if n := logs.count("does not let this user own org.diskd: install the policy file /usr/share/dbus-1/system.d/org.diskd.conf"); n != 1 {
		t.Errorf("%d warnings about the policy, want 1:\n%s", n, logs)
	}
}
