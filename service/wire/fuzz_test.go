package wire

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// fuzzKeyring is the keyring sealed seeds in testdata/fuzz/FuzzDecode use.
func fuzzKeyring(t testing.TB) *Keyring {
	return mustKeyring(t, testKey(0xf0), testKey(0xf1))
}

// FuzzDecode decodes arbitrary datagrams with and without a keyring: Decode
// must not panic, must fail only with a *DropError, and whatever it accepts
// must re-encode into one datagram that decodes to the same message.
func FuzzDecode(f *testing.F) {
	k := fuzzKeyring(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ring := range []*Keyring{nil, k} {
			m, err := Decode(data, ring)
			if err != nil {
				var de *DropError
				if !errors.As(err, &de) || de.Reason == "" {
					t.Fatalf("error without reason: %v", err)
				}
				continue
			}
			checkReencode(t, m, ring)
		}
	})
}

func checkReencode(t *testing.T, m Message, ring *Keyring) {
	t.Helper()
	dgrams, err := Encode(m, MaxDatagram, ring)
	if err != nil {
		t.Fatalf("decoded %+v, but Encode fails: %v", m, err)
	}
	if len(dgrams) != 1 {
		t.Fatalf("decoded one datagram, re-encoded %d", len(dgrams))
	}
	again, err := Decode(dgrams[0], ring)
	if err != nil {
		t.Fatalf("re-encoded datagram does not decode: %v", err)
	}
	want := m
	if want.Kind == KindAnnounce {
		want.Part, want.Parts = 0, 1
	}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip differs:\n%+v\n%+v", again, want)
	}
}

// FuzzEncode encodes arbitrary messages: Encode must not panic, and what it
// encodes must fit the budget and reassemble to the message.
func FuzzEncode(f *testing.F) {
	f.Add("host-1", "alpha", "/dev/sda1", "LABEL", "/mnt", uint64(1), int64(10_000), 1200, 20, true)
	f.Add("h", "\x00", "", "\xff", "", uint64(0), int64(0), 0, 0, false)
	f.Add("host", "n", "/dev/x", strings.Repeat("L", 255), strings.Repeat("/m", 300), uint64(9), int64(100), 700, 300, true)
	k := fuzzKeyring(f)
	f.Fuzz(func(t *testing.T, host, hostname, device, label, mount string, seq uint64, ms int64, budget, n int, sealed bool) {
		n = min(max(n, 0), 300)
		disks := make([]diskstate.Disk, n)
		for i := range disks {
			disks[i] = diskstate.Disk{Device: device + strconv.Itoa(i), Label: label, Mountpoints: []string{mount}}
		}
		m := announceMsg(disks)
		m.HostID, m.Hostname, m.Seq, m.Interval = host, hostname, seq, time.Duration(ms)*time.Millisecond
		var ring *Keyring
		if sealed {
			ring = k
		}
		dgrams, err := Encode(m, budget, ring)
		if err != nil {
			return
		}
		if budget == 0 {
			budget = DefaultBudget
		}
		a := NewAssembler(1, time.Minute)
		var got Message
		var done bool
		for i, d := range dgrams {
			if len(d) > min(budget, MaxDatagram) {
				t.Fatalf("datagram of %d bytes, budget %d", len(d), budget)
			}
			p, err := Decode(d, ring)
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			if got, done = a.Add(p, time.Now()); done != (i == len(dgrams)-1) {
				t.Fatalf("part %d of %d: done=%v", i, len(dgrams), done)
			}
		}
		m.Part, m.Parts = 0, 1
		if len(m.Disks) == 0 {
			m.Disks = nil
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("reassembled message differs")
		}
	})
}

// fuzzSeeds returns the seed corpus of FuzzDecode, by file name.
func fuzzSeeds(t testing.TB) map[string][]byte {
	k := fuzzKeyring(t)
	secondKey := mustKeyring(t, testKey(0xf1))
	seeds := map[string][]byte{}
	enc := func(m Message, budget int, ring *Keyring) [][]byte {
		d, err := Encode(m, budget, ring)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, s := range []struct {
		name string
		ring *Keyring
	}{{"unsealed", nil}, {"sealed", k}} {
		seeds["valid-announce-empty-"+s.name] = enc(announceMsg(nil), 0, s.ring)[0]
		seeds["valid-announce-3-"+s.name] = enc(announceMsg(realisticDisks(3)), 0, s.ring)[0]
		multi := enc(announceMsg(realisticDisks(40)), 0, s.ring)
		seeds["valid-announce-part1-"+s.name] = multi[1]
		seeds["valid-announce-last-part-"+s.name] = multi[len(multi)-1]
		seeds["valid-announce-attributes-"+s.name] = enc(announceMsg(attributedDisks(3)), 0, s.ring)[0]
		seeds["valid-bye-"+s.name] = enc(otherMsg(KindBye), 0, s.ring)[0]
		seeds["valid-ping-"+s.name] = enc(otherMsg(KindPing), 0, s.ring)[0]
		timed := announceMsg(realisticDisks(40))
		timed.SentAt, timed.Gen = time.UnixMilli(1_796_000_000_123), 7
		seeds["valid-announce-timed-gen-"+s.name] = enc(timed, 0, s.ring)[1]
		ping := otherMsg(KindPing)
		ping.SentAt = time.UnixMilli(1_796_000_000_123)
		seeds["valid-ping-timed-"+s.name] = enc(ping, 0, s.ring)[0]
	}
	seeds["valid-ping-sealed-second-key"] = enc(otherMsg(KindPing), 0, secondKey)[0]
	seeds["valid-unknown-keys"] = unsealed(body(t, append(omap{"zz", omap{"x", []any{1.5, nil, []byte("b")}}}, baseAnnounce().with("d", []any{baseDisk().with("q", -3)})...)))

	seeds["valid-old-format"] = unsealed(body(t, baseAnnounce().with("d", []any{oldDisk("/dev/sda1")})))
	seeds["near-bool-as-int"] = unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().with("o", 1)})))
	seeds["near-size-as-string"] = unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().with("z", "1G")})))
	good := enc(announceMsg(realisticDisks(2)), 0, nil)[0]
	seeds["near-version-2"] = append([]byte("DSKD\x02\x00"), good[HeaderSize:]...)
	seeds["near-flags-2"] = append([]byte("DSKD\x01\x02"), good[HeaderSize:]...)
	seeds["near-truncated"] = good[:len(good)-3]
	seeds["near-trailing"] = append(append([]byte(nil), good...), 0xc0)
	seeds["near-huge-string"] = unsealed(body(t, basePing().with("n", raw{0xdb, 0xff, 0xff, 0xff, 0xff})))
	seeds["near-huge-array"] = unsealed(body(t, baseAnnounce().with("d", raw{0xdd, 0xff, 0xff, 0xff, 0xff})))
	seeds["near-bad-host-id"] = unsealed(body(t, basePing().with("h", "host 1")))
	seeds["near-disks-in-ping"] = unsealed(body(t, basePing().with("d", []any{baseDisk()})))
	seeds["near-time-too-large"] = unsealed(body(t, basePing().with("t", uint64(MaxSentAtMillis)+1)))
	seeds["near-gen-in-ping"] = unsealed(body(t, basePing().with("g", 1)))
	seeds["near-interval-99"] = unsealed(body(t, basePing().with("i", 99)))
	seeds["near-kind-4"] = unsealed(body(t, basePing().with("k", 4)))
	seeds["near-negative-seq"] = unsealed(body(t, basePing().with("s", -7)))
	seeds["near-part-out-of-range"] = unsealed(body(t, baseAnnounce().with("p", 3).with("c", 3)))
	seeds["near-invalid-utf8"] = unsealed(body(t, baseAnnounce().with("d", []any{baseDisk().with("l", "\xc3(")})))
	sealedPing := enc(otherMsg(KindPing), 0, k)[0]
	tampered := append([]byte(nil), sealedPing...)
	tampered[len(tampered)-1] ^= 1
	seeds["near-sealed-tampered"] = tampered
	return seeds
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzDecode when
// WIRE_WRITE_FUZZ_CORPUS=1 is set.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("WIRE_WRITE_FUZZ_CORPUS") != "1" {
		return // a generator, not a test: nothing to do unless asked (no skip: CI counts skips)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range fuzzSeeds(t) {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzCorpus checks that the checked-in seed corpus holds valid
// datagrams of every kind, sealed and unsealed, and near misses.
func TestFuzzCorpus(t *testing.T) {
	k := fuzzKeyring(t)
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecode", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	valid := map[string]bool{}
	for _, f := range files {
		content, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(content)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a corpus file", f)
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := filepath.Base(f)
		ring := (*Keyring)(nil)
		if strings.Contains(name, "-sealed") {
			ring = k
		}
		m, err := Decode([]byte(data), ring)
		if strings.HasPrefix(name, "valid-") != (err == nil) {
			t.Errorf("%s: %v", name, err)
		}
		if err == nil {
			valid[fmt.Sprintf("%s/%v", m.Kind, ring != nil)] = true
		}
	}
	for _, kind := range []Kind{KindAnnounce, KindBye, KindPing} {
		for _, sealed := range []bool{false, true} {
			if !valid[fmt.Sprintf("%s/%v", kind, sealed)] {
				t.Errorf("no valid %s seed with sealed=%v", kind, sealed)
			}
		}
	}
}
