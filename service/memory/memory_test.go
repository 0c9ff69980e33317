package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/memory"
	"github.com/diskd/diskd/service/store"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/testbed/testclock"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 5*time.Second, func() (bool, string) { return cond(), what })
}

func TestRecorderFollowsTheInventory(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 28, 14, 2, 0, 0, time.UTC))
	st := store.NewMemory(store.Options{Now: clk.Now})
	defer st.Close()
	rec := memory.New(st, memory.Options{HostID: "a", Now: clk.Now, MarkInterval: 10 * time.Millisecond})
	inv := inventory.New(inventory.Options{HostID: "a", Hostname: "alpha", Now: clk.Now, Annotate: rec.Annotate})
	sub := inv.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx, inv, sub) }()

	usb := diskstate.Disk{Device: "/dev/sdb1", UUID: "u-1", Label: "BACKUP-2019", Type: "ext4"}
	other := diskstate.Disk{Device: "/dev/sdc1", UUID: "u-2", Label: "OTHER", Type: "ext4"}
	if err := inv.Apply(inventory.Announcement{HostID: "b", Hostname: "beta", BootID: "b1", Seq: 10,
		Interval: time.Second, Disks: []diskstate.Disk{usb, other}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "beta's disks in the store", func() bool { return len(rec.Find("u-1")) == 1 && len(rec.Find("u-2")) == 1 })

	// Detached on beta.
	clk.Add(time.Minute)
	if err := inv.Apply(inventory.Announcement{HostID: "b", Hostname: "beta", BootID: "b1", Seq: 11,
		Interval: time.Second, Disks: []diskstate.Disk{other}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "BACKUP-2019 gone", func() bool { d := rec.Find("BACKUP-2019"); return len(d) == 1 && !d[0].Present })
	d := rec.Find("BACKUP-2019")[0]
	if d.GoneReason != "detached" || d.Hostname != "beta" || d.Device != "/dev/sdb1" || d.Local || len(d.Mountpoints) != 0 {
		t.Errorf("remembered %+v", d)
	}

	// Beta says bye: its other disk is gone for that reason.
	if err := inv.Bye("b", "b1", 12); err != nil {
		t.Fatal(err)
	}
	eventually(t, "OTHER gone", func() bool { d := rec.Find("OTHER"); return len(d) == 1 && !d[0].Present })
	if d := rec.Find("OTHER")[0]; d.GoneReason != "bye" {
		t.Errorf("OTHER after beta's bye: %+v", d)
	}

	// The disk comes back on gamma three days later: returned, from beta.
	clk.Add(3 * 24 * time.Hour)
	sub2 := inv.Subscribe(0)
	defer sub2.Close()
	if err := inv.Apply(inventory.Announcement{HostID: "c", Hostname: "gamma", BootID: "c1", Seq: 1,
		Interval: time.Second, Disks: []diskstate.Disk{usb}}); err != nil {
		t.Fatal(err)
	}
	var appeared diskstate.Disk
	for e := range sub2.C() {
		if e.Kind == inventory.DiskAppeared {
			appeared = e.Disk
			break
		}
	}
	if !appeared.Returned || appeared.PreviousHostname != "beta" || appeared.PreviousDevice != "/dev/sdb1" ||
		!appeared.Present || appeared.PreviousLastSeen.After(clk.Now().Add(-3*24*time.Hour)) {
		t.Errorf("DiskAppeared on gamma: %+v", appeared)
	}
	eventually(t, "history of two places", func() bool { return len(rec.History("BACKUP-2019")) == 2 })
	if h := rec.History("BACKUP-2019"); h[0].Hostname != "gamma" || h[0].Reason != "" || h[1].Hostname != "beta" || h[1].Reason != "detached" {
		t.Errorf("history %+v", h)
	}

	// Replay marks: beta's last sequence number is remembered and
	// refused by a fresh inventory.
	eventually(t, "beta's mark", func() bool {
		p, ok := st.Peer("b")
		return ok && p.Mark.Seq == 12
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fresh := inventory.New(inventory.Options{HostID: "a", Hostname: "alpha"})
	fresh.RestoreMarks(rec.Marks())
	if err := fresh.Apply(inventory.Announcement{HostID: "b", Hostname: "beta", BootID: "b1", Seq: 11,
		Interval: time.Second, Disks: []diskstate.Disk{usb}}); !errors.Is(err, inventory.ErrReplay) {
		t.Errorf("a replay of beta's seq 11 after the restart: %v, want ErrReplay", err)
	}
	if err := fresh.Apply(inventory.Announcement{HostID: "b", Hostname: "beta", BootID: "b2", Seq: 13,
		Interval: time.Second}); err != nil {
		t.Errorf("beta's next announcement after the restart: %v", err)
	}
}

// TestMarkOfAPeerGoneBeforeItsFirstWrite: a peer that is heard and says
// bye before the recorder first writes marks still has its mark kept,
// even when the store has no record of it yet.
func TestMarkOfAPeerGoneBeforeItsFirstWrite(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 28, 14, 2, 0, 0, time.UTC))
	st := store.NewMemory(store.Options{Now: clk.Now})
	defer st.Close()
	rec := memory.New(st, memory.Options{HostID: "a", Now: clk.Now, MarkInterval: time.Hour})
	inv := inventory.New(inventory.Options{HostID: "a", Hostname: "alpha", Now: clk.Now, Annotate: rec.Annotate})
	sub := inv.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx, inv, sub) }()
	if err := inv.Apply(inventory.Announcement{HostID: "b", Hostname: "beta", BootID: "b1", Seq: 7,
		Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := inv.Bye("b", "b1", 8); err != nil {
		t.Fatal(err)
	}
	cancel() // the final marks are written at the stop, after the bye
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p, ok := st.Peer("b")
	if !ok || p.Mark.BootID != "b1" || p.Mark.Seq != 8 || !p.LastHeard.Equal(clk.Now()) {
		t.Fatalf("beta's record after its bye: %+v (found %v), want mark b1/8 heard %v", p, ok, clk.Now())
	}
}

func TestNotReturnedAfterRestartOrBriefAbsence(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 28, 14, 2, 0, 0, time.UTC))
	st := store.NewMemory(store.Options{Now: clk.Now})
	defer st.Close()
	rec := memory.New(st, memory.Options{HostID: "a", Now: clk.Now})
	usb := store.DiskInfo{HostID: "b", Hostname: "beta", Device: "/dev/sdb1", UUID: "u-1", Label: "L"}
	live := diskstate.Disk{HostID: "c", Hostname: "gamma", Device: "/dev/sdc1", UUID: "u-1", Label: "L", Present: true}
	for _, c := range []struct {
		name   string
		reason store.GoneReason
		gone   time.Duration
		want   bool
	}{
		{"detached long ago", store.ReasonDetached, time.Hour, true},
		{"detached 10s ago", store.ReasonDetached, 10 * time.Second, false},
		{"timeout long ago", store.ReasonTimeout, time.Hour, true},
		{"restart", store.ReasonRestart, time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := st.Seen(clk.Now(), usb); err != nil {
				t.Fatal(err)
			}
			if err := st.Gone(clk.Now(), c.reason, usb); err != nil {
				t.Fatal(err)
			}
			clk.Add(c.gone)
			d := live
			rec.Annotate(&d)
			if d.Returned != c.want {
				t.Errorf("returned %v, want %v (%+v)", d.Returned, c.want, d)
			}
		})
	}
}
