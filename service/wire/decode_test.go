package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// dropCase is one datagram Decode must reject with reason.
type dropCase struct {
	name   string
	dgram  []byte
	k      *Keyring
	reason DropReason
}

func TestDecodeRejects(t *testing.T) {
	key1 := mustKeyring(t, testKey(1))
	key2 := mustKeyring(t, testKey(2))
	goodBody := body(t, baseAnnounce())
	goodSealed := sealedDatagram(key1, goodBody)
	if _, err := Decode(unsealed(goodBody), nil); err != nil {
		t.Fatalf("base announce: %v", err)
	}
	if _, err := Decode(unsealed(body(t, basePing())), nil); err != nil {
		t.Fatalf("base ping: %v", err)
	}
	if _, err := Decode(goodSealed, key1); err != nil {
		t.Fatalf("base sealed: %v", err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	ann := func(key string, val any) []byte { return unsealed(body(t, baseAnnounce().with(key, val))) }
	ping := func(key string, val any) []byte { return unsealed(body(t, basePing().with(key, val))) }
	disk := func(key string, val any) []byte {
		return unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().with(key, val)})))
	}
	str32 := func(n uint32, data string) raw {
		return raw(append([]byte{0xdb, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, data...))
	}
	manyDisks := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = omap{"d", "/dev/x"}
		}
		return out
	}
	manyStrings := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = "/m"
		}
		return out
	}
	// A body sealed under a different header: the AAD binds the header.
	otherAAD := [HeaderSize]byte{'D', 'S', 'K', 'D', Version, 0}
	wrongAAD := append([]byte("DSKD\x01\x01"), key1.seal(nil, &otherAAD, goodBody)...)

	cases := []dropCase{
		// Header.
		{"empty", nil, nil, ReasonShort},
		{"short", []byte("DSKD\x01"), nil, ReasonShort},
		{"too long", append(unsealed(goodBody), make([]byte, MaxDatagram)...), nil, ReasonLong},
		{"bad magic", append([]byte("DSKX\x01\x00"), goodBody...), nil, ReasonMagic},
		{"lowercase magic", append([]byte("dskd\x01\x00"), goodBody...), nil, ReasonMagic},
		{"version 0", append([]byte("DSKD\x00\x00"), goodBody...), nil, ReasonVersion},
		{"version 2", append([]byte("DSKD\x02\x00"), goodBody...), nil, ReasonVersion},
		{"flag 0x02", append([]byte("DSKD\x01\x02"), goodBody...), nil, ReasonFlags},
		{"flags 0x81 sealed", flip(goodSealed, 5) /* 0x00 */, key1, ReasonUnsealed},
		{"flag 0x80", append([]byte("DSKD\x01\x80"), goodBody...), nil, ReasonFlags},
		// Sealing.
		{"sealed without keyring", goodSealed, nil, ReasonSealed},
		{"unsealed with keyring", unsealed(goodBody), key1, ReasonUnsealed},
		{"sealed too short", []byte("DSKD\x01\x01" + strings.Repeat("n", SealOverhead-1)), key1, ReasonShort},
		{"sealed empty", []byte("DSKD\x01\x01"), key1, ReasonShort},
		{"wrong key", goodSealed, key2, ReasonAuth},
		{"tampered nonce", flip(goodSealed, HeaderSize), key1, ReasonAuth},
		{"tampered ciphertext", flip(goodSealed, HeaderSize+NonceSize+3), key1, ReasonAuth},
		{"tampered tag", flip(goodSealed, len(goodSealed)-1), key1, ReasonAuth},
		{"truncated tag", goodSealed[:len(goodSealed)-1], key1, ReasonAuth},
		{"tampered header (AAD)", wrongAAD, key1, ReasonAuth},
		{"sealed read as unsealed", append([]byte("DSKD\x01\x00"), goodSealed[HeaderSize:]...), nil, ReasonMalformed},
		// Structure.
		{"no body", unsealed(nil), nil, ReasonMalformed},
		{"body not a map", unsealed(body(t, []any{1, 2})), nil, ReasonMalformed},
		{"body nil", unsealed([]byte{0xc0}), nil, ReasonMalformed},
		{"trailing garbage", unsealed(append(bytes.Clone(goodBody), 0x00)), nil, ReasonMalformed},
		{"two messages", unsealed(append(bytes.Clone(goodBody), goodBody...)), nil, ReasonMalformed},
		{"duplicate key", unsealed(body(t, append(baseAnnounce(), "h", "host-2"))), nil, ReasonMalformed},
		{"duplicate disk key", unsealed(body(t, baseAnnounce().with("d", []any{append(baseDisk(), "l", "X")}))), nil, ReasonMalformed},
		{"no kind", unsealed(body(t, baseAnnounce().without("k"))), nil, ReasonMalformed},
		{"no host id", unsealed(body(t, baseAnnounce().without("h"))), nil, ReasonMalformed},
		{"no hostname", unsealed(body(t, basePing().without("n"))), nil, ReasonMalformed},
		{"no boot id", unsealed(body(t, basePing().without("b"))), nil, ReasonMalformed},
		{"no seq", unsealed(body(t, basePing().without("s"))), nil, ReasonMalformed},
		{"no interval", unsealed(body(t, basePing().without("i"))), nil, ReasonMalformed},
		{"announce without disks", unsealed(body(t, baseAnnounce().without("d"))), nil, ReasonMalformed},
		{"announce without parts", unsealed(body(t, baseAnnounce().without("c"))), nil, ReasonMalformed},
		{"announce without part", unsealed(body(t, baseAnnounce().without("p"))), nil, ReasonMalformed},
		{"disk without device", unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().without("d")}))), nil, ReasonMalformed},
		{"disks in a ping", ping("d", []any{baseDisk()}), nil, ReasonMalformed},
		{"empty disks in a ping", ping("d", []any{}), nil, ReasonMalformed},
		{"parts in a bye", unsealed(body(t, basePing().with("k", 2).with("p", 0).with("c", 1))), nil, ReasonMalformed},
		{"kind as string", ann("k", "announce"), nil, ReasonMalformed},
		{"host id as int", ann("h", 5), nil, ReasonMalformed},
		{"hostname nil", ann("n", nil), nil, ReasonMalformed},
		{"hostname as bin", ann("n", []byte("alpha")), nil, ReasonMalformed},
		{"seq as string", ann("s", "7"), nil, ReasonMalformed},
		{"seq negative", ann("s", -1), nil, ReasonMalformed},
		{"seq negative int64", ann("s", raw{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}), nil, ReasonMalformed},
		{"seq float", ann("s", 7.0), nil, ReasonMalformed},
		{"disks as map", ann("d", omap{"d", "/dev/x"}), nil, ReasonMalformed},
		{"disk as array", ann("d", []any{[]any{"/dev/x"}}), nil, ReasonMalformed},
		{"disk as string", ann("d", []any{"/dev/x"}), nil, ReasonMalformed},
		{"mountpoints as string", disk("m", "/"), nil, ReasonMalformed},
		{"mountpoint as int", disk("m", []any{1}), nil, ReasonMalformed},
		{"key as int", unsealed(body(t, append(basePing(), 5, 5))), nil, ReasonMalformed},
		{"reserved code 0xc1", ann("x", raw{0xc1}), nil, ReasonMalformed},
		{"truncated unknown value", unsealed(append(body(t, basePing())[:1:1], body(t, basePing())[1:len(body(t, basePing()))-1]...)), nil, ReasonMalformed},
		// Kind.
		{"kind 0", ann("k", 0), nil, ReasonKind},
		{"kind 4", ann("k", 4), nil, ReasonKind},
		{"kind 255", ann("k", 255), nil, ReasonKind},
		{"kind 257", ann("k", 257), nil, ReasonKind},
		// Limits and string content, message fields.
		{"host id too long", ann("h", repeat("h", MaxIDLen+1)), nil, ReasonLimit},
		{"host id empty", ann("h", ""), nil, ReasonLimit},
		{"host id with space", ann("h", "host 1"), nil, ReasonInvalid},
		{"host id with slash", ann("h", "host/1"), nil, ReasonInvalid},
		{"host id non-ASCII", ann("h", "hôst"), nil, ReasonInvalid},
		{"host id with NUL", ann("h", "host\x00"), nil, ReasonInvalid},
		{"boot id too long", ann("b", repeat("b", MaxIDLen+1)), nil, ReasonLimit},
		{"boot id empty", ann("b", ""), nil, ReasonLimit},
		{"boot id with newline", ann("b", "boot\n"), nil, ReasonInvalid},
		{"hostname too long", ann("n", repeat("n", MaxHostnameLen+1)), nil, ReasonLimit},
		{"hostname empty", ann("n", ""), nil, ReasonLimit},
		{"hostname invalid UTF-8", ann("n", "alpha\xff"), nil, ReasonInvalid},
		{"hostname truncated UTF-8", ann("n", "alph\xc3"), nil, ReasonInvalid},
		{"hostname surrogate", ann("n", "\xed\xa0\x80"), nil, ReasonInvalid},
		{"hostname with NUL", ann("n", "al\x00pha"), nil, ReasonInvalid},
		{"interval 0", ann("i", 0), nil, ReasonLimit},
		{"interval 99ms", ann("i", 99), nil, ReasonLimit},
		{"interval 1h+1ms", ann("i", 3600001), nil, ReasonLimit},
		{"interval huge", ann("i", uint64(math.MaxUint64)), nil, ReasonLimit},
		{"part >= parts", ann("p", 1), nil, ReasonLimit},
		{"part 255 of 255", unsealed(body(t, baseAnnounce().with("p", 255).with("c", 255))), nil, ReasonLimit},
		{"part huge", ann("p", uint64(math.MaxUint64)), nil, ReasonLimit},
		{"parts 0", ann("c", 0), nil, ReasonLimit},
		{"parts > MaxParts", unsealed(body(t, baseAnnounce().with("c", MaxParts+1))), nil, ReasonLimit},
		{"parts huge", ann("c", uint64(1)<<40), nil, ReasonLimit},
		{"too many disks", ann("d", manyDisks(MaxDisksPerPart+1)), nil, ReasonLimit},
		// Limits and string content, disk fields.
		{"device too long", disk("d", repeat("d", diskstate.MaxDeviceLen+1)), nil, ReasonLimit},
		{"device empty", disk("d", ""), nil, ReasonLimit},
		{"device invalid UTF-8", disk("d", "/dev/\xc0\xaf"), nil, ReasonInvalid},
		{"device with NUL", disk("d", "/dev/sda\x00"), nil, ReasonInvalid},
		{"uuid too long", disk("u", repeat("u", diskstate.MaxUUIDLen+1)), nil, ReasonLimit},
		{"uuid with NUL", disk("u", "\x00"), nil, ReasonInvalid},
		{"partuuid too long", disk("p", repeat("p", diskstate.MaxUUIDLen+1)), nil, ReasonLimit},
		{"partuuid invalid UTF-8", disk("p", "\x80"), nil, ReasonInvalid},
		{"label too long", disk("l", repeat("l", diskstate.MaxLabelLen+1)), nil, ReasonLimit},
		{"label invalid UTF-8", disk("l", "BACKUP\xfe"), nil, ReasonInvalid},
		{"label with NUL", disk("l", "BACK\x00UP"), nil, ReasonInvalid},
		{"type too long", disk("t", repeat("t", diskstate.MaxTypeLen+1)), nil, ReasonLimit},
		{"type with NUL", disk("t", "ext4\x00"), nil, ReasonInvalid},
		{"mountpoint too long", disk("m", []any{"/" + repeat("m", diskstate.MaxMountpointLen)}), nil, ReasonLimit},
		{"mountpoint empty", disk("m", []any{""}), nil, ReasonLimit},
		{"mountpoint invalid UTF-8", disk("m", []any{"/mnt/\xff"}), nil, ReasonInvalid},
		{"mountpoint with NUL", disk("m", []any{"/mnt\x00"}), nil, ReasonInvalid},
		{"too many mountpoints", disk("m", manyStrings(diskstate.MaxMountpoints+1)), nil, ReasonLimit},
		// Declared lengths far beyond the data.
		{"huge disk array", ann("d", raw{0xdd, 0xff, 0xff, 0xff, 0xff}), nil, ReasonLimit},
		{"huge disk array16", ann("d", raw{0xdc, 0xff, 0xff}), nil, ReasonLimit},
		{"disk array longer than data", ann("d", raw{0x9f}), nil, ReasonMalformed},
		{"huge mountpoint array", disk("m", raw{0xdd, 0xff, 0xff, 0xff, 0xff}), nil, ReasonLimit},
		{"huge hostname", ann("n", str32(math.MaxUint32, "alpha")), nil, ReasonLimit},
		{"hostname longer than data", unsealed(append(body(t, basePing().without("n")), 0xa1, 'n', 0xd9, 200, 'x')), nil, ReasonMalformed},
		{"huge top map", unsealed([]byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'k', 1}), nil, ReasonMalformed},
		{"huge disk map", ann("d", []any{raw{0xdf, 0xff, 0xff, 0xff, 0xff}}), nil, ReasonMalformed},
		{"huge unknown string", ann("x", str32(math.MaxUint32, "")), nil, ReasonMalformed},
		{"huge unknown bin", ann("x", raw{0xc6, 0xff, 0xff, 0xff, 0xff}), nil, ReasonMalformed},
		{"huge unknown ext", ann("x", raw{0xc9, 0xff, 0xff, 0xff, 0xff, 1}), nil, ReasonMalformed},
		{"huge unknown array", ann("x", raw{0xdd, 0xff, 0xff, 0xff, 0xff}), nil, ReasonMalformed},
		{"huge unknown map", ann("x", raw{0xdf, 0xff, 0xff, 0xff, 0xff}), nil, ReasonMalformed},
		{"huge nested unknown", ann("x", raw{0x91, 0x91, 0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff}), nil, ReasonMalformed},
		{"huge key", unsealed([]byte{0x81, 0xdb, 0xff, 0xff, 0xff, 0xff}), nil, ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkDrop(t, c)
		})
	}
}

func checkDrop(t *testing.T, c dropCase) {
	t.Helper()
	m, err := Decode(c.dgram, c.k)
	if err == nil {
		t.Fatalf("accepted: %+v", m)
	}
	var de *DropError
	if !errors.As(err, &de) {
		t.Fatalf("error %T is not a *DropError: %v", err, err)
	}
	if de.Reason != c.reason || ReasonOf(err) != c.reason {
		t.Errorf("reason %q, want %q (%v)", de.Reason, c.reason, err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r\x00") {
		t.Errorf("error is not one clean line: %q", msg)
	}
	if !strings.HasPrefix(msg, "wire: dropped datagram ("+string(c.reason)+")") {
		t.Errorf("error %q", msg)
	}
	if !reflect.DeepEqual(m, Message{}) {
		t.Errorf("rejected, but returned %+v", m)
	}
}

func TestDecodeTruncated(t *testing.T) {
	for name, v := range map[string]omap{"announce": baseAnnounce(), "ping": basePing()} {
		b := body(t, v)
		for n := range len(b) {
			checkDrop(t, dropCase{name: name, dgram: unsealed(b[:n]), reason: ReasonMalformed})
		}
	}
	// A sealed datagram cut anywhere fails authentication (or is short).
	k := mustKeyring(t, testKey(4))
	d := sealedDatagram(k, body(t, baseAnnounce()))
	for n := HeaderSize; n < len(d); n++ {
		want := ReasonAuth
		if n < HeaderSize+SealOverhead {
			want = ReasonShort
		}
		checkDrop(t, dropCase{dgram: d[:n], k: k, reason: want})
	}
}

func TestDecodeIgnoresUnknownKeys(t *testing.T) {
	every := []any{
		nil, true, false, -1, -200, 300, 70000, uint64(1) << 40, 1.5, float32(2.5),
		"str", repeat("s", 40), repeat("s", 300), []byte("bin"), []any{1, "a", []any{}},
		omap{"nested", omap{"deep", []any{1, 2, omap{}}}},
		raw{0xd4, 1, 0}, raw{0xd5, 1, 0, 0}, raw{0xd6, 1, 0, 0, 0, 0}, raw{0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		raw(append([]byte{0xd8, 1}, make([]byte, 16)...)), raw{0xc7, 2, 5, 'a', 'b'}, raw{0xc8, 0, 1, 5, 'a'},
		raw{0xc9, 0, 0, 0, 1, 5, 'a'}, raw{0xdc, 0, 1, 1}, raw{0xde, 0, 1, 0xa1, 'x', 1}, raw{0xdf, 0, 0, 0, 0},
		raw{0xdd, 0, 0, 0, 0}, raw{0xc5, 0, 1, 'z'}, raw{0xc6, 0, 0, 0, 1, 'z'}, raw{0xda, 0, 1, 'z'}, raw{0xdb, 0, 0, 0, 1, 'z'},
	}
	top := baseAnnounce()
	d := baseDisk()
	for i, v := range every {
		key := "future" + string(rune('a'+i))
		top = append(omap{key, v}, top...)
		d = append(d, key, v)
	}
	top = top.with("d", []any{d, omap{"d", "/dev/sdb", "zz", omap{"m", 1}}})
	m, err := Decode(unsealed(body(t, top)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []diskstate.Disk{
		{Device: "/dev/sda1", UUID: "0b7e2a1c-1b2c-4d5e-8f90-123456789abc", Label: "DATA", Type: "ext4", Mountpoints: []string{"/srv/data"}},
		{Device: "/dev/sdb"},
	}
	if !reflect.DeepEqual(m.Disks, want) || m.HostID != "host-1" || m.Interval != 10*time.Second {
		t.Errorf("got %+v", m)
	}
}

func TestDecodeAcceptsWideIntegers(t *testing.T) {
	cases := map[string]raw{
		"uint8": {0xcc, 7}, "uint16": {0xcd, 0, 7}, "uint32": {0xce, 0, 0, 0, 7},
		"uint64": {0xcf, 0, 0, 0, 0, 0, 0, 0, 7}, "int8": {0xd0, 7}, "int16": {0xd1, 0, 7},
		"int32": {0xd2, 0, 0, 0, 7}, "int64": {0xd3, 0, 0, 0, 0, 0, 0, 0, 7},
	}
	for name, v := range cases {
		m, err := Decode(unsealed(body(t, baseAnnounce().with("s", v))), nil)
		if err != nil || m.Seq != 7 {
			t.Errorf("%s: seq %d, %v", name, m.Seq, err)
		}
	}
	m, err := Decode(unsealed(body(t, baseAnnounce().with("s", uint64(math.MaxUint64)))), nil)
	if err != nil || m.Seq != math.MaxUint64 {
		t.Errorf("max seq: %d, %v", m.Seq, err)
	}
}

// TestDecodeHostileAllocates checks that datagrams declaring huge lengths
// allocate no more than a small multiple of their own size.
func TestDecodeHostileAllocates(t *testing.T) {
	hostile := map[string][]byte{
		"disk array":       unsealed(body(t, baseAnnounce().with("d", raw{0xdd, 0xff, 0xff, 0xff, 0xff}))),
		"mountpoints":      unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().with("m", raw{0xdd, 0xff, 0xff, 0xff, 0xff})}))),
		"hostname":         unsealed(body(t, baseAnnounce().with("n", raw{0xdb, 0xff, 0xff, 0xff, 0xff}))),
		"unknown string":   unsealed(body(t, baseAnnounce().with("x", raw{0xdb, 0xff, 0xff, 0xff, 0xff}))),
		"unknown map":      unsealed(body(t, baseAnnounce().with("x", raw{0xdf, 0xff, 0xff, 0xff, 0xff}))),
		"top map":          unsealed([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}),
		"64 short disks":   unsealed(body(t, baseAnnounce().with("d", raw{0xdc, 0, 64}))),
		"deeply nested":    unsealed(body(t, baseAnnounce().with("x", raw(bytes.Repeat([]byte{0x91}, 8000))))),
		"many empty disks": unsealed(body(t, baseAnnounce().with("d", raw(append([]byte{0xdc, 0, 64}, bytes.Repeat([]byte{0x80}, 64)...))))),
	}
	for name, d := range hostile {
		if _, err := Decode(d, nil); err == nil {
			t.Fatalf("%s: accepted", name)
		}
		const runs = 200
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range runs {
			_, _ = Decode(d, nil)
		}
		runtime.ReadMemStats(&after)
		perRun := (after.TotalAlloc - before.TotalAlloc) / runs
		// The body copy, a disk slice of at most MaxDisksPerPart and an error.
		limit := uint64(2*len(d) + MaxDisksPerPart*int(reflect.TypeFor[diskstate.Disk]().Size()) + 1024)
		t.Logf("%s: %d-byte datagram, %d bytes allocated per decode", name, len(d), perRun)
		if perRun > limit {
			t.Errorf("%s: %d bytes allocated per decode, limit %d", name, perRun, limit)
		}
	}
}

func TestReasons(t *testing.T) {
	seen := map[DropReason]bool{}
	for _, r := range Reasons() {
		if r == "" || seen[r] || strings.ContainsAny(string(r), " \n") {
			t.Errorf("bad reason %q", r)
		}
		seen[r] = true
	}
	if len(seen) != 12 {
		t.Errorf("%d reasons", len(seen))
	}
	if ReasonOf(errors.New("x")) != "" || ReasonOf(nil) != "" {
		t.Error("ReasonOf of a foreign error")
	}
	wrapped := errors.Join(errors.New("a"), &DropError{Reason: ReasonAuth})
	if ReasonOf(wrapped) != ReasonAuth {
		t.Error("ReasonOf does not unwrap")
	}
	if (&DropError{Reason: ReasonAuth}).Error() != "wire: dropped datagram (auth)" {
		t.Error("DropError without Err")
	}
}
