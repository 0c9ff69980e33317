package wire

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/diskd/diskd/service/diskstate"
)

// attributedDisks returns n disks with every announced attribute set, as a
// scan of USB disks reports them.
func attributedDisks(n int) []diskstate.Disk {
	disks := realisticDisks(n)
	for i := range disks {
		d := &disks[i]
		d.PartLabel = fmt.Sprintf("backup-part-%d", i)
		d.FSVersion = "1.0"
		d.Size = 2000398934016
		d.FSSize, d.FSAvail, d.FSUsed = 1967397240832, 1031597690880+uint64(i), 835797901312
		d.Removable, d.Rotational = true, true
		d.Transport, d.Model, d.Vendor = "usb", "Expansion HDD", "Seagate"
		d.Serial = fmt.Sprintf("NAAB%04dX", i)
		d.WWN = "0x5000c500a1b2c3d4"
	}
	return disks
}

// oldDisk is a disk map as diskd announced it before the attributes
// (device, uuid, partuuid, label, type, mount points only).
func oldDisk(dev string) omap {
	return omap{"d", dev, "u", "0b7e2a1c-1b2c-4d5e-8f90-123456789abc", "p", "c9711740-c06d-f047-a682-395d6f90f39a",
		"l", "DATA", "t", "ext4", "m", []any{"/srv/data"}}
}

// TestDecodeOldAnnouncement: a newer diskd accepts an announcement of an
// older one, hand-built in the old format; the attributes it lacks are
// empty, zero or false.
func TestDecodeOldAnnouncement(t *testing.T) {
	m, err := Decode(unsealed(body(t, baseAnnounce().with("d", []any{oldDisk("/dev/sda1"), omap{"d", "/dev/sdb"}}))), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []diskstate.Disk{
		{Device: "/dev/sda1", UUID: "0b7e2a1c-1b2c-4d5e-8f90-123456789abc", PartUUID: "c9711740-c06d-f047-a682-395d6f90f39a",
			Label: "DATA", Type: "ext4", Mountpoints: []string{"/srv/data"}},
		{Device: "/dev/sdb"},
	}
	if !reflect.DeepEqual(m.Disks, want) {
		t.Errorf("got  %+v\nwant %+v", m.Disks, want)
	}
}

// TestOlderReceiverSkipsNewKeys: an older diskd's decoder knows the keys
// d u p l t m and skips every other key whatever its value. The test hands
// this decoder a newer announcement whose attribute keys are renamed to
// keys it does not know (so it stands where an older decoder stands): the
// known fields come through unchanged and the datagram is not dropped.
// Then the same datagram with the real keys decodes in full.
func TestOlderReceiverSkipsNewKeys(t *testing.T) {
	disks := attributedDisks(3)
	dgrams, err := Encode(announceMsg(disks), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dgrams) != 1 {
		t.Fatalf("%d datagrams", len(dgrams))
	}
	full, err := Decode(dgrams[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(full.Disks, disks) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", full.Disks, disks)
	}

	// Rebuild the datagram as an older receiver sees it: every attribute
	// under a key of another (unknown) name, with the value encoded
	// exactly as the encoder wrote it.
	old := map[string]bool{"d": true, "u": true, "p": true, "l": true, "t": true, "m": true}
	var ds []any
	for i := range disks {
		dm := omap{}
		for _, f := range diskstate.Fields() {
			if f.Wire == "" || f.Empty(&disks[i]) {
				continue
			}
			key := f.Wire
			if !old[key] {
				key = "future-" + f.Key
			}
			var v any
			switch f.Kind {
			case diskstate.String:
				v = *f.Str(&disks[i])
			case diskstate.Strings:
				v = []any{(*f.Strs(&disks[i]))[0]}
			case diskstate.Uint:
				v = *f.Uint(&disks[i])
			case diskstate.Bool:
				v = *f.Bool(&disks[i])
			}
			dm = append(dm, key, v)
		}
		ds = append(ds, dm)
	}
	m, err := Decode(unsealed(body(t, baseAnnounce().with("d", ds))), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range m.Disks {
		w := disks[i]
		want := diskstate.Disk{Device: w.Device, UUID: w.UUID, PartUUID: w.PartUUID, Label: w.Label, Type: w.Type, Mountpoints: w.Mountpoints}
		if !reflect.DeepEqual(d, want) {
			t.Errorf("disk %d: got %+v\nwant %+v", i, d, want)
		}
	}
}

// TestDecodeAttributeTypes: the attributes' msgpack types are strict.
func TestDecodeAttributeTypes(t *testing.T) {
	for _, c := range []struct {
		name string
		key  string
		val  any
		want string // "" accepted
	}{
		{"size uint64", "z", uint64(1) << 62, ""},
		{"size fixint", "z", 7, ""},
		{"size as a string", "z", "7", "want an unsigned integer"},
		{"size negative fixint", "z", -1, "want an unsigned integer"},
		{"size negative int16", "z", -200, "negative integer"},
		{"read_only true", "o", true, ""},
		{"read_only as int", "o", 1, "want a bool"},
		{"read_only nil", "o", nil, "want a bool"},
		{"fs_avail as float", "A", 1.5, "want an unsigned integer"},
		{"model too long", "M", strings.Repeat("m", diskstate.MaxModelLen+1), "max 64"},
		{"serial bad utf8", "S", "\xff", "not valid UTF-8"},
	} {
		_, err := Decode(unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().with(c.key, c.val)}))), nil)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestBudgetArithmetic holds the numbers of the package doc's budget
// section to the encoder.
func TestBudgetArithmetic(t *testing.T) {
	sizeOf := func(d diskstate.Disk) int {
		a, _ := Encode(announceMsg(nil), 0, nil)
		b, err := Encode(announceMsg([]diskstate.Disk{d}), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(b[0]) - len(a[0])
	}
	before, after := sizeOf(realisticDisks(1)[0]), sizeOf(attributedDisks(1)[0])
	t.Logf("one disk: %d bytes without attributes, %d with", before, after)
	if before != 134 || after != 273 {
		t.Errorf("disk sizes %d and %d, the doc says 134 and 273", before, after)
	}
	for _, ring := range []*Keyring{nil, mustKeyring(t, testKey(1))} {
		d, err := Encode(announceMsg(attributedDisks(765)), 0, ring)
		if err != nil || len(d) != MaxParts {
			t.Errorf("sealed=%v: 765 disks: %d parts, %v; the doc says they fit 255 parts", ring != nil, len(d), err)
		}
		if _, err := Encode(announceMsg(attributedDisks(766)), 0, ring); err == nil {
			t.Errorf("sealed=%v: 766 disks fit, the doc says 765 is the most", ring != nil)
		}
		d, err = Encode(announceMsg(attributedDisks(64)), 0, ring)
		if err != nil || len(d) != 22 {
			t.Errorf("sealed=%v: 64 disks: %d parts, %v; the doc says 22", ring != nil, len(d), err)
		}
	}
}
