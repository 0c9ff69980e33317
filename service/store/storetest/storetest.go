// Package storetest is the behavioural contract of store.Store: Run checks
// any implementation against the same tests. It is a test helper only; it
// knows nothing about files, and what only a file-backed store can do
// (reopening, corruption, crashes) is tested next to that implementation.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/store"
)

// Opener returns a new, empty store with opts. Run closes it.
type Opener func(t *testing.T, opts store.Options) store.Store

// T0 is the time the tests start from; it has nanoseconds on purpose.
var T0 = time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)

func at(s int) time.Time { return T0.Add(time.Duration(s) * time.Second) }

// Sec is t with a sighting's one-second resolution.
func Sec(t time.Time) time.Time { return t.Truncate(time.Second) }

// DiskAt returns a disk of host hostID with a uuid made from name.
func DiskAt(hostID, device, name string) store.DiskInfo {
	return store.DiskInfo{HostID: hostID, Hostname: "name-" + hostID, Device: device,
		Label: strings.ToUpper(name), Type: "ext4", UUID: "uuid-" + name}
}

// Run runs every contract test against stores made by open.
func Run(t *testing.T, open Opener) {
	mk := func(t *testing.T, opts store.Options) store.Store {
		t.Helper()
		s := open(t, opts)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T, store.Options) store.Store)
	}{
		{"Identity", testIdentity},
		{"SeenNew", testSeenNew},
		{"SeenAgain", testSeenAgain},
		{"GoneAndBack", testGoneAndBack},
		{"GoneElsewhereIgnored", testGoneElsewhere},
		{"Move", testMove},
		{"PlaceReplaced", testPlaceReplaced},
		{"HostGone", testHostGone},
		{"SightingsBound", testSightingsBound},
		{"Find", testFind},
		{"FindTiers", testFindTiers},
		{"History", testHistory},
		{"Peers", testPeers},
		{"MaxEntries", testMaxEntries},
		{"MaxAge", testMaxAge},
		{"InvalidInput", testInvalid},
		{"Copies", testCopies},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
		{"Stats", testStats},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, mk) })
	}
}

func mustDisk(t *testing.T, s store.Store, d store.DiskInfo) store.Disk {
	t.Helper()
	got, ok := s.Disk(store.Identity(d))
	if !ok {
		t.Fatalf("disk %s not remembered", store.Identity(d))
	}
	return got
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testIdentity(t *testing.T, _ func(*testing.T, store.Options) store.Store) {
	cases := []struct {
		d    store.DiskInfo
		want string
	}{
		{store.DiskInfo{HostID: "h", Device: "/dev/sda1", UUID: "U", PartUUID: "P"}, "uuid:U"},
		{store.DiskInfo{HostID: "h", Device: "/dev/sda1", PartUUID: "P"}, "partuuid:P"},
		{store.DiskInfo{HostID: "h", Device: "/dev/sda1"}, "dev:1:h:/dev/sda1"},
	}
	for _, c := range cases {
		if got := store.Identity(c.d); got != c.want {
			t.Errorf("Identity(%+v) = %q, want %q", c.d, got, c.want)
		}
	}
	a := store.Identity(store.DiskInfo{HostID: "a:b", Device: "c"})
	b := store.Identity(store.DiskInfo{HostID: "a", Device: "b:c"})
	if a == b {
		t.Errorf("two places share the identity %q", a)
	}
}

func testSeenNew(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	d := DiskAt("h1", "/dev/sdb1", "one")
	d.PartUUID = "pu-1"
	d.MountPoints = []string{"/mnt/a", "/mnt/b"}
	check(t, s.Seen(at(0), d))
	got := mustDisk(t, s, d)
	want := store.Disk{Key: "uuid:uuid-one", HostID: "h1", Hostname: "name-h1", Device: "/dev/sdb1",
		Label: "ONE", Type: "ext4", UUID: "uuid-one", PartUUID: "pu-1", MountPoints: []string{"/mnt/a", "/mnt/b"},
		FirstSeen: at(0), LastSeen: at(0), Present: true,
		Sightings: []store.Sighting{{HostID: "h1", Hostname: "name-h1", Device: "/dev/sdb1", From: Sec(at(0)), Until: Sec(at(0))}}}
	EqualDisk(t, got, want)
}

// EqualDisk fails unless got and want are the same disk.
func EqualDisk(t *testing.T, got, want store.Disk) {
	t.Helper()
	if diff := DiffDisk(got, want); diff != "" {
		t.Errorf("disk %s: %s\n got %+v\nwant %+v", want.Key, diff, got, want)
	}
}

// DiffDisk describes the first difference between two disks, or "".
func DiffDisk(a, b store.Disk) string {
	switch {
	case a.Key != b.Key || a.HostID != b.HostID || a.Hostname != b.Hostname || a.Device != b.Device:
		return "place differs"
	case a.Label != b.Label || a.Type != b.Type || a.UUID != b.UUID || a.PartUUID != b.PartUUID:
		return "attributes differ"
	case !slices.Equal(a.MountPoints, b.MountPoints):
		return "mount points differ"
	case !a.FirstSeen.Equal(b.FirstSeen) || !a.LastSeen.Equal(b.LastSeen):
		return "first or last seen differs"
	case a.Present != b.Present || !a.GoneAt.Equal(b.GoneAt) || a.GoneReason != b.GoneReason:
		return "presence differs"
	case len(a.Sightings) != len(b.Sightings):
		return fmt.Sprintf("%d sightings, want %d", len(a.Sightings), len(b.Sightings))
	}
	for i := range a.Sightings {
		if x, y := a.Sightings[i], b.Sightings[i]; !sameSighting(x, y) {
			return fmt.Sprintf("sighting %d: %+v, want %+v", i, x, y)
		}
	}
	return ""
}

func sameSighting(x, y store.Sighting) bool {
	return x.HostID == y.HostID && x.Hostname == y.Hostname && x.Device == y.Device &&
		x.From.Equal(y.From) && x.Until.Equal(y.Until) && x.Reason == y.Reason
}

func testSeenAgain(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	d := DiskAt("h1", "/dev/sdb1", "one")
	check(t, s.Seen(at(0), d))
	d.Label = "RENAMED"
	d.Hostname = "newname"
	d.MountPoints = []string{"/mnt/x"}
	check(t, s.Seen(at(10), d))
	check(t, s.Seen(at(5), d)) // late report: time does not go back
	got := mustDisk(t, s, d)
	if !got.FirstSeen.Equal(at(0)) || !got.LastSeen.Equal(at(10)) {
		t.Errorf("first/last seen %v/%v, want %v/%v", got.FirstSeen, got.LastSeen, at(0), at(10))
	}
	if got.Label != "RENAMED" || got.Hostname != "newname" || !slices.Equal(got.MountPoints, []string{"/mnt/x"}) {
		t.Errorf("attributes not updated: %+v", got)
	}
	if len(got.Sightings) != 1 || !got.Sightings[0].Until.Equal(Sec(at(10))) || got.Sightings[0].Hostname != "newname" {
		t.Errorf("sightings %+v, want one lasting until %v", got.Sightings, Sec(at(10)))
	}
}

func testGoneAndBack(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	d := DiskAt("h1", "/dev/sdb1", "one")
	check(t, s.Seen(at(0), d))
	check(t, s.Seen(at(20), d))
	check(t, s.Gone(at(30), store.ReasonDetached, d))
	got := mustDisk(t, s, d)
	if got.Present || !got.GoneAt.Equal(at(30)) || got.GoneReason != store.ReasonDetached || !got.LastSeen.Equal(at(20)) {
		t.Fatalf("after Gone: present %v gone %v %q last %v", got.Present, got.GoneAt, got.GoneReason, got.LastSeen)
	}
	if sg := got.Sightings[0]; sg.Reason != store.ReasonDetached || !sg.Until.Equal(Sec(at(20))) {
		t.Errorf("ended sighting %+v", sg)
	}
	check(t, s.Gone(at(40), store.ReasonTimeout, d)) // already gone: no change
	if again := mustDisk(t, s, d); again.GoneReason != store.ReasonDetached {
		t.Errorf("a second Gone changed the reason to %q", again.GoneReason)
	}
	check(t, s.Seen(at(100), d))
	got = mustDisk(t, s, d)
	if !got.Present || !got.GoneAt.IsZero() || got.GoneReason != "" {
		t.Errorf("back: present %v gone %v %q", got.Present, got.GoneAt, got.GoneReason)
	}
	want := []store.Sighting{
		{HostID: "h1", Hostname: "name-h1", Device: "/dev/sdb1", From: Sec(at(100)), Until: Sec(at(100))},
		{HostID: "h1", Hostname: "name-h1", Device: "/dev/sdb1", From: Sec(at(0)), Until: Sec(at(20)), Reason: store.ReasonDetached},
	}
	EqualDisk(t, got, store.Disk{Key: got.Key, HostID: "h1", Hostname: "name-h1", Device: "/dev/sdb1",
		Label: "ONE", Type: "ext4", UUID: "uuid-one", MountPoints: []string{}, FirstSeen: at(0), LastSeen: at(100),
		Present: true, Sightings: want})
}

func testGoneElsewhere(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	d := DiskAt("h1", "/dev/sdb1", "one")
	check(t, s.Seen(at(0), d))
	for _, other := range []store.DiskInfo{DiskAt("h2", "/dev/sdb1", "one"), DiskAt("h1", "/dev/sdc1", "one"), DiskAt("h1", "/dev/sdb1", "never")} {
		check(t, s.Gone(at(1), store.ReasonDetached, other))
	}
	if got := mustDisk(t, s, d); !got.Present {
		t.Errorf("Gone for another place made the disk gone: %+v", got)
	}
	if _, ok := s.Disk(store.Identity(DiskAt("h1", "/dev/sdb1", "never"))); ok {
		t.Errorf("Gone created a disk")
	}
}

func testMove(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	a := DiskAt("h1", "/dev/sdb1", "usb")
	b := DiskAt("h2", "/dev/sdc1", "usb")
	check(t, s.Seen(at(0), a))
	check(t, s.Seen(at(10), a))
	check(t, s.Seen(at(20), b))
	got := mustDisk(t, s, b)
	if got.HostID != "h2" || got.Device != "/dev/sdc1" || !got.Present || got.Hostname != "name-h2" {
		t.Errorf("moved disk at %q %q present %v", got.HostID, got.Device, got.Present)
	}
	want := []store.Sighting{
		{HostID: "h2", Hostname: "name-h2", Device: "/dev/sdc1", From: Sec(at(20)), Until: Sec(at(20))},
		{HostID: "h1", Hostname: "name-h1", Device: "/dev/sdb1", From: Sec(at(0)), Until: Sec(at(10)), Reason: store.ReasonDetached},
	}
	if len(got.Sightings) != 2 {
		t.Fatalf("sightings %+v", got.Sightings)
	}
	for i := range want {
		if !sameSighting(got.Sightings[i], want[i]) {
			t.Errorf("sighting %d = %+v, want %+v", i, got.Sightings[i], want[i])
		}
	}
	// The old host's late "gone" does not touch the disk at its new place.
	check(t, s.Gone(at(21), store.ReasonDetached, a))
	check(t, s.HostGone(at(22), store.ReasonTimeout, "h1"))
	if got := mustDisk(t, s, b); !got.Present {
		t.Errorf("old host's gone reached the moved disk")
	}
}

func testPlaceReplaced(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	old := DiskAt("h1", "/dev/sdb1", "old")
	other := DiskAt("h1", "/dev/sdc1", "other")
	check(t, s.Seen(at(0), old, other))
	// Another filesystem at the same place: the old one is no longer there.
	check(t, s.Seen(at(10), DiskAt("h1", "/dev/sdb1", "new")))
	got := mustDisk(t, s, old)
	if got.Present || got.GoneReason != store.ReasonDetached || !got.GoneAt.Equal(at(10)) {
		t.Errorf("replaced disk: present %v, %q at %v; want detached at %v", got.Present, got.GoneReason, got.GoneAt, at(10))
	}
	if !mustDisk(t, s, other).Present {
		t.Errorf("a disk at another device of the host went too")
	}
	// A disk with neither uuid nor partuuid is known by its place: seen
	// again there it is the same disk.
	bare := store.DiskInfo{HostID: "h2", Device: "/dev/sdz"}
	check(t, s.Seen(at(20), bare))
	check(t, s.Seen(at(30), bare))
	if got := mustDisk(t, s, bare); !got.Present || len(got.Sightings) != 1 {
		t.Errorf("bare disk seen twice at one place: %+v", got)
	}
}

func testHostGone(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	for _, reason := range []store.GoneReason{store.ReasonBye, store.ReasonTimeout} {
		t.Run(string(reason), func(t *testing.T) {
			s := mk(t, store.Options{})
			h1 := []store.DiskInfo{DiskAt("h1", "/dev/a", "a"), DiskAt("h1", "/dev/b", "b")}
			h2 := DiskAt("h2", "/dev/a", "c")
			check(t, s.Seen(at(0), append(h1, h2)...))
			check(t, s.HostGone(at(5), reason, "h1"))
			for _, d := range h1 {
				got := mustDisk(t, s, d)
				if got.Present || got.GoneReason != reason || !got.GoneAt.Equal(at(5)) || got.Sightings[0].Reason != reason {
					t.Errorf("%s: present %v reason %q at %v", d.Device, got.Present, got.GoneReason, got.GoneAt)
				}
			}
			if !mustDisk(t, s, h2).Present {
				t.Errorf("another host's disk went too")
			}
		})
	}
}

func testSightingsBound(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{MaxSightings: 4})
	var last store.DiskInfo
	for i := range 10 {
		last = DiskAt(fmt.Sprintf("h%d", i%3), fmt.Sprintf("/dev/sd%c", 'a'+i), "roamer")
		check(t, s.Seen(at(i*10), last))
	}
	got := mustDisk(t, s, last)
	if len(got.Sightings) != 4 {
		t.Fatalf("%d sightings, want 4", len(got.Sightings))
	}
	for i, sg := range got.Sightings {
		n := 9 - i
		if sg.Device != fmt.Sprintf("/dev/sd%c", 'a'+n) || sg.HostID != fmt.Sprintf("h%d", n%3) || !sg.From.Equal(Sec(at(n*10))) {
			t.Errorf("sighting %d = %+v, want the one from %v", i, sg, at(n*10))
		}
	}
	if !got.FirstSeen.Equal(at(0)) {
		t.Errorf("first seen %v, want %v (kept beyond the sightings)", got.FirstSeen, at(0))
	}
}

func keys(ds []store.Disk) []string {
	ks := make([]string, len(ds))
	for i, d := range ds {
		ks[i] = d.Key
	}
	return ks
}

func testFind(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	disks := []store.DiskInfo{
		{HostID: "aa11", Hostname: "alpha", Device: "/dev/sdb1", Label: "Backup-2019", Type: "ext4", UUID: "1111-aaaa"},
		{HostID: "bb22", Hostname: "beta", Device: "/dev/sdc1", Label: "photos", Type: "vfat", UUID: "C0BB-1942", PartUUID: "pp-77"},
		{HostID: "bb22", Hostname: "beta", Device: "/dev/sdd1", Label: "", Type: "swap"},
	}
	for i, d := range disks {
		check(t, s.Seen(at(i), d))
	}
	k := func(i int) string { return store.Identity(disks[i]) }
	cases := []struct {
		term string
		want []string
	}{
		{"1111-aaaa", []string{k(0)}},           // uuid, exact
		{"c0bb-1942", []string{k(1)}},           // uuid, case ignored
		{"pp-77", []string{k(1)}},               // partuuid
		{"BACKUP-2019", []string{k(0)}},         // label, case ignored
		{"/dev/sdd1", []string{k(2)}},           // device
		{"beta", []string{k(2), k(1)}},          // hostname: newest first
		{"aa11", []string{k(0)}},                // host id
		{"backup", []string{k(0)}},              // prefix
		{"2019", []string{k(0)}},                // substring
		{"/dev/sd", []string{k(2), k(1), k(0)}}, // prefix of all devices
		{"zzz", nil},                            // nothing
		{"", nil},                               // empty term matches nothing
	}
	for _, c := range cases {
		if got := keys(s.Find(c.term)); !slices.Equal(got, c.want) {
			t.Errorf("Find(%q) = %q, want %q", c.term, got, c.want)
		}
	}
}

func testFindTiers(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	exact := store.DiskInfo{HostID: "h", Device: "/dev/a", Label: "DATA", UUID: "u1"}
	prefix := store.DiskInfo{HostID: "h", Device: "/dev/b", Label: "data-old", UUID: "u2"}
	contains := store.DiskInfo{HostID: "h", Device: "/dev/c", Label: "mydata", UUID: "u3"}
	check(t, s.Seen(at(0), exact, prefix, contains))
	steps := []struct {
		gone store.DiskInfo
		want string
	}{
		{store.DiskInfo{}, "uuid:u1"},
		{exact, "uuid:u2"},
		{prefix, "uuid:u3"},
	}
	for _, st := range steps {
		if st.gone.HostID != "" {
			// Only removing the better match lets the weaker tier show:
			// move its label away so it no longer matches.
			st.gone.Label = "other"
			check(t, s.Seen(at(1), st.gone))
		}
		if got := keys(s.Find("data")); !slices.Equal(got, []string{st.want}) {
			t.Errorf("Find(data) = %q, want [%s]", got, st.want)
		}
	}
}

func testHistory(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	usb := DiskAt("h1", "/dev/sdb1", "usb")
	other := DiskAt("h3", "/dev/sdz", "other")
	check(t, s.Seen(at(0), usb))
	check(t, s.Seen(at(5), other))
	check(t, s.Gone(at(10), store.ReasonDetached, usb))
	check(t, s.Seen(at(20), DiskAt("h2", "/dev/sdc1", "usb")))
	h := s.History("uuid-usb")
	if len(h) != 2 {
		t.Fatalf("History = %+v, want 2 sightings", h)
	}
	if h[0].HostID != "h2" || h[1].HostID != "h1" || h[1].Reason != store.ReasonDetached || h[0].Key != "uuid:uuid-usb" || h[0].Label != "USB" {
		t.Errorf("History not newest first or wrong: %+v", h)
	}
	// A past place matches too: h1 had the usb disk once.
	h = s.History("name-h1")
	if len(h) != 2 || h[0].Key != "uuid:uuid-usb" {
		t.Errorf("History(name-h1) = %+v, want the usb disk's 2 sightings", h)
	}
	if h := s.History("nothing-like-it"); len(h) != 0 {
		t.Errorf("History(nothing) = %+v", h)
	}
	all := s.History("uuid-")
	for i := 1; i < len(all); i++ {
		if all[i].From.After(all[i-1].From) {
			t.Errorf("History not newest first at %d: %+v", i, all)
		}
	}
	if len(all) != 3 {
		t.Errorf("History(uuid-) has %d entries, want 3", len(all))
	}
}

func testPeers(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	p1 := store.Peer{HostID: "b", Hostname: "beta", Addr: "10.0.0.2:4277", LastHeard: at(1),
		Mark: store.Mark{BootID: "boot-1", Seq: 42, SentAt: at(0)}}
	p2 := store.Peer{HostID: "a", Hostname: "alpha", Addr: "[fe80::1%eth0]:4277", LastHeard: at(2)}
	check(t, s.Heard(p1, p2))
	p1.Mark = store.Mark{BootID: "boot-2", Seq: 1, SentAt: at(3)}
	p1.LastHeard = at(4)
	check(t, s.Heard(p1))
	got, ok := s.Peer("b")
	if !ok || got.Hostname != "beta" || got.Addr != p1.Addr || !got.LastHeard.Equal(at(4)) ||
		got.Mark.BootID != "boot-2" || got.Mark.Seq != 1 || !got.Mark.SentAt.Equal(at(3)) {
		t.Errorf("Peer(b) = %+v, %v; want %+v", got, ok, p1)
	}
	ps := s.Peers()
	if len(ps) != 2 || ps[0].HostID != "a" || ps[1].HostID != "b" || !ps[0].Mark.SentAt.IsZero() {
		t.Errorf("Peers() = %+v", ps)
	}
	if _, ok := s.Peer("nobody"); ok {
		t.Errorf("Peer(nobody) found")
	}
}

func testMaxEntries(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{MaxEntries: 3})
	var ds []store.DiskInfo
	for i := range 5 {
		ds = append(ds, DiskAt("h", fmt.Sprintf("/dev/%d", i), fmt.Sprint(i)))
	}
	// 0, 1, 2 fill the store; 0 is seen again, so 1 and then 2 are the
	// oldest when 3 and 4 arrive.
	for i := range 3 {
		check(t, s.Seen(at(i), ds[i]))
	}
	check(t, s.Seen(at(3), ds[0]))
	check(t, s.Seen(at(4), ds[3]))
	check(t, s.Seen(at(5), ds[4]))
	got := keys(s.Disks())
	want := []string{store.Identity(ds[4]), store.Identity(ds[3]), store.Identity(ds[0])}
	if !slices.Equal(got, want) {
		t.Errorf("Disks() = %q, want %q", got, want)
	}
	for i := range 5 {
		check(t, s.Heard(store.Peer{HostID: fmt.Sprint("p", i), LastHeard: at(i)}))
	}
	var ps []string
	for _, p := range s.Peers() {
		ps = append(ps, p.HostID)
	}
	if !slices.Equal(ps, []string{"p2", "p3", "p4"}) {
		t.Errorf("peers kept %q, want the newest three", ps)
	}
	if st := s.Stats(); st.Evicted != 4 {
		t.Errorf("Stats.Evicted = %d, want 4", st.Evicted)
	}
}

func testMaxAge(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	var mu sync.Mutex
	now := at(0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := mk(t, store.Options{MaxAge: time.Hour, Now: clock})
	old, young := DiskAt("h", "/dev/a", "old"), DiskAt("h", "/dev/b", "young")
	check(t, s.Seen(at(0), old))
	check(t, s.Seen(at(1800), young))
	check(t, s.Heard(store.Peer{HostID: "old", LastHeard: at(0)}, store.Peer{HostID: "young", LastHeard: at(1800)}))
	mu.Lock()
	now = at(3601)
	mu.Unlock()
	check(t, s.Maintain(context.Background()))
	if got := keys(s.Disks()); !slices.Equal(got, []string{store.Identity(young)}) {
		t.Errorf("after an hour Disks() = %q, want only the young one", got)
	}
	if ps := s.Peers(); len(ps) != 1 || ps[0].HostID != "young" {
		t.Errorf("after an hour Peers() = %+v", ps)
	}
}

func testInvalid(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	good := DiskAt("h", "/dev/a", "good")
	long := strings.Repeat("x", store.MaxStringLen+1)
	bad := func(f func(*store.DiskInfo)) store.DiskInfo { d := DiskAt("h", "/dev/b", "bad"); f(&d); return d }
	cases := []struct {
		name string
		call func(s store.Store) error
	}{
		{"no host id", func(s store.Store) error { return s.Seen(at(0), good, bad(func(d *store.DiskInfo) { d.HostID = "" })) }},
		{"no identity", func(s store.Store) error {
			return s.Seen(at(0), good, bad(func(d *store.DiskInfo) { d.UUID, d.Device = "", "" }))
		}},
		{"long label", func(s store.Store) error { return s.Seen(at(0), good, bad(func(d *store.DiskInfo) { d.Label = long })) }},
		{"invalid utf-8", func(s store.Store) error {
			return s.Seen(at(0), good, bad(func(d *store.DiskInfo) { d.UUID = "\xff" }))
		}},
		{"many mounts", func(s store.Store) error {
			return s.Seen(at(0), good, bad(func(d *store.DiskInfo) { d.MountPoints = make([]string, store.MaxMountPoints+1) }))
		}},
		{"zero time", func(s store.Store) error { return s.Seen(time.Time{}, good) }},
		{"bad reason", func(s store.Store) error { return s.Gone(at(0), "lost", good) }},
		{"empty reason", func(s store.Store) error { return s.HostGone(at(0), "", "h") }},
		{"peer without id", func(s store.Store) error { return s.Heard(store.Peer{LastHeard: at(0)}) }},
		{"peer without time", func(s store.Store) error { return s.Heard(store.Peer{HostID: "p"}) }},
		{"peer long address", func(s store.Store) error { return s.Heard(store.Peer{HostID: "p", Addr: long, LastHeard: at(0)}) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mk(t, store.Options{})
			err := c.call(s)
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has more than one line: %q", err)
			}
			if n := len(s.Disks()) + len(s.Peers()); n != 0 {
				t.Errorf("a failed write applied %d records", n)
			}
		})
	}
}

func testCopies(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	d := DiskAt("h", "/dev/a", "c")
	d.MountPoints = []string{"/m"}
	check(t, s.Seen(at(0), d))
	d.MountPoints[0] = "/changed"
	got := mustDisk(t, s, d)
	got.MountPoints[0] = "/changed-too"
	got.Sightings[0].HostID = "x"
	again := mustDisk(t, s, d)
	if again.MountPoints[0] != "/m" || again.Sightings[0].HostID != "h" {
		t.Errorf("store shares memory with its caller: %+v", again)
	}
}

func testClosed(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	d := DiskAt("h", "/dev/a", "c")
	check(t, s.Seen(at(0), d))
	check(t, s.Close())
	for name, err := range map[string]error{
		"Seen":     s.Seen(at(1), d),
		"Gone":     s.Gone(at(1), store.ReasonBye, d),
		"HostGone": s.HostGone(at(1), store.ReasonBye, "h"),
		"Heard":    s.Heard(store.Peer{HostID: "p", LastHeard: at(1)}),
	} {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if got := mustDisk(t, s, d); !got.LastSeen.Equal(at(0)) {
		t.Errorf("read after Close: %+v", got)
	}
}

func testConcurrent(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{MaxEntries: 500, FlushInterval: 5 * time.Millisecond, BatchSize: 50})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				d := DiskAt(fmt.Sprint("h", w), fmt.Sprint("/dev/", i%50), fmt.Sprint(w, "-", i%70))
				if err := s.Seen(at(i), d); err != nil {
					t.Error(err)
					return
				}
				if i%7 == 0 {
					_ = s.Gone(at(i), store.ReasonDetached, d)
				}
				if i%50 == 0 {
					_ = s.HostGone(at(i), store.ReasonTimeout, fmt.Sprint("h", w))
					_ = s.Heard(store.Peer{HostID: fmt.Sprint("h", w), LastHeard: at(i)})
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 100 {
				s.Find("h1")
				s.History("2-")
				s.Disks()
				s.Peers()
				s.Stats()
			}
		})
	}
	wg.Wait()
	check(t, s.Flush(context.Background()))
	if n := len(s.Disks()); n != 4*70 {
		t.Errorf("%d disks, want %d", n, 4*70)
	}
	if st := s.Stats(); st.Pending != 0 {
		t.Errorf("pending %d after Flush", st.Pending)
	}
}

func testStats(t *testing.T, mk func(*testing.T, store.Options) store.Store) {
	s := mk(t, store.Options{})
	check(t, s.Seen(at(0), DiskAt("h", "/dev/a", "a"), DiskAt("h", "/dev/b", "b")))
	check(t, s.Gone(at(1), store.ReasonDetached, DiskAt("h", "/dev/a", "a")))
	check(t, s.Heard(store.Peer{HostID: "p", LastHeard: at(0)}))
	st := s.Stats()
	if st.Disks != 2 || st.Present != 1 || st.Peers != 1 {
		t.Errorf("Stats = %+v, want 2 disks, 1 present, 1 peer", st)
	}
}
