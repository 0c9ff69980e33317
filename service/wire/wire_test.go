package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/diskd/diskd/service/diskstate"
)

func TestRoundTrip(t *testing.T) {
	full := diskstate.Disk{
		Device:      "/dev/nvme0n1p2",
		UUID:        strings.Repeat("u", diskstate.MaxUUIDLen),
		PartUUID:    strings.Repeat("p", diskstate.MaxUUIDLen),
		Label:       "Étiquette \x1b[31m ☃",
		Type:        strings.Repeat("t", diskstate.MaxTypeLen),
		Mountpoints: []string{"/", "/mnt/with space", "/mnt/" + strings.Repeat("x", 500)},
	}
	longNames := announceMsg([]diskstate.Disk{{Device: "/dev/sdb"}})
	longNames.HostID = strings.Repeat("a", MaxIDLen)
	longNames.BootID = strings.Repeat("B.:_-", MaxIDLen/5)
	longNames.Hostname = "héllo\twörld\x7f" + strings.Repeat("h", 200)
	longNames.Seq = 1<<64 - 1
	longNames.Interval = MaxInterval
	shortInterval := otherMsg(KindPing)
	shortInterval.Interval = MinInterval
	shortInterval.Seq = 0

	cases := []struct {
		name string
		m    Message
	}{
		{"announce empty", announceMsg(nil)},
		{"announce one", announceMsg(realisticDisks(1))},
		{"announce 16", announceMsg(realisticDisks(16))},
		{"announce full disk", announceMsg([]diskstate.Disk{full, {Device: "/dev/sdz"}})},
		{"announce long names", longNames},
		{"bye", otherMsg(KindBye)},
		{"ping", otherMsg(KindPing)},
		{"ping short interval", shortInterval},
	}
	rings := []struct {
		name string
		k    *Keyring
	}{
		{"unsealed", nil},
		{"sealed", mustKeyring(t, testKey(1))},
	}
	for _, c := range cases {
		for _, r := range rings {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				dgrams, err := Encode(c.m, MaxDatagram, r.k)
				if err != nil {
					t.Fatal(err)
				}
				if len(dgrams) != 1 {
					t.Fatalf("%d datagrams, want 1", len(dgrams))
				}
				d := dgrams[0]
				if len(d) > MaxDatagram {
					t.Errorf("datagram is %d bytes", len(d))
				}
				wantFlags := byte(0)
				if r.k != nil {
					wantFlags = FlagSealed
				}
				if string(d[:4]) != Magic || d[4] != Version || d[5] != wantFlags {
					t.Errorf("header % x", d[:HeaderSize])
				}
				got, err := Decode(d, r.k)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, c.m) {
					t.Errorf("decoded\n%+v\nwant\n%+v", got, c.m)
				}
			})
		}
	}
}

// genericBody encodes m unsealed and decodes the first datagram's body
// with a generic msgpack decoder, as another program would read it.
func genericBody(t *testing.T, m Message) map[string]any {
	t.Helper()
	dgrams, err := Encode(m, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := msgpack.Unmarshal(dgrams[0][HeaderSize:], &generic); err != nil {
		t.Fatal(err)
	}
	return generic
}

// decodeAll decodes every datagram with ring, failing the test when one
// is larger than budget or does not decode.
func decodeAll(t *testing.T, dgrams [][]byte, budget int, ring *Keyring) []Message {
	t.Helper()
	parts := make([]Message, len(dgrams))
	for i, d := range dgrams {
		if len(d) > budget {
			t.Fatalf("budget %d: datagram %d is %d bytes", budget, i, len(d))
		}
		p, err := Decode(d, ring)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		parts[i] = p
	}
	return parts
}

func TestEncodeIsStandardMsgpack(t *testing.T) {
	m := announceMsg(realisticDisks(2))
	generic := genericBody(t, m)
	if generic["h"] != m.HostID || generic["n"] != m.Hostname {
		t.Errorf("generic decode: %v", generic)
	}
	disks, _ := generic["d"].([]any)
	if len(disks) != 2 {
		t.Fatalf("generic disks: %v", generic["d"])
	}
	d0, _ := disks[0].(map[string]any)
	if d0["d"] != m.Disks[0].Device || d0["u"] != m.Disks[0].UUID || d0["l"] != m.Disks[0].Label {
		t.Errorf("generic disk: %v", d0)
	}
}

func TestEncode600Disks(t *testing.T) {
	disks := realisticDisks(600)
	m := announceMsg(disks)
	for _, ring := range []*Keyring{nil, mustKeyring(t, testKey(3))} {
		dgrams, err := Encode(m, DefaultBudget, ring)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sealed=%v: 600 disks in %d datagrams", ring != nil, len(dgrams))
		parts := decodeAll(t, dgrams, DefaultBudget, ring)
		for i, p := range parts {
			if p.Part != i || p.Parts != len(dgrams) || p.Seq != m.Seq {
				t.Fatalf("datagram %d: part %d of %d, seq %d", i, p.Part, p.Parts, p.Seq)
			}
		}
		checkFewestParts(t, parts, DefaultBudget, ring != nil)

		rng := rand.New(rand.NewPCG(1, 2))
		for trial := range 20 {
			order := rng.Perm(len(parts))
			a := NewAssembler(16, time.Minute)
			now := time.Unix(1000, 0)
			var got []Message
			for _, i := range order {
				if c, ok := a.Add(parts[i], now); ok {
					got = append(got, c)
				}
			}
			if len(got) != 1 {
				t.Fatalf("trial %d: %d complete messages", trial, len(got))
			}
			want := m
			want.Part, want.Parts = 0, 1
			if !reflect.DeepEqual(got[0], want) {
				t.Fatalf("trial %d: reassembled message differs (%d disks)", trial, len(got[0].Disks))
			}
			if a.Pending() != 0 {
				t.Errorf("pending %d after completion", a.Pending())
			}
		}

		// Whichever part is missing, nothing is delivered.
		for missing := range parts {
			a := NewAssembler(16, time.Minute)
			for _, i := range rng.Perm(len(parts)) {
				if i == missing {
					continue
				}
				if _, ok := a.Add(parts[i], time.Unix(1000, 0)); ok {
					t.Fatalf("delivered without part %d", missing)
				}
			}
		}
	}
}

// checkFewestParts asserts greedy packing: the first disk of each part
// would not have fitted the previous one.
func checkFewestParts(t *testing.T, parts []Message, budget int, sealed bool) {
	t.Helper()
	for i := 0; i+1 < len(parts); i++ {
		cur := parts[i]
		if len(cur.Disks) == MaxDisksPerPart {
			continue
		}
		grown := cur
		grown.Disks = append(slices.Clone(cur.Disks), parts[i+1].Disks[0])
		if size := partSize(t, grown, sealed); size <= budget {
			t.Errorf("part %d: %d disks, one more would still fit (%d <= %d)", i, len(cur.Disks), size, budget)
		}
	}
}

// partSize encodes one part as is, keeping its numbering.
func partSize(t *testing.T, m Message, sealed bool) int {
	t.Helper()
	e := encoder{overhead: HeaderSize}
	if sealed {
		e.overhead += SealOverhead
	}
	e.enc = msgpack.NewEncoder(&e.buf)
	if err := e.common(&m, 9); err != nil {
		t.Fatal(err)
	}
	e.str("p")
	e.uint(uint64(m.Part))
	e.str("c")
	e.uint(uint64(m.Parts))
	e.str("d")
	e.arrayLen(len(m.Disks))
	for i := range m.Disks {
		if err := e.disk(&m.Disks[i]); err != nil {
			t.Fatal(err)
		}
	}
	return e.overhead + e.buf.Len()
}

func TestEncodeSplitsExactlyAtBudget(t *testing.T) {
	// For many budgets, every datagram fits and packing is greedy.
	m := announceMsg(realisticDisks(200))
	for budget := 400; budget <= 3000; budget += 37 {
		for _, ring := range []*Keyring{nil, mustKeyring(t, testKey(9))} {
			dgrams, err := Encode(m, budget, ring)
			if err != nil {
				t.Fatalf("budget %d: %v", budget, err)
			}
			parts := decodeAll(t, dgrams, budget, ring)
			total := 0
			for _, p := range parts {
				total += len(p.Disks)
			}
			if total != 200 {
				t.Fatalf("budget %d: %d disks", budget, total)
			}
			checkFewestParts(t, parts, budget, ring != nil)
		}
	}
}

func TestEncodeManyParts(t *testing.T) {
	// Big disks, one per part: more than 127 parts makes the parts count
	// two bytes long; more than 255 parts is an error.
	big := func(n int) []diskstate.Disk {
		disks := realisticDisks(n)
		for i := range disks {
			disks[i].Label = strings.Repeat("L", diskstate.MaxLabelLen)
			disks[i].Mountpoints = []string{"/" + strings.Repeat("m", 600)}
		}
		return disks
	}
	dgrams, err := Encode(announceMsg(big(MaxParts)), DefaultBudget, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dgrams) != MaxParts {
		t.Fatalf("%d parts, want %d", len(dgrams), MaxParts)
	}
	a := NewAssembler(0, 0)
	var done bool
	for i, p := range decodeAll(t, dgrams, DefaultBudget, nil) {
		if _, done = a.Add(p, time.Now()); done != (i == len(dgrams)-1) {
			t.Fatalf("part %d: done=%v", i, done)
		}
	}
	if _, err := Encode(announceMsg(big(MaxParts+1)), DefaultBudget, nil); err == nil {
		t.Fatal("256 parts: no error")
	}
}

func TestEncodeDiskTooLarge(t *testing.T) {
	disks := realisticDisks(3)
	disks[1].Device = "/dev/huge"
	disks[1].Mountpoints = []string{"/" + strings.Repeat("x", 1000), "/" + strings.Repeat("y", 200)}
	_, err := Encode(announceMsg(disks), DefaultBudget, nil)
	var de *DiskError
	if !errors.As(err, &de) || de.Index != 1 || de.Device != "/dev/huge" || !errors.Is(err, ErrDiskTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), `"/dev/huge"`) {
		t.Errorf("error does not name the device: %v", err)
	}
	// It fits a jumbo budget.
	if _, err := Encode(announceMsg(disks), MaxDatagram, nil); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeRejects(t *testing.T) {
	withDisk := func(f func(d *diskstate.Disk)) Message {
		disks := realisticDisks(3)
		f(&disks[2])
		return announceMsg(disks)
	}
	mod := func(m Message, f func(m *Message)) Message { f(&m); return m }
	cases := []struct {
		name      string
		m         Message
		diskIndex int // -1: not a disk error
	}{
		{"unknown kind", mod(announceMsg(nil), func(m *Message) { m.Kind = 9 }), -1},
		{"zero kind", Message{}, -1},
		{"bad host id", mod(announceMsg(nil), func(m *Message) { m.HostID = "a b" }), -1},
		{"empty hostname", mod(announceMsg(nil), func(m *Message) { m.Hostname = "" }), -1},
		{"long boot id", mod(announceMsg(nil), func(m *Message) { m.BootID = strings.Repeat("b", 65) }), -1},
		{"short interval", mod(announceMsg(nil), func(m *Message) { m.Interval = 99 * time.Millisecond }), -1},
		{"long interval", mod(announceMsg(nil), func(m *Message) { m.Interval = time.Hour + time.Millisecond }), -1},
		{"ping with disks", mod(otherMsg(KindPing), func(m *Message) { m.Disks = realisticDisks(1) }), -1},
		{"too many disks", announceMsg(realisticDisks(MaxDisksTotal + 1)), -1},
		{"no device", withDisk(func(d *diskstate.Disk) { d.Device = "" }), 2},
		{"bad label", withDisk(func(d *diskstate.Disk) { d.Label = "\xff" }), 2},
		{"NUL uuid", withDisk(func(d *diskstate.Disk) { d.UUID = "a\x00b" }), 2},
		{"long type", withDisk(func(d *diskstate.Disk) { d.Type = strings.Repeat("t", 33) }), 2},
		{"empty mountpoint", withDisk(func(d *diskstate.Disk) { d.Mountpoints = []string{""} }), 2},
		{"many mountpoints", withDisk(func(d *diskstate.Disk) { d.Mountpoints = make([]string, 33) }), 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Encode(c.m, DefaultBudget, nil)
			if err == nil {
				t.Fatal("no error")
			}
			var de *DiskError
			if got := errors.As(err, &de); got != (c.diskIndex >= 0) || got && de.Index != c.diskIndex {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error: %q", err)
			}
		})
	}
}

func TestEncodeBudget(t *testing.T) {
	m := announceMsg(realisticDisks(100))
	d0, err := Encode(m, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dDefault, _ := Encode(m, DefaultBudget, nil)
	if len(d0) != len(dDefault) {
		t.Errorf("budget 0: %d parts, default: %d", len(d0), len(dDefault))
	}
	big, err := Encode(m, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range big {
		if len(d) > MaxDatagram {
			t.Errorf("datagram of %d bytes", len(d))
		}
	}
	if _, err := Encode(m, -1, nil); err == nil {
		t.Error("negative budget: no error")
	}
	if _, err := Encode(m, 100, nil); err == nil {
		t.Error("budget smaller than the header: no error")
	}
	if _, err := Encode(otherMsg(KindBye), 40, nil); err == nil {
		t.Error("bye larger than budget: no error")
	}
}

func TestEncodeIntervalTruncated(t *testing.T) {
	m := otherMsg(KindBye)
	m.Interval = 1500*time.Millisecond + 999*time.Microsecond
	d, err := Encode(m, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(d[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Interval != 1500*time.Millisecond {
		t.Errorf("interval %v", got.Interval)
	}
}

func TestSealedDatagramsDiffer(t *testing.T) {
	k := mustKeyring(t, testKey(5))
	m := otherMsg(KindPing)
	a, _ := Encode(m, 0, k)
	b, _ := Encode(m, 0, k)
	if bytes.Equal(a[0], b[0]) {
		t.Error("two seals of one message are identical: nonce not random")
	}
	if bytes.Contains(a[0], []byte(m.Hostname)) {
		t.Error("sealed datagram contains the hostname in clear")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindAnnounce: "announce", KindBye: "bye", KindPing: "ping", 7: "kind(7)"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
}
