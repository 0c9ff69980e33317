package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// consistent checks the in-memory view's invariants.
func (c *core) consistent() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	uses := map[uint32]int{}
	present := 0
	if len(c.disks) > c.opts.MaxEntries || len(c.peers) > c.opts.MaxEntries {
		return fmt.Errorf("%d disks and %d peers, at most %d", len(c.disks), len(c.peers), c.opts.MaxEntries)
	}
	if len(c.dage.h) != len(c.disks) || len(c.page.h) != len(c.peers) {
		return fmt.Errorf("age indexes hold %d/%d items for %d/%d records", len(c.dage.h), len(c.page.h), len(c.disks), len(c.peers))
	}
	for k, e := range c.disks {
		r := e.rec
		if err := r.check(k); err != nil {
			return err
		}
		if len(r.Sightings) > c.opts.MaxSightings {
			return fmt.Errorf("disk %q: %d sightings", k, len(r.Sightings))
		}
		if r.Sightings[0].Until != sec(r.Last) {
			return fmt.Errorf("disk %q: newest sighting until %d, last seen %d", k, r.Sightings[0].Until, sec(r.Last))
		}
		if e.age.key != k || e.age.t != r.Last || c.dage.h[e.age.i] != e.age {
			return fmt.Errorf("disk %q: age item %+v for last seen %d", k, e.age, r.Last)
		}
		if id := c.hostIDs[r.Places[r.Sightings[0].Place].Host]; id != r.HostID {
			return fmt.Errorf("disk %q: newest place on %q, disk on %q", k, id, r.HostID)
		}
		for _, p := range r.Places {
			uses[p.Host]++
		}
		if r.Present {
			present++
			if _, ok := c.presentOn[r.HostID][k]; !ok {
				return fmt.Errorf("present disk %q missing from the index of host %q", k, r.HostID)
			}
			if other := c.presentAt[placeKey(r.HostID, r.Device)]; other != k {
				return fmt.Errorf("present disk %q: its place names %q", k, other)
			}
		}
	}
	if present != c.present {
		return fmt.Errorf("%d present, counted %d", present, c.present)
	}
	indexed := 0
	for _, keys := range c.presentOn {
		if len(keys) == 0 {
			return fmt.Errorf("an empty host in the present index")
		}
		indexed += len(keys)
	}
	if indexed != present || len(c.presentAt) != present {
		return fmt.Errorf("%d present disks, %d indexed by host, %d by place", present, indexed, len(c.presentAt))
	}
	if len(c.hosts) != len(c.hostIDs) || len(c.hosts) != len(uses) {
		return fmt.Errorf("%d hosts, %d host numbers, %d used", len(c.hosts), len(c.hostIDs), len(uses))
	}
	for id, h := range c.hosts {
		if c.hostIDs[h.ref] != id || uses[h.ref] != h.uses || h.ref >= c.nextRef {
			return fmt.Errorf("host %q: %+v, used %d times", id, h, uses[h.ref])
		}
	}
	for i := 1; i < len(c.dage.h); i++ {
		if c.dage.h.Less(i, (i-1)/2) {
			return fmt.Errorf("age heap out of order at %d", i)
		}
	}
	return nil
}

// TestRandomAgainstMemory drives a file store and a memory store with the
// same random operations, reopening the file store now and then; both
// must answer the same and stay consistent.
func TestRandomAgainstMemory(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	dir := t.TempDir()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	opts := Options{MaxEntries: 30, MaxSightings: 4, MaxAge: 10 * time.Hour, Now: clock,
		FlushInterval: time.Millisecond, BatchSize: 5}
	open := func() *Bolt {
		b, err := Open(t.Context(), dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if b.MovedAside() != "" {
			t.Fatalf("file moved aside at reopen: %s", b.MovedAside())
		}
		return b
	}
	b := open()
	defer func() { b.Close() }()
	m := NewMemory(opts)
	disk := func() DiskInfo {
		h := rng.IntN(6)
		d := DiskInfo{HostID: fmt.Sprint("host-", h), Hostname: fmt.Sprint("name-", h, "-", rng.IntN(2)),
			Device: fmt.Sprint("/dev/sd", rng.IntN(4)), Label: fmt.Sprint("L", rng.IntN(3)), Type: "ext4"}
		switch rng.IntN(3) {
		case 0:
			d.UUID = fmt.Sprint("u-", rng.IntN(40))
		case 1:
			d.PartUUID = fmt.Sprint("p-", rng.IntN(10))
		}
		if rng.IntN(2) == 0 {
			d.MountPoints = []string{fmt.Sprint("/m", rng.IntN(3))}
		}
		return d
	}
	both := func(f func(Store) error) {
		t.Helper()
		if err1, err2 := f(b), f(m); err1 != nil || err2 != nil {
			t.Fatalf("file: %v, memory: %v", err1, err2)
		}
	}
	compare := func(step int) {
		t.Helper()
		for name, c := range map[string]*core{"file": b.core, "memory": m.core} {
			if err := c.consistent(); err != nil {
				t.Fatalf("step %d: %s store: %v", step, name, err)
			}
		}
		if got, want := b.Disks(), m.Disks(); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: disks differ:\nfile   %+v\nmemory %+v", step, got, want)
		}
		if got, want := b.Peers(), m.Peers(); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: peers differ:\nfile   %+v\nmemory %+v", step, got, want)
		}
	}
	for step := range 3000 {
		now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
		at := now.Add(-time.Duration(rng.IntN(30)) * time.Second) // late reports too
		switch op := rng.IntN(100); {
		case op < 50:
			ds := []DiskInfo{disk()}
			if rng.IntN(4) == 0 {
				ds = append(ds, disk(), disk())
			}
			both(func(s Store) error { return s.Seen(at, ds...) })
		case op < 70:
			d := disk()
			r := []GoneReason{ReasonDetached, ReasonBye, ReasonTimeout}[rng.IntN(3)]
			both(func(s Store) error { return s.Gone(at, r, d) })
		case op < 75:
			h := fmt.Sprint("host-", rng.IntN(6))
			both(func(s Store) error { return s.HostGone(at, ReasonTimeout, h) })
		case op < 85:
			p := Peer{HostID: fmt.Sprint("peer-", rng.IntN(40)), Hostname: "p", LastHeard: at,
				Mark: Mark{BootID: "b", Seq: uint64(step), SentAt: at}}
			both(func(s Store) error { return s.Heard(p) })
		case op < 88:
			both(func(s Store) error { return s.Maintain(context.Background()) })
		case op < 90:
			if err := b.CompactNow(); err != nil {
				t.Fatal(err)
			}
		case op < 92:
			// Restart: the file store marks present disks gone; do the
			// same to the memory store.
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			for _, d := range m.Disks() {
				if d.Present {
					info := DiskInfo{HostID: d.HostID, Device: d.Device, UUID: d.UUID, PartUUID: d.PartUUID}
					if err := m.Gone(d.LastSeen, ReasonRestart, info); err != nil {
						t.Fatal(err)
					}
				}
			}
			m.Maintain(context.Background())
			b = open()
		default:
			if err := b.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		compare(step)
	}
}

func TestGrowthDue(t *testing.T) {
	now := time.Now()
	long := now.Add(-growthGap)
	cases := []struct {
		size, content int64
		last          time.Time
		want          bool
	}{
		{8 << 20, 2 << 20, long, true},       // four times its content
		{8 << 20, 2 << 20, now, false},       // a pass just ran
		{8 << 20, 6 << 20, long, false},      // compact enough
		{compactMinSize - 1, 1, long, false}, // too small to bother
		{3 << 20, 2<<20 - 100, long, false},  // would save too little
	}
	for _, c := range cases {
		if got := growthDue(c.size, c.content, c.last, now); got != c.want {
			t.Errorf("growthDue(%d, %d, %v ago) = %v, want %v", c.size, c.content, now.Sub(c.last), got, c.want)
		}
	}
}

// TestGrowthWakesMaintainer: a grown file wakes the maintainer early.
func TestGrowthWakesMaintainer(t *testing.T) {
	b, err := Open(t.Context(), t.TempDir(), Options{MaintainInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ds := make([]DiskInfo, 8000)
	for i := range ds {
		ds[i] = DiskInfo{HostID: "h", Device: fmt.Sprint("/dev/", i), UUID: fmt.Sprint("u", i), Label: "a label of some length"}
	}
	if err := errors.Join(b.Seen(time.Unix(1e9, 0), ds...), b.Flush(t.Context())); err != nil {
		t.Fatal(err)
	}
	if size := b.Stats().FileSize; size < compactMinSize {
		t.Fatalf("file of %d bytes is too small for the test", size)
	}
	b.statMu.Lock()
	b.content, b.lastMaintain = 1, time.Now().Add(-growthGap)
	b.statMu.Unlock()
	b.checkGrowth()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b.statMu.Lock()
		woke := time.Since(b.lastMaintain) < growthGap
		b.statMu.Unlock()
		if woke {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a grown file did not wake the maintainer within 60s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pendingWrites returns how many records wait for the writer: written
// whole (disks, peers, hosts), and last-seen times alone.
func (b *Bolt) pendingWrites() (full, seen int) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.urgent(), len(b.dirtySeen)
}

// committed says whether nothing waits for the writer but last-seen times.
func (b *Bolt) committed() (bool, string) {
	full, _ := b.pendingWrites()
	return full == 0 && b.Stats().Commits > 0, fmt.Sprintf("%d records pending, %d commits", full, b.Stats().Commits)
}

// TestWriterSleepsWhileNothingChanges: the writer does nothing until a
// write leaves something pending, commits it FlushInterval later, writes
// a pending last-seen time once SeenInterval has passed without any
// further write, and then sleeps again.
func TestWriterSleepsWhileNothingChanges(t *testing.T) {
	const flush, seenEvery = 10 * time.Millisecond, 300 * time.Millisecond
	b, err := Open(t.Context(), t.TempDir(), Options{FlushInterval: flush, SeenInterval: seenEvery})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	quiet := func(what string) {
		t.Helper()
		before := b.wakes.Load()
		time.Sleep(20 * flush)
		if n := b.wakes.Load() - before; n != 0 {
			t.Errorf("%s: the writer woke %d times in %v, want 0", what, n, 20*flush)
		}
	}
	quiet("after Open")

	d := DiskInfo{HostID: "h", Device: "/dev/sdb1", UUID: "u1", Label: "BACKUP"}
	t0 := time.Unix(1e9, 0)
	if err := b.Seen(t0, d); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, b.committed)
	quiet("after the commit")

	// Only its last-seen time moves: written once seenEvery has passed
	// since the last write of last-seen times, with no write after it.
	if err := b.Seen(t0.Add(time.Minute), d); err != nil {
		t.Fatal(err)
	}
	if _, seen := b.pendingWrites(); seen != 1 {
		t.Fatalf("%d last-seen times pending, want 1", seen)
	}
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		_, seen := b.pendingWrites()
		return seen == 0, fmt.Sprintf("%d last-seen times pending", seen)
	})
	quiet("after the last-seen time")
}

// TestChangeNotHeldBehindLastSeenTimes: while a last-seen time waits for
// its SeenInterval (an hour here), a new record is still committed
// FlushInterval after it is written, not with the last-seen time.
func TestChangeNotHeldBehindLastSeenTimes(t *testing.T) {
	b, err := Open(t.Context(), t.TempDir(), Options{FlushInterval: 10 * time.Millisecond, SeenInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	d := DiskInfo{HostID: "h", Device: "/dev/sdb1", UUID: "u1", Label: "BACKUP"}
	t0 := time.Unix(1e9, 0)
	if err := b.Seen(t0, d); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, b.committed)
	wakes := b.wakes.Load()
	if err := b.Seen(t0.Add(time.Minute), d); err != nil { // last-seen time alone
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		return b.wakes.Load() > wakes, "the writer has not looked at the last-seen time"
	})
	if _, seen := b.pendingWrites(); seen != 1 {
		t.Fatalf("%d last-seen times pending, want 1 (held for an hour)", seen)
	}
	d2 := DiskInfo{HostID: "h", Device: "/dev/sdc1", UUID: "u2", Label: "PHOTOS"}
	if err := b.Seen(t0.Add(time.Minute), d2); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, b.committed)
	if _, seen := b.pendingWrites(); seen != 1 {
		t.Errorf("%d last-seen times pending after the new disk's commit, want 1 (held for an hour)", seen)
	}
}

// TestTier: the ASCII fast path answers as the general one does.
func TestTier(t *testing.T) {
	cases := []struct {
		term, field string
		want        int
	}{
		{"abc", "ABC", exactMatch},
		{"abc", "AbCd", prefixMatch},
		{"bcd", "aBCD", containsMatch},
		{"bcd", "aBCe", noMatch},
		{"abcd", "abc", noMatch},
		{"é", "É", exactMatch},
		{"k", "\u212a", exactMatch}, // Kelvin sign folds to k
		{"ss", "Straße-ss", containsMatch},
		{"straße", "STRASSE", noMatch},
	}
	for _, c := range cases {
		lterm := strings.ToLower(c.term)
		if got := tier(lterm, isASCII(lterm), c.field); got != c.want {
			t.Errorf("tier(%q, %q) = %d, want %d", c.term, c.field, got, c.want)
		}
		if isASCII(lterm) && isASCII(c.field) {
			if slow := tier(lterm, false, c.field); slow != c.want {
				t.Errorf("slow tier(%q, %q) = %d, want %d", c.term, c.field, slow, c.want)
			}
		}
	}
}

// TestCodec: a record survives encoding, and damaged encodings fail.
func TestCodec(t *testing.T) {
	r := &diskRec{HostID: "h", Device: "/dev/a", UUID: "u", Label: "L", Mounts: []string{"/m"}, First: 5e9, Last: 7e9,
		Places:    []placeRec{{Host: 3, Device: "/dev/a"}, {Host: 70000, Device: "/dev/b"}},
		Sightings: []sightRec{{From: 7, Until: 7, Place: 0}, {From: 5, Until: 6, Place: 1, Reason: 2}}}
	r.Present = true
	v, err := marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeDisk([]byte("uuid:u"), v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("decoded %+v, want %+v", got, r)
	}
	for name, bad := range map[string][]byte{
		"trailing byte": append(append([]byte{}, v...), 0xc0),
		"cut short":     v[:len(v)-3],
		"empty":         {},
	} {
		if _, err := decodeDisk([]byte("uuid:u"), bad); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decodeDisk([]byte("uuid:other"), v); err == nil {
		t.Errorf("a record under another key decoded without error")
	}
}
