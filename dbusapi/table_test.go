package dbusapi

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
)

// TestDiskTableRoundTrip: a disk decoded from the table equals the same
// disk decoded from its a{sv}, hostile strings included.
func TestDiskTableRoundTrip(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		disk diskstate.Disk
	}{
		{"plain", diskstate.Disk{HostID: "h1", Hostname: "alpha", Device: "/dev/sda1", UUID: "u", Label: "L",
			Type: "ext4", Mountpoints: []string{"/mnt/a", "/mnt/b"}, Local: true, LastSeen: at}},
		{"empty", diskstate.Disk{}},
		{"attributes", diskstate.Disk{Device: "/dev/sdb1", PartLabel: "ux\tpart", FSVersion: "1.0", Size: ^uint64(0),
			ReadOnly: true, Removable: true, Rotational: true, Transport: "usb", Model: "Cruzer Blade", Vendor: "SanDisk",
			Serial: "4C530001", WWN: "0x5000c500a1b2c3d4", FSSize: 20 << 20, FSAvail: 1, FSUsed: 9 << 20}},
		{"separators", diskstate.Disk{Device: "/dev/x", Label: "a\tb\nc\x1fd\\e\\x09", Mountpoints: []string{"m\t1", "\x1f", ""}}},
		{"one empty mountpoint", diskstate.Disk{Device: "/dev/y", Mountpoints: []string{""}}},
		{"invalid UTF-8 and NUL", diskstate.Disk{Device: "/dev/\xff\x00z", Label: "\x1b[31mred"}},
	}
	var disks []diskstate.Disk
	for _, tt := range tests {
		disks = append(disks, tt.disk)
	}
	got, err := DiskTableDecode(DiskTable(disks))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(tests) {
		t.Fatalf("decoded %d disks, want %d", len(got), len(tests))
	}
	for i, tt := range tests {
		want, err := DiskFromDict(DiskDict(tt.disk))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("%s: table gives\n%#v\nthe a{sv} gives\n%#v", tt.name, got[i], want)
		}
	}
}

func TestDiskTableDecodeErrors(t *testing.T) {
	header := "host_id\tdevice\tmountpoints\tlocal\n"
	tests := []struct {
		name, table, want string
	}{
		{"no header", "host_id\tdevice", "no header line"},
		{"unterminated line", header + "h\td\t\tfalse", "has no line end"},
		{"too many values", header + "h\td\t\tfalse\textra\n", "more than 4 values"},
		{"bad bool", header + "h\td\t\tyes\n", `"yes" is not true or false`},
		{"bad escape", header + "h\td\\q\t\tfalse\n", "bad escape"},
		{"bad list", header + "h\td\t/mnt\tfalse\n", "must start with 0x1f"},
		{"bad time", "last_seen\nyesterday\n", `key "last_seen"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DiskTableDecode(tt.table)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	// Unknown keys are ignored, missing ones are zero.
	got, err := DiskTableDecode("device\tcolour\n/dev/a\tblue\n")
	if err != nil || len(got) != 1 || got[0].Device != "/dev/a" || got[0].Mountpoints == nil {
		t.Fatalf("got %#v, %v", got, err)
	}
}

// TestListTableOverBus: Client.List (ListTable) gives what List gives, also
// after the inventory changes.
func TestListTableOverBus(t *testing.T) {
	dbustest.Require(t)
	inv := newInv("host-a", "alpha")
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sda1", UUID: "u1", Label: "tab\there", Mountpoints: []string{"/a"}}}, nil)
	bus := dbustest.System(t, dbustest.File(t, "packaging/dbus/org.diskd.conf"))
	serve(t, Options{Bus: bus.Address, Inv: inv})
	c := dial(t, bus.Address)
	waitServing(t, c, "host-a")
	check := func(wantN int) {
		t.Helper()
		fast, err := c.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		slow, err := c.disks(context.Background(), "List")
		if err != nil {
			t.Fatal(err)
		}
		if len(fast) != wantN || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("List gives %d disks\n%#v\nList's a{sv} gives\n%#v", wantN, fast, slow)
		}
	}
	check(1)
	// The signal comes after the cached reply is dropped: a client that
	// saw it lists the change.
	s := watch(t, c)
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sda1", UUID: "u1"}, {Device: "/dev/sdb1", UUID: "u2"}}, nil)
	for range 2 {
		if e, _ := s.next(5 * time.Second); e.Signal == SignalDiskAppeared {
			break
		}
	}
	check(2)
}
