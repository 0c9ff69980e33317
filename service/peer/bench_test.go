package peer

// Benchmarks of the receive path (decode, reassemble the parts, apply to
// the inventory) and of the announcer's encoding, with 16-disk
// announcements cut at the payload budget of an Ethernet link (MTU 1500:
// 1472 bytes, so two datagrams each). `make bench` runs them with -cpu 1:
// the figures are for one core, garbage collection included. The
// announcements/s metric is what the receive target (≥ 200,000 per second
// on one core) is about.
//
// The HandleAnnounce16 benchmarks hand the datagrams to one transport's
// receive side directly, so that they measure the protocol alone, as they
// did before it had a transport interface (a transport that queues
// datagrams between goroutines, a socket or peertest's network, would add
// its own cost). ReceiveAnnounce16 runs the same through the whole receive
// loop, Recv included, over a transport that replays prepared datagrams.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
	"github.com/diskd/diskd/service/wire"
)

// ethernetBudget is the payload budget of a 1500-byte MTU at TTL 1.
const ethernetBudget = 1500 - 28

// benchSeqBase makes every sequence number take the 9-byte uint64 form, so
// that the benchmark can rewrite it in place.
const benchSeqBase = 1 << 40

// benchAnnouncement is one peer's announcement: its datagrams and, in each,
// the offset of the sequence number's 8 bytes.
type benchAnnouncement struct {
	grams [][]byte
	seqAt []int
}

func benchPeerMessage(peer int, disks []diskstate.Disk) wire.Message {
	return wire.Message{
		Kind:     wire.KindAnnounce,
		HostID:   fmt.Sprintf("%032x", 0xbe7c4000+peer),
		Hostname: fmt.Sprintf("peer-%04d.example.org", peer),
		BootID:   fmt.Sprintf("%032x", 0xb0070000+peer),
		Seq:      benchSeqBase,
		Interval: 10 * time.Second,
		Gen:      1,
		Disks:    disks,
	}
}

func encodeBench(b *testing.B, m wire.Message, budget int) benchAnnouncement {
	b.Helper()
	grams, err := wire.Encode(m, budget, nil)
	if err != nil {
		b.Fatal(err)
	}
	seq := binary.BigEndian.AppendUint64([]byte{0xcf}, m.Seq)
	a := benchAnnouncement{grams: grams}
	for _, g := range grams {
		i := bytes.Index(g, seq)
		if i < 0 {
			b.Fatal("sequence number not found in the datagram")
		}
		a.seqAt = append(a.seqAt, i+1)
	}
	return a
}

// setSeq gives the announcement's datagrams sequence number seq.
func (a *benchAnnouncement) setSeq(seq uint64) {
	for j, g := range a.grams {
		binary.BigEndian.PutUint64(g[a.seqAt[j]:], seq)
	}
}

// replay is a Transport for benchmarks: Recv hands the receive loop the
// datagrams that next returns, one by one, in the loop's own goroutine,
// and reports the transport closed once next has no more.
type replay struct {
	src  netip.Addr
	next func() ([]byte, bool)
}

func (r *replay) Name() string             { return "replay" }
func (r *replay) Budget() int              { return wire.MaxDatagram }
func (r *replay) Send([]byte) (int, error) { return 1, nil }
func (r *replay) Close() error             { return nil }
func (r *replay) Recv(buf []byte) (int, netip.Addr, error) {
	g, ok := r.next()
	if !ok {
		return 0, netip.Addr{}, net.ErrClosed
	}
	return copy(buf, g), r.src, nil
}

// play runs a receive loop of s over the announcements next returns, each
// with the sequence number next gives it, until next reports no more.
func play(b *testing.B, s *Service, next func() (a *benchAnnouncement, seq uint64, ok bool)) {
	b.Helper()
	var cur *benchAnnouncement
	part := 0
	err := s.receive(context.Background(), &replay{
		src: netip.MustParseAddr("10.77.0.2"),
		next: func() ([]byte, bool) {
			if cur == nil || part == len(cur.grams) {
				a, seq, ok := next()
				if !ok {
					return nil, false
				}
				cur, part = a, 0
				cur.setSeq(seq)
			}
			part++
			return cur.grams[part-1], true
		},
	})
	if !errors.Is(err, net.ErrClosed) {
		b.Fatalf("receive loop: %v, want the transport closed", err)
	}
}

// feed hands the announcement, with sequence number seq, to rx datagram
// by datagram, as the receive loop does.
func (a *benchAnnouncement) feed(rx *listener, src netip.Addr, seq uint64) {
	a.setSeq(seq)
	for _, g := range a.grams {
		rx.handle(packet{data: g, src: src, transport: "bench"}, time.Now())
	}
}

// benchReceiver is a Service whose inventory already holds peers peers of
// disks disks each, as a daemon in steady state does, and the receive side
// of one of its transports; versions gives each peer that many
// announcements to alternate between (differing in one disk's label when
// more than one).
func benchReceiver(b *testing.B, peers, disks, versions, budget int) (*Service, *listener, *inventory.Inventory, [][]benchAnnouncement) {
	b.Helper()
	inv := inventory.New(inventory.Options{HostID: "bench-self", Hostname: "self"})
	s := New(inv, Options{
		Identity: Identity{HostID: "bench-self", Hostname: "self", BootID: "bench-boot"},
		Interval: 10 * time.Second, Log: slog.New(slog.DiscardHandler),
	})
	rx := s.newListener()
	src := netip.MustParseAddr("10.77.0.2")
	all := make([][]benchAnnouncement, peers)
	for p := range all {
		for v := range versions {
			d := testbed.FakeDisks(p, disks)
			if v > 0 {
				d[0].Label = fmt.Sprintf("P%04d-V%d", p, v)
			}
			m := benchPeerMessage(p, d)
			m.Gen = uint64(v + 1) // each version of the list is a generation
			all[p] = append(all[p], encodeBench(b, m, budget))
		}
		all[p][0].feed(rx, src, benchSeqBase)
	}
	if n, d := inv.Counts(); n != peers || d != peers*disks {
		b.Fatalf("inventory holds %d peers and %d disks after set-up, want %d and %d (drops %v)",
			n, d, peers, peers*disks, s.Stats().Drops)
	}
	return s, rx, inv, all
}

// benchHandle measures one announcement after another, each from the next
// of peers peers; throughLoop runs them through the receive loop (Recv and
// all) rather than handing them to the receive side directly.
func benchHandle(b *testing.B, peers, versions, budget int, throughLoop bool) {
	const disks = 16
	s, rx, inv, all := benchReceiver(b, peers, disks, versions, budget)
	if versions > 1 {
		// Someone listens to the changes, as the daemon's log and D-Bus do.
		sub := inv.Subscribe(0)
		defer sub.Close()
		go func() {
			for range sub.C() {
			}
		}()
	}
	src := netip.MustParseAddr("10.77.0.2")
	b.ReportAllocs()
	if throughLoop {
		i := 0
		play(b, s, func() (*benchAnnouncement, uint64, bool) {
			if !b.Loop() {
				return nil, 0, false
			}
			round := i / peers
			a := &all[i%peers][(round+1)%versions]
			i++
			return a, benchSeqBase + uint64(round) + 1, true
		})
	} else {
		for i := 0; b.Loop(); i++ {
			round := i / peers
			all[i%peers][(round+1)%versions].feed(rx, src, benchSeqBase+uint64(round)+1)
		}
	}
	b.ReportMetric(float64(len(all[0][0].grams)), "datagrams/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announcements/s")
	if st := s.Stats(); st.Dropped != 0 {
		b.Fatalf("dropped datagrams: %v", st.Drops)
	}
}

// BenchmarkHandleAnnounce16 is the steady state of the scale case: one
// peer of 1,000 re-announces its unchanged 16 disks (two datagrams), which
// the daemon decodes, reassembles and applies.
func BenchmarkHandleAnnounce16(b *testing.B) { benchHandle(b, 1000, 1, ethernetBudget, false) }

// BenchmarkHandleAnnounce16Jumbo is the same on a link whose MTU carries
// the 16 disks in one datagram (9000, jumbo frames): no reassembly.
func BenchmarkHandleAnnounce16Jumbo(b *testing.B) { benchHandle(b, 1000, 1, wire.MaxDatagram, false) }

// BenchmarkHandleAnnounce16Changed is the same with one disk relabelled in
// every announcement: a DiskChanged event each time, with a subscriber.
func BenchmarkHandleAnnounce16Changed(b *testing.B) { benchHandle(b, 1000, 2, ethernetBudget, false) }

// BenchmarkReceiveAnnounce16 is HandleAnnounce16 through one transport's
// whole receive loop: Recv (a copy into the loop's buffer, as a socket
// read makes), the counters, then the same decoding and applying.
func BenchmarkReceiveAnnounce16(b *testing.B) { benchHandle(b, 1000, 1, ethernetBudget, true) }

// BenchmarkEncodeAnnounce16 is the announcer's encoding of 16 local disks
// for an Ethernet link (Service.Announce without a transport).
func BenchmarkEncodeAnnounce16(b *testing.B) {
	m := benchPeerMessage(0, testbed.FakeDisks(0, 16))
	log := slog.New(slog.DiscardHandler)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		grams, err := encode(m, ethernetBudget, nil, log)
		if err != nil {
			b.Fatal(err)
		}
		n = len(grams)
	}
	b.ReportMetric(float64(n), "datagrams/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announcements/s")
}
