package wire

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// parts returns an announcement of n parts with one disk each.
func parts(host, boot string, seq uint64, n int) []Message {
	return firstParts(host, boot, seq, n, n)
}

// firstParts returns the first k parts of an announcement of n parts.
func firstParts(host, boot string, seq uint64, n, k int) []Message {
	out := make([]Message, k)
	for i := range out {
		m := announceMsg([]diskstate.Disk{{Device: fmt.Sprintf("/dev/d%d", i)}})
		m.HostID, m.BootID, m.Seq = host, boot, seq
		m.Part, m.Parts = i, n
		out[i] = m
	}
	return out
}

var t0 = time.Unix(1_700_000_000, 0)

func TestAssemblerSinglePart(t *testing.T) {
	a := NewAssembler(4, time.Second)
	m := announceMsg(realisticDisks(3))
	got, ok := a.Add(m, t0)
	if !ok || !reflect.DeepEqual(got, m) {
		t.Fatalf("ok=%v got %+v", ok, got)
	}
	empty := announceMsg(nil)
	if got, ok := a.Add(empty, t0); !ok || got.Disks != nil {
		t.Fatalf("empty: ok=%v %+v", ok, got)
	}
	if a.Pending() != 0 {
		t.Errorf("pending %d", a.Pending())
	}
}

func TestAssemblerIgnoresNonAnnouncements(t *testing.T) {
	a := NewAssembler(4, time.Second)
	bad := announceMsg(nil)
	bad.Part, bad.Parts = 2, 2
	for _, m := range []Message{otherMsg(KindBye), otherMsg(KindPing), bad, {Kind: KindAnnounce}} {
		if _, ok := a.Add(m, t0); ok {
			t.Errorf("accepted %+v", m)
		}
	}
	if a.Pending() != 0 {
		t.Errorf("pending %d", a.Pending())
	}
}

func TestAssemblerRules(t *testing.T) {
	type step struct {
		m    Message
		at   time.Duration // after t0
		done int           // disks of the completed message, or -1
	}
	p := parts("h", "b", 5, 3)
	newer := parts("h", "b", 6, 2)
	other := parts("h2", "b", 5, 3)
	otherBoot := parts("h", "b2", 1, 2)
	inconsistent := p[1]
	inconsistent.Parts = 4
	renamed := p[1]
	renamed.Hostname = "other"
	single := parts("h", "b", 6, 1)[0]
	// Parts of one generation, as three rounds (seq 5, 6, 7) send them.
	gen := func(g, seq uint64, n int) []Message {
		out := parts("h", "b", seq, n)
		for i := range out {
			out[i].Gen = g
		}
		return out
	}
	g5, g6, g7 := gen(9, 5, 3), gen(9, 6, 3), gen(9, 7, 3)
	next := gen(10, 8, 3)
	cases := []struct {
		name    string
		steps   []step
		pending int
	}{
		{"in order", []step{{p[0], 0, -1}, {p[1], 0, -1}, {p[2], 0, 3}}, 0},
		{"reverse", []step{{p[2], 0, -1}, {p[1], 0, -1}, {p[0], 0, 3}}, 0},
		{"duplicates ignored", []step{{p[0], 0, -1}, {p[0], 0, -1}, {p[2], 0, -1}, {p[2], 0, -1}, {p[1], 0, 3}, {p[1], 0, -1}}, 1},
		{"missing part", []step{{p[0], 0, -1}, {p[2], 0, -1}}, 1},
		{"inconsistent parts drops set", []step{{p[0], 0, -1}, {inconsistent, 0, -1}, {p[1], 0, -1}, {p[2], 0, -1}}, 1},
		{"inconsistent hostname drops set", []step{{p[0], 0, -1}, {renamed, 0, -1}, {p[1], 0, -1}, {p[2], 0, -1}}, 1},
		{"newer seq discards older", []step{{p[0], 0, -1}, {p[1], 0, -1}, {newer[0], 0, -1}, {p[2], 0, -1}, {newer[1], 0, 2}}, 0},
		{"newer single part discards older", []step{{p[0], 0, -1}, {single, 0, 1}, {p[1], 0, -1}, {p[2], 0, -1}}, 1},
		{"older seq ignored", []step{{newer[0], 0, -1}, {p[0], 0, -1}, {p[1], 0, -1}, {p[2], 0, -1}, {newer[1], 0, 2}}, 0},
		{"hosts independent", []step{{p[0], 0, -1}, {other[0], 0, -1}, {other[1], 0, -1}, {p[1], 0, -1}, {p[2], 0, 3}, {other[2], 0, 3}}, 0},
		{"boots independent", []step{{p[0], 0, -1}, {otherBoot[0], 0, -1}, {p[1], 0, -1}, {otherBoot[1], 0, 2}, {p[2], 0, 3}}, 0},
		{"within ttl", []step{{p[0], 0, -1}, {p[1], time.Second, -1}, {p[2], 2 * time.Second, 3}}, 0},
		// The sender's interval (10s) makes a set live 30s, more than the ttl.
		{"expired", []step{{p[0], 0, -1}, {p[1], time.Second, -1}, {p[2], 30*time.Second + 1, -1}}, 1},
		{"generation combines rounds", []step{{g5[0], 0, -1}, {g6[1], 10 * time.Second, -1}, {g7[2], 20 * time.Second, 3}}, 0},
		{"generation reordered rounds", []step{{g7[2], 0, -1}, {g5[0], 0, -1}, {g6[1], 0, 3}}, 0},
		{"generation duplicate parts", []step{{g5[0], 0, -1}, {g6[0], 0, -1}, {g7[0], 0, -1}, {g7[1], 0, -1}, {g5[2], 0, 3}}, 0},
		{"new generation replaces", []step{{g5[0], 0, -1}, {g5[1], 0, -1}, {next[0], 0, -1}, {g6[2], 0, -1}, {next[1], 0, -1}, {next[2], 0, 3}}, 0},
		{"older generation ignored", []step{{next[0], 0, -1}, {g7[1], 0, -1}, {g7[2], 0, -1}, {next[1], 0, -1}, {next[2], 0, 3}}, 0},
		{"seq groups and generations do not mix", []step{{p[0], 0, -1}, {g5[1], 0, -1}, {g5[2], 0, -1}}, 1},
		{"generation set expires", []step{{g5[0], 0, -1}, {g6[1], 10 * time.Second, -1}, {g7[2], 30*time.Second + 1, -1}}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := NewAssembler(8, 2*time.Second)
			for i, s := range c.steps {
				got, ok := a.Add(s.m, t0.Add(s.at))
				if ok != (s.done >= 0) {
					t.Fatalf("step %d: ok=%v", i, ok)
				}
				if ok {
					if len(got.Disks) != s.done || got.Part != 0 || got.Parts != 1 || got.Seq < s.m.Seq || got.HostID != s.m.HostID {
						t.Fatalf("step %d: got %+v", i, got)
					}
					for j, d := range got.Disks {
						if want := fmt.Sprintf("/dev/d%d", j); d.Device != want {
							t.Fatalf("step %d: disk %d is %s, want %s", i, j, d.Device, want)
						}
					}
				}
			}
			if a.Pending() != c.pending {
				t.Errorf("pending %d, want %d", a.Pending(), c.pending)
			}
		})
	}
}

func TestAssemblerBounds(t *testing.T) {
	const maxPending = 32
	a := NewAssembler(maxPending, time.Minute)
	for i := range 10_000 {
		p := firstParts(fmt.Sprintf("fake-%d", i), "b", 1, MaxParts, 2)
		a.Add(p[0], t0)
		a.Add(p[1], t0)
		if n := a.Pending(); n > maxPending {
			t.Fatalf("after %d hosts: %d pending", i+1, n)
		}
		if a.parts > MaxPendingParts {
			t.Fatalf("after %d hosts: %d parts held", i+1, a.parts)
		}
	}
	if n := a.Pending(); n != maxPending {
		t.Errorf("%d pending, want %d", n, maxPending)
	}
	// The newest sets survived: completing one works.
	last := parts("fake-9999", "b", 1, MaxParts)
	var done bool
	for _, m := range last[2:] {
		_, done = a.Add(m, t0)
	}
	if !done {
		t.Error("newest set did not complete")
	}
	// After the ttl, everything is gone.
	a.Add(parts("late", "b", 1, 2)[0], t0.Add(2*time.Minute))
	if n := a.Pending(); n != 1 {
		t.Errorf("%d pending after ttl", n)
	}
}

func TestAssemblerPartsBound(t *testing.T) {
	// Few hosts, many parts each: the parts bound evicts old sets.
	a := NewAssembler(1000, time.Minute)
	for i := range 20 {
		for _, m := range parts(fmt.Sprintf("big-%d", i), "b", 1, MaxParts)[:MaxParts-1] {
			a.Add(m, t0)
			if a.parts > MaxPendingParts {
				t.Fatalf("%d parts held", a.parts)
			}
		}
	}
	if n := a.Pending(); n > MaxPendingParts/(MaxParts-1)+1 {
		t.Errorf("%d pending", n)
	}
}

func TestAssemblerTooManyDisks(t *testing.T) {
	a := NewAssembler(4, time.Minute)
	const n = MaxDisksTotal/MaxDisksPerPart + 1
	for i := range n {
		m := announceMsg(realisticDisks(MaxDisksPerPart))
		m.Part, m.Parts = i, n+1
		if _, ok := a.Add(m, t0); ok {
			t.Fatal("completed")
		}
	}
	if a.Pending() != 0 {
		t.Errorf("set with more than MaxDisksTotal disks kept")
	}
}

func TestAssemblerConcurrent(t *testing.T) {
	a := NewAssembler(64, time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	complete := 0
	for g := range 8 {
		wg.Go(func() {
			for seq := range 50 {
				for _, m := range parts(fmt.Sprintf("host-%d", g), "b", uint64(seq), 4) {
					if _, ok := a.Add(m, time.Now()); ok {
						mu.Lock()
						complete++
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	if complete != 8*50 {
		t.Errorf("%d complete, want %d", complete, 8*50)
	}
}
