package main_test

// The core scenarios on one link (a remote disk seen, a detached disk and a
// stopped or killed peer leaving, garbage dropped, sealed datagrams),
// written once over the family and run on an IPv4-only link and on an
// IPv6-only one (three hosts without an IPv4 address, daemons given
// --group [ff15::d15c]:4277); and a dual-stack host between an IPv4-only and an IPv6-only one. netFamily,
// ipv4, ipv6 and group6 come from routed_test.go; node, disk, findDisk,
// fastFlags, launch, keyed, writeKeys, newKey, garbage and the status
// helpers from integration_test.go and security_test.go.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// linkOf builds alpha, beta and gamma, one ext4 disk each, on a segment of
// the family. No daemon is started.
func linkOf(t *testing.T, f netFamily) (a, b, c *node) {
	t.Helper()
	lab := testbed.NewT(t)
	seg := lab.AddSegmentT(t, "link", f.fam)
	nodes := addNodes(t, seg.AddHost, "alpha", "beta", "gamma")
	return nodes[0], nodes[1], nodes[2]
}

// startAll starts beta, gamma, then alpha with fastFlags, the family's
// flags and each one's extra flags.
func startAll(t *testing.T, f netFamily, a, b, c *node, aFlags, bFlags, cFlags []string) {
	t.Helper()
	for _, s := range []struct {
		n     *node
		flags []string
	}{{b, bFlags}, {c, cFlags}, {a, aFlags}} {
		launch(t, s.n, slices.Concat(fastFlags(), f.flags(), s.flags)...)
	}
}

// linkScenarios are the core integration scenarios, for any family.
var linkScenarios = []struct {
	name string
	run  func(t *testing.T, f netFamily)
}{
	{"remote disk seen", func(t *testing.T, f netFamily) {
		a, b, c := linkOf(t, f)
		startAll(t, f, a, b, c, nil, nil, nil)
		took := awaitPeerDisk(t, a, b)
		awaitPeerDisk(t, a, c)
		awaitPeerDisk(t, c, a)
		t.Logf("beta's disk in alpha's list after %v", ms(took))
		ds := listOf(t, a)
		d := findDisk(ds, b)
		if d.Hostname != "beta" || d.Label != "BETA-1" || d.Type != "ext4" || d.Local || d.UUID == "" || d.LastSeen.IsZero() {
			t.Errorf("beta's disk as alpha sees it: %+v", *d)
		}
		if own := findDisk(ds, a); own == nil || !own.Local || own.Hostname != "alpha" || own.Label != "ALPHA-1" {
			t.Errorf("alpha's own disk: %+v", own)
		}
		p := findPeer(peersOf(t, a), b.HostID)
		if p == nil || p.Address != f.addr(b.Host) || p.Authenticated {
			t.Errorf("beta among alpha's peers: %+v, want address %s, unauthenticated", p, f.addr(b.Host))
		}

		// All of the contract's keys are there.
		lines, err := a.d.Do("list --json")
		if err != nil {
			t.Fatal(err)
		}
		var raw []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(strings.Join(lines, "\n")), &raw); err != nil {
			t.Fatal(err)
		}
		for _, obj := range raw {
			for _, k := range []string{"host_id", "hostname", "device", "uuid", "partuuid", "label", "type", "mountpoints", "local", "last_seen"} {
				if _, ok := obj[k]; !ok {
					t.Errorf("disk object lacks %q: %s", k, lines)
				}
			}
		}

		// The human table shows it too.
		human, err := a.d.Do("list")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(human, "\n"), "BETA-1") {
			t.Errorf("list has no BETA-1:\n%s", strings.Join(human, "\n"))
		}
	}},
	{"detached disk leaves", func(t *testing.T, f netFamily) {
		a, b, c := linkOf(t, f)
		startAll(t, f, a, b, c, nil, nil, nil)
		awaitPeerDisk(t, a, b)
		if err := b.disk.Detach(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			ok, desc := a.has(b)
			return !ok, desc
		})
		t.Logf("detached disk left alpha's list after %v", ms(time.Since(start)))
		if ok, desc := b.has(b); ok {
			t.Errorf("beta still lists its detached disk: %s", desc)
		}
	}},
	{"stopped peer leaves at once", func(t *testing.T, f netFamily) {
		a, b, c := linkOf(t, f)
		// With a 30s peer timeout only beta's bye can explain a quick exit.
		startAll(t, f, a, b, c, []string{"--peer-timeout", "30s"}, nil, nil)
		awaitPeerDisk(t, a, b)
		if err := b.d.Stop(); err != nil {
			t.Errorf("beta on SIGTERM: %v", err)
		}
		start := time.Now()
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			ok, desc := a.has(b)
			return !ok, desc
		})
		t.Logf("stopped peer's disk left after %v", ms(time.Since(start)))
		if p := findPeer(peersOf(t, a), b.HostID); p != nil {
			t.Logf("note: alpha still lists beta in peers after its bye: %+v", *p)
		}
	}},
	{"killed peer times out", func(t *testing.T, f netFamily) {
		a, b, c := linkOf(t, f)
		startAll(t, f, a, b, c, []string{"--peer-timeout", "3s"}, nil, nil)
		awaitPeerDisk(t, a, b)
		took := killAndTimeOut(t, a, b)
		t.Logf("killed peer's disk left after %v (peer timeout 3s)", ms(took))
	}},
	{"garbage dropped and counted", garbageDroppedAndCounted},
	{"sealed with a key", func(t *testing.T, f netFamily) {
		a, b, c := linkOf(t, f)
		key := writeKeys(t, 0o600, newKey(t))
		sealed := []string{"--key-file", key}
		// alpha and beta share a key; gamma has none.
		startAll(t, f, a, b, c, sealed, sealed, nil)
		awaitPeerDisk(t, a, b)
		awaitPeerDisk(t, b, a)
		if p := findPeer(peersOf(t, a), b.HostID); p == nil || !p.Authenticated || p.Address != f.addr(b.Host) {
			t.Errorf("beta among alpha's peers: %+v, want authenticated at %s", p, f.addr(b.Host))
		}
		testbed.Eventually(t, 5*time.Second, func() (bool, string) {
			da, dc := a.status(t).Drops, c.status(t).Drops
			return da["unsealed"] >= 2 && dc["sealed"] >= 2,
				fmt.Sprintf("alpha's drops %v (want unsealed ≥ 2), gamma's %v (want sealed ≥ 2)", da, dc)
		})
		if ok, desc := a.has(c); ok {
			t.Errorf("alpha (keyed) lists keyless gamma's disk: %s", desc)
		}
		if ok, desc := c.has(a); ok {
			t.Errorf("keyless gamma lists alpha's sealed disk: %s", desc)
		}
	}},
}

// TestLink runs the core scenarios on an IPv4-only link and on an
// IPv6-only one.
func TestLink(t *testing.T) {
	t.Parallel()
	for _, f := range []netFamily{ipv4, ipv6} {
		for _, s := range linkScenarios {
			t.Run(f.name+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				s.run(t, f)
			})
		}
	}
}

// TestDualStack: on one link, a dual-stack host (both groups) sits between
// an IPv4-only host and an IPv6-only one. Both see its disks and it sees
// theirs, each peer at the address of the family it speaks; the IPv4-only
// and IPv6-only hosts do not see each other. A second dual-stack host gets
// every datagram twice (once per family) and keeps one: nothing is dropped
// as a replay. The IPv4-only host, given both groups, warns once that e0
// has no IPv6 address and works on IPv4.
func TestDualStack(t *testing.T) {
	t.Parallel()
	lab := testbed.NewT(t)
	seg := lab.AddSegmentT(t, "link", testbed.DualStack)
	add := func(name string, fam testbed.Family) *node {
		return addNodes(t, func(name string) (*testbed.Host, error) {
			return lab.AddHostWith(name, testbed.HostOptions{Segment: seg, Family: fam})
		}, name)[0]
	}
	dual, dual2 := add("dual", testbed.DualStack), add("dual2", testbed.DualStack)
	four, six := add("four", testbed.IPv4), add("six", testbed.IPv6)
	both := slices.Concat(fastFlags(), []string{"--group", group, "--group", group6})
	launch(t, four, both...)
	launch(t, six, slices.Concat(fastFlags(), []string{"--group", group6})...)
	launch(t, dual2, both...)
	launch(t, dual, both...)

	for _, pair := range [][2]*node{
		{dual, four}, {dual, six}, {dual, dual2}, {four, dual}, {six, dual}, {dual2, dual}, {four, dual2}, {six, dual2},
	} {
		awaitPeerDisk(t, pair[0], pair[1])
	}
	ps := peersOf(t, dual)
	for _, c := range []struct {
		n    *node
		addr string
	}{{four, four.Addr}, {six, six.Addr6}} {
		if p := findPeer(ps, c.n.HostID); p == nil || p.Address != c.addr {
			t.Errorf("%s among dual's peers: %+v, want address %s", c.n.Name, p, c.addr)
		}
	}
	// A few announcements later: the single-family hosts still do not
	// hear each other, and no copy was taken for a replay.
	time.Sleep(2500 * time.Millisecond)
	if ok, desc := four.has(six); ok {
		t.Errorf("the IPv4-only host lists the IPv6-only host's disk: %s", desc)
	}
	if ok, desc := six.has(four); ok {
		t.Errorf("the IPv6-only host lists the IPv4-only host's disk: %s", desc)
	}
	for _, n := range []*node{dual, dual2, four, six} {
		st := n.status(t)
		t.Logf("%s: %d peers, packets_in %d, drops %v", n.Name, st.Peers, st.PacketsIn, st.Drops)
		if st.PacketsDropped != 0 {
			t.Errorf("%s dropped %d datagrams: %v", n.Name, st.PacketsDropped, st.Drops)
		}
	}
	const warning = `interface e0 has no IPv6 address; not used for [ff15::d15c]:4277`
	if log := four.d.Log(); strings.Count(log, warning) != 1 {
		t.Errorf("the IPv4-only host's log has %d warnings %q, want 1:\n%s", strings.Count(log, warning), warning, log)
	}
	// No other warning, but for the one a slow machine may cause: a first
	// blkid that takes longer than the grace to answer clients.
	for _, n := range []*node{dual, dual2, six} {
		for line := range strings.Lines(n.d.Log()) {
			if strings.Contains(line, "WARN") && !strings.Contains(line, "the first scan is still running") {
				t.Errorf("%s warned: %s\nlog:\n%s", n.Name, strings.TrimSpace(line), n.d.Log())
				break
			}
		}
	}
	if !strings.Contains(dual.d.Log(), "payload_budget=1452") {
		t.Errorf("dual's budget is not the IPv6 one of a 1500-byte link (1452):\n%s", dual.d.Log())
	}
}

// TestIPv6NoUsableGroupRefused: a daemon whose groups no interface can
// carry (the default IPv4 group on an IPv6-only host, the IPv6 group on an
// IPv4-only one) does not start: exit status 1 and one line on stderr
// naming the group and the interface.
func TestIPv6NoUsableGroupRefused(t *testing.T) {
	t.Parallel()
	lab := testbed.NewT(t)
	bin := diskdBin(t)
	seg := lab.AddSegmentT(t, "link", testbed.DualStack)
	for _, c := range []struct {
		host  string
		fam   testbed.Family
		flags []string
		want  string
	}{
		{"six", testbed.IPv6, nil,
			"diskd: no interface can carry group 239.255.77.77:4277: interface e0 has no IPv4 address\n"},
		{"four", testbed.IPv4, []string{"--group", group6},
			"diskd: no interface can carry group [ff15::d15c]:4277: interface e0 has no IPv6 address\n"},
	} {
		h := lab.AddHostWithT(t, c.host, testbed.HostOptions{Segment: seg, Family: c.fam})
		cmd := h.Command(bin, append([]string{"-d", "--host-id", h.HostID, "--socket", h.Socket, "--interface", testbed.Interface,
			"--bus", "none", "--state-dir", h.StateDir, "--device", "/nonexistent"}, c.flags...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if code != 1 || lines[len(lines)-1]+"\n" != c.want {
			t.Errorf("%s: exit status %d, stderr:\n%s\nwant status 1 and the last line\n%s", c.host, code, stderr.String(), c.want)
		}
	}
}

// garbageDroppedAndCounted: 1000 random datagrams from gamma are each
// dropped and counted once by alpha, under the reason the drops add up to;
// alpha keeps answering and keeps beta's disk.
func garbageDroppedAndCounted(t *testing.T, f netFamily) {
	a, b, c := linkOf(t, f)
	startAll(t, f, a, b, c, nil, nil, nil)
	awaitPeerDisk(t, a, b)
	before := a.status(t)
	// In batches of 50, each let through before the next: a daemon
	// built with -race on a loaded machine is slow, and what its socket
	// buffer cannot hold would be lost before it could be counted.
	const n, batch = 1000, 50
	all := garbage(rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), n)
	for sent := 0; sent < n; sent += batch {
		if err := c.Send(f.group, 1, all[sent:sent+batch]); err != nil {
			t.Fatal(err)
		}
		last, still := uint64(0), time.Now()
		for {
			d := a.status(t).PacketsDropped - before.PacketsDropped
			if d >= uint64(sent+batch) || time.Since(still) > 2*time.Second {
				break
			}
			if d != last {
				last, still = d, time.Now()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		d := a.status(t).PacketsDropped - before.PacketsDropped
		return d >= 900, fmt.Sprintf("packets_dropped grew by %d", d)
	})
	time.Sleep(300 * time.Millisecond)
	after := a.status(t)
	dropped := after.PacketsDropped - before.PacketsDropped
	t.Logf("packets_dropped +%d, packets_in +%d, drops %v", dropped, after.PacketsIn-before.PacketsIn, after.Drops)
	if dropped > n {
		t.Errorf("packets_dropped grew by %d for %d garbage datagrams", dropped, n)
	}
	var sum uint64
	for _, v := range after.Drops {
		sum += v
	}
	if sum != after.PacketsDropped {
		t.Errorf("drops %v add up to %d, packets_dropped is %d", after.Drops, sum, after.PacketsDropped)
	}
	if _, err := a.d.DoTimeout("list", time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a couple of announcements later
	if ok, desc := a.has(b); !ok {
		t.Fatalf("beta's disk gone after the garbage: %s", desc)
	}
}
