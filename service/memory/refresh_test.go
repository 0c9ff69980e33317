package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/memory"
	"github.com/diskd/diskd/service/store"
)

// A peer that re-announces an unchanged list publishes no event; the
// recorder's refresh moves the last-seen time of each of its disks, host
// by host, with that host's time.
func TestRefreshMovesLastSeenOfEveryHost(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	clk := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st := store.NewMemory(store.Options{Now: clk})
	defer st.Close()
	rec := memory.New(st, memory.Options{HostID: "a", Now: clk, RefreshInterval: 10 * time.Millisecond})
	inv := inventory.New(inventory.Options{HostID: "a", Hostname: "alpha", Now: clk})
	sub := inv.Subscribe(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx, inv, sub) }()
	defer func() { cancel(); <-done }()

	lists := map[string][]diskstate.Disk{
		"b": {{Device: "/dev/sdb1", UUID: "b-1", Type: "ext4"}, {Device: "/dev/sdc1", UUID: "b-2", Type: "ext4"}},
		"c": {{Device: "/dev/sdb1", UUID: "c-1", Type: "ext4"}},
	}
	announce := func(seq uint64) {
		for _, host := range []string{"c", "b"} {
			if err := inv.Apply(inventory.Announcement{HostID: host, Hostname: host + "-name", BootID: "x", Seq: seq,
				Interval: time.Second, Disks: lists[host]}); err != nil {
				t.Fatal(err)
			}
		}
	}
	announce(1)
	t0 := clk()
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	announce(2) // unchanged: no event, only a refresh moves the store
	t1 := clk()
	for deadline := time.Now().Add(5 * time.Second); ; {
		moved := 0
		for _, key := range []string{"b-1", "b-2", "c-1"} {
			if d, ok := st.Disk("uuid:" + key); ok && d.Present && d.LastSeen.Equal(t1) {
				moved++
			}
		}
		if moved == 3 {
			break
		}
		if time.Now().After(deadline) {
			for _, key := range []string{"b-1", "b-2", "c-1"} {
				d, ok := st.Disk("uuid:" + key)
				t.Logf("%s: %v %+v", key, ok, d)
			}
			t.Fatalf("after 5s, %d of 3 disks have last-seen %v (first seen %v)", moved, t1, t0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
