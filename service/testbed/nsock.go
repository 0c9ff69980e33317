package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread that has entered the network namespace
// ns, then puts the thread back into its own namespace. Sockets fn opens
// stay in ns, so a test can send and receive on a simulated host's link
// in-process.
//
// The thread must survive: the daemons the lab starts die with the thread
// that forked them (Pdeathsig), and any thread may have. Only when the way
// back fails is the thread left locked, so that it ends with this
// goroutine instead of running others in the wrong namespace.
func inNetns(ns string, fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, ns))
	if err != nil {
		return fmt.Errorf("testbed: namespace %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testbed: own network namespace: %w", err)
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testbed: entering namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("testbed: leaving namespace %s: %w", ns, err))
			return // still locked: the thread ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// InNetns runs fn inside the host's network namespace (on a thread of its
// own; see the package doc). Sockets fn opens belong to the host's
// network and stay usable after fn returns; the caller closes them.
func (h *Host) InNetns(fn func() error) error { return inNetns(h.NS, fn) }

// InNetns runs fn inside the router's network namespace (see Host.InNetns).
func (r *Router) InNetns(fn func() error) error { return inNetns(r.NS, fn) }

// Listener counts the datagrams a host receives on a multicast group, by
// source address. Close it (Lab.Close does too).
type Listener struct {
	Group netip.AddrPort
	conn  *net.UDPConn
	mu    sync.Mutex
	from  map[netip.Addr]int
	total int
	done  chan struct{}
	once  sync.Once
}

// Listen joins group on the host's e0 and counts what arrives there from
// now on (its socket is bound to the wildcard address and the group's
// port, as net.ListenMulticastUDP does).
func (h *Host) Listen(group netip.AddrPort) (*Listener, error) {
	network := "udp4"
	if group.Addr().Is6() {
		network = "udp6"
	}
	var conn *net.UDPConn
	err := h.InNetns(func() error {
		ifi, err := net.InterfaceByName(Interface)
		if err != nil {
			return err
		}
		conn, err = net.ListenMulticastUDP(network, ifi, net.UDPAddrFromAddrPort(group))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: listening to %s on %s: %w", group, h.Name, err)
	}
	ln := &Listener{Group: group, conn: conn, from: map[netip.Addr]int{}, done: make(chan struct{})}
	l := h.lab
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		conn.Close()
		return nil, errors.New("testbed: lab is closed")
	}
	l.listeners = append(l.listeners, ln)
	l.mu.Unlock()
	go ln.run()
	return ln, nil
}

func (ln *Listener) run() {
	defer close(ln.done)
	buf := make([]byte, 1<<16)
	for {
		_, src, err := ln.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ln.mu.Lock()
		ln.from[src.Addr().Unmap()]++
		ln.total++
		ln.mu.Unlock()
	}
}

// From returns how many datagrams came from src so far.
func (ln *Listener) From(src netip.Addr) int {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	return ln.from[src.Unmap()]
}

// Total returns how many datagrams arrived so far.
func (ln *Listener) Total() int {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	return ln.total
}

// Close stops listening. It may be called more than once.
func (ln *Listener) Close() error {
	var err error
	ln.once.Do(func() {
		err = ln.conn.Close()
		<-ln.done
	})
	return err
}

// Send multicasts grams from the host to group with the given TTL (hop
// limit), out of e0, pausing 1ms after every 10 datagrams so as not to
// overrun a receiver's socket buffer.
func (h *Host) Send(group netip.AddrPort, ttl int, grams [][]byte) error {
	network := "udp4"
	level, opt := syscall.IPPROTO_IP, syscall.IP_MULTICAST_TTL
	if group.Addr().Is6() {
		network = "udp6"
		level, opt = syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS
	}
	var conn net.Conn
	err := h.InNetns(func() error {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), level, opt, ttl) })
			return errors.Join(err, serr)
		}}
		var err error
		conn, err = d.Dial(network, group.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("testbed: sending to %s from %s: %w", group, h.Name, err)
	}
	defer conn.Close()
	for i, g := range grams {
		if _, err := conn.Write(g); err != nil {
			return fmt.Errorf("testbed: sending datagram %d to %s from %s: %w", i, group, h.Name, err)
		}
		if i%10 == 9 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}
