package wire

import (
	"reflect"
	"testing"
	"time"
)

// TestSentAtAndGenRoundTrip: the send time travels in whole milliseconds
// and the generation as given, sealed and unsealed; a message without
// them encodes without them.
func TestSentAtAndGenRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 4, 5, 678_901_234, time.UTC)
	k := mustKeyring(t, testKey(3))
	for _, ring := range []*Keyring{nil, k} {
		for _, m := range []Message{
			func() Message { m := announceMsg(realisticDisks(40)); m.SentAt, m.Gen = at, 77; return m }(),
			func() Message { m := otherMsg(KindPing); m.SentAt = at; return m }(),
			func() Message { m := otherMsg(KindBye); m.SentAt = at; return m }(),
			announceMsg(realisticDisks(2)),
		} {
			grams, err := Encode(m, 0, ring)
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range grams {
				got, err := Decode(g, ring)
				if err != nil {
					t.Fatalf("%s part %d: %v", m.Kind, i, err)
				}
				want := m.SentAt.Truncate(time.Millisecond)
				if !got.SentAt.Equal(want) || got.SentAt.IsZero() != m.SentAt.IsZero() || got.Gen != m.Gen {
					t.Errorf("%s part %d: sent %v gen %d, want %v gen %d", m.Kind, i, got.SentAt, got.Gen, want, m.Gen)
				}
			}
		}
	}
	ping := otherMsg(KindPing)
	ping.Gen = 1
	if _, err := Encode(ping, 0, nil); err == nil {
		t.Error("a ping with a generation was encoded")
	}
	early := otherMsg(KindPing)
	early.SentAt = time.Unix(-1, 0)
	if _, err := Encode(early, 0, nil); err == nil {
		t.Error("a time before 1970 was encoded")
	}
}

// TestDecodeTimeAndGenRules: the new fields are checked like the others.
func TestDecodeTimeAndGenRules(t *testing.T) {
	cases := []struct {
		name   string
		body   omap
		reason DropReason
	}{
		{"time too large", basePing().with("t", uint64(MaxSentAtMillis)+1), ReasonLimit},
		{"negative time", basePing().with("t", -1), ReasonMalformed},
		{"time as string", basePing().with("t", "now"), ReasonMalformed},
		{"time twice", append(basePing().with("t", 1), "t", 2), ReasonMalformed},
		{"generation in a ping", basePing().with("g", 3), ReasonMalformed},
		{"generation twice", append(baseAnnounce().with("g", 1), "g", 1), ReasonMalformed},
		{"generation as string", baseAnnounce().with("g", "x"), ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(unsealed(body(t, c.body)), nil)
			if r := ReasonOf(err); r != c.reason {
				t.Fatalf("reason %q, want %q (%v)", r, c.reason, err)
			}
		})
	}
}

// TestOldFormatAccepted: datagrams as an older diskd built them (by hand
// here: exactly its keys, no time, no generation), sealed and unsealed,
// decode with a zero SentAt and Gen 0, and their parts are grouped by
// sequence number.
func TestOldFormatAccepted(t *testing.T) {
	k := mustKeyring(t, testKey(9))
	for _, sealed := range []bool{false, true} {
		mk := func(b []byte) []byte {
			if sealed {
				return sealedDatagram(k, b)
			}
			return unsealed(b)
		}
		ring := (*Keyring)(nil)
		if sealed {
			ring = k
		}
		for _, o := range []omap{baseAnnounce(), basePing(), basePing().with("k", 2)} {
			m, err := Decode(mk(body(t, o)), ring)
			if err != nil {
				t.Fatalf("sealed %v: old %v: %v", sealed, o[1], err)
			}
			if !m.SentAt.IsZero() || m.Gen != 0 || m.Seq != 7 {
				t.Errorf("sealed %v: %+v", sealed, m)
			}
		}
		// Two parts of seq 7 and one of seq 8: only seq 8 completes.
		part := func(seq, p int) Message {
			m, err := Decode(mk(body(t, baseAnnounce().with("s", seq).with("p", p).with("c", 2))), ring)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		a := NewAssembler(4, time.Minute)
		if _, ok := a.Add(part(7, 0), t0); ok {
			t.Fatal("one part completed")
		}
		if _, ok := a.Add(part(8, 1), t0); ok {
			t.Fatal("parts of two old announcements combined")
		}
		if w, ok := a.Add(part(8, 0), t0); !ok || w.Seq != 8 || len(w.Disks) != 2 {
			t.Fatalf("old announcement 8: ok %v %+v", ok, w)
		}
	}
}

// TestNewFormatForOldReaders: what a newer diskd sends is, for an older
// one, the message it knows plus two keys it skips: every key an older
// diskd knows is there, with the same msgpack type and value, and the only
// others are "t" and "g", plain unsigned integers that its skip reads.
func TestNewFormatForOldReaders(t *testing.T) {
	oldKeys := map[string]bool{"k": true, "h": true, "n": true, "b": true, "s": true, "i": true, "p": true, "c": true, "d": true}
	m := announceMsg(realisticDisks(3))
	m.SentAt, m.Gen = time.Now(), 5
	generic := genericBody(t, m)
	old := m
	old.SentAt, old.Gen = time.Time{}, 0
	oldGeneric := genericBody(t, old)
	for key, v := range generic {
		if oldKeys[key] {
			if !reflect.DeepEqual(v, oldGeneric[key]) {
				t.Errorf("key %q: %v, an older diskd reads %v", key, v, oldGeneric[key])
			}
			continue
		}
		if key != "t" && key != "g" {
			t.Errorf("key %q is new", key)
		}
		switch v.(type) {
		case uint8, uint16, uint32, uint64, int8, int16, int32, int64:
		default:
			t.Errorf("key %q: %T, want an integer", key, v)
		}
	}
	for key := range oldKeys {
		if _, ok := generic[key]; !ok {
			t.Errorf("key %q missing", key)
		}
	}
	// The decoder an older diskd has is this one without the two keys:
	// with them unknown, they are skipped like any unknown key.
	o := baseAnnounce()
	o = append(omap{"t2", uint64(1) << 52, "g2", uint64(5)}, o...)
	if _, err := Decode(unsealed(body(t, o)), nil); err != nil {
		t.Errorf("unknown integer keys not skipped: %v", err)
	}
}
