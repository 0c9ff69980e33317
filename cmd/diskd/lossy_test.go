package main_test

// Tests of the view under packet loss and of replays across a receiver's
// restart, against real daemons on simulated hosts (service/testbed): loss
// is made with nftables inside the sender's namespace, replays are sent
// from a host without a daemon (see TestHelperProcess in
// integration_test.go).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

// setLoss makes h drop pct % of the diskd datagrams it sends (UDP to port
// 4277), replacing any loss set before; 0 removes it.
func setLoss(t *testing.T, h *testbed.Host, pct int) {
	t.Helper()
	nft := func(args ...string) error {
		out, err := h.Command("nft", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %s in %s: %v: %s", strings.Join(args, " "), h.Name, err, out)
		}
		return nil
	}
	_ = nft("delete", "table", "inet", "diskdloss") // absent the first time
	if pct == 0 {
		return
	}
	for _, cmd := range [][]string{
		{"add", "table", "inet", "diskdloss"},
		{"add", "chain", "inet", "diskdloss", "out", "{ type filter hook output priority 0; }"},
		{"add", "rule", "inet", "diskdloss", "out", "udp", "dport", "4277", "numgen", "random", "mod", "100", "<", fmt.Sprint(pct), "drop"},
	} {
		if err := nft(cmd...); err != nil {
			t.Fatal(err)
		}
	}
}

// bulkBlkid writes a blkid script that reports n disks labelled
// PREFIX-NNN (the label of disk changed, if >= 0, is CHANGED) and returns
// its path; calling it again for the same dir rewrites what it reports.
func bulkBlkid(t *testing.T, dir string, n, changed int) string {
	t.Helper()
	var out strings.Builder
	for i := range n {
		label := fmt.Sprintf("BULK-%03d", i)
		if i == changed {
			label = "CHANGED"
		}
		fmt.Fprintf(&out, "DEVNAME=/dev/fake%03d\nLABEL=%s\nUUID=0b5e55ed-0000-4000-8000-%012d\nTYPE=ext4\n\n", i, label, i)
	}
	outFile := filepath.Join(dir, "blkid.out")
	if err := os.WriteFile(outFile+".new", []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(outFile+".new", outFile); err != nil { // never half a file
		t.Fatal(err)
	}
	script := filepath.Join(dir, "blkid")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(blkidScript, "OUT", outFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// presence polls a's peers every 100ms for d and returns the share of
// polls that held p, and how often p went missing after being there.
func presence(t *testing.T, a, p *node, d time.Duration) (share float64, flaps int) {
	t.Helper()
	polls, held := 0, 0
	was := true
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		now := findPeer(peersOf(t, a), p.HostID) != nil
		polls++
		if now {
			held++
		} else if was {
			flaps++
		}
		was = now
	}
	return float64(held) / float64(polls), flaps
}

// TestLossyPeerStaysInView: beta has 300 disks (about 25 datagrams an
// announcement) and announces every second over a link that loses 5 %,
// then 20 %, of what it sends. Alpha shows beta at every poll of 30 s at
// 5 %, at 99 % of them at least at 20 %, and a change to beta's list
// reaches alpha within 3 announce intervals at 20 % loss.
func TestLossyPeerStaysInView(t *testing.T) {
	// Not parallel: it floods a daemon, and beside the other floods a loaded
	// machine drops datagrams before they are counted.
	testbed.RequireTools(t, "nft")
	const count = 300
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", false)
	dir := t.TempDir()
	script := bulkBlkid(t, dir, count, -1)
	launch(t, b, append(fastFlags(), "--blkid", script)...)
	launch(t, a, fastFlags()...)
	testbed.Eventually(t, 15*time.Second, func() (bool, string) {
		n := countHost(listOf(t, a), b.HostID)
		return n == count, fmt.Sprintf("alpha lists %d of beta's disks", n)
	})

	setLoss(t, b.Host, 5)
	share, flaps := presence(t, a, b, 30*time.Second)
	t.Logf("5%% loss: beta in alpha's peers at %.2f%% of polls over 30s, %d flaps", 100*share, flaps)
	if share < 1 {
		t.Errorf("5%% loss: beta in alpha's peers at %.2f%% of polls (%d flaps), want 100%%", 100*share, flaps)
	}

	setLoss(t, b.Host, 20)
	share, flaps = presence(t, a, b, 30*time.Second)
	t.Logf("20%% loss: beta in alpha's peers at %.2f%% of polls over 30s, %d flaps", 100*share, flaps)
	if share < 0.99 {
		t.Errorf("20%% loss: beta in alpha's peers at %.2f%% of polls (%d flaps), want at least 99%%", 100*share, flaps)
	}

	// A change on beta: measured from when beta itself lists it (its scan
	// runs every second) to when alpha does.
	bulkBlkid(t, dir, count, 150)
	changed := func(n *node) bool {
		for _, d := range listOf(t, n) {
			if d.HostID == b.HostID && d.Label == "CHANGED" {
				return true
			}
		}
		return false
	}
	testbed.Eventually(t, 10*time.Second, func() (bool, string) { return changed(b), "beta does not list its changed disk" })
	seen := time.Now()
	testbed.Eventually(t, 15*time.Second, func() (bool, string) { return changed(a), "alpha does not list beta's changed disk" })
	took := time.Since(seen)
	t.Logf("20%% loss: beta's change reached alpha %v after beta listed it", took.Round(time.Millisecond))
	// 3 intervals of 1s, with the announcer's 10 % jitter and the polling.
	if took > 3*time.Second+500*time.Millisecond {
		t.Errorf("20%% loss: beta's change took %v to reach alpha, want within 3 announce intervals (3s)", took)
	}
	if n := countHost(listOf(t, a), b.HostID); n != count {
		t.Errorf("alpha lists %d of beta's disks after the change, want %d", n, count)
	}
}

// TestReplayAfterReceiverRestart: mallory captures beta's sealed
// datagrams; beta is killed; alpha restarts (and so forgets every mark);
// mallory replays the capture, all at once and then one by one, from the
// moment the newest captured datagram is older than alpha's
// --max-clock-skew. Alpha never shows beta again, and counts every
// replayed datagram as stale.
func TestReplayAfterReceiverRestart(t *testing.T) {
	t.Parallel()
	const skew = 2 * time.Second
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", true)
	m := addSecNode(t, lab, "mallory", false)
	keyFile := writeKeys(t, 0o600, newKey(t))
	flags := append(keyed(keyFile), "--max-clock-skew", skew.String())

	capt := startCapture(t, m.Host)
	launch(t, b, flags...)
	launch(t, a, flags...)
	awaitPeerDisk(t, a, b)
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		n := len(capt.from(t, b.Addr))
		return n >= 6, fmt.Sprintf("captured %d datagrams of beta", n)
	})
	if err := b.d.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(100 * time.Millisecond) // the last datagrams reach mallory
	capt.stop()
	captured := payloads(capt.from(t, b.Addr))
	for i, g := range captured {
		if len(g) < wire.HeaderSize || g[5]&wire.FlagSealed == 0 {
			t.Fatalf("captured datagram %d of beta is not sealed", i)
		}
	}

	if err := a.d.Stop(); err != nil {
		t.Fatal(err)
	}
	launch(t, a, flags...)
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		return a.d.DoJSON("status --json", new(status)) == nil, "alpha not answering after its restart"
	})
	if p := findPeer(peersOf(t, a), b.HostID); p != nil {
		t.Fatalf("beta among the restarted alpha's peers before any replay: %+v", *p)
	}
	time.Sleep(time.Until(killed.Add(skew + 200*time.Millisecond)))

	before := a.status(t)
	stop := make(chan struct{})
	shown := make(chan string, 1)
	go func() { // watch alpha's peers and list while the replay runs
		defer close(shown)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var ps []peerEntry
			var ds []disk
			if a.d.DoJSON("peers --json", &ps) != nil || a.d.DoJSON("list --json", &ds) != nil {
				continue
			}
			if findPeer(ps, b.HostID) != nil || countHost(ds, b.HostID) != 0 {
				shown <- fmt.Sprintf("peers %v, list %s", peerView(ps), describe(ds))
				return
			}
		}
	}()
	sendDatagrams(t, m.Host, captured, 0) // all at once
	last := captured[max(0, len(captured)-12):]
	for _, g := range last { // and one by one
		sendDatagrams(t, m.Host, [][]byte{g}, 0)
		time.Sleep(250 * time.Millisecond)
	}
	want := uint64(len(captured) + len(last))
	var g map[string]uint64
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		g = grown(before.Drops, a.status(t).Drops)
		return g["stale"] >= want, fmt.Sprintf("alpha's drops grew by %v, want stale +%d", g, want)
	})
	close(stop)
	if s, ok := <-shown; ok {
		t.Errorf("the replay showed the dead beta on the restarted alpha: %s", s)
	}
	g = grown(before.Drops, a.status(t).Drops)
	t.Logf("replayed %d datagrams of beta, %v after it was killed: alpha's drops grew by %v", want, time.Since(killed).Round(time.Millisecond), g)
	if len(g) != 1 || g["stale"] != want {
		t.Errorf("alpha's drops grew by %v, want exactly stale +%d", g, want)
	}
	if p := findPeer(peersOf(t, a), b.HostID); p != nil {
		t.Errorf("beta among alpha's peers after the replay: %+v", *p)
	}
	if slices.ContainsFunc(listOf(t, a), func(d disk) bool { return d.HostID == b.HostID }) {
		t.Error("alpha lists beta's disks after the replay")
	}
}

// TestFakePeersDoNotFloodLog: mallory, without a key, makes 300 fake peers
// of 34 disks each join and leave. Alpha's log gets a few dozen lines for
// them (one per peer change at most, rate-limited), not one per disk.
func TestFakePeersDoNotFloodLog(t *testing.T) {
	// Not parallel: it floods a daemon, and beside the other floods a loaded
	// machine drops datagrams before they are counted.
	const fakes, disksEach = 300, 34
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	m := addSecNode(t, lab, "mallory", false)
	launch(t, a, fastFlags()...)
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		return a.d.DoJSON("status --json", new(status)) == nil, "alpha not answering"
	})

	var byes [][]byte
	joins := map[string][][]byte{}
	for i := range fakes {
		id := fmt.Sprintf("fake-%03d", i)
		disks := make([]diskstate.Disk, disksEach)
		for j := range disks {
			disks[j] = diskstate.Disk{Device: fmt.Sprintf("/dev/sdf%d", j), UUID: fmt.Sprintf("%s-%02d", id, j), Label: "FAKE", Type: "ext4"}
		}
		joins[id] = forge(t, wire.Message{Kind: wire.KindAnnounce, HostID: id, Hostname: id, BootID: "fake-boot",
			Seq: 1, Interval: wire.MaxInterval, Disks: disks}, 0, nil)
		byes = append(byes, forge(t, wire.Message{Kind: wire.KindBye, HostID: id, Hostname: id, BootID: "fake-boot",
			Seq: 2, Interval: wire.MaxInterval}, 0, nil)...)
	}
	fakeLines := func() int {
		n := 0
		for _, l := range strings.Split(a.d.Log(), "\n") {
			if strings.Contains(l, "fake-") {
				n++
			}
		}
		return n
	}
	// Slowly enough for alpha's socket buffer; on a loaded machine the
	// kernel may still drop some, so the fakes alpha lacks are sent again
	// (at most twice more).
	for round := 0; ; round++ {
		held := map[string]bool{}
		for _, p := range peersOf(t, a) {
			held[p.HostID] = true
		}
		var missing [][]byte
		for id, grams := range joins {
			if !held[id] {
				missing = append(missing, grams...)
			}
		}
		if len(missing) == 0 || round == 3 {
			break
		}
		sendDatagrams(t, m.Host, missing, 1)
		waitUntil := time.Now().Add(10 * time.Second)
		for time.Now().Before(waitUntil) && len(peersOf(t, a)) < fakes {
			time.Sleep(100 * time.Millisecond)
		}
	}
	testbed.Eventually(t, 15*time.Second, func() (bool, string) {
		n := len(peersOf(t, a))
		return n == fakes, fmt.Sprintf("alpha has %d peers, want the %d fakes", n, fakes)
	})
	joined := fakeLines()
	sendDatagrams(t, m.Host, byes, 1)
	testbed.Eventually(t, 15*time.Second, func() (bool, string) {
		n := len(peersOf(t, a))
		return n == 0, fmt.Sprintf("alpha has %d peers after the fakes' goodbyes", n)
	})
	time.Sleep(200 * time.Millisecond) // the last lines reach the log
	total := fakeLines()
	t.Logf("%d fake peers of %d disks joined and left: %d log lines about them (%d for the joins), %d disk events",
		fakes, disksEach, total, joined, 2*fakes*disksEach)
	// Per kind (joined, changed, lost) a burst of LinesPerMinute and as
	// many a minute, over the half minute or so the test takes when the
	// joins need a second round: a few dozen, against one line per disk
	// event (20,400) before.
	if total > 64 {
		t.Errorf("%d log lines about the fake peers, want a few dozen at most", total)
	}
	if total == 0 {
		t.Error("nothing logged about the fake peers")
	}
}

// oldCommit is a diskd from before messages carried their send time and
// generation: the compatibility test runs it against this one.
const oldCommit = "1ab4bea4d45a6627ca50276e2c12dd6fb3480b79"

// buildOld builds cmd/diskd of oldCommit, taken from the repository's
// history with git archive.
func buildOld(t *testing.T) string {
	t.Helper()
	testbed.RequireTools(t, "git", "tar")
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tarball := filepath.Join(dir, "old.tar")
	if out, err := exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tarball, oldCommit).CombinedOutput(); err != nil {
		testbed.SkipOrFail(t, "the old diskd (commit %s) is not in this repository's history: %v: %s", oldCommit[:7], err, out)
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", tarball, "-C", src).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	bin := filepath.Join(dir, "diskd-old")
	build := exec.Command("go", "build", "-o", bin, "./cmd/diskd")
	build.Dir = src
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the old diskd: %v: %s", err, out)
	}
	t.Logf("built the diskd of %s in %v", oldCommit[:7], time.Since(start).Round(time.Millisecond))
	return bin
}

// TestOldAndNewDiskdInterwork: a diskd from before the send time and the
// generation (beta) and this one (alpha), sharing a key, see each other's
// disks, alpha's in an announcement of several parts, and neither drops
// anything the other sends: the old one skips the new keys, the new one
// takes messages without them.
func TestOldAndNewDiskdInterwork(t *testing.T) {
	t.Parallel()
	old := buildOld(t)
	const count = 40 // several datagrams
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", false)
	b := addSecNode(t, lab, "beta", true)
	keyFile := writeKeys(t, 0o600, newKey(t))
	launch(t, a, append(keyed(keyFile), "--blkid", bulkBlkid(t, t.TempDir(), count, -1))...)
	b.StateDir = "" // the old diskd has no --state-dir
	d, err := b.Start(old, keyed(keyFile)...)
	if err != nil {
		t.Fatal(err)
	}
	b.d = d
	awaitPeerDisk(t, a, b)
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		n := countHost(listOf(t, b), a.HostID)
		return n == count, fmt.Sprintf("the old beta lists %d of alpha's disks, want %d", n, count)
	})
	time.Sleep(2 * time.Second) // a few more rounds each way
	for _, n := range []*node{a, b} {
		st := n.status(t)
		if len(st.Drops) != 0 {
			t.Errorf("%s dropped datagrams: %v", n.Name, st.Drops)
		}
		for _, p := range peersOf(t, n) {
			if !p.Authenticated {
				t.Errorf("%s: peer %s not authenticated", n.Name, p.Hostname)
			}
		}
	}
	if n := countHost(listOf(t, b), a.HostID); n != count {
		t.Errorf("the old beta lists %d of alpha's disks, want %d", n, count)
	}
}
