// Package peertest is an in-memory network for tests of the peer protocol:
// endpoints that implement peer.Transport, each with a name and an address,
// where every datagram one endpoint sends reaches every other endpoint of
// the network, as on a multicast link. A filter decides the fate of each
// datagram on its way to each receiver (dropped, duplicated, delayed), for
// tests of loss, repetition and reordering, and [Endpoint.Idle] lets a test
// wait until a receiver has read everything sent to it.
//
// It is not a simulation of a real network: there is no MTU (the budget is
// only what Budget reports), no socket buffer that overflows and no
// bandwidth; a datagram is lost only when the filter says so. Tests of the
// real sockets use network namespaces instead (service/testbed).
package peertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultBudget is the Budget of endpoints when NewNetwork is given none:
// an Ethernet MTU (1500) less the IPv4 and UDP headers.
const DefaultBudget = 1500 - 28

// Datagram is one datagram on its way from one endpoint to another, as the
// filter sees it.
type Datagram struct {
	From, To string     // endpoint names
	Src      netip.Addr // the sender's address
	Data     []byte     // the bytes; the filter must neither change nor keep them
}

// Fate is what becomes of one datagram on its way to one receiver. The
// zero Fate delivers it once, at once.
type Fate struct {
	Drop   bool          // lost
	Copies int           // further copies delivered besides the datagram itself
	Delay  time.Duration // the receiver can read it (and its copies) this much later
}

// Network connects endpoints. Its methods are safe for concurrent use.
type Network struct {
	name   string
	budget int

	mu        sync.Mutex
	endpoints []*Endpoint
	filter    func(Datagram) Fate
	seq       uint64 // order of delivery, to keep equal arrival times in order
}

// NewNetwork returns an empty network whose endpoints are transports named
// name ("mem" when empty) with the given budget (DefaultBudget when not
// positive).
func NewNetwork(name string, budget int) *Network {
	if name == "" {
		name = "mem"
	}
	if budget <= 0 {
		budget = DefaultBudget
	}
	return &Network{name: name, budget: budget}
}

// SetFilter makes f decide the fate of every datagram sent from now on, once
// for each receiver; nil delivers everything. f is called from the sending
// goroutine, possibly from several at once.
func (n *Network) SetFilter(f func(Datagram) Fate) {
	n.mu.Lock()
	n.filter = f
	n.mu.Unlock()
}

// Add adds an endpoint called name with address addr. Names and addresses
// are unique within a network.
func (n *Network) Add(name string, addr netip.Addr) (*Endpoint, error) {
	if name == "" {
		return nil, fmt.Errorf("peertest: an endpoint needs a name")
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("peertest: endpoint %q needs an address", name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.endpoints {
		if e.name == name {
			return nil, fmt.Errorf("peertest: there is already an endpoint called %q", name)
		}
		if e.addr == addr {
			return nil, fmt.Errorf("peertest: endpoint %q already has address %s", e.name, addr)
		}
	}
	e := &Endpoint{
		net: n, name: name, addr: addr,
		wake: make(chan struct{}, 1), done: make(chan struct{}), changed: make(chan struct{}),
	}
	n.endpoints = append(n.endpoints, e)
	return e, nil
}

// Close closes every endpoint.
func (n *Network) Close() {
	n.mu.Lock()
	eps := n.endpoints
	n.mu.Unlock()
	for _, e := range eps {
		e.Close()
	}
}

// Endpoint is one host's transport on a Network; it implements
// peer.Transport. Send may be called from several goroutines at once, Recv
// from one at a time.
type Endpoint struct {
	net  *Network
	name string
	addr netip.Addr

	wake chan struct{} // a datagram was queued (capacity 1)
	done chan struct{} // closed by Close

	mu      sync.Mutex
	queue   []queued
	closed  bool
	waiting bool          // Recv is blocked, waiting for a datagram
	changed chan struct{} // closed (and replaced) when Idle may hold
}

type queued struct {
	data []byte
	src  netip.Addr
	at   time.Time // when the receiver can read it
	seq  uint64
}

// Name is the network's transport name.
func (e *Endpoint) Name() string { return e.net.name }

// Budget is the network's budget.
func (e *Endpoint) Budget() int { return e.net.budget }

// Host is the endpoint's name within its network.
func (e *Endpoint) Host() string { return e.name }

// Addr is the endpoint's address, the source address of what it sends.
func (e *Endpoint) Addr() netip.Addr { return e.addr }

// Send delivers a copy of b to every other open endpoint of the network,
// as the filter decides, and returns to how many endpoints it sent it (a
// datagram the filter drops counts: it was lost on the way).
func (e *Endpoint) Send(b []byte) (int, error) {
	n := e.net
	n.mu.Lock()
	targets := make([]*Endpoint, 0, len(n.endpoints))
	for _, to := range n.endpoints {
		if to != e {
			targets = append(targets, to)
		}
	}
	filter := n.filter
	n.mu.Unlock()
	if e.isClosed() {
		return 0, fmt.Errorf("peertest endpoint %s: send: %w", e.name, net.ErrClosed)
	}
	now := time.Now()
	sent := 0
	for _, to := range targets {
		if to.isClosed() {
			continue
		}
		sent++
		var f Fate
		if filter != nil {
			f = filter(Datagram{From: e.name, To: to.name, Src: e.addr, Data: b})
		}
		if f.Drop {
			continue
		}
		data := bytes.Clone(b) // shared by the copies: nobody writes to it
		for range 1 + max(f.Copies, 0) {
			to.deliver(queued{data: data, src: e.addr, at: now.Add(f.Delay), seq: n.nextSeq()})
		}
	}
	return sent, nil
}

func (e *Endpoint) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func (n *Network) nextSeq() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	return n.seq
}

func (e *Endpoint) deliver(q queued) {
	e.mu.Lock()
	if !e.closed {
		e.queue = append(e.queue, q)
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Recv blocks until a datagram can be read, then copies it into buf (cut to
// len(buf)) and returns its length and its sender's address. Datagrams are
// read in the order they arrive: the order they were sent in, unless the
// filter delayed some. After Close it returns an error wrapping
// net.ErrClosed.
func (e *Endpoint) Recv(buf []byte) (int, netip.Addr, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return 0, netip.Addr{}, fmt.Errorf("peertest endpoint %s: receive: %w", e.name, net.ErrClosed)
		}
		wait := time.Duration(-1) // nothing queued
		if i := e.first(); i >= 0 {
			q := e.queue[i]
			if wait = time.Until(q.at); wait <= 0 {
				e.queue = append(e.queue[:i], e.queue[i+1:]...)
				e.mu.Unlock()
				return copy(buf, q.data), q.src, nil
			}
		}
		e.waiting = true
		e.signal()
		e.mu.Unlock()

		var due <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		}
		select {
		case <-e.wake:
		case <-due:
		case <-e.done:
		}
		e.mu.Lock()
		e.waiting = false
		e.mu.Unlock()
	}
}

// first is the index of the queued datagram that arrives first, or -1.
func (e *Endpoint) first() int {
	best := -1
	for i, q := range e.queue {
		if best < 0 || q.at.Before(e.queue[best].at) || (q.at.Equal(e.queue[best].at) && q.seq < e.queue[best].seq) {
			best = i
		}
	}
	return best
}

// signal wakes the goroutines in Idle; e.mu is held.
func (e *Endpoint) signal() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// Idle waits until the endpoint has read every datagram sent to it so far
// (delayed ones included) and its reader is blocked in Recv again, that is
// until whatever the reader does with a datagram is done; or until the
// endpoint is closed. It returns an error when ctx ends first.
func (e *Endpoint) Idle(ctx context.Context) error {
	for {
		e.mu.Lock()
		if e.closed || (e.waiting && len(e.queue) == 0) {
			e.mu.Unlock()
			return nil
		}
		ch, queued := e.changed, len(e.queue)
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("peertest endpoint %s: not idle (%d datagrams queued, reader busy or absent): %w",
				e.name, queued, context.Cause(ctx))
		}
	}
}

// Close closes the endpoint: what was queued for it is discarded, Recv
// returns, and it receives nothing more. Closing again does nothing.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		e.queue = nil
		close(e.done)
		e.signal()
	}
	return nil
}
