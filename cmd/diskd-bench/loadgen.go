package main

// The load generator of the scale case: this program again, run inside a
// simulated host's namespace as "diskd-bench loadgen". It plays many peers
// at once: each has its own host id, boot id and hostname, a list of disks,
// and a sequence number that starts at the wall clock in microseconds (as
// diskd's does) and grows by one per announcement. Announcements are
// encoded by service/wire and sent by service/multicast's socket, at the
// link's payload budget, exactly as a daemon sends them; the peers' sends
// are spread evenly over the interval. It runs until SIGTERM and then
// prints one line of totals.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/multicast"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

const loadgenCommand = "loadgen"

type loadgenConfig struct {
	peers    int
	disks    int
	interval time.Duration
	group    netip.AddrPort
	iface    string
}

// loadgenArgs is the command line that runs a load generator.
func loadgenArgs(c loadgenConfig) []string {
	return []string{loadgenCommand, "--peers", fmt.Sprint(c.peers), "--disks", fmt.Sprint(c.disks),
		"--interval", c.interval.String(), "--group", c.group.String(), "--interface", c.iface}
}

func runLoadgen(args []string) int {
	var c loadgenConfig
	var group string
	fs := flag.NewFlagSet("diskd-bench loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&c.peers, "peers", 1000, "simulated peers")
	fs.IntVar(&c.disks, "disks", 16, "disks of each peer")
	fs.DurationVar(&c.interval, "interval", daemon.DefaultAnnounceInterval, "each peer's announce interval")
	fs.StringVar(&group, "group", daemon.DefaultGroup.String(), "multicast group")
	fs.StringVar(&c.iface, "interface", testbed.Interface, "interface to send on")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench loadgen:", err)
		return 2
	}
	var err error
	if c.group, err = netip.ParseAddrPort(group); err != nil || c.peers < 1 || c.disks < 1 || c.interval <= 0 {
		fmt.Fprintln(os.Stderr, "diskd-bench loadgen: bad arguments")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st, err := generate(ctx, c)
	fmt.Printf("loadgen: %d peers sent %d announcements (%d datagrams of ≤ %d bytes) in %v; %d send errors; largest delay %v\n",
		c.peers, st.announcements, st.datagrams, st.budget, st.took.Round(time.Millisecond), st.errors, st.maxLate.Round(time.Microsecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench loadgen:", err)
		return 1
	}
	return 0
}

type loadgenStats struct {
	announcements, datagrams, errors int
	budget                           int
	took, maxLate                    time.Duration
}

// fakePeer is one simulated peer.
type fakePeer struct {
	m wire.Message // the announcement; Seq grows
}

func fakePeers(n, disks int, interval time.Duration) ([]fakePeer, error) {
	peers := make([]fakePeer, n)
	seq := uint64(time.Now().UnixMicro())
	for i := range peers {
		id := make([]byte, 32)
		if _, err := rand.Read(id); err != nil {
			return nil, fmt.Errorf("random ids: %w", err)
		}
		peers[i].m = wire.Message{
			Kind:     wire.KindAnnounce,
			HostID:   hex.EncodeToString(id[:16]),
			BootID:   hex.EncodeToString(id[16:]),
			Hostname: fmt.Sprintf("load-%04d", i),
			Seq:      seq,
			Interval: interval,
			Disks:    testbed.FakeDisks(i, disks),
		}
	}
	return peers, nil
}

// generate sends until ctx ends: the k-th send overall goes at
// start + k × interval/peers, from peer k mod peers.
func generate(ctx context.Context, c loadgenConfig) (st loadgenStats, err error) {
	peers, err := fakePeers(c.peers, c.disks, c.interval)
	if err != nil {
		return st, err
	}
	conn, err := multicast.Open(multicast.ConnOptions{Groups: []netip.AddrPort{c.group}, Interfaces: []string{c.iface}, TTL: 1})
	if err != nil {
		return st, err
	}
	defer conn.Close()
	st.budget = conn.Budget()
	gap := c.interval / time.Duration(c.peers)
	start := time.Now()
	defer func() { st.took = time.Since(start) }()
	t := time.NewTimer(0)
	defer t.Stop()
	for k := 0; ; k++ {
		at := start.Add(time.Duration(k) * gap)
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return st, nil
			case <-t.C:
			}
		} else {
			st.maxLate = max(st.maxLate, -d)
			if ctx.Err() != nil {
				return st, nil
			}
		}
		p := &peers[k%len(peers)]
		p.m.Seq++
		grams, err := wire.Encode(p.m, st.budget, nil)
		if err != nil {
			return st, err
		}
		for _, g := range grams {
			if _, err := conn.Send(g); err != nil {
				st.errors++
				continue
			}
			st.datagrams++
		}
		st.announcements++
	}
}
