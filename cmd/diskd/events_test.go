package main_test

// Event-driven behaviour with the default intervals (announce 10s, scan
// 60s), so that no periodic job can be what makes these tests pass: kernel
// uevents and mount-table changes make a host rescan and announce at once,
// a ping makes peers re-announce at once and at most once a second, and
// peer timeouts follow the documented defaults. Hosts, disks and daemons come from
// service/testbed; the helpers (node, disk, findDisk, diskdBin) from
// integration_test.go.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// eventBound is how soon a change on one host must show on another in
// these tests. It is generous, for a loaded machine (the target, tens of
// milliseconds, is measured by make bench), and still far below what
// would show a change without the event path: the 60s rescan and the 10s
// announcement.
const eventBound = 3 * time.Second

// newNodes adds a host with one small ext4 disk for each name. No daemon is
// started. The disks are on loop devices of their own (see testbed.AddDisk),
// so that no other test takes a device while a test has it detached.
func newNodes(t *testing.T, names ...string) []*node {
	t.Helper()
	return addNodes(t, testbed.NewT(t).AddHost, names...)
}

// addNodes adds a host with add and one small ext4 disk on it (labelled
// NAME-1) for each name. No daemon is started.
func addNodes(t *testing.T, add func(name string) (*testbed.Host, error), names ...string) []*node {
	t.Helper()
	var nodes []*node
	for _, name := range names {
		h, err := add(name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &node{Host: h, disk: nameDisk(t, h)})
	}
	return nodes
}

// nameDisk adds a small ext4 disk labelled NAME-1 to host NAME.
func nameDisk(t *testing.T, h *testbed.Host) *testbed.Disk {
	t.Helper()
	return h.AddDiskT(t, testbed.DiskOpts{Label: strings.ToUpper(h.Name) + "-1", FSType: "ext4"})
}

// startDefault starts diskd on n with the default announce and scan
// intervals (no --announce-interval, no --scan-interval) and flags.
func (n *node) startDefault(t *testing.T, flags ...string) {
	t.Helper()
	for _, f := range flags {
		if f == "--announce-interval" || f == "--scan-interval" {
			t.Fatalf("startDefault: %s given; these tests run with the default intervals", f)
		}
	}
	d, err := n.Start(diskdBin(t), flags...)
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
}

// peer returns n's `peers --json` entry for p, or nil.
func (n *node) peer(p *node) (*peerEntry, error) {
	var ps []peerEntry
	if err := n.d.DoJSON("peers --json", &ps); err != nil {
		return nil, err
	}
	return findPeer(ps, p.HostID), nil
}

// awaitPeer waits (≤ 5s) until n lists p among its peers.
func awaitPeer(t *testing.T, n, p *node) {
	t.Helper()
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		got, err := n.peer(p)
		return got != nil, fmt.Sprintf("%s's peers lack %s (err %v)", n.Name, p.Name, err)
	})
}

// seenWithin polls n's list every 5ms until want holds for owner's disk
// (nil when n does not list it) or limit has passed since start. It
// returns how long after start want first held, or -1.
func seenWithin(n, owner *node, start time.Time, limit time.Duration, want func(*disk) bool) (time.Duration, string) {
	desc := ""
	for {
		ds, err := n.list()
		if err == nil && want(findDisk(ds, owner)) {
			return time.Since(start), ""
		}
		if err != nil {
			desc = "list: " + err.Error()
		} else {
			desc = fmt.Sprintf("%s lists %s", n.Name, describeMounts(ds))
		}
		if time.Since(start) > limit {
			return -1, desc
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func describeMounts(ds []disk) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%s:%s(%s)%v", d.Hostname, d.Device, d.Label, d.Mountpoints))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func ms(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// detachedPair starts alpha and beta with the default intervals, beta
// with betaFlags, and waits until alpha hears beta. Beta's disk exists but
// is detached when its daemon starts; the daemon is told to watch its
// device path.
func detachedPair(t *testing.T, betaFlags ...string) (a, b *node) {
	t.Helper()
	nodes := newNodes(t, "alpha", "beta")
	a, b = nodes[0], nodes[1]
	if err := b.disk.Detach(); err != nil {
		t.Fatal(err)
	}
	b.startDefault(t, betaFlags...)
	a.startDefault(t)
	awaitPeer(t, a, b)
	return a, b
}

// TestHotplugSeenPromptly: a disk attached to a loop device on beta
// appears in alpha's list, its mount point shows, its unmount shows and its
// detach removes it, each within eventBound, with beta scanning only every
// 60s and announcing only every 10s on its own.
func TestHotplugSeenPromptly(t *testing.T) {
	t.Parallel()
	a, b := detachedPair(t)

	mounted := func(d *disk) bool {
		mp := b.disk.Mountpoint()
		return d != nil && mp != "" && slices.Contains(d.Mountpoints, mp)
	}
	steps := []struct {
		name string
		do   func() error
		want func(*disk) bool // of the disk as a host lists it (nil: not listed)
	}{
		{"attach", b.disk.Attach, func(d *disk) bool { return d != nil && d.Label == "BETA-1" }},
		{"mount", func() error { return b.disk.Mount("") }, mounted},
		{"unmount", b.disk.Unmount, func(d *disk) bool { return d != nil && len(d.Mountpoints) == 0 }},
		{"detach", b.disk.Detach, func(d *disk) bool { return d == nil }},
	}
	const rounds = 3
	worst := map[string]time.Duration{}
	for round := 1; round <= rounds; round++ {
		for _, st := range steps {
			start := time.Now()
			if err := st.do(); err != nil {
				t.Fatalf("round %d, %s: %v", round, st.name, err)
			}
			acted := time.Since(start)
			// Beta's own view first (uevent or mount watch → rescan), then
			// alpha's (beta's announcement over the network). Both are
			// timed from before the action.
			local, ldesc := seenWithin(b, b, start, 5*time.Second, st.want)
			remote, rdesc := seenWithin(a, b, start, 5*time.Second, st.want)
			t.Logf("round %d %-7s: command took %v, on beta after %v, on alpha after %v",
				round, st.name, ms(acted), ms(local), ms(remote))
			switch {
			case local < 0:
				t.Fatalf("round %d, %s: beta's own list not updated within 5s: %s", round, st.name, ldesc)
			case remote < 0:
				t.Fatalf("round %d, %s: alpha's list not updated within 5s: %s", round, st.name, rdesc)
			case remote >= eventBound:
				t.Errorf("round %d, %s: alpha saw it after %v, not within %v", round, st.name, ms(remote), eventBound)
			}
			worst[st.name] = max(worst[st.name], remote)
		}
	}
	for _, st := range steps {
		t.Logf("worst %s → visible on alpha: %v (bound %v)", st.name, ms(worst[st.name]), eventBound)
	}
}

// TestHotplugWithoutUeventsIsNotSeen is the control run of
// TestHotplugSeenPromptly: with --no-uevents the same attach is not
// seen within the bound (only the 60s rescan would find it), so what the
// other test measures is the event path. A refresh then shows it at once.
func TestHotplugWithoutUeventsIsNotSeen(t *testing.T) {
	t.Parallel()
	a, b := detachedPair(t, "--no-uevents")

	present := func(d *disk) bool { return d != nil }
	start := time.Now()
	if err := b.disk.Attach(); err != nil {
		t.Fatal(err)
	}
	const watch = eventBound + 500*time.Millisecond
	if took, _ := seenWithin(a, b, start, watch, present); took >= 0 {
		t.Fatalf("with --no-uevents alpha still saw beta's attached disk after %v: the event path is not what the other test measures", ms(took))
	}
	if ok, desc := b.has(b); ok {
		t.Fatalf("with --no-uevents beta listed its attached disk without a rescan: %s", desc)
	}
	t.Logf("with --no-uevents the attached disk was not seen within %v (as it should)", watch)

	start = time.Now()
	if _, err := b.d.Do("refresh"); err != nil {
		t.Fatal(err)
	}
	took, desc := seenWithin(a, b, start, 5*time.Second, present)
	if took < 0 || took >= eventBound {
		t.Fatalf("after refresh on beta, alpha saw the disk after %v: %s", ms(took), desc)
	}
	t.Logf("after refresh on beta, on alpha after %v", ms(took))
}

// quietPair starts alpha and beta, waits until alpha lists beta's disk,
// and leaves beta quiet for the next 9s but for answers to pings: an
// announcement on request restarts beta's 10s period, and waiting 1.1s lets
// beta's memory of alpha's start-up ping lapse (beta answers one requester
// at most once a second).
func quietPair(t *testing.T) (a, b *node) {
	t.Helper()
	nodes := newNodes(t, "alpha", "beta")
	a, b = nodes[0], nodes[1]
	b.startDefault(t)
	a.startDefault(t)
	awaitPeerDisk(t, a, b)
	if _, err := b.d.Do("announce"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	return a, b
}

// TestPingMakesPeerReannounce: `ping` on alpha makes beta announce within
// half a second. Beta announces on its own every 10s (and every run of its
// announce job, an answer included, restarts that period), so after an
// announce done on request nothing but a ping can make it announce for the
// next 9s.
func TestPingMakesPeerReannounce(t *testing.T) {
	t.Parallel()
	a, b := quietPair(t)

	const pings = 3
	// Generous for a loaded machine; beta's own next announcement is 9s away.
	const bound = 3 * time.Second
	var lastPing time.Time
	for i := 1; i <= pings; i++ {
		// Beta answers one requester at most once a second.
		if wait := 1100*time.Millisecond - time.Since(lastPing); !lastPing.IsZero() && wait > 0 {
			time.Sleep(wait)
		}
		aBefore, bBefore := a.status(t), b.status(t)
		start := time.Now()
		if _, err := a.d.Do("ping"); err != nil {
			t.Fatal(err)
		}
		lastPing = start
		ok, desc := testbed.Poll(5*time.Second, func() (bool, string) {
			p := a.status(t)
			return p.PacketsIn > aBefore.PacketsIn, fmt.Sprintf("alpha's packets_in %d → %d", aBefore.PacketsIn, p.PacketsIn)
		})
		took := time.Since(start)
		if !ok {
			t.Fatalf("ping %d: beta did not re-announce within 5s: %s", i, desc)
		}
		bAfter := b.status(t)
		t.Logf("ping %d: beta's announcement reached alpha after %v (beta's packets_out +%d)", i, ms(took), bAfter.PacketsOut-bBefore.PacketsOut)
		if took >= bound {
			t.Errorf("ping %d: beta re-announced after %v, want within %v", i, ms(took), bound)
		}
		if d := bAfter.PacketsOut - bBefore.PacketsOut; d != 1 {
			t.Errorf("ping %d: beta sent %d datagrams, want 1 announcement", i, d)
		}
	}
}

// TestPingFloodRateLimited: 100 pings within one second from alpha get one
// answer from beta, two at most.
func TestPingFloodRateLimited(t *testing.T) {
	t.Parallel()
	a, b := quietPair(t)

	aBefore, bBefore := a.status(t), b.status(t)
	const n = 100
	const spacing = 10 * time.Millisecond // the last ping at 990ms
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * spacing)); d > 0 {
			time.Sleep(d)
		}
		if _, err := a.d.Do("ping"); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	took := time.Since(start)
	// Beta answers alpha at most once a second: one answer, two if the
	// pings straddle a second of beta's, one more for each further second
	// a loaded machine took to send them.
	most := 2 + int64(max(0, took-time.Second)/time.Second)
	if took > 5*time.Second {
		t.Fatalf("sending %d pings took %v, not about a second: the test cannot tell", n, took)
	}
	// Answers come within PingReplyDelay (100ms); wait well past it.
	time.Sleep(500 * time.Millisecond)
	aAfter, bAfter := a.status(t), b.status(t)
	answers := bAfter.PacketsOut - bBefore.PacketsOut
	heard := bAfter.PacketsIn - bBefore.PacketsIn
	t.Logf("%d pings from alpha in %v: beta heard %d, sent %d announcements; alpha heard %d",
		n, ms(took), heard, answers, aAfter.PacketsIn-aBefore.PacketsIn)
	if heard < n*9/10 {
		t.Fatalf("beta heard only %d of %d pings: the flood did not arrive", heard, n)
	}
	if answers < 1 || int64(answers) > most {
		t.Errorf("beta answered %d pings sent in %v from one host, want 1 to %d", answers, ms(took), most)
	}
	if got := aAfter.PacketsIn - aBefore.PacketsIn; got != answers {
		t.Errorf("alpha heard %d datagrams, beta sent %d", got, answers)
	}
}

// TestPeerTimeoutMath: a peer is lost after 3 × the interval it announces
// unless --peer-timeout is set, and `peers --json` shows both. Beta
// announces every 2s, alpha and gamma every 10s (the default); alpha has
// --peer-timeout 7s.
func TestPeerTimeoutMath(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, "alpha", "beta", "gamma")
	a, b, c := nodes[0], nodes[1], nodes[2]
	starts := []struct {
		n     *node
		flags []string
	}{
		{b, []string{"--announce-interval", "2s"}},
		{c, nil},
		{a, []string{"--peer-timeout", "7s"}},
	}
	for _, s := range starts {
		d, err := s.n.Start(diskdBin(t), s.flags...)
		if err != nil {
			t.Fatal(err)
		}
		s.n.d = d
	}
	cases := []struct {
		observer, peer        *node
		interval, wantTimeout float64
	}{
		{a, b, 2, 7},   // override
		{a, c, 10, 7},  // override
		{c, b, 2, 6},   // 3 × beta's 2s
		{c, a, 10, 30}, // 3 × alpha's default 10s
		{b, a, 10, 30},
		{b, c, 10, 30},
	}
	for _, tc := range cases {
		t.Run(tc.observer.Name+"-sees-"+tc.peer.Name, func(t *testing.T) {
			var p *peerEntry
			testbed.Eventually(t, 5*time.Second, func() (bool, string) {
				var err error
				p, err = tc.observer.peer(tc.peer)
				return p != nil, fmt.Sprintf("%s's peers lack %s (err %v)", tc.observer.Name, tc.peer.Name, err)
			})
			t.Logf("%s sees %s: interval %gs, timeout %gs", tc.observer.Name, tc.peer.Name, p.IntervalSeconds, p.TimeoutSeconds)
			if p.IntervalSeconds != tc.interval || p.TimeoutSeconds != tc.wantTimeout {
				t.Errorf("%s sees %s with interval_seconds %g, timeout_seconds %g; want %g, %g",
					tc.observer.Name, tc.peer.Name, p.IntervalSeconds, p.TimeoutSeconds, tc.interval, tc.wantTimeout)
			}
		})
	}
}
