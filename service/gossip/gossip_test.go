package gossip_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/gossip"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

// node is one diskd host on loopback: an inventory, the peer protocol and
// a gossip transport.
type node struct {
	name string
	inv  *inventory.Inventory
	svc  *peer.Service
	tr   *gossip.Transport
	stop func()
}

// fast timings keep the tests short on a loaded machine.
var fast = gossip.Timing{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond,
	Gossip: 50 * time.Millisecond, PushPull: 2 * time.Second, Reconnect: 300 * time.Millisecond,
	JoinRetryMin: 100 * time.Millisecond, JoinRetryMax: 500 * time.Millisecond}

func start(t *testing.T, name string, port int, keys [][]byte, seeds ...string) *node {
	t.Helper()
	return startTimed(t, name, port, keys, fast, seeds...)
}

func startTimed(t *testing.T, name string, port int, keys [][]byte, timing gossip.Timing, seeds ...string) *node {
	t.Helper()
	var ring *wire.Keyring
	if keys != nil {
		var err error
		if ring, err = wire.NewKeyring(keys...); err != nil {
			t.Fatal(err)
		}
	}
	n := &node{name: name, inv: inventory.New(inventory.Options{HostID: name, Hostname: name})}
	n.inv.SetLocal([]diskstate.Disk{{Device: "/dev/" + name, UUID: "u-" + name, Type: "ext4"}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	announce := func() {
		once.Do(func() {}) // keeps the closure simple for the race detector
		go func() {
			if ctx.Err() == nil {
				n.svc.Announce(ctx)
			}
		}()
	}
	// The caller may clear its keys after Open (the daemon does).
	var mine [][]byte
	for _, k := range keys {
		mine = append(mine, slices.Clone(k))
	}
	defer func() {
		for _, k := range mine {
			clear(k)
		}
	}()
	tr, err := gossip.Open(gossip.Options{
		NodeName: name, Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
		Seeds: seeds, Keys: mine, Insecure: keys == nil, Ring: ring, Timing: timing,
		OnLost:    func(host, reason string) { n.inv.Drop(host, reason) },
		OnRefresh: announce, Log: slog.New(slog.NewTextHandler(newTestWriter(t, name), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	n.tr = tr
	n.svc = peer.New(n.inv, peer.Options{Identity: peer.Identity{HostID: name, Hostname: name, BootID: "b-" + name},
		Interval: time.Second, Keyring: ring}, tr)
	done := make(chan struct{})
	go func() { defer close(done); n.svc.Receive(ctx) }()
	if err := n.svc.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	n.stop = sync.OnceFunc(func() { cancel(); <-done; tr.Close() })
	t.Cleanup(n.stop)
	return n
}

func hosts(inv *inventory.Inventory) string {
	var out []string
	for _, d := range inv.Disks() {
		out = append(out, d.Hostname+":"+d.Device)
	}
	return strings.Join(out, ",")
}

// waitFor is testbed.Eventually for a condition that describes itself
// by what.
func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	testbed.Eventually(t, within, func() (bool, string) { return ok(), what })
}

func key(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b
	}
	return k
}

// mesh starts a node of each name on loopback ports from base on, every
// one but the first joined to the first, and waits until each lists every
// node's disk.
func mesh(t *testing.T, base int, keys [][]byte, names ...string) []*node {
	t.Helper()
	seed := fmt.Sprintf("127.0.0.1:%d", base)
	var nodes []*node
	var all []string
	for i, name := range names {
		var seeds []string
		if i > 0 {
			seeds = []string{seed}
		}
		nodes = append(nodes, start(t, name, base+i, keys, seeds...))
		all = append(all, name+":/dev/"+name)
	}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.name+" sees every disk", func() bool { return hosts(n.inv) == strings.Join(all, ",") })
	}
	return nodes
}

// seqOf is the sequence number of host's latest announcement that n took.
func seqOf(n *node, host string) uint64 {
	for _, p := range n.inv.Peers() {
		if p.HostID == host {
			return p.Seq
		}
	}
	return 0
}

func TestMeshOnLoopback(t *testing.T) {
	base := 24000 + int(time.Now().UnixNano()%2000)
	keys := [][]byte{key(1)}
	seed := fmt.Sprintf("127.0.0.1:%d", base)
	nodes := mesh(t, base, keys, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, p := range a.inv.Peers() {
		if p.Via != "gossip" || p.Address != "127.0.0.1" {
			t.Errorf("peer %+v: want via gossip from 127.0.0.1", p)
		}
	}
	// A change travels as a broadcast.
	c.inv.SetLocal([]diskstate.Disk{{Device: "/dev/c", UUID: "u-c"}, {Device: "/dev/c2", UUID: "u-c2"}}, nil)
	c.svc.Announce(context.Background())
	want := "a:/dev/a,b:/dev/b,c:/dev/c,c:/dev/c2"
	for _, n := range []*node{a, b} {
		waitFor(t, 10*time.Second, n.name+" sees c's new disk", func() bool { return hosts(n.inv) == want })
	}
	// A key the mesh does not know cannot join, and hears nothing.
	x := start(t, "x", base+3, [][]byte{key(9)}, seed)
	time.Sleep(time.Second)
	if h := hosts(x.inv); h != "x:/dev/x" {
		t.Errorf("a node with another key sees %s", h)
	}
	if st := x.tr.Status(); st.Alive != 1 || len(st.Seeds) != 1 || st.Seeds[0].Joined {
		t.Errorf("a node with another key: status %+v, want alone and not joined", st)
	}
	// A clean stop is a goodbye.
	sub := a.inv.Subscribe(64)
	defer sub.Close()
	c.stop()
	waitFor(t, 10*time.Second, "c gone from a", func() bool { return hosts(a.inv) == "a:/dev/a,b:/dev/b" })
	for len(sub.C()) > 0 {
		if e := <-sub.C(); e.Kind == inventory.PeerLost && e.Reason != inventory.ReasonBye {
			t.Errorf("c lost with reason %q, want bye", e.Reason)
		}
	}
	if st := a.tr.Status(); st.Alive != 2 || st.Left != 1 {
		t.Errorf("status %+v: want 2 alive, 1 left", st)
	}
}

func TestOpenRefusesWithoutKeys(t *testing.T) {
	_, err := gossip.Open(gossip.Options{NodeName: "a", Bind: netip.MustParseAddrPort("127.0.0.1:0")})
	if err == nil || !strings.Contains(err.Error(), "--gossip-insecure") {
		t.Fatalf("Open without keys: %v, want a refusal naming --gossip-insecure", err)
	}
}

// testWriter logs to the test until it ends (memberlist's goroutines may
// still log a line after Shutdown returns).
type testWriter struct {
	t    *testing.T
	name string
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T, name string) testWriter {
	w := testWriter{t: t, name: name, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() { w.mu.Lock(); *w.done = true; w.mu.Unlock() })
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(w.name + ": " + string(p))
	}
	return len(p), nil
}
