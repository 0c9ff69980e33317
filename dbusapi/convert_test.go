package dbusapi

import (
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
)

// jsonOf returns v's JSON in a canonical form (parsed and encoded again),
// so that "\ufffd" and a raw U+FFFD compare equal.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(x); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDiskDictRoundTrip(t *testing.T) {
	seen := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		in   diskstate.Disk
		// wantJSON is the JSON of the decoded disk when it differs from
		// the JSON of in (strings D-Bus cannot carry).
		wantJSON string
	}{
		{name: "full", in: diskstate.Disk{HostID: "h1", Hostname: "alpha", Device: "/dev/sdb1",
			UUID: "1234-ABCD", PartUUID: "p-1", Label: "BACKUP-2019", Type: "ext4",
			Mountpoints: []string{"/mnt/a", "/srv/b"}, Local: true, LastSeen: seen, Present: true}},
		{name: "remembered and returned", in: diskstate.Disk{HostID: "h1", Hostname: "beta", Device: "/dev/sdb1",
			Label: "BACKUP-2019", Mountpoints: []string{}, LastSeen: seen, GoneAt: seen.Add(time.Minute),
			GoneReason: "detached", Returned: true, PreviousHostname: "alpha", PreviousDevice: "/dev/sdc1",
			PreviousLastSeen: seen.Add(-time.Hour)}},
		{name: "empty", in: diskstate.Disk{Mountpoints: []string{}}},
		{name: "nil mounts become []", in: diskstate.Disk{Device: "/dev/x", LastSeen: seen},
			wantJSON: mustJSON(diskstate.Disk{Device: "/dev/x", Mountpoints: []string{}, LastSeen: seen})},
		{name: "every attribute", in: diskstate.Disk{Device: "/dev/sdb1", PartLabel: "ux-partlabel", FSVersion: "1.0",
			Mountpoints: []string{"/mnt/x"}, Size: 1 << 62, ReadOnly: true, Removable: true, Rotational: true,
			Transport: "usb", Model: "Cruzer Blade", Vendor: "SanDisk", Serial: "4C530001", WWN: "0x5000c500a1b2c3d4",
			FSSize: 20 << 20, FSAvail: 10 << 20, FSUsed: 9 << 20, LastSeen: seen}},
		{name: "unicode and escapes", in: diskstate.Disk{Label: "Straße \x1b[31m 日本 \u202e", Mountpoints: []string{"/mnt/with space"}}},
		{name: "invalid UTF-8 as JSON does it", in: diskstate.Disk{Label: "a\xff\xfeb", Mountpoints: []string{}}},
		{name: "NUL", in: diskstate.Disk{Label: "a\x00b", Mountpoints: []string{}},
			wantJSON: mustJSON(diskstate.Disk{Label: "a\ufffdb", Mountpoints: []string{}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := DiskDict(tc.in)
			// Through the wire format and back, as a client gets it.
			msg := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldPath: dbus.MakeVariant(ObjectPath), dbus.FieldInterface: dbus.MakeVariant(Interface),
				dbus.FieldMember: dbus.MakeVariant(SignalDiskAppeared), dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(m)),
			}, Body: []any{m}}
			var buf strings.Builder
			if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
				t.Fatalf("encoding: %v", err)
			}
			back, err := dbus.DecodeMessage(strings.NewReader(buf.String()))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]dbus.Variant
			if err := dbus.Store(back.Body, &got); err != nil {
				t.Fatal(err)
			}
			d, err := DiskFromDict(got)
			if err != nil {
				t.Fatal(err)
			}
			want := jsonOf(t, tc.in)
			if tc.wantJSON != "" {
				want = jsonOf(t, json.RawMessage(tc.wantJSON))
			}
			if g := jsonOf(t, d); g != want {
				t.Errorf("JSON after the round trip:\n got %s\nwant %s", g, want)
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestFromDictErrors(t *testing.T) {
	tests := []struct {
		name string
		m    map[string]dbus.Variant
		want string
	}{
		{"wrong type", map[string]dbus.Variant{"label": dbus.MakeVariant(int32(3))}, `key "label" has D-Bus type i, want s`},
		{"bad time", map[string]dbus.Variant{"last_seen": dbus.MakeVariant("yesterday")}, `key "last_seen"`},
		{"unknown keys are fine", map[string]dbus.Variant{"colour": dbus.MakeVariant("red")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DiskFromDict(tc.m)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPeerDictRoundTrip(t *testing.T) {
	heard := time.Date(2024, 5, 6, 7, 8, 9, 5000, time.UTC)
	tests := []diskstate.Peer{
		{HostID: "h2", Hostname: "beta", Address: "10.0.0.2", BootID: "b00t", Disks: 3, LastHeard: heard,
			Interval: 10 * time.Second, Timeout: 30 * time.Second, Authenticated: true, Via: "both"},
		{HostID: "h3", Interval: 1500 * time.Millisecond, Timeout: 4500*time.Millisecond + 1, Via: "gossip"},
		{},
	}
	for _, p := range tests {
		t.Run(p.HostID, func(t *testing.T) {
			got, err := PeerFromDict(PeerDict(p))
			if err != nil {
				t.Fatal(err)
			}
			// Seq is not part of the API.
			if got != p {
				t.Errorf("got %+v, want %+v", got, p)
			}
		})
	}
}

func TestStatusFromProps(t *testing.T) {
	m := map[string]dbus.Variant{
		PropHostID: dbus.MakeVariant("h"), PropHostname: dbus.MakeVariant("n"), PropVersion: dbus.MakeVariant("1.2"),
		PropPeerCount: dbus.MakeVariant(uint32(2)), PropDiskCount: dbus.MakeVariant(uint32(7)),
		PropLastScan: dbus.MakeVariant(int64(1700000000)), PropScanError: dbus.MakeVariant("blkid: boom"),
	}
	st, err := StatusFromProps(m)
	if err != nil {
		t.Fatal(err)
	}
	want := diskstate.Status{HostID: "h", Hostname: "n", Version: "1.2", Peers: 2, Disks: 7,
		LastScan: time.Unix(1700000000, 0), ScanError: "blkid: boom"}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("got %+v, want %+v", st, want)
	}
	m[PropLastScan] = dbus.MakeVariant(int64(0))
	if st, _ := StatusFromProps(m); !st.LastScan.IsZero() {
		t.Errorf("LastScan 0 gave %v, want the zero time", st.LastScan)
	}
}

// TestInterfaceXMLMatchesExport keeps the XML file, the exported methods
// and the properties in step.
func TestInterfaceXMLMatchesExport(t *testing.T) {
	iface, err := parseInterface()
	if err != nil {
		t.Fatal(err)
	}
	sig := func(args []introspect.Arg, dir string) string {
		var b strings.Builder
		for _, a := range args {
			if a.Direction == dir || (dir == "out" && a.Direction == "") {
				b.WriteString(a.Type)
			}
		}
		return b.String()
	}
	type method struct{ in, out string }
	fromXML := map[string]method{}
	for _, m := range iface.Methods {
		fromXML[m.Name] = method{sig(m.Args, "in"), sig(m.Args, "out")}
	}
	exported := map[string]method{}
	for _, m := range introspect.Methods(&finder{}) {
		exported[m.Name] = method{sig(m.Args, "in"), sig(m.Args, "out")}
	}
	if len(fromXML) != len(exported) {
		t.Errorf("XML has methods %v, the object exports %v", fromXML, exported)
	}
	for name, m := range exported {
		if fromXML[name] != m {
			t.Errorf("method %s: XML has %+v, exported %+v", name, fromXML[name], m)
		}
	}

	inv := inventory.New(inventory.Options{HostID: "h", Hostname: "n"})
	props := (&server{o: Options{Inv: inv}}).propMap()
	if len(iface.Properties) != len(props) {
		t.Errorf("XML has %d properties, Serve exports %d", len(iface.Properties), len(props))
	}
	for _, p := range iface.Properties {
		v, ok := props[p.Name]
		if !ok {
			t.Errorf("property %s is in the XML only", p.Name)
			continue
		}
		if got := dbus.SignatureOf(v.Value).String(); got != p.Type || p.Access != "read" {
			t.Errorf("property %s: XML type %s access %s, exported type %s", p.Name, p.Type, p.Access, got)
		}
	}

	var signals []string
	for _, s := range iface.Signals {
		signals = append(signals, s.Name)
	}
	want := []string{SignalDiskAppeared, SignalDiskDisappeared, SignalDiskChanged, SignalPeerJoined, SignalPeerLost}
	if !slices.Equal(signals, want) {
		t.Errorf("XML signals %v, want %v", signals, want)
	}

	// The introspection answer is valid XML with every interface.
	intro, err := introspection()
	if err != nil {
		t.Fatal(err)
	}
	var n introspect.Node
	if err := xml.Unmarshal([]byte(intro), &n); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range n.Interfaces {
		names = append(names, i.Name)
	}
	for _, w := range []string{Interface, "org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"} {
		if !slices.Contains(names, w) {
			t.Errorf("Introspect lacks %s (has %v)", w, names)
		}
	}
}

// TestInterfaceFileIsTheEmbeddedOne guards the file that packages install.
func TestInterfaceFileIsTheEmbeddedOne(t *testing.T) {
	b, err := os.ReadFile("org.diskd.Finder.xml")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != InterfaceXML() {
		t.Error("InterfaceXML differs from org.diskd.Finder.xml")
	}
}

func TestCheckBus(t *testing.T) {
	tests := []struct {
		bus string
		ok  bool
	}{
		{"system", true}, {"session", true}, {"none", true}, {"unix:path=/run/x", true},
		{"tcp:host=localhost,port=1", true}, {"sytem", false}, {"", false},
	}
	for _, tc := range tests {
		if err := CheckBus(tc.bus); (err == nil) != tc.ok {
			t.Errorf("CheckBus(%q) = %v, want ok=%v", tc.bus, err, tc.ok)
		}
	}
}
