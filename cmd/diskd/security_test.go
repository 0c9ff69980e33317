package main_test

// Security tests against the real daemon on simulated hosts
// (service/testbed): forged and tampered datagrams, replays of captured
// traffic, key rotation, the key file's mode, a flood, terminal escapes in
// labels, the peer cap, and a 600-disk host whose announcement comes in
// parts. Mallory, where there is one, is a host without a daemon: the tests
// run helper processes there (see TestHelperProcess in integration_test.go)
// to capture what the daemons multicast and to send forgeries and replays.
// The helpers node, disk, findDisk, describe, fastFlags, awaitPeerDisk and
// diskdBin come from integration_test.go.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

// addSecNode adds a host to lab, with one ext4 disk labelled NAME-1 when
// withDisk. No daemon is started.
func addSecNode(t *testing.T, lab *testbed.Lab, name string, withDisk bool) *node {
	t.Helper()
	n := &node{Host: lab.AddHostT(t, name)}
	if withDisk {
		n.disk = nameDisk(t, n.Host)
	}
	return n
}

// launch starts diskd on n with flags.
func launch(t *testing.T, n *node, flags ...string) {
	t.Helper()
	d, err := n.Start(diskdBin(t), flags...)
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
}

// keyed returns fastFlags with --key-file path.
func keyed(path string) []string { return append(fastFlags(), "--key-file", path) }

// newKey returns 32 random bytes.
func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, wire.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeys writes a key file in the documented format (a comment, then
// one standard-base64 key a line, the first sealing) with the given mode,
// in a directory of its own.
func writeKeys(t *testing.T, mode os.FileMode, keys ...[]byte) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# diskd keyring: the first key seals, every key opens\n\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "# key %d\n%s\n", i+1, base64.StdEncoding.EncodeToString(k))
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(b.String()), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

func ringOf(t *testing.T, keys ...[]byte) *wire.Keyring {
	t.Helper()
	k, err := wire.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sharedKey writes a new key to a key file (0600) and returns the file
// and the keyring of that key, for a test that seals as the daemons do.
func sharedKey(t *testing.T) (keyFile string, ring *wire.Keyring) {
	t.Helper()
	key := newKey(t)
	return writeKeys(t, 0o600, key), ringOf(t, key)
}

// forge encodes m into datagrams (sealed with ring unless it is nil) of
// budget bytes at most (0: wire.DefaultBudget).
func forge(t *testing.T, m wire.Message, budget int, ring *wire.Keyring) [][]byte {
	t.Helper()
	grams, err := wire.Encode(m, budget, ring)
	if err != nil {
		t.Fatal(err)
	}
	return grams
}

// payloads returns the bytes of each datagram.
func payloads(ds []datagram) [][]byte {
	out := make([][]byte, len(ds))
	for i, d := range ds {
		out[i] = d.b
	}
	return out
}

// decodeAll decodes captured datagrams; every one must decode.
func decodeAll(t *testing.T, ds []datagram, ring *wire.Keyring) []wire.Message {
	t.Helper()
	out := make([]wire.Message, len(ds))
	for i, d := range ds {
		m, err := wire.Decode(d.b, ring)
		if err != nil {
			t.Fatalf("captured datagram %d from %s: %v", i, d.src, err)
		}
		out[i] = m
	}
	return out
}

// grown returns the drop reasons whose count grew from before to after,
// with how much.
func grown(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for r, v := range after {
		if v > before[r] {
			out[r] = v - before[r]
		}
	}
	return out
}

// peerEntry is one entry of `peers --json`.
type peerEntry struct {
	HostID          string    `json:"host_id"`
	Hostname        string    `json:"hostname"`
	Address         string    `json:"address"`
	BootID          string    `json:"boot_id"`
	Disks           int       `json:"disks"`
	LastHeard       time.Time `json:"last_heard"`
	IntervalSeconds float64   `json:"interval_seconds"`
	TimeoutSeconds  float64   `json:"timeout_seconds"`
	Authenticated   bool      `json:"authenticated"`
}

func peersOf(t *testing.T, n *node) []peerEntry {
	t.Helper()
	var ps []peerEntry
	if err := n.d.DoJSON("peers --json", &ps); err != nil {
		t.Fatal(err)
	}
	return ps
}

func findPeer(ps []peerEntry, hostID string) *peerEntry {
	for i := range ps {
		if ps[i].HostID == hostID {
			return &ps[i]
		}
	}
	return nil
}

func listOf(t *testing.T, n *node) []disk {
	t.Helper()
	ds, err := n.list()
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// view is a disk list without its times, for comparing lists.
func view(ds []disk) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%v|%v",
			d.HostID, d.Hostname, d.Device, d.UUID, d.PartUUID, d.Label, d.Type, d.Mountpoints, d.Local))
	}
	slices.Sort(out)
	return out
}

// peerView is a peer list without its times.
func peerView(ps []peerEntry) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s|%s|%s|%s|%d|%v", p.HostID, p.Hostname, p.Address, p.BootID, p.Disks, p.Authenticated))
	}
	slices.Sort(out)
	return out
}

// countHost returns how many disks of hostID ds holds.
func countHost(ds []disk, hostID string) int {
	n := 0
	for _, d := range ds {
		if d.HostID == hostID {
			n++
		}
	}
	return n
}

// memKiB returns a "kB" field of /proc/PID/status, such as VmRSS or VmHWM.
func memKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if v, err := strconv.Atoi(f[0]); err == nil {
					return v
				}
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// awaitLastHeardAfter waits (≤ 3s) until a's entry for p was last heard
// after t0: p's honest datagrams are still accepted.
func awaitLastHeardAfter(t *testing.T, a, p *node, t0 time.Time) {
	t.Helper()
	testbed.Eventually(t, 15*time.Second, func() (bool, string) { // generous: a loaded machine
		e := findPeer(peersOf(t, a), p.HostID)
		if e == nil {
			return false, fmt.Sprintf("%s is not among %s's peers", p.Name, a.Name)
		}
		return e.LastHeard.After(t0), fmt.Sprintf("%s last heard %s at %v, want after %v", p.Name, a.Name, e.LastHeard, t0)
	})
}

// TestForgedDatagramsChangeNothing: alpha and beta share a key; mallory has
// none (or a wrong one) and sends well-formed announcements, goodbyes and
// pings that claim beta's host id, unsealed and sealed with a wrong key, a
// new host's announcement, and tampered copies of beta's real sealed
// datagrams. Alpha's list and peers do not change, every datagram is
// counted as unsealed or auth, and beta's next honest announcements are
// still accepted (so no forged sequence number was taken).
func TestForgedDatagramsChangeNothing(t *testing.T) {
	t.Parallel()
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", true)
	m := addSecNode(t, lab, "mallory", false)
	keyFile := writeKeys(t, 0o600, newKey(t))

	capt := startCapture(t, m.Host)
	launch(t, b, keyed(keyFile)...)
	launch(t, a, keyed(keyFile)...)
	awaitPeerDisk(t, a, b)
	var genuine []datagram
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		genuine = capt.from(t, b.Addr)
		return len(genuine) >= 2, fmt.Sprintf("captured %d datagrams of beta", len(genuine))
	})
	capt.stop()
	genuine = capt.from(t, b.Addr)

	listBefore, peersBefore := listOf(t, a), peersOf(t, a)
	bp := findPeer(peersBefore, b.HostID)
	if bp == nil || !bp.Authenticated {
		t.Fatalf("beta among alpha's peers: %+v", bp)
	}
	bDisk := findDisk(listBefore, b)

	wrong := ringOf(t, newKey(t))
	const huge = uint64(1) << 62
	asBeta := func(kind wire.Kind, boot string, seq uint64, disks ...diskstate.Disk) wire.Message {
		return wire.Message{Kind: kind, HostID: b.HostID, Hostname: "beta", BootID: boot, Seq: seq,
			Interval: time.Second, Disks: disks}
	}
	forgeries := []wire.Message{
		// change beta's disk and add one
		asBeta(wire.KindAnnounce, bp.BootID, huge,
			diskstate.Disk{Device: b.disk.Path, UUID: bDisk.UUID, Label: "FORGED", Type: "ext4"},
			diskstate.Disk{Device: "/dev/forged", UUID: "f0f0", Label: "FORGED-NEW", Type: "ext4"}),
		// remove beta's disks
		asBeta(wire.KindAnnounce, bp.BootID, huge+1),
		asBeta(wire.KindAnnounce, "forged-boot", ^uint64(0)),
		// remove beta
		asBeta(wire.KindBye, bp.BootID, huge+2),
		asBeta(wire.KindBye, "forged-boot", ^uint64(0)),
		// take beta's sequence number forward
		asBeta(wire.KindPing, bp.BootID, huge+3),
		// add a host
		{Kind: wire.KindAnnounce, HostID: "forged-host", Hostname: "forged", BootID: "forged-boot", Seq: 1,
			Interval: time.Hour, Disks: []diskstate.Disk{{Device: "/dev/sdz1", UUID: "feed", Label: "FORGED-HOST"}}},
	}
	var unsealed, badKey [][]byte
	for _, f := range forgeries {
		unsealed = append(unsealed, forge(t, f, 0, nil)...)
		badKey = append(badKey, forge(t, f, 0, wrong)...)
	}
	// Tampered copies of beta's real datagrams: a flipped tag byte, a
	// flipped nonce byte, the sealed flag cleared.
	var tampered [][]byte
	for _, d := range genuine {
		tag := bytes.Clone(d.b)
		tag[len(tag)-1] ^= 1
		nonce := bytes.Clone(d.b)
		nonce[wire.HeaderSize] ^= 0x80
		flag := bytes.Clone(d.b)
		flag[5] &^= wire.FlagSealed
		tampered = append(tampered, tag, nonce, flag)
	}
	wantUnsealed := uint64(len(unsealed) + len(genuine))
	wantAuth := uint64(len(badKey) + 2*len(genuine))

	aBefore, bBefore := a.status(t), b.status(t)
	all := slices.Concat(unsealed, badKey, tampered)
	sendDatagrams(t, m.Host, all, 0)
	sent := time.Now()
	t.Logf("mallory sent %d forged datagrams (%d unsealed, %d with a wrong key, %d tampered copies of beta's %d real ones)",
		len(all), len(unsealed), len(badKey), len(tampered), len(genuine))

	for _, n := range []*node{a, b} {
		before := aBefore
		if n == b {
			before = bBefore
		}
		var g map[string]uint64
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			g = grown(before.Drops, n.status(t).Drops)
			return g["unsealed"] >= wantUnsealed && g["auth"] >= wantAuth,
				fmt.Sprintf("%s's drops grew by %v, want unsealed +%d, auth +%d", n.Name, g, wantUnsealed, wantAuth)
		})
		time.Sleep(100 * time.Millisecond)
		g = grown(before.Drops, n.status(t).Drops)
		t.Logf("%s's drops grew by %v", n.Name, g)
		if len(g) != 2 || g["unsealed"] != wantUnsealed || g["auth"] != wantAuth {
			t.Errorf("%s's drops grew by %v, want exactly unsealed +%d, auth +%d", n.Name, g, wantUnsealed, wantAuth)
		}
	}

	// Beta's next announcement is accepted: no forged sequence number
	// (2^62 and up) was taken for beta's.
	awaitLastHeardAfter(t, a, b, sent)
	listAfter, peersAfter := listOf(t, a), peersOf(t, a)
	if got, want := view(listAfter), view(listBefore); !slices.Equal(got, want) {
		t.Errorf("alpha's list changed:\nbefore %s\nafter  %s", describe(listBefore), describe(listAfter))
	}
	if got, want := peerView(peersAfter), peerView(peersBefore); !slices.Equal(got, want) {
		t.Errorf("alpha's peers changed:\nbefore %v\nafter  %v", want, got)
	}
	if g := grown(aBefore.Drops, a.status(t).Drops); g["replay"] != 0 {
		t.Errorf("alpha dropped %d of beta's honest datagrams as replays", g["replay"])
	}
}

// TestReplayedAnnouncementsChangeNothing: mallory records beta's real
// (sealed) datagrams on the wire, then replays all of them after beta's
// disk was detached, and again after beta was SIGKILLed and expired.
// Alpha never shows the disk or the host again, and counts every replayed
// datagram as a replay.
func TestReplayedAnnouncementsChangeNothing(t *testing.T) {
	t.Parallel()
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", false)
	m := addSecNode(t, lab, "mallory", false)
	keyFile, ring := sharedKey(t)

	// Beta's disk. Once detached, its loop device number is free for any
	// other test on the machine to take, and a daemon watching that number
	// would show their disk. So beta watches a symbolic link to the device,
	// removed with the detach, and the lab keeps the disk in mallory's
	// books (mallory runs no daemon, so no --device names the number).
	var err error
	if b.disk, err = m.AddDisk(testbed.DiskOpts{Label: "BETA-1", FSType: "ext4"}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "beta-disk")
	if err := os.Symlink(b.disk.Path, link); err != nil {
		t.Fatal(err)
	}

	capt := startCapture(t, m.Host)
	launch(t, b, append(keyed(keyFile), "--device", link)...)
	launch(t, a, keyed(keyFile)...)
	awaitPeerDisk(t, a, b)
	withDisk := func() int {
		n := 0
		for _, msg := range decodeAll(t, capt.from(t, b.Addr), ring) {
			if msg.Kind == wire.KindAnnounce && slices.ContainsFunc(msg.Disks, func(d diskstate.Disk) bool { return d.Device == b.disk.Path }) {
				n++
			}
		}
		return n
	}
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		n := withDisk()
		return n >= 2, fmt.Sprintf("captured %d announcements of beta with its disk", n)
	})

	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := b.disk.Detach(); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		ok, desc := a.has(b)
		return !ok, desc
	})
	capt.stop()
	stopped := time.Now()
	captured := capt.from(t, b.Addr)
	kinds := map[wire.Kind]int{}
	for _, msg := range decodeAll(t, captured, ring) {
		kinds[msg.Kind]++
	}
	t.Logf("captured %d datagrams of beta: %v, %d announcements with the disk", len(captured), kinds, withDisk())
	// Beta announces again: alpha's last sequence number for beta is newer
	// than anything captured (which reached alpha within 100ms).
	awaitLastHeardAfter(t, a, b, stopped.Add(100*time.Millisecond))

	replay := func(when string) {
		t.Helper()
		before := a.status(t)
		listBefore := listOf(t, a)
		sendDatagrams(t, m.Host, payloads(captured), 0)
		var g map[string]uint64
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			g = grown(before.Drops, a.status(t).Drops)
			return g["replay"] >= uint64(len(captured)), fmt.Sprintf("%s: alpha's drops grew by %v, want replay +%d", when, g, len(captured))
		})
		time.Sleep(300 * time.Millisecond)
		g = grown(before.Drops, a.status(t).Drops)
		t.Logf("%s: replayed %d datagrams; alpha's drops grew by %v", when, len(captured), g)
		if len(g) != 1 || g["replay"] != uint64(len(captured)) {
			t.Errorf("%s: alpha's drops grew by %v, want exactly replay +%d", when, g, len(captured))
		}
		ds := listOf(t, a)
		if d := findDisk(ds, b); d != nil {
			t.Errorf("%s: the replay brought beta's detached disk back: %s", when, describe(ds))
		}
		if got, want := view(ds), view(listBefore); !slices.Equal(got, want) {
			t.Errorf("%s: alpha's list changed:\nbefore %s\nafter  %s", when, describe(listBefore), describe(ds))
		}
	}
	replay("after the detach")
	if findPeer(peersOf(t, a), b.HostID) == nil {
		t.Fatal("beta is no longer among alpha's peers while it runs")
	}

	if err := b.d.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testbed.Eventually(t, 6*time.Second, func() (bool, string) {
		return findPeer(peersOf(t, a), b.HostID) == nil, "beta still among alpha's peers"
	})
	t.Logf("beta expired from alpha's peers %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	replay("after beta expired")
	if p := findPeer(peersOf(t, a), b.HostID); p != nil {
		t.Errorf("the replay brought beta back among alpha's peers: %+v", *p)
	}
	if n := countHost(listOf(t, a), b.HostID); n != 0 {
		t.Errorf("alpha lists %d disks of the expired beta after the replay", n)
	}
}

// TestKeyRotation: during a rotation, hosts holding [old, new] and [old]
// see each other, and so do [new, old] and [old, new]. A host that already
// dropped the old key ([new]) hears only those that seal with the new one.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	bothSee := func(t *testing.T, x, y *node) {
		t.Helper()
		awaitPeerDisk(t, x, y)
		awaitPeerDisk(t, y, x)
		for _, pair := range [][2]*node{{x, y}, {y, x}} {
			p := findPeer(peersOf(t, pair[0]), pair[1].HostID)
			if p == nil || !p.Authenticated {
				t.Errorf("%s among %s's peers: %+v", pair[1].Name, pair[0].Name, p)
			}
		}
	}
	t.Run("[old,new] and [old]", func(t *testing.T) {
		t.Parallel()
		lab := testbed.NewT(t)
		oldKey, newKey := newKey(t), newKey(t)
		x := addSecNode(t, lab, "alpha", true)
		y := addSecNode(t, lab, "beta", true)
		launch(t, y, keyed(writeKeys(t, 0o600, oldKey))...)
		launch(t, x, keyed(writeKeys(t, 0o600, oldKey, newKey))...)
		bothSee(t, x, y)
		for _, n := range []*node{x, y} {
			if d := n.status(t).Drops; len(d) != 0 {
				t.Errorf("%s dropped datagrams: %v", n.Name, d)
			}
		}
	})
	t.Run("[new,old] and [old,new]", func(t *testing.T) {
		t.Parallel()
		lab := testbed.NewT(t)
		oldKey, newKey := newKey(t), newKey(t)
		x := addSecNode(t, lab, "alpha", true)
		y := addSecNode(t, lab, "beta", true)
		z := addSecNode(t, lab, "gamma", true)
		launch(t, y, keyed(writeKeys(t, 0o600, oldKey, newKey))...)
		launch(t, x, keyed(writeKeys(t, 0o600, newKey, oldKey))...)
		launch(t, z, keyed(writeKeys(t, 0o600, newKey))...)
		bothSee(t, x, y)
		for _, n := range []*node{x, y} {
			if d := n.status(t).Drops; len(d) != 0 {
				t.Errorf("%s dropped datagrams: %v", n.Name, d)
			}
		}
		// gamma ([new]) hears alpha (seals with new), and beta hears gamma,
		// but gamma cannot open what beta seals with the old key.
		awaitPeerDisk(t, z, x)
		awaitPeerDisk(t, y, z)
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			d := z.status(t).Drops
			return d["auth"] >= 2, fmt.Sprintf("gamma's drops %v, want auth ≥ 2", d)
		})
		if ok, desc := z.has(y); ok {
			t.Errorf("gamma ([new]) lists beta's disk sealed with the old key: %s", desc)
		}
		t.Logf("gamma ([new]) drops: %v", z.status(t).Drops)
	})
}

// TestKeyFileReadableByOthersRefused: a key file that group or others can
// read makes the daemon refuse to start: one line on stderr naming the
// file and its mode, exit status 1, no control socket.
func TestKeyFileReadableByOthersRefused(t *testing.T) {
	t.Parallel()
	lab := testbed.NewT(t)
	h := addSecNode(t, lab, "alpha", false)
	for _, mode := range []os.FileMode{0o644, 0o640} {
		keyFile := writeKeys(t, mode, newKey(t))
		// In alpha's namespace, so that nothing could ever reach the
		// machine's own network, should the daemon start after all.
		cmd := h.Command(diskdBin(t), "-d", "--host-id", h.HostID, "--hostname", h.Name, "--socket", h.Socket,
			"--interface", testbed.Interface, "--bus", "none", "--state-dir", h.StateDir, "--key-file", keyFile)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := exitWithin(t, cmd, 10*time.Second, fmt.Sprintf("mode %04o: the daemon", mode))
		status := 0
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		msg := stderr.String()
		t.Logf("mode %04o: exit status %d, stderr %q", mode, status, msg)
		want := fmt.Sprintf("diskd: key file %s: mode %04o lets group or others read it; run chmod 600 %s\n", keyFile, mode, keyFile)
		if status != 1 || msg != want || stdout.Len() != 0 {
			t.Errorf("mode %04o: exit status %d, stdout %q, stderr %q; want status 1 and stderr %q", mode, status, stdout.String(), msg, want)
		}
		if _, err := os.Stat(h.Socket); err == nil {
			t.Errorf("mode %04o: the refused daemon created its control socket", mode)
		}
	}
}

// floodDatagrams returns n datagrams, half of them garbage (see garbage)
// and half forged: well-formed announcements, goodbyes and pings claiming
// victim's host id or random ones, unsealed, sealed with the wrong key, or
// a random body behind a sealed header, shuffled.
func floodDatagrams(t *testing.T, rng *mrand.Rand, n int, victim *node, wrong *wire.Keyring) [][]byte {
	t.Helper()
	grams := garbage(rng, n/2)
	disk := diskstate.Disk{Device: "/dev/sdq1", UUID: "0badc0de", Label: "FLOOD", Type: "ext4"}
	for i := len(grams); i < n; i++ {
		host := victim.HostID
		if i%3 == 0 {
			host = fmt.Sprintf("flood-%06d", i)
		}
		msg := wire.Message{Kind: wire.KindAnnounce, HostID: host, Hostname: "flood", BootID: "flood-boot",
			Seq: rng.Uint64(), Interval: time.Second, Disks: []diskstate.Disk{disk}}
		switch i % 5 {
		case 1:
			msg.Kind, msg.Disks = wire.KindBye, nil
		case 2:
			msg.Kind, msg.Disks = wire.KindPing, nil
		}
		switch i % 4 {
		case 0, 1:
			grams = append(grams, forge(t, msg, 0, wrong)...)
		case 2:
			grams = append(grams, forge(t, msg, 0, nil)...)
		default:
			b := randomBytes(rng, 40+rng.IntN(400))
			copy(b, "DSKD\x01\x01")
			grams = append(grams, b)
		}
	}
	rng.Shuffle(len(grams), func(i, j int) { grams[i], grams[j] = grams[j], grams[i] })
	return grams
}

// TestFloodKeepsDaemonResponsive: 100,000 garbage and forged datagrams from
// mallory leave alpha answering `list` within a second throughout, its
// resident memory bounded, and beta (announcing every second, default peer
// timeout) among its peers the whole time.
func TestFloodKeepsDaemonResponsive(t *testing.T) {
	// Not parallel: it floods a daemon, and beside the other floods a loaded
	// machine drops datagrams before they are counted.
	const (
		n          = 100_000
		pace       = 25 // datagrams between 1ms pauses
		maxLatency = time.Second
		maxGrowth  = 64 << 10 // KiB
	)
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", true)
	m := addSecNode(t, lab, "mallory", false)
	keyFile := writeKeys(t, 0o600, newKey(t))
	launch(t, b, keyed(keyFile)...)
	launch(t, a, keyed(keyFile)...)
	awaitPeerDisk(t, a, b)
	t0 := time.Now()
	grams := floodDatagrams(t, mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())), n, b, ringOf(t, newKey(t)))
	t.Logf("made %d datagrams in %v", len(grams), time.Since(t0).Round(time.Millisecond))
	listBefore := listOf(t, a)
	stBefore := a.status(t)
	pid := a.d.PID()
	rssBefore := memKiB(t, pid, "VmRSS")

	start := time.Now()
	sender := startSend(t, m.Host, grams, pace)
	var (
		samples, slow int
		maxLat        time.Duration
		lats          []time.Duration
		maxRSS        = rssBefore
		missing       []string
	)
	for running := true; running; {
		select {
		case <-sender.done:
			running = false
		case <-time.After(100 * time.Millisecond):
		}
		t0 := time.Now()
		_, err := a.d.DoTimeout("list", 5*time.Second)
		lat := time.Since(t0)
		samples++
		lats = append(lats, lat)
		maxLat = max(maxLat, lat)
		if err != nil || lat >= maxLatency {
			slow++
			t.Errorf("list at %v into the flood: %v after %v", t0.Sub(start).Round(time.Millisecond), err, lat.Round(time.Millisecond))
		}
		if findPeer(peersOf(t, a), b.HostID) == nil {
			missing = append(missing, t0.Sub(start).Round(time.Millisecond).String())
		}
		maxRSS = max(maxRSS, memKiB(t, pid, "VmRSS"))
	}
	sender.wait(t)
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // the receiver catches up
	rssAfter, hwm := memKiB(t, pid, "VmRSS"), memKiB(t, pid, "VmHWM")
	stAfter := a.status(t)
	in := stAfter.PacketsIn - stBefore.PacketsIn
	dropped := stAfter.PacketsDropped - stBefore.PacketsDropped
	g := grown(stBefore.Drops, stAfter.Drops)
	slices.Sort(lats)
	t.Logf("flood: %d datagrams from mallory in %v (with the sender's start-up); alpha: packets_in +%d, dropped +%d %v",
		len(grams), took.Round(time.Millisecond), in, dropped, g)
	t.Logf("list during the flood: %d samples, median %v, max %v", samples, lats[len(lats)/2].Round(time.Microsecond), maxLat.Round(time.Microsecond))
	t.Logf("alpha's VmRSS: before %s, max sampled %s, after %s (growth %s); VmHWM %s",
		mib(rssBefore), mib(maxRSS), mib(rssAfter), mib(rssAfter-rssBefore), mib(hwm))

	if len(missing) > 0 {
		t.Errorf("beta missing from alpha's peers at %v into the flood", missing)
	}
	if samples < 5 {
		t.Errorf("only %d list samples during the flood", samples)
	}
	if growth := max(rssAfter, maxRSS) - rssBefore; growth > maxGrowth {
		t.Errorf("alpha's resident memory grew by %s, more than %s", mib(growth), mib(maxGrowth))
	}
	if in < n/4 {
		t.Errorf("alpha received only %d of %d datagrams: the flood did not arrive", in, n)
	}
	for r := range g {
		switch r {
		case "replay", "peercap", "self":
			t.Errorf("drops %q grew by %d: forged datagrams reached the inventory", r, g[r])
		}
	}
	awaitLastHeardAfter(t, a, b, time.Now())
	listAfter := listOf(t, a)
	if got, want := view(listAfter), view(listBefore); !slices.Equal(got, want) {
		t.Errorf("alpha's list changed:\nbefore %s\nafter  %s", describe(listBefore), describe(listAfter))
	}
}

// rawControl reports whether s holds a byte or rune a terminal could act
// on: a C0 control, DEL, a C1 control or a bidi override.
func rawControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
	})
}

// TestEscapedLabels: labels with terminal escape sequences (ESC[2J and an
// OSC title sequence) on beta's real ext4 disks, and an announcement from
// mallory whose strings are full of them, are shown escaped by `list` and
// `peers` (no raw control character, \x1b visible) and exact in `list
// --json`; the log has no raw ESC either.
func TestEscapedLabels(t *testing.T) {
	t.Parallel()
	const (
		eraseLabel = "\x1b[2Jx"         // erase the screen
		titleLabel = "\x1b]0;pwned\x07" // OSC: set the window title
	)
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", false)
	m := addSecNode(t, lab, "mallory", false)
	var devs []string
	for _, label := range []string{eraseLabel, titleLabel} {
		d := b.AddDiskT(t, testbed.DiskOpts{Label: label, FSType: "ext4"})
		devs = append(devs, d.Path)
	}
	launch(t, b, fastFlags()...)
	launch(t, a, fastFlags()...)

	evil := wire.Message{Kind: wire.KindAnnounce, HostID: "evil-host", Hostname: "evil\x1b]0;owned\x07\x1b[2J",
		BootID: "evil-boot", Seq: 1, Interval: time.Hour, Disks: []diskstate.Disk{{
			Device: "/dev/\x1b[31mred", UUID: "u\nOK", Label: "\u009b2J\u202eevil\r", Type: "ext4\x7f",
			Mountpoints: []string{"/mnt/\x1b[1mbold\tx"},
		}}}
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		ds := listOf(t, a)
		n := countHost(ds, b.HostID)
		return n == 2, fmt.Sprintf("alpha lists %d of beta's 2 disks: %s", n, describe(ds))
	})
	sendDatagrams(t, m.Host, forge(t, evil, 0, nil), 0)
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		ds := listOf(t, a)
		return countHost(ds, "evil-host") == 1, "alpha does not list evil-host's disk"
	})

	// JSON: exact, with control characters escaped by JSON itself.
	want := map[string]string{devs[0]: eraseLabel, devs[1]: titleLabel, evil.Disks[0].Device: evil.Disks[0].Label}
	for _, n := range []*node{a, b} {
		lines, err := n.d.Do("list --json")
		if err != nil {
			t.Fatal(err)
		}
		// JSON escapes C0 controls itself (C1, DEL and bidi characters it
		// keeps: they are exact, and they are not what a terminal obeys).
		if raw := strings.Join(lines, "\n"); strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 }) || len(lines) != 1 {
			t.Errorf("%s: list --json has raw C0 control characters or is not one line: %q", n.Name, raw)
		}
		for _, d := range listOf(t, n) {
			if w, ok := want[d.Device]; ok && d.Label != w {
				t.Errorf("%s: list --json: %s has label %q, want %q", n.Name, d.Device, d.Label, w)
			}
			if d.HostID == "evil-host" && (d.Hostname != evil.Hostname || d.UUID != evil.Disks[0].UUID ||
				d.Type != evil.Disks[0].Type || !slices.Equal(d.Mountpoints, evil.Disks[0].Mountpoints)) {
				t.Errorf("%s: list --json: evil-host's disk not exact: %+v", n.Name, d)
			}
		}
	}

	// Human: escaped.
	check := func(n *node, cmd string, rows int, visible ...string) {
		t.Helper()
		lines, err := n.d.Do(cmd)
		if err != nil {
			t.Fatal(err)
		}
		out := strings.Join(lines, "\n")
		t.Logf("%s on %s:\n%s", cmd, n.Name, out)
		for _, line := range lines {
			if rawControl(line) {
				t.Errorf("%s on %s: raw control characters in %q", cmd, n.Name, line)
			}
		}
		if len(lines) != rows+1 {
			t.Errorf("%s on %s: %d lines, want a header and %d rows: %q", cmd, n.Name, len(lines), rows, out)
		}
		for _, v := range visible {
			if !strings.Contains(out, v) {
				t.Errorf("%s on %s: no %s in %q", cmd, n.Name, v, out)
			}
		}
	}
	check(a, "list", 4, `\x1b[2Jx`, `\x1b]0;pwned\x07`, `/dev/\x1b[31mred`, `\u009b2J\u202eevil\r`, `u\nOK`, `ext4\x7f`, `/mnt/\x1b[1mbold\tx`)
	check(b, "list", 4, `\x1b[2Jx`, `\x1b]0;pwned\x07`, `/dev/\x1b[31mred`)
	check(a, "peers", 2, `evil\x1b]0;owned\x07\x1b[2J`)

	log, err := os.ReadFile(a.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(log, "\x1b\x07") {
		t.Errorf("alpha's log has a raw ESC or BEL")
	}
	// diskctl's side (the same labels through D-Bus, escaped in its tables,
	// exact in --json) is cmd/diskctl's TestSameAnswersAsControlSocket.
}

// TestPeerCap: announcements of 10,000 fake hosts from mallory stop at the
// default cap of 4096 peers (beta, heard before, among them and still
// heard), the rest counted as peercap, alpha's memory bounded.
func TestPeerCap(t *testing.T) {
	// Not parallel: it floods a daemon, and beside the other floods a loaded
	// machine drops datagrams before they are counted.
	const (
		fakes     = 10_000
		maxPeers  = 4096 // inventory.DefaultMaxPeers
		maxGrowth = 64 << 10
	)
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", true)
	m := addSecNode(t, lab, "mallory", false)
	launch(t, b, fastFlags()...)
	// alpha's memory is measured: without -race, whose shadow memory
	// would be measured too.
	d, err := a.Start(testbed.BuildPlainDiskd(t), fastFlags()...)
	if err != nil {
		t.Fatal(err)
	}
	a.d = d
	awaitPeerDisk(t, a, b)

	var grams [][]byte
	for i := range fakes {
		id := fmt.Sprintf("fake-%05d", i)
		grams = append(grams, forge(t, wire.Message{Kind: wire.KindAnnounce, HostID: id, Hostname: id, BootID: "fake-boot",
			Seq: 1, Interval: wire.MaxInterval, Disks: []diskstate.Disk{{Device: "/dev/sdf1", UUID: id, Label: "FAKE", Type: "ext4"}}},
			0, nil)...)
	}
	pid := a.d.PID()
	rssBefore := memKiB(t, pid, "VmRSS")
	before := a.status(t)
	took := sendDatagrams(t, m.Host, grams, 0)
	// Wait until alpha has read everything: packets_in stops growing.
	var after status
	last := uint64(0)
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		time.Sleep(200 * time.Millisecond)
		after = a.status(t)
		settled := after.PacketsIn == last && after.Peers == maxPeers
		last = after.PacketsIn
		return settled, fmt.Sprintf("alpha: %d peers, packets_in %d", after.Peers, after.PacketsIn)
	})
	rssAfter := memKiB(t, pid, "VmRSS")
	capped := after.Drops["peercap"] - before.Drops["peercap"]
	t.Logf("%d fake hosts' announcements sent in %v; alpha: %d peers, packets_in +%d, drops grew by %v",
		fakes, took.Round(time.Millisecond), after.Peers, after.PacketsIn-before.PacketsIn, grown(before.Drops, after.Drops))
	t.Logf("alpha's VmRSS: before %s, after %s (growth %s)", mib(rssBefore), mib(rssAfter), mib(rssAfter-rssBefore))

	ps := peersOf(t, a)
	if len(ps) != maxPeers || after.Peers != maxPeers {
		t.Errorf("alpha has %d peers (status: %d), want the cap %d", len(ps), after.Peers, maxPeers)
	}
	if findPeer(ps, b.HostID) == nil {
		t.Error("beta, heard before the fake hosts, is no longer among alpha's peers")
	}
	if capped == 0 || capped > fakes-(maxPeers-1) {
		t.Errorf("peercap drops grew by %d, want 1..%d", capped, fakes-(maxPeers-1))
	}
	if growth := rssAfter - rssBefore; growth > maxGrowth {
		t.Errorf("alpha's resident memory grew by %s, more than %s", mib(growth), mib(maxGrowth))
	}
	start := time.Now()
	ds := listOf(t, a)
	t.Logf("list --json of %d disks took %v", len(ds), time.Since(start).Round(time.Millisecond))
	if n := countHost(ds, b.HostID); n != 1 {
		t.Errorf("alpha lists %d disks of beta, want 1", n)
	}
	// Beta's own announcements still go through.
	awaitLastHeardAfter(t, a, b, time.Now())
}

// blkidScript is a blkid that prints, whatever it is asked, the file OUT.
const blkidScript = "#!/bin/sh\nexec cat OUT\n"

// TestSixHundredDisks: beta's blkid (a script) reports 600 disks; alpha
// lists all 600, each datagram beta sent fits its payload budget, and a
// copy of beta's announcement with one part missing, injected from mallory
// with a fresh sequence number, changes nothing.
func TestSixHundredDisks(t *testing.T) {
	t.Parallel()
	const count = 600
	lab := testbed.NewT(t)
	a := addSecNode(t, lab, "alpha", true)
	b := addSecNode(t, lab, "beta", false) // no --device: blkid's answer is taken as it is
	m := addSecNode(t, lab, "mallory", false)

	dir := t.TempDir()
	var out strings.Builder
	for i := range count {
		fmt.Fprintf(&out, "DEVNAME=/dev/fake%03d\nLABEL=BULK-%03d\nUUID=0b5e55ed-0000-4000-8000-%012d\nBLOCK_SIZE=4096\nTYPE=ext4\nPARTUUID=c0ffee00-%02d\n\n",
			i, i, i, i%100)
	}
	outFile := filepath.Join(dir, "blkid.out")
	script := filepath.Join(dir, "blkid")
	if err := os.WriteFile(outFile, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(blkidScript, "OUT", outFile)), 0o755); err != nil {
		t.Fatal(err)
	}

	capt := startCapture(t, m.Host)
	launch(t, b, append(fastFlags(), "--blkid", script)...)
	launch(t, a, fastFlags()...)
	start := time.Now()
	// Generous bounds: on a loaded machine (CI under -race) a 40-datagram
	// announcement can lose a part in a full socket buffer and wait for
	// the next round.
	testbed.Eventually(t, 30*time.Second, func() (bool, string) {
		n := countHost(listOf(t, a), b.HostID)
		return n == count, fmt.Sprintf("alpha lists %d of beta's disks", n)
	})
	t.Logf("alpha lists beta's %d disks %v after start", count, time.Since(start).Round(time.Millisecond))
	if st := a.status(t); st.PacketsDropped != 0 {
		t.Errorf("alpha dropped %d datagrams: %v", st.PacketsDropped, st.Drops)
	}

	// Every datagram beta sent fits the payload budget it logged (MTU less
	// IPv4 and UDP headers: no fragmentation).
	match := regexp.MustCompile(`payload_budget=(\d+)`).FindStringSubmatch(b.d.Log())
	if match == nil {
		t.Fatal("beta logged no payload_budget")
	}
	budget, _ := strconv.Atoi(match[1])
	// A complete announcement: all parts of one sequence number.
	var sets map[uint64][]wire.Message
	var complete uint64
	testbed.Eventually(t, 30*time.Second, func() (bool, string) {
		sets = map[uint64][]wire.Message{}
		for _, msg := range decodeAll(t, capt.from(t, b.Addr), nil) {
			if msg.Kind == wire.KindAnnounce {
				sets[msg.Seq] = append(sets[msg.Seq], msg)
			}
		}
		for seq, parts := range sets {
			if len(parts) == parts[0].Parts && seq > complete {
				complete = seq
			}
		}
		return complete != 0, fmt.Sprintf("no complete announcement of beta captured among %d", len(sets))
	})
	capt.stop()
	captured := capt.from(t, b.Addr)
	minSize, maxSize, total := 1<<30, 0, 0
	for _, d := range captured {
		minSize, maxSize, total = min(minSize, len(d.b)), max(maxSize, len(d.b)), total+len(d.b)
		if len(d.b) > budget {
			t.Errorf("beta sent a datagram of %d bytes, budget %d", len(d.b), budget)
		}
	}
	parts := sets[complete]
	slices.SortFunc(parts, func(x, y wire.Message) int { return x.Part - y.Part })
	var disks []diskstate.Disk
	for _, p := range parts {
		disks = append(disks, p.Disks...)
	}
	t.Logf("beta (payload budget %d): %d datagrams captured, %d to %d bytes (%d in all); one announcement of %d disks is %d parts",
		budget, len(captured), minSize, maxSize, total, len(disks), len(parts))
	if len(disks) != count {
		t.Fatalf("beta's announcement carries %d disks, want %d", len(disks), count)
	}

	// Injections with a fresh sequence number, each with its middle part
	// left out: as beta (in a boot id of its own, so that beta's own parts
	// cannot fill the gap) with every label changed, and as a new host. A
	// whole copy as a third host shows that injection works.
	forged := slices.Clone(disks)
	for i := range forged {
		forged[i].Label = "FORGED-" + strconv.Itoa(i)
	}
	inject := func(host string, boot string, disks []diskstate.Disk, skip int) [][]byte {
		grams := forge(t, wire.Message{Kind: wire.KindAnnounce, HostID: host, Hostname: "beta", BootID: boot,
			Seq: complete + 1<<40, Interval: time.Second, Disks: disks}, budget, nil)
		if skip >= 0 {
			grams = slices.Delete(grams, skip, skip+1)
		}
		return grams
	}
	mid := len(parts) / 2
	listBefore := listOf(t, a)
	before := a.status(t)
	grams := slices.Concat(inject(b.HostID, "forged-boot", forged, mid), inject("ghost-600", "ghost-boot", forged, mid),
		inject("whole-600", "whole-boot", disks, -1))
	sendDatagrams(t, m.Host, grams, 1) // 1 ms apart: a one-shot injection must not overflow alpha's socket buffer
	sent := time.Now()
	testbed.Eventually(t, 30*time.Second, func() (bool, string) { // generous: a loaded machine
		n := countHost(listOf(t, a), "whole-600")
		return n == count, fmt.Sprintf("alpha lists %d disks of whole-600, the complete injection", n)
	})
	awaitLastHeardAfter(t, a, b, sent)
	ds := listOf(t, a)
	if n := countHost(ds, "ghost-600"); n != 0 {
		t.Errorf("alpha lists %d disks of ghost-600, whose announcement missed a part", n)
	}
	if findPeer(peersOf(t, a), "ghost-600") != nil {
		t.Error("ghost-600, whose announcement missed a part, is among alpha's peers")
	}
	var beta, beforeBeta []disk
	for _, d := range ds {
		if d.HostID == b.HostID {
			beta = append(beta, d)
		}
	}
	for _, d := range listBefore {
		if d.HostID == b.HostID {
			beforeBeta = append(beforeBeta, d)
		}
	}
	if got, want := view(beta), view(beforeBeta); !slices.Equal(got, want) {
		t.Errorf("beta's disks changed in alpha's list after an announcement with a missing part (%d disks now)", len(beta))
	}
	if g := grown(before.Drops, a.status(t).Drops); len(g) != 0 {
		t.Errorf("alpha's drops grew by %v: beta's honest announcements were refused after the injection", g)
	}

	// Beta's captured announcement, replayed whole, is refused, and each of
	// its datagrams counts as a replay.
	var old [][]byte
	for _, d := range captured {
		if msg, err := wire.Decode(d.b, nil); err == nil && msg.Kind == wire.KindAnnounce && msg.Seq == complete {
			old = append(old, d.b)
		}
	}
	before = a.status(t)
	sendDatagrams(t, m.Host, old, 0)
	var g map[string]uint64
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		g = grown(before.Drops, a.status(t).Drops)
		return g["replay"] >= uint64(len(old)), fmt.Sprintf("alpha's drops grew by %v, want replay +%d", g, len(old))
	})
	time.Sleep(200 * time.Millisecond)
	g = grown(before.Drops, a.status(t).Drops)
	t.Logf("beta's announcement of %d parts replayed: alpha's drops grew by %v", len(old), g)
	if len(g) != 1 || g["replay"] != uint64(len(old)) {
		t.Errorf("alpha's drops grew by %v after a replay of %d parts, want replay +%d", g, len(old), len(old))
	}
	if got := countHost(listOf(t, a), b.HostID); got != count {
		t.Errorf("alpha lists %d of beta's disks after the replay, want %d", got, count)
	}
}
