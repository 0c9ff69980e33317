package inventory

import (
	"errors"
	"testing"
	"time"
)

// TestHearReplayRule: per datagram, the sequence number must move forward,
// or repeat the highest with an announcement part not accepted with it
// yet; every accepted datagram keeps the peer alive.
func TestHearReplayRule(t *testing.T) {
	type step struct {
		seq  uint64
		part int
		boot string
		ok   bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"forward", []step{{11, -1, "b1", true}, {12, 0, "b1", true}, {13, -1, "b1", true}}},
		{"parts share a number", []step{{11, 0, "b1", true}, {11, 1, "b1", true}, {11, 2, "b1", true}}},
		{"a part once", []step{{11, 0, "b1", true}, {11, 0, "b1", false}, {11, 1, "b1", true}, {11, 1, "b1", false}}},
		{"a ping once", []step{{11, -1, "b1", true}, {11, -1, "b1", false}}},
		{"back", []step{{11, 0, "b1", true}, {10, 1, "b1", false}, {5, -1, "b1", false}}},
		{"the applied number", []step{{10, 0, "b1", false}, {10, -1, "b1", false}}},
		{"another instance at the same number", []step{{11, 0, "b1", true}, {11, 1, "b2", false}}},
		{"a restarted instance moves forward", []step{{20, 0, "b2", true}, {20, 1, "b2", true}, {20, 1, "b2", false}}},
		{"parts of another instance do not lock the held one out", []step{{1 << 50, 0, "forged", true}, {11, 0, "b1", true}, {11, 1, "b1", true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, clk, _ := newTest(t, Options{})
			if err := inv.Apply(ann("p", 10, disk("/dev/a", "u", "L"))); err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				clk.Add(time.Second)
				live, err := inv.Hear(Heard{HostID: "p", BootID: s.boot, Seq: s.seq, Part: s.part})
				if (err == nil) != s.ok || !live || err != nil && !errors.Is(err, ErrReplay) {
					t.Fatalf("step %d %+v: live %v, err %v", i, s, live, err)
				}
				p := inv.Peers()[0]
				if heard := p.LastHeard.Equal(clk.Now()); heard != s.ok {
					t.Fatalf("step %d: last heard %v at %v: touched %v, want %v", i, p.LastHeard, clk.Now(), heard, s.ok)
				}
			}
		})
	}
}

// TestHearKeepsAlive: a peer heard only through parts and pings (no
// announcement ever complete again) is not lost while they come.
func TestHearKeepsAlive(t *testing.T) {
	inv, clk, sub := newTest(t, Options{})
	if err := inv.Apply(ann("p", 10, disk("/dev/a", "u", "L"))); err != nil {
		t.Fatal(err)
	}
	drain(sub)
	for i := range 20 {
		clk.Add(20 * time.Second) // the timeout is 30 s (3 × 10 s)
		if _, err := inv.Hear(Heard{HostID: "p", BootID: "b1", Seq: uint64(11 + i), Part: i % 3}); err != nil {
			t.Fatal(err)
		}
		inv.Expire()
	}
	if len(inv.Peers()) != 1 || len(drain(sub)) != 0 {
		t.Fatal("a peer heard every 20 s was lost")
	}
	clk.Add(30 * time.Second)
	inv.Expire()
	if len(inv.Peers()) != 0 {
		t.Fatal("a peer silent for its timeout was kept")
	}
}

// TestHearUnknownHost: parts of a host not held are each accepted once
// and add nothing; Update then adds it, and the parts it was made of stay
// refused.
func TestHearUnknownHost(t *testing.T) {
	inv, _, _ := newTest(t, Options{})
	for _, s := range []struct {
		seq  uint64
		part int
		ok   bool
	}{{5, 0, true}, {5, 0, false}, {5, 1, true}, {4, 2, false}, {6, 0, true}} {
		live, err := inv.Hear(Heard{HostID: "n", BootID: "b", Seq: s.seq, Part: s.part})
		if live || (err == nil) != s.ok {
			t.Fatalf("%+v: live %v err %v", s, live, err)
		}
	}
	if len(inv.Peers()) != 0 {
		t.Fatal("parts alone added a peer")
	}
	a := ann("n", 6, disk("/dev/a", "u", "L"))
	a.BootID = "b"
	if err := inv.Update(a); err != nil {
		t.Fatal(err)
	}
	if len(inv.Peers()) != 1 {
		t.Fatal("Update did not add the peer")
	}
	if _, err := inv.Hear(Heard{HostID: "n", BootID: "b", Seq: 6, Part: 0}); !errors.Is(err, ErrReplay) {
		t.Fatalf("a part accepted before the peer was added, again: %v", err)
	}
	if _, err := inv.Hear(Heard{HostID: "n", BootID: "b", Seq: 6, Part: 1}); err != nil {
		t.Fatalf("another part of the same number: %v", err)
	}
}

// TestMarksRoundTrip: the marks of live and departed peers survive a
// restart through Marks and RestoreMarks, and refuse what they cover.
func TestMarksRoundTrip(t *testing.T) {
	inv, clk, _ := newTest(t, Options{})
	sent := clk.Now().Add(-time.Second)
	if err := inv.Apply(ann("live", 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Hear(Heard{HostID: "live", BootID: "b1", Seq: 12, Part: -1, SentAt: sent}); err != nil {
		t.Fatal(err)
	}
	if err := inv.Apply(ann("gone", 20)); err != nil {
		t.Fatal(err)
	}
	if err := inv.Bye("gone", "b1", 21); err != nil {
		t.Fatal(err)
	}
	marks := inv.Marks()
	if m := marks["live"]; m.Seq != 12 || m.BootID != "b1" || !m.SentAt.Equal(sent) {
		t.Errorf("live mark %+v", m)
	}
	if m := marks["gone"]; m.Seq != 21 {
		t.Errorf("gone mark %+v", m)
	}

	next, _, _ := newTest(t, Options{})
	next.RestoreMarks(map[string]Mark{"live": marks["live"], "gone": marks["gone"], "self": {Seq: 99}})
	for _, c := range []struct {
		host string
		seq  uint64
		ok   bool
	}{{"live", 12, false}, {"live", 11, false}, {"gone", 21, false}, {"gone", 22, true}, {"self", 1, false}} {
		err := next.Apply(ann(c.host, c.seq))
		if (err == nil) != c.ok {
			t.Errorf("%s seq %d after restore: %v, want ok %v", c.host, c.seq, err, c.ok)
		}
	}
	// A lower mark does not lower one held.
	next.RestoreMarks(map[string]Mark{"gone": {Seq: 1}, "live": {Seq: 1}})
	if m := next.Marks(); m["gone"].Seq != 22 || m["live"].Seq != 12 {
		t.Errorf("marks after restoring lower ones: %+v", m)
	}
}
