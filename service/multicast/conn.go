package multicast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// ConnOptions say where to send and listen.
type ConnOptions struct {
	Group netip.AddrPort
	// Interfaces to join the group on and send through; empty means every
	// interface that is up, multicast-capable and not loopback.
	Interfaces []string
	// TTL of sent datagrams: 1 stays on the link; hops + 1 crosses routers.
	TTL int
}

// Conn is a UDP socket joined to the multicast group on a set of interfaces.
type Conn struct {
	pc     *ipv4.PacketConn
	raw    net.PacketConn
	group  *net.UDPAddr
	ifaces []net.Interface
	budget int
}

// Open binds the group's port, joins the group on the chosen interfaces and
// sets the TTL. Multicast loopback is off: a host does not hear itself.
func Open(opts ConnOptions) (*Conn, error) {
	if !opts.Group.Addr().Is4() || !opts.Group.Addr().IsMulticast() {
		return nil, fmt.Errorf("group %s: not an IPv4 multicast address", opts.Group)
	}
	ifaces, err := chooseInterfaces(opts.Interfaces)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		})
		return errors.Join(err, serr)
	}}
	// Binding the group address, not the wildcard, keeps unicast datagrams
	// to the port out of this socket.
	raw, err := lc.ListenPacket(context.Background(), "udp4", opts.Group.String())
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", opts.Group, err)
	}
	c := &Conn{
		pc:     ipv4.NewPacketConn(raw),
		raw:    raw,
		group:  net.UDPAddrFromAddrPort(opts.Group),
		ifaces: ifaces,
	}
	fail := func(err error) (*Conn, error) {
		raw.Close()
		return nil, err
	}
	for _, ifi := range ifaces {
		if err := c.pc.JoinGroup(&ifi, c.group); err != nil {
			return fail(fmt.Errorf("joining %s on %s: %w", opts.Group.Addr(), ifi.Name, err))
		}
	}
	if err := c.pc.SetMulticastTTL(opts.TTL); err != nil {
		return fail(fmt.Errorf("setting multicast TTL %d: %w", opts.TTL, err))
	}
	if err := c.pc.SetMulticastLoopback(false); err != nil {
		return fail(fmt.Errorf("turning multicast loopback off: %w", err))
	}
	if err := c.pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		return fail(fmt.Errorf("asking for packet info: %w", err))
	}
	c.budget = payloadBudget(ifaces, opts.TTL)
	return c, nil
}

// chooseInterfaces resolves the names, or picks every up, multicast-capable,
// non-loopback interface when none are named.
func chooseInterfaces(names []string) ([]net.Interface, error) {
	if len(names) > 0 {
		out := make([]net.Interface, 0, len(names))
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return nil, fmt.Errorf("interface %q: %w", n, err)
			}
			if ifi.Flags&net.FlagUp == 0 {
				return nil, fmt.Errorf("interface %q is down", n)
			}
			if ifi.Flags&net.FlagMulticast == 0 {
				return nil, fmt.Errorf("interface %q cannot do multicast", n)
			}
			out = append(out, *ifi)
		}
		return out, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := slices.DeleteFunc(all, func(ifi net.Interface) bool {
		return ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0
	})
	if len(out) == 0 {
		return nil, errors.New("no interface is up and multicast-capable; name one with --interface")
	}
	return out, nil
}

// MinBudget is the payload size every IPv4 path of the kind diskd runs on
// carries without fragmentation (IPv6's minimum MTU 1280, less headers).
const MinBudget = 1200

// payloadBudget is the largest datagram payload that needs no IP
// fragmentation: the smallest interface MTU less the IPv4 and UDP headers on
// the local link (TTL 1); across routers (TTL > 1) the path MTU is unknown,
// so no more than MinBudget.
func payloadBudget(ifaces []net.Interface, ttl int) int {
	b := 0
	for _, ifi := range ifaces {
		if p := ifi.MTU - 28; ifi.MTU > 0 && (b == 0 || p < b) {
			b = p
		}
	}
	if b == 0 || (ttl > 1 && b > MinBudget) {
		return MinBudget
	}
	return b
}

// Budget is the payload size each sent datagram must not exceed.
func (c *Conn) Budget() int { return c.budget }

// Interfaces are the interfaces the group was joined on.
func (c *Conn) Interfaces() []net.Interface { return slices.Clone(c.ifaces) }

// Send multicasts one datagram through every interface and returns how many
// interfaces took it; an error is returned only when none did.
func (c *Conn) Send(b []byte) (int, error) {
	var errs []error
	sent := 0
	for _, ifi := range c.ifaces {
		cm := &ipv4.ControlMessage{IfIndex: ifi.Index}
		if _, err := c.pc.WriteTo(b, cm, c.group); err != nil {
			errs = append(errs, fmt.Errorf("sending on %s: %w", ifi.Name, err))
			continue
		}
		sent++
	}
	if sent == 0 {
		return 0, errors.Join(errs...)
	}
	return sent, nil
}

// Recv reads one datagram into buf and returns its length and source.
func (c *Conn) Recv(buf []byte) (int, netip.Addr, error) {
	n, _, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	var addr netip.Addr
	if u, ok := src.(*net.UDPAddr); ok {
		addr, _ = netip.AddrFromSlice(u.IP)
		addr = addr.Unmap()
	}
	return n, addr, nil
}

// Close closes the socket; a blocked Recv returns.
func (c *Conn) Close() error { return c.raw.Close() }
