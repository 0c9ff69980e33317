package main

// Gossip scale: one daemon joins a gossip mesh of many members (a load
// generator runs them, several memberlist nodes in one process, on a host
// of its own); how long until it lists every disk, the bytes its host
// sends and receives, and its CPU and memory over a window.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/gossip"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/peer"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

const gossipgenCommand = "gossipgen"

// gossipgenGrace is how long the gossip load generator may take to stop.
const gossipgenGrace = 30 * time.Second

// gossipBasePort is the first port of the load generator's members (one
// port each, on its host's address).
const gossipBasePort = 5000

type gossipResult struct {
	ran          bool
	members      int
	converge     time.Duration // daemon start to every disk listed
	peers, disks int
	usage        procUsage
	bytesPerSec  float64 // the daemon host's e0, received and sent
	genPerMember float64 // the generator host's e0, per member
	genOut       string
}

// genTiming slows the generator's own members down (probes every 5 s,
// gossip every second): many memberlist nodes in one process on a shared
// machine must not starve, and what is measured is the daemon, which runs
// with diskd's own timings.
var genTiming = gossip.Timing{ProbeInterval: 5 * time.Second, ProbeTimeout: 2 * time.Second, Gossip: time.Second,
	PushPull: time.Minute, TCPTimeout: 10 * time.Second, Reconnect: 30 * time.Second}

// runGossipgen is the load generator: --nodes members joining the first
// one, each announcing --disks disks every interval, until SIGTERM.
func runGossipgen(args []string) int {
	var (
		nodes, disks int
		addr, key    string
	)
	fs := flag.NewFlagSet("diskd-bench gossipgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&nodes, "nodes", 200, "members")
	fs.IntVar(&disks, "disks", 16, "disks of each member")
	fs.StringVar(&addr, "addr", "", "this host's address")
	fs.StringVar(&key, "key-file", "", "key file of the mesh")
	if err := fs.Parse(args); err != nil || nodes < 1 || nodes > 1000 || disks < 1 {
		fmt.Fprintln(os.Stderr, "diskd-bench gossipgen: bad arguments")
		return 2
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench gossipgen: --addr:", err)
		return 2
	}
	keys, err := wire.ReadKeyFile(key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench gossipgen:", err)
		return 1
	}
	ring, err := wire.NewKeyring(keys...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench gossipgen:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var (
		wg  sync.WaitGroup
		trs []*gossip.Transport
	)
	seed := netip.AddrPortFrom(ip, gossipBasePort).String()
	for i := range nodes {
		var idb [16]byte
		_, _ = rand.Read(idb[:])
		id := hex.EncodeToString(idb[:])
		inv := inventory.New(inventory.Options{HostID: id, Hostname: fmt.Sprintf("g%03d", i)})
		ds := make([]diskstate.Disk, disks)
		for j := range ds {
			ds[j] = diskstate.Disk{Device: fmt.Sprintf("/dev/sd%c%d", 'a'+j/8, j%8+1), UUID: fmt.Sprintf("%s-%02d", id[:12], j),
				Label: fmt.Sprintf("G%03d-%02d", i, j), Type: "ext4", Mountpoints: []string{fmt.Sprintf("/srv/g%03d/%02d", i, j)}}
		}
		inv.SetLocal(ds, nil)
		var seeds []string
		if i > 0 {
			seeds = []string{seed}
		}
		tr, err := gossip.Open(gossip.Options{NodeName: id, Bind: netip.AddrPortFrom(ip, uint16(gossipBasePort+i)),
			Seeds: seeds, Keys: keys, Ring: ring, NoJoinSync: true, Timing: genTiming})
		if err != nil {
			fmt.Fprintln(os.Stderr, "diskd-bench gossipgen:", err)
			return 1
		}
		trs = append(trs, tr)
		svc := peer.New(inv, peer.Options{Identity: peer.Identity{HostID: id, Hostname: fmt.Sprintf("g%03d", i), BootID: id},
			Interval: daemon.DefaultAnnounceInterval, Keyring: ring}, tr)
		wg.Go(func() { // what the members hear is not needed: drain it
			buf := make([]byte, wire.MaxDatagram+1)
			for {
				if _, _, err := tr.Recv(buf); err != nil && ctx.Err() != nil {
					return
				}
			}
		})
		wg.Go(func() { // announce every interval, as a daemon does
			for {
				_ = svc.Announce(ctx)
				select {
				case <-ctx.Done():
					return
				case <-time.After(daemon.DefaultAnnounceInterval):
				}
			}
		})
	}
	fmt.Println("ready")
	<-ctx.Done()
	var closing sync.WaitGroup
	for _, tr := range trs {
		closing.Go(func() { tr.Close() })
	}
	closing.Wait()
	wg.Wait()
	fmt.Printf("gossipgen: %d members of %d disks\n", nodes, disks)
	return 0
}

// ifaceBytes is what h's e0 received and sent so far.
func ifaceBytes(h *testbed.Host) (uint64, error) {
	out, err := exec.Command("ip", "-n", h.NS, "-j", "-s", "link", "show", testbed.Interface).Output()
	if err != nil {
		return 0, fmt.Errorf("ip -s link in %s: %w", h.Name, err)
	}
	var links []struct {
		Stats struct {
			RX struct{ Bytes uint64 } `json:"rx"`
			TX struct{ Bytes uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip -s link in %s: %q", h.Name, out)
	}
	return links[0].Stats.RX.Bytes + links[0].Stats.TX.Bytes, nil
}

// runGossipScale builds its lab, starts the generator, waits until every
// member has joined, then starts the measured daemon.
func (b *bench) runGossipScale(ctx context.Context) (gossipResult, error) {
	res := gossipResult{members: b.o.gossipNodes}
	defer b.prog.set("gossip", "")
	lab, err := b.newLab("gossip")
	if err != nil {
		return res, err
	}
	s, _, err := addHost(lab, "s", "S-ROOT")
	if err != nil {
		return res, err
	}
	gen, _, err := addHost(lab, "gen")
	if err != nil {
		return res, err
	}
	var k [32]byte
	_, _ = rand.Read(k[:])
	keyFile := filepath.Join(lab.Dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(k[:])+"\n"), 0o600); err != nil {
		return res, err
	}
	// Closing its members (each leaves the mesh) takes a while on a busy
	// machine: give it gossipgenGrace before it is killed.
	p, err := startGenerator(gen, gossipgenGrace, gossipgenCommand, "--nodes", fmt.Sprint(b.o.gossipNodes-1),
		"--disks", fmt.Sprint(b.o.disksPerPeer), "--addr", gen.Addr, "--key-file", keyFile)
	if err != nil {
		return res, fmt.Errorf("gossip %w", err)
	}
	var once sync.Once
	stopGen := func() error {
		var err error
		once.Do(func() { res.genOut, err = p.stop() })
		return err
	}
	b.onCleanup("gossip load generator", stopGen)
	// Let the generator's members find one another and settle.
	b.prog.set("gossip", "%d members joining", b.o.gossipNodes-1)
	if err := sleepCtx(ctx, 30*time.Second); err != nil {
		return res, err
	}
	seed := netip.AddrPortFrom(netip.MustParseAddr(gen.Addr), gossipBasePort).String()
	t0 := time.Now()
	d, err := b.start(s, nil, "--key-file", keyFile, "--join", seed, "--no-multicast")
	if err != nil {
		return res, err
	}
	want := (b.o.gossipNodes - 1) * b.o.disksPerPeer
	deadline := t0.Add(60 * time.Second)
	for {
		st, err := status(s.Socket)
		if err == nil && st.Peers >= b.o.gossipNodes-1 && st.Disks >= want+1 {
			res.converge = time.Since(t0)
			break
		}
		if err == nil {
			b.prog.set("gossip", "%d/%d peers, %d/%d disks", st.Peers, b.o.gossipNodes-1, st.Disks, want+1)
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("s lists %d of %d peers after 60s (last error %v)", st.Peers, b.o.gossipNodes-1, err)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return res, err
	}
	s0, err1 := ifaceBytes(s)
	g0, err2 := ifaceBytes(gen)
	if res.usage, err = b.measure(ctx, "gossip", d.PID()); err != nil {
		return res, err
	}
	s1, err3 := ifaceBytes(s)
	g1, err4 := ifaceBytes(gen)
	if err := firstErr(err1, err2, err3, err4); err != nil {
		return res, err
	}
	secs := res.usage.window.Seconds()
	res.bytesPerSec = float64(s1-s0) / secs
	res.genPerMember = float64(g1-g0) / secs / float64(b.o.gossipNodes-1)
	st, err := status(s.Socket)
	if err != nil {
		return res, err
	}
	res.peers, res.disks, res.ran = st.Peers, st.Disks, true
	if err := stopGen(); err != nil {
		b.prog.logf("%v", err)
	}
	return res, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (b *bench) gossipRows(res gossipResult) {
	b.rep.section(5, fmt.Sprintf("Gossip: one daemon joins a mesh of %d members × %d disks (--join, --no-multicast) %s",
		b.o.gossipNodes, b.o.disksPerPeer, b.rep.note("A load generator on a host of its own runs the other members: "+
			"memberlist nodes of service/gossip in one process, one port each, every one announcing its disks "+
			"every 10 s through diskd's peer protocol, encrypted with the same key file; they probe every 5 s and "+
			"gossip every second, so that one process can run them all. Convergence: from "+
			"starting the daemon to its status listing every peer and disk. Bandwidth: bytes received and sent "+
			"on the daemon host's interface over the window (and the generator host's, per member). CPU and "+
			"memory as in the scale case. %s", res.genOut)))
	if !res.ran {
		b.rep.add(5, notMeasured("gossip case"))
		return
	}
	b.rep.add(5,
		row{metric: "peers and disks listed", value: fmt.Sprintf("%d peers, %s disks", res.peers, thousands(int64(res.disks))),
			target: fmt.Sprintf("%d peers", b.o.gossipNodes-1), met: metLE(b.o.gossipNodes-1, res.peers)},
		row{metric: "convergence after the join (start to every disk listed)", value: fmtDur(res.converge),
			target: "≤ 10.0 s", met: metLE(res.converge, 10*time.Second)},
		row{metric: "bandwidth of the daemon's host (in + out)", value: fmt.Sprintf("%.1f kB/s", res.bytesPerSec/1e3), met: metNone},
		row{metric: "bandwidth per generator member (in + out)", value: fmt.Sprintf("%.1f kB/s", res.genPerMember/1e3), met: metNone},
	)
	b.rep.add(5, usageRows(res.usage)...)
}
