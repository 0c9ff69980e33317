package main_test

// The gossip mesh (--join, service/gossip) with real daemons on simulated
// hosts (service/testbed): three subnets behind a router that forwards
// unicast and drops multicast, a partition, keys, and hosts heard both
// ways. The daemons run with memberlist's timings as diskd ships them; the
// bounds are generous for a loaded machine, and the times measured are
// logged.

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// gossipFlags are the flags of a daemon on the mesh: fast announcements,
// the key file, no multicast, one seed.
func gossipFlags(keyFile, seed string, more ...string) []string {
	return append(append(keyed(keyFile), "--no-multicast", "--join", seed), more...)
}

// expectDisks polls until every one of nodes lists exactly want (each
// node's first disk, plus extra "host_id device" pairs), each once, and
// returns how long that took.
func expectDisks(t *testing.T, within time.Duration, nodes, want []*node, extra ...string) time.Duration {
	t.Helper()
	var keys []string
	for _, w := range want {
		keys = append(keys, w.HostID+" "+w.disk.Path)
	}
	keys = append(keys, extra...)
	slices.Sort(keys)
	start := time.Now()
	testbed.Eventually(t, within, func() (bool, string) {
		for _, n := range nodes {
			ds, err := n.list()
			if err != nil {
				return false, n.Name + ": " + err.Error()
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.HostID+" "+d.Device)
			}
			slices.Sort(got)
			if !slices.Equal(got, keys) {
				return false, fmt.Sprintf("%s lists %d disks %s, want %d", n.Name, len(got), describe(ds), len(keys))
			}
		}
		return true, ""
	})
	return time.Since(start)
}

// status --json's extra lines, where the mesh is reported.
func extraStatus(t *testing.T, n *node) map[string]string {
	t.Helper()
	var st struct {
		Extra map[string]string `json:"extra"`
	}
	if err := n.d.DoJSON("status --json", &st); err != nil {
		t.Fatal(err)
	}
	return st.Extra
}

// peerVia returns how n heard each peer, by hostname.
func peerVia(t *testing.T, n *node) map[string]string {
	t.Helper()
	var peers []struct {
		Hostname string `json:"hostname"`
		Via      string `json:"via"`
	}
	if err := n.d.DoJSON("peers --json", &peers); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range peers {
		out[p.Hostname] = p.Via
	}
	return out
}

func without(nodes []*node, gone ...*node) []*node {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return slices.Contains(gone, n) })
}

// TestGossipThreeSubnets: 15 hosts on three subnets behind a router that
// drops multicast, each joining a seed on another subnet. Every host lists
// every disk; an attached disk reaches all; a killed host is dropped by
// memberlist's failure detection, a stopped one at once (within 3 s, well
// before failure detection could); a subnet cut off for 30 s is dropped
// and, once healed, everything converges with nothing lost or duplicated.
func TestGossipThreeSubnets(t *testing.T) {
	testbed.RequireTools(t, "nft")
	lab := testbed.NewT(t)
	bin := diskdBin(t)
	var segs []*testbed.Segment
	for _, name := range []string{"a", "b", "c"} {
		s, err := lab.AddSegment(name, testbed.IPv4)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, s)
	}
	router, err := lab.AddRouter("r", segs, testbed.RouterOptions{DropMulticast: true})
	if err != nil {
		t.Fatal(err)
	}
	subnet := make([][]*node, 3)
	var all []*node
	for si, s := range segs {
		for i := range 5 {
			name := fmt.Sprintf("%s%d", s.Name, i)
			h, err := s.AddHost(name)
			if err != nil {
				t.Fatal(err)
			}
			d, err := h.AddDisk(testbed.DiskOpts{Label: strings.ToUpper(name), FSType: "ext4"})
			if err != nil {
				t.Fatal(err)
			}
			n := &node{Host: h, disk: d}
			subnet[si] = append(subnet[si], n)
			all = append(all, n)
		}
	}
	// c4 has a second disk, detached until the mesh has converged.
	late, err := subnet[2][4].AddDisk(testbed.DiskOpts{Label: "LATE", FSType: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Detach(); err != nil {
		t.Fatal(err)
	}
	keyFile := writeKeys(t, 0o600, newKey(t))
	for si := range subnet {
		seed := subnet[(si+1)%3][0].Addr // a seed on the next subnet
		for _, n := range subnet[si] {
			d, err := n.Start(bin, gossipFlags(keyFile, seed)...)
			if err != nil {
				t.Fatal(err)
			}
			n.d = d
		}
	}
	took := expectDisks(t, 30*time.Second, all, all)
	t.Logf("15 hosts on 3 subnets list all 15 disks %v after the last daemon started (target 5s)", took.Round(time.Millisecond))
	for host, via := range peerVia(t, all[0]) {
		if via != "gossip" {
			t.Errorf("a0 heard %s via %q, want gossip", host, via)
		}
	}
	if g := extraStatus(t, all[0])["Gossip"]; !strings.HasPrefix(g, "15 alive, 0 suspect, 0 dead") {
		t.Errorf("a0's status: Gossip %q, want 15 alive", g)
	}

	// An attached disk reaches every host.
	if err := late.Attach(); err != nil {
		t.Fatal(err)
	}
	lateKey := subnet[2][4].HostID + " " + late.Path
	took = expectDisks(t, 15*time.Second, all, all, lateKey)
	t.Logf("an attached disk reached all 15 hosts in %v (target 2s; includes the uevent and blkid)", took.Round(time.Millisecond))

	// A killed host is dropped by failure detection.
	killed := subnet[1][4]
	if err := killed.d.Kill(); err != nil {
		t.Fatal(err)
	}
	alive := without(all, killed)
	took = expectDisks(t, 45*time.Second, alive, alive, lateKey)
	t.Logf("a host killed with SIGKILL was dropped everywhere after %v", took.Round(time.Millisecond))

	// A stopped host says goodbye: it tells every member directly over
	// TCP before memberlist's leave, whose UDP gossip a loaded machine
	// may lose. Failure detection, the fallback, needs 4-8 s after the
	// daemon has gone (a failed probe, then 3.4-6.9 s of suspicion in a
	// mesh of 15), so a drop within 3 s of its exit is the goodbye's.
	// The lists are watched while the daemon stops (a slow shutdown on a
	// loaded machine is not the goodbye's time).
	stopped := subnet[1][3]
	alive = without(alive, stopped)
	type stopResult struct {
		at  time.Time
		err error
	}
	exited := make(chan stopResult, 1)
	var stopping sync.WaitGroup
	defer stopping.Wait()
	stopping.Go(func() {
		err := stopped.d.Stop()
		exited <- stopResult{time.Now(), err}
	})
	took = expectDisks(t, testbed.StopTimeout+3*time.Second, alive, alive, lateKey)
	droppedAt, stop := time.Now(), <-exited
	if stop.err != nil {
		t.Errorf("stopping %s: %v", stopped.Name, stop.err)
	}
	t.Logf("a stopped host was dropped everywhere %v after SIGTERM (target 1s); its daemon took %v to exit",
		took.Round(time.Millisecond), stop.at.Sub(droppedAt.Add(-took)).Round(time.Millisecond))
	if late := droppedAt.Sub(stop.at); late > 3*time.Second {
		t.Errorf("a stopped host was dropped everywhere %v after its daemon exited, want within 3s", late.Round(time.Millisecond))
	}

	// Partition: subnet c is cut off for 30 s.
	cut := subnet[2]
	if err := router.Cut(segs[2]); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	rest := without(alive, cut...)
	took = expectDisks(t, 30*time.Second, rest, rest)
	t.Logf("subnets a and b dropped subnet c's hosts %v after the cut", took.Round(time.Millisecond))
	expectDisks(t, 30*time.Second-time.Since(cutAt)+10*time.Second, cut, cut, lateKey)
	time.Sleep(time.Until(cutAt.Add(30 * time.Second)))
	if err := router.Heal(segs[2]); err != nil {
		t.Fatal(err)
	}
	took = expectDisks(t, 40*time.Second, alive, alive, lateKey)
	t.Logf("after healing a 30s partition, all 13 hosts converged in %v (target 10s)", took.Round(time.Millisecond))
	for _, n := range alive {
		if st := n.status(t); st.Drops["replay"] != 0 {
			t.Errorf("%s counted %d replays: %v", n.Name, st.Drops["replay"], st.Drops)
		}
	}
}

// gossipLAN adds hosts of these names, one ext4 disk each, to one segment.
func gossipLAN(t *testing.T, names ...string) []*node {
	t.Helper()
	lab := testbed.NewT(t)
	var nodes []*node
	for _, name := range names {
		h, err := lab.AddHost(name)
		if err != nil {
			t.Fatal(err)
		}
		d, err := h.AddDisk(testbed.DiskOpts{Label: strings.ToUpper(name), FSType: "ext4"})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &node{Host: h, disk: d})
	}
	return nodes
}

// TestGossipKeys: a host with another key cannot join the mesh and sees
// nothing of it; the keys rotate in two rolling steps (add the new key
// second, then make it first) with every host listing every disk after
// each restart, and the two hosts not restarted never losing each other.
func TestGossipKeys(t *testing.T) {
	t.Parallel()
	nodes := gossipLAN(t, "alpha", "beta", "gamma", "mallory")
	a, mallory := nodes[0], nodes[3]
	mesh := nodes[:3]
	// Each joins the next, so that every one can be restarted.
	seed := func(n *node) string { return mesh[(slices.Index(mesh, n)+1)%3].Addr }
	oldKey, newKey2 := newKey(t), newKey(t)
	step0 := writeKeys(t, 0o600, oldKey)
	for _, n := range mesh {
		launch(t, n, gossipFlags(step0, seed(n))...)
	}
	launch(t, mallory, gossipFlags(writeKeys(t, 0o600, newKey(t)), a.Addr)...)
	took := expectDisks(t, 20*time.Second, mesh, mesh)
	t.Logf("three hosts converged in %v", took.Round(time.Millisecond))
	expectDisks(t, 5*time.Second, []*node{mallory}, []*node{mallory})
	if s := extraStatus(t, mallory)["Gossip seeds"]; !strings.Contains(s, "unreachable") {
		t.Errorf("mallory's status: Gossip seeds %q, want its seed unreachable", s)
	}

	for i, keys := range [][][]byte{{oldKey, newKey2}, {newKey2, oldKey}} {
		file := writeKeys(t, 0o600, keys...)
		for _, n := range mesh {
			others := without(mesh, n)
			if err := n.d.Stop(); err != nil {
				t.Errorf("stopping %s: %v", n.Name, err)
			}
			// The two others keep each other while one is restarted.
			for _, o := range others {
				for _, p := range others {
					if ok, desc := o.has(p); !ok {
						t.Errorf("rotation step %d: with %s down, %s lost %s: %s", i+1, n.Name, o.Name, p.Name, desc)
					}
				}
			}
			launch(t, n, gossipFlags(file, seed(n))...)
			took := expectDisks(t, 20*time.Second, mesh, mesh)
			t.Logf("rotation step %d: %s back in every list after %v", i+1, n.Name, took.Round(time.Millisecond))
		}
	}
	expectDisks(t, time.Second, []*node{mallory}, []*node{mallory})
	expectDisks(t, time.Second, mesh, mesh)
}

// TestGossipAndMulticast: hosts on one LAN with multicast and the mesh
// list each host once and show it heard both ways; the second copy of
// a message is counted as a duplicate, never a replay.
func TestGossipAndMulticast(t *testing.T) {
	t.Parallel()
	nodes := gossipLAN(t, "alpha", "beta", "gamma")
	keyFile := writeKeys(t, 0o600, newKey(t))
	for _, n := range nodes {
		launch(t, n, append(keyed(keyFile), "--join", nodes[0].Addr)...)
	}
	expectDisks(t, 20*time.Second, nodes, nodes)
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		for _, n := range nodes {
			via := peerVia(t, n)
			if len(via) != 2 {
				return false, fmt.Sprintf("%s's peers: %v", n.Name, via)
			}
			for host, v := range via {
				if v != "both" {
					return false, fmt.Sprintf("%s heard %s via %q, want both", n.Name, host, v)
				}
			}
		}
		return true, ""
	})
	expectDisks(t, time.Second, nodes, nodes)
	for _, n := range nodes {
		if st := n.status(t); st.Drops["replay"] != 0 {
			t.Errorf("%s's drops %v: want no replay", n.Name, st.Drops)
		}
	}
}
