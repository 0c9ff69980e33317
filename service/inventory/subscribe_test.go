package inventory

import (
	"errors"
	"runtime"
	"testing"

	"github.com/diskd/diskd/service/diskstate"
)

// A subscription's buffer holds pointers: an idle subscription of the
// default size must not cost what a buffer of events by value did (2.4 MB),
// and every subscriber gets the same event.
func TestSubscriptionBufferIsSmallAndShared(t *testing.T) {
	inv := New(Options{HostID: "me", Hostname: "me"})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	a := inv.Subscribe(0)
	runtime.ReadMemStats(&after)
	defer a.Close()
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("Subscribe(0) allocated %d bytes, want at most 256 KiB (%d events by pointer)", n, DefaultSubscriptionBuffer)
	}
	b := inv.Subscribe(0)
	defer b.Close()
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sda1", UUID: "u1", Label: "L"}}, nil)
	ea, eb := <-a.C(), <-b.C()
	if ea != eb || ea.Kind != DiskAppeared || ea.Disk.Label != "L" {
		t.Errorf("subscribers got %p %+v and %p, want one shared DiskAppeared event of L", ea, ea, eb)
	}
}

// TestSignals: a moved mark raises Marks, a recorded scan raises Scans,
// what moves nothing raises neither, and moves while a signal is pending
// fold into it.
func TestSignals(t *testing.T) {
	cases := []struct {
		name         string
		do           func(inv *Inventory) error
		marks, scans bool
	}{
		{"an announcement", func(inv *Inventory) error { return inv.Apply(ann("p", 11, disk("/dev/a", "u", "L"))) }, true, false},
		{"an update", func(inv *Inventory) error { return inv.Update(ann("p", 11)) }, true, false},
		{"a higher number", func(inv *Inventory) error {
			_, err := inv.Hear(Heard{HostID: "p", BootID: "b1", Seq: 11, Part: -1})
			return err
		}, true, false},
		{"another part of the held number", func(inv *Inventory) error {
			_, err := inv.Hear(Heard{HostID: "p", BootID: "b1", Seq: 10, Part: 1})
			return err
		}, false, false},
		{"a replay", func(inv *Inventory) error {
			if _, err := inv.Hear(Heard{HostID: "p", BootID: "b1", Seq: 5, Part: -1}); !errors.Is(err, ErrReplay) {
				return errors.New("the replay was not refused")
			}
			return nil
		}, false, false},
		{"a goodbye", func(inv *Inventory) error { return inv.Bye("p", "b1", 11) }, true, false},
		{"a scan", func(inv *Inventory) error { inv.SetLocal(nil, nil); return nil }, false, true},
		{"a failed scan", func(inv *Inventory) error { inv.SetLocal(nil, errors.New("blkid failed")); return nil }, false, true},
		{"two moves fold into one signal", func(inv *Inventory) error {
			for seq := uint64(11); seq <= 12; seq++ {
				if _, err := inv.Hear(Heard{HostID: "p", BootID: "b1", Seq: seq, Part: -1}); err != nil {
					return err
				}
			}
			return nil
		}, true, false},
	}
	pending := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, _, sub := newTest(t, Options{})
			// The held peer's announcement at 10 came in two parts.
			if _, err := inv.Hear(Heard{HostID: "p", BootID: "b1", Seq: 10, Part: 0}); err != nil {
				t.Fatal(err)
			}
			if err := inv.Update(ann("p", 10, disk("/dev/a", "u", "L"))); err != nil {
				t.Fatal(err)
			}
			pending(sub.Marks())
			pending(sub.Scans())
			if err := c.do(inv); err != nil {
				t.Fatal(err)
			}
			if got := pending(sub.Marks()); got != c.marks {
				t.Errorf("Marks signalled: %v, want %v", got, c.marks)
			}
			if got := pending(sub.Scans()); got != c.scans {
				t.Errorf("Scans signalled: %v, want %v", got, c.scans)
			}
			if pending(sub.Marks()) || pending(sub.Scans()) {
				t.Error("a second signal was pending after the first was received")
			}
		})
	}
}
