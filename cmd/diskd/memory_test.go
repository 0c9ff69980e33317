package main_test

// Tests of diskd's memory (service/store through service/memory): real
// daemons on simulated hosts, real bbolt files in each host's state
// directory (testbed gives every host one in the lab directory).

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

func doJSON[T any](t *testing.T, n *node, cmd string) T {
	t.Helper()
	var v T
	if err := n.d.DoJSON(cmd, &v); err != nil {
		t.Fatalf("%s on %s: %v", cmd, n.Name, err)
	}
	return v
}

func doText(t *testing.T, n *node, cmd string) string {
	t.Helper()
	lines, err := n.d.Do(cmd)
	if err != nil {
		t.Fatalf("%s on %s: %v", cmd, n.Name, err)
	}
	return strings.Join(lines, "\n")
}

// sinceAgo is a find line from its time on ("2026-12-02 02:10 UTC, gone:
// detached"): the part that does not move with the clock.
func sinceAgo(line string) string {
	parts := strings.Split(line, ", ")
	if len(parts) < 2 {
		return line
	}
	return strings.Join(parts[len(parts)-2:], ", ")
}

func TestDetachedDiskIsRemembered(t *testing.T) {
	t.Parallel()
	dbustest.Require(t)
	bus := dbustest.System(t, dbustest.File(t, "packaging/dbus/org.diskd.conf"))
	aFlags := []string{"--bus", bus.Address, "--return-after", "1s"}
	a, b, c := lab3(t, aFlags...)
	awaitPeerDisk(t, a, b)
	awaitPeerDisk(t, a, c)
	if err := b.disk.Detach(); err != nil {
		t.Fatal(err)
	}
	detached := time.Now()

	want := "BETA-1 is not attached anywhere now; last seen on beta (" + b.disk.Path + ") "
	var line string
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		line = doText(t, a, "find BETA-1")
		return strings.HasPrefix(line, want) && strings.HasSuffix(line, ", gone: detached"), line
	})
	t.Logf("find BETA-1 on alpha: %s", line)
	check := func(when string) {
		t.Helper()
		ds := doJSON[[]disk](t, a, "find --json BETA-1")
		if len(ds) != 1 {
			t.Fatalf("%s: find --json BETA-1 = %+v, want one disk", when, ds)
		}
		d := ds[0]
		if d.Present || d.GoneReason != "detached" || d.Hostname != "beta" || d.Device != b.disk.Path ||
			d.HostID != b.HostID || d.GoneAt.Before(d.LastSeen) || d.GoneAt.Before(detached.Add(-time.Second)) {
			t.Errorf("%s: find --json BETA-1 = %+v", when, d)
		}
		hs := doJSON[[]diskstate.Sighting](t, a, "history --json BETA-1")
		if len(hs) == 0 || hs[0].Hostname != "beta" || hs[0].Device != b.disk.Path || hs[0].Reason != "detached" {
			t.Errorf("%s: history --json BETA-1 = %+v", when, hs)
		}
		all := doText(t, a, "list --all")
		if !strings.Contains(all, "LAST-SEEN") || !strings.Contains(all, "(detached)") || !strings.Contains(all, "BETA-1") {
			t.Errorf("%s: list --all:\n%s", when, all)
		}
		// The present disks are answered as before.
		if got := doJSON[[]disk](t, a, "find --json GAMMA-1"); len(got) != 1 || !got[0].Present {
			t.Errorf("%s: find --json GAMMA-1 = %+v, want gamma's present disk", when, got)
		}
	}
	check("before the restart")

	// Alpha restarts: the same answer, from the store.
	if err := a.d.Stop(); err != nil {
		t.Fatal(err)
	}
	d, err := a.Start(diskdBin(t), append(fastFlags(), aFlags...)...)
	if err != nil {
		t.Fatal(err)
	}
	a.d = d
	after := doText(t, a, "find BETA-1")
	awaitPeerDisk(t, a, c) // the network again, after the restart
	if !strings.HasPrefix(after, want) || sinceAgo(after) != sinceAgo(line) {
		t.Errorf("after alpha's restart find BETA-1 = %q, want %q", after, line)
	}
	check("after the restart")

	// Beta's disk comes back: present again, and DiskAppeared on alpha's
	// bus says it returned, and where it was.
	client, err := dbusapi.Dial(context.Background(), bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sigs := make(chan *dbus.Signal, 64)
	w, err := client.Watch(context.Background(), sigs)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // --return-after 1s
	if err := b.disk.Attach(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-sigs:
			ev, ok, err := w.Parse(s)
			if err != nil || !ok || ev.Signal != dbusapi.SignalDiskAppeared || ev.Disk.Label != "BETA-1" {
				continue
			}
			if !ev.Disk.Returned || ev.Disk.PreviousHostname != "beta" || ev.Disk.PreviousDevice != b.disk.Path ||
				ev.Disk.PreviousLastSeen.IsZero() || !ev.Disk.Present {
				t.Errorf("DiskAppeared of BETA-1 = %+v, want returned from beta %s", ev.Disk, b.disk.Path)
			}
			if ds := doJSON[[]disk](t, a, "find --json BETA-1"); len(ds) != 1 || !ds[0].Present || ds[0].Hostname != "beta" {
				t.Errorf("after the re-attach find --json BETA-1 = %+v, want it present on beta", ds)
			}
			return
		case <-deadline:
			t.Fatalf("no DiskAppeared of BETA-1 on alpha's bus within 10s; alpha lists %s", describe(listOf(t, a)))
		}
	}
}

func TestSecondDaemonOnStateDir(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, "alpha")
	a := nodes[0]
	a.startDefault(t)
	other := filepath.Join(a.Lab().Dir, "second.sock")
	cmd := a.Command(diskdBin(t), "-d", "--host-id", a.HostID, "--hostname", "alpha2", "--socket", other,
		"--interface", testbed.Interface, "--bus", "none", "--state-dir", a.StateDir, "--device", "/nonexistent")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := exitWithin(t, cmd, 15*time.Second, "the second daemon")
	code := cmd.ProcessState.ExitCode()
	msg := strings.TrimSpace(stderr.String())
	if code != 1 || strings.Count(msg, "\n") != 0 ||
		!strings.Contains(msg, "state directory "+a.StateDir+" is in use by another diskd") {
		t.Errorf("second daemon: %v, status %d, stderr %q; want status 1 and one line naming the directory", err, code, msg)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("the second daemon created its control socket %s", other)
	}
	if _, err := a.d.Do("status"); err != nil {
		t.Errorf("the first daemon stopped answering: %v", err)
	}
}

func TestCorruptStoreIsMovedAside(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, "alpha")
	a := nodes[0]
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 64<<10)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.StateDir, "diskd.db"), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	a.startDefault(t)
	testbed.Eventually(t, 5*time.Second, func() (bool, string) { return a.has(a) })
	if n := strings.Count(a.d.Log(), "state file cannot be used"); n != 1 {
		t.Errorf("the log reports the unusable file %d times, want once:\n%s", n, a.d.Log())
	}
	aside, _ := filepath.Glob(filepath.Join(a.StateDir, "diskd.db.corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("files moved aside: %v, want one diskd.db.corrupt-*", aside)
	}
	if b, err := os.ReadFile(aside[0]); err != nil || !slices.Equal(b, junk) {
		t.Errorf("%s does not hold the old bytes (%v)", aside[0], err)
	}
	// The new store works: a restart remembers alpha's disk.
	if err := a.d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.disk.Detach(); err != nil {
		t.Fatal(err)
	}
	a.startDefault(t)
	if line := doText(t, a, "find ALPHA-1"); !strings.HasPrefix(line, "ALPHA-1 is not attached anywhere now; last seen on alpha") {
		t.Errorf("find ALPHA-1 after the restart = %q", line)
	}
	if n := strings.Count(a.d.Log(), "state file cannot be used"); n != 1 {
		t.Errorf("after a restart the log reports an unusable file %d times in all, want once", n)
	}
}

// churn makes fake peers come and go on h's network until stop is closed:
// hosts announce changing disks (a new UUID now and then), say bye and
// come back, in rounds of forged datagrams.
func churn(t *testing.T, h *testbed.Host, stop <-chan struct{}) {
	seq := uint64(time.Now().UnixMicro())
	rng := mrand.New(mrand.NewPCG(1, 2))
	gen := 0
	for round := 0; ; round++ {
		select {
		case <-stop:
			return
		default:
		}
		var grams [][]byte
		for p := range 40 {
			seq++
			id := fmt.Sprintf("fake%02d", p)
			if rng.IntN(10) == 0 {
				g, err := wire.Encode(wire.Message{Kind: wire.KindBye, HostID: id, Hostname: id,
					BootID: "b1", Seq: seq, Interval: time.Second}, 0, nil)
				if err != nil {
					t.Error(err)
					return
				}
				grams = append(grams, g...)
				continue
			}
			var disks []diskstate.Disk
			for i := range 4 {
				if rng.IntN(3) == 0 {
					continue // detached this round
				}
				uuid := fmt.Sprintf("%s-%d-%d", id, i, gen)
				if rng.IntN(20) == 0 {
					gen++ // a new filesystem
				}
				disks = append(disks, diskstate.Disk{Device: "/dev/sd" + string(rune('b'+i)) + "1", UUID: uuid,
					Label: "FAKE-" + strconv.Itoa(p) + "-" + strconv.Itoa(i), Type: "ext4"})
			}
			g, err := wire.Encode(wire.Message{Kind: wire.KindAnnounce, HostID: id, Hostname: id,
				BootID: "b1", Seq: seq, Interval: time.Second, Disks: disks}, 0, nil)
			if err != nil {
				t.Error(err)
				return
			}
			grams = append(grams, g...)
		}
		p := startSend(t, h, grams, 0)
		<-p.done
		if p.err != nil {
			t.Errorf("churn sender: %v\n%s", p.err, p.out.String())
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestKilledDuringChurn(t *testing.T) {
	// Not parallel: it floods a daemon, and beside the other floods a loaded
	// machine drops datagrams before they are counted.
	nodes := newNodes(t, "alpha", "beta", "mallory")
	a, b, m := nodes[0], nodes[1], nodes[2]
	launch(t, b, fastFlags()...)
	launch(t, a)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() { churn(t, m.Host, stop) })
	wg.Go(func() { // beta's disk comes and goes
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			var err error
			if b.disk.Attached() {
				err = b.disk.Detach()
			} else {
				err = b.disk.Attach()
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	})

	rng := mrand.New(mrand.NewPCG(3, 4))
	keys := func() map[string]bool {
		out := map[string]bool{}
		for _, d := range doJSON[[]disk](t, a, "list --all --json") {
			out[d.HostID+"|"+d.Device+"|"+d.UUID] = true
		}
		return out
	}
	total := 0
	for i := range 20 {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		before := keys()
		// Past the store's flush interval (1s) and its commit: what was
		// known then is committed; the kill comes at a random moment
		// after.
		time.Sleep(time.Duration(2000+rng.IntN(1000)) * time.Millisecond)
		if err := a.d.Kill(); err != nil {
			t.Fatal(err)
		}
		d, err := a.Start(diskdBin(t))
		if err != nil {
			t.Fatalf("restart %d after SIGKILL: %v", i+1, err)
		}
		a.d = d
		after := keys()
		var lost []string
		for k := range before {
			if !after[k] {
				lost = append(lost, k)
			}
		}
		if len(lost) > 0 {
			t.Fatalf("restart %d: %d of %d remembered disks lost, e.g. %v", i+1, len(lost), len(before), lost[:min(3, len(lost))])
		}
		total = len(after)
	}
	if strings.Contains(a.d.Log(), "state file cannot be used") {
		t.Errorf("a store was found damaged after a SIGKILL:\n%s", a.d.Log())
	}
	if aside, _ := filepath.Glob(filepath.Join(a.StateDir, "diskd.db.*")); len(aside) > 0 {
		t.Errorf("files beside the store: %v", aside)
	}
	if total < 100 {
		t.Errorf("only %d disks remembered after the churn; the churn did not reach alpha", total)
	}
	t.Logf("20 SIGKILLs during churn; %d disks remembered at the end", total)
}

func TestReplayAfterRestartIsRefused(t *testing.T) {
	t.Parallel()
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", false)
	b := addSecNode(t, lab, "beta", true)
	m := addSecNode(t, lab, "mallory", false)
	keyFile, ring := sharedKey(t)

	capt := startCapture(t, m.Host)
	launch(t, b, keyed(keyFile)...)
	launch(t, a, keyed(keyFile)...)
	awaitPeerDisk(t, a, b)
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		n := 0
		for _, msg := range decodeAll(t, capt.from(t, b.Addr), ring) {
			if msg.Kind == wire.KindAnnounce && len(msg.Disks) > 0 {
				n++
			}
		}
		return n >= 3, fmt.Sprintf("captured %d announcements of beta", n)
	})
	if err := b.d.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	capt.stop()
	captured := capt.from(t, b.Addr)
	// Alpha accepted everything captured; its store has beta's mark
	// within a second.
	time.Sleep(1500 * time.Millisecond)

	replay := func(when string) bool {
		t.Helper()
		sendDatagrams(t, m.Host, payloads(captured), 0)
		shown, _ := testbed.Poll(5*time.Second, func() (bool, string) {
			ds := listOf(t, a)
			return findDisk(ds, b) != nil, describe(ds)
		})
		return shown
	}

	// Without its memory a restarted alpha falls for the replay (so the
	// capture is good) ...
	if err := a.d.Stop(); err != nil {
		t.Fatal(err)
	}
	launch(t, a, append(keyed(keyFile), "--state-dir", "none")...)
	if !replay("without a store") {
		t.Fatalf("the captured datagrams (%d) did not show beta's disk on an alpha without memory: a useless capture", len(captured))
	}
	// ... and with it, never.
	if err := a.d.Stop(); err != nil {
		t.Fatal(err)
	}
	launch(t, a, keyed(keyFile)...)
	if replay("with the store") {
		t.Errorf("after a restart alpha accepted the replay of %d captured datagrams: beta's disk is shown present", len(captured))
	}
	if ps := peersOf(t, a); findPeer(ps, b.HostID) != nil {
		t.Errorf("beta is a peer again after the replay")
	}
	st := a.status(t)
	if st.Drops["replay"] == 0 {
		t.Errorf("alpha counted no replays: %+v", st.Drops)
	}
}
