package multicast

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ConnOptions say where to send and listen.
type ConnOptions struct {
	// Groups are the multicast groups and UDP ports, at most one IPv4 and
	// one IPv6 group (see ValidateGroup). Datagrams are sent to every group
	// and heard from any of them.
	Groups []netip.AddrPort
	// Interfaces to join the groups on and send through; empty means every
	// interface that is up, multicast-capable and not loopback. An
	// interface is used for a group only when it has an address of the
	// group's family.
	Interfaces []string
	// TTL of sent datagrams (IPv4 TTL and IPv6 hop limit): 1 stays on the
	// link; hops + 1 crosses routers.
	TTL int
	// Log receives one warning line per interface or group that cannot be
	// used (nil: none are logged; Warnings has them all the same).
	Log *slog.Logger
}

// ValidateGroup checks that g can be one of ConnOptions.Groups: an IPv4
// multicast address (224.0.0.0/4), or an IPv6 multicast address (ff00::/8)
// of link-local scope or wider, without a zone, and a port other than 0.
// An IPv4-mapped IPv6 address is returned as the IPv4 address it maps.
func ValidateGroup(g netip.AddrPort) (netip.AddrPort, error) {
	a := g.Addr().Unmap()
	switch {
	case !a.IsValid():
		return g, errors.New("no address")
	case a.Zone() != "":
		return g, fmt.Errorf("%q: a group takes no zone; name the interface with --interface", g.Addr().String())
	case a.Is4() && !a.IsMulticast():
		return g, fmt.Errorf("%s is not an IPv4 multicast address (224.0.0.0/4)", a)
	case a.Is6() && !a.IsMulticast():
		return g, fmt.Errorf("%s is not an IPv6 multicast address (ff00::/8)", a)
	case a.Is6() && scope6(a) < 2:
		return g, fmt.Errorf("%s has interface-local or reserved scope; use link-local (ff12::) or wider, e.g. ff15::d15c", a)
	case g.Port() == 0:
		return g, errors.New("port 0 is not usable")
	}
	return netip.AddrPortFrom(a, g.Port()), nil
}

// scope6 is the scope field of an IPv6 multicast address (RFC 4291: 2
// link-local, 4 admin-local, 5 site-local, 8 organization-local, e global).
func scope6(a netip.Addr) int { return int(a.As16()[1] & 0x0f) }

// Conn is a UDP socket per address family, each joined to its group on a
// set of interfaces. Send sends on every family, Recv returns what any of
// them hears.
type Conn struct {
	fams     []*famConn
	ifaces   []net.Interface // every interface used by some family
	budget   int
	warnings []string

	// With more than one family, a reader goroutine per family hands
	// datagrams to Recv through packets; Close ends them.
	packets   chan packet
	closing   chan struct{}
	closeOnce sync.Once
	readers   sync.WaitGroup

	// A dual-stack sender sends each datagram once per family; recent
	// remembers what came on which family, so that the same bytes coming
	// on the other family soon after are not returned twice.
	recentMu   sync.Mutex
	recent     map[uint64]seen
	recentRing []uint64
	recentNext int
	seed       maphash.Seed
	duplicates atomic.Uint64
}

// seen is when a datagram's bytes last came, and on which family.
type seen struct {
	fam int
	at  time.Time
}

// Duplicate suppression bounds: a copy on the other family comes within
// milliseconds; the memory is a ring of the last dupMemory datagrams.
const (
	dupWindow = 2 * time.Second
	dupMemory = 1024
)

// famConn is one family's socket.
type famConn struct {
	group  netip.AddrPort
	dst    *net.UDPAddr
	raw    net.PacketConn
	p4     *ipv4.PacketConn // IPv4 only
	p6     *ipv6.PacketConn // IPv6 only
	ifaces []net.Interface
	budget int
}

// packet is one datagram on its way from a reader goroutine to Recv; the
// reader waits on done before it reuses b.
type packet struct {
	b    []byte
	src  netip.Addr
	fam  int // index in Conn.fams
	err  error
	done chan struct{}
}

// Open binds each group's port, joins the groups on the chosen interfaces
// (each on those with an address of its family) and sets the TTL (hop
// limit). Multicast loopback is off: a host does not hear itself. A group
// or interface that cannot be used is a warning (ConnOptions.Log and
// Warnings) as long as one group can be used on one interface; otherwise
// Open fails, naming what was missing.
func Open(opts ConnOptions) (*Conn, error) {
	if len(opts.Groups) == 0 {
		return nil, errors.New("no multicast group")
	}
	if opts.TTL < 1 || opts.TTL > 255 {
		return nil, fmt.Errorf("TTL %d is out of range 1..255", opts.TTL)
	}
	var groups []netip.AddrPort
	seen4, seen6 := false, false
	for _, g := range opts.Groups {
		g, err := ValidateGroup(g)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g, err)
		}
		if (g.Addr().Is4() && seen4) || (g.Addr().Is6() && seen6) {
			return nil, fmt.Errorf("group %s: at most one group per address family", g)
		}
		seen4, seen6 = seen4 || g.Addr().Is4(), seen6 || g.Addr().Is6()
		groups = append(groups, g)
	}
	cands, err := chooseInterfaces(opts.Interfaces)
	if err != nil {
		return nil, err
	}
	c := &Conn{}
	var reasons []string // why interfaces were not used, for the error
	// warn says that an interface is not used for a group (used false) or
	// that it is used but something is amiss (used true).
	warn := func(reason, consequence string, used bool) {
		msg := reason + "; " + consequence
		c.warnings = append(c.warnings, msg)
		if !used {
			reasons = append(reasons, reason)
		}
		if opts.Log != nil {
			opts.Log.Warn(msg)
		}
	}
	var missing []string
	for _, g := range groups {
		f, err := openFamily(g, cands, opts.TTL, warn)
		if err != nil {
			c.closeAll()
			return nil, err
		}
		if f == nil {
			missing = append(missing, g.String())
			continue
		}
		c.fams = append(c.fams, f)
	}
	if len(c.fams) == 0 {
		return nil, fmt.Errorf("no interface can carry group %s: %s", strings.Join(missing, " or "),
			strings.Join(reasons, "; "))
	}
	for _, f := range c.fams {
		if c.budget == 0 || f.budget < c.budget {
			c.budget = f.budget
		}
		for _, ifi := range f.ifaces {
			if !slices.ContainsFunc(c.ifaces, func(o net.Interface) bool { return o.Index == ifi.Index }) {
				c.ifaces = append(c.ifaces, ifi)
			}
		}
	}
	if len(c.fams) > 1 {
		c.packets = make(chan packet)
		c.closing = make(chan struct{})
		c.recent = make(map[uint64]seen, dupMemory)
		c.recentRing = make([]uint64, 0, dupMemory)
		c.seed = maphash.MakeSeed()
		for i, f := range c.fams {
			c.readers.Go(func() { c.readLoop(i, f) })
		}
	}
	return c, nil
}

// openFamily opens the socket of one group on those of cands that have an
// address of its family. It returns nil (and warns) when none has, or
// when none could join.
func openFamily(g netip.AddrPort, cands []net.Interface, ttl int, warn func(reason, consequence string, used bool)) (*famConn, error) {
	v6 := g.Addr().Is6()
	famName, network := "IPv4", "udp4"
	if v6 {
		famName, network = "IPv6", "udp6"
	}
	var usable []net.Interface
	for _, ifi := range cands {
		has, linkLocalOnly, err := hasAddress(ifi, v6)
		switch {
		case err != nil:
			warn(fmt.Sprintf("interface %s: %v", ifi.Name, err), "not used for "+g.String(), false)
		case !has:
			warn(fmt.Sprintf("interface %s has no %s address", ifi.Name, famName), "not used for "+g.String(), false)
		default:
			if linkLocalOnly && ttl > 1 {
				warn(fmt.Sprintf("interface %s has only a link-local IPv6 address", ifi.Name),
					"routers do not forward what it sends to "+g.String(), true)
			}
			usable = append(usable, ifi)
		}
	}
	if len(usable) == 0 {
		return nil, nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if serr == nil && v6 {
				// Only the groups this socket joined, not those other
				// sockets of the host joined on the same port.
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
			}
		})
		return errors.Join(err, serr)
	}}
	// Binding the group address, not the wildcard, keeps unicast datagrams
	// to the port out of this socket. An IPv6 link-local group would need
	// a zone (one interface) to be bound, so it binds the wildcard.
	bind := g.String()
	if v6 && scope6(g.Addr()) <= 2 {
		bind = netip.AddrPortFrom(netip.IPv6Unspecified(), g.Port()).String()
	}
	raw, err := lc.ListenPacket(context.Background(), network, bind)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", g, err)
	}
	f := &famConn{group: g, dst: net.UDPAddrFromAddrPort(g), raw: raw}
	fail := func(err error) (*famConn, error) {
		raw.Close()
		return nil, err
	}
	for _, ifi := range usable {
		var err error
		if v6 {
			if f.p6 == nil {
				f.p6 = ipv6.NewPacketConn(raw)
			}
			err = f.p6.JoinGroup(&ifi, f.dst)
		} else {
			if f.p4 == nil {
				f.p4 = ipv4.NewPacketConn(raw)
			}
			err = f.p4.JoinGroup(&ifi, f.dst)
		}
		if err != nil {
			warn(fmt.Sprintf("interface %s: cannot join %s: %v", ifi.Name, g.Addr(), err), "not used for "+g.String(), false)
			continue
		}
		f.ifaces = append(f.ifaces, ifi)
	}
	if len(f.ifaces) == 0 {
		raw.Close()
		return nil, nil
	}
	if v6 {
		if err := f.p6.SetMulticastHopLimit(ttl); err != nil {
			return fail(fmt.Errorf("setting multicast hop limit %d: %w", ttl, err))
		}
		if err := f.p6.SetMulticastLoopback(false); err != nil {
			return fail(fmt.Errorf("turning IPv6 multicast loopback off: %w", err))
		}
	} else {
		if err := f.p4.SetMulticastTTL(ttl); err != nil {
			return fail(fmt.Errorf("setting multicast TTL %d: %w", ttl, err))
		}
		if err := f.p4.SetMulticastLoopback(false); err != nil {
			return fail(fmt.Errorf("turning multicast loopback off: %w", err))
		}
	}
	f.budget = familyBudget(f.ifaces, ttl, v6)
	return f, nil
}

// hasAddress reports whether ifi has an address of the family (IPv6: any,
// link-local included) and, for IPv6, whether all it has is link-local.
func hasAddress(ifi net.Interface, v6 bool) (has, linkLocalOnly bool, err error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false, false, fmt.Errorf("listing its addresses: %w", err)
	}
	linkLocalOnly = true
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		if ip.Is6() != v6 {
			continue
		}
		has = true
		if !ip.IsLinkLocalUnicast() {
			linkLocalOnly = false
		}
	}
	return has, has && v6 && linkLocalOnly, nil
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

// MinBudget is the payload size every path of the kind diskd runs on
// carries without fragmentation: IPv6's minimum MTU 1280 less its 40-byte
// header and UDP's 8 is 1232, and IPv4 paths are at least as wide.
const MinBudget = 1200

// Header sizes below the payload.
const (
	udpHeader  = 8
	ipv4Header = 20
	ipv6Header = 40
	// ipv6MinMTU is the smallest MTU an IPv6 link may have (RFC 8200).
	ipv6MinMTU = 1280
)

// payloadBudget is familyBudget for IPv4.
func payloadBudget(ifaces []net.Interface, ttl int) int { return familyBudget(ifaces, ttl, false) }

// familyBudget is the largest datagram payload that needs no IP
// fragmentation: the smallest interface MTU less the IP and UDP headers on
// the local link (TTL 1); across routers (TTL > 1) the path MTU is unknown,
// so no more than MinBudget. For IPv6 the MTU is the interface's IPv6 MTU
// (which a router advertisement may have lowered below the link's), and
// never below IPv6's minimum of 1280.
func familyBudget(ifaces []net.Interface, ttl int, v6 bool) int {
	b := 0
	for _, ifi := range ifaces {
		mtu, hdr := ifi.MTU, ipv4Header+udpHeader
		if v6 {
			hdr = ipv6Header + udpHeader
			if m := ipv6MTU(ifi.Name); m > 0 {
				mtu = m
			}
			mtu = max(mtu, ipv6MinMTU)
		}
		if p := mtu - hdr; mtu > 0 && (b == 0 || p < b) {
			b = p
		}
	}
	if b == 0 || (ttl > 1 && b > MinBudget) {
		return MinBudget
	}
	return b
}

// ipv6MTU reads the interface's IPv6 MTU, or returns 0.
func ipv6MTU(name string) int {
	if name == "" || strings.ContainsAny(name, "/.") {
		return 0
	}
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/mtu")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// Budget is the payload size each sent datagram must not exceed: the
// smallest of the families in use.
func (c *Conn) Budget() int { return c.budget }

// Interfaces are the interfaces a group was joined on (of any family).
func (c *Conn) Interfaces() []net.Interface { return slices.Clone(c.ifaces) }

// Groups are the groups in use, in the order given to Open; a group that
// no interface could carry is not among them.
func (c *Conn) Groups() []netip.AddrPort {
	out := make([]netip.AddrPort, len(c.fams))
	for i, f := range c.fams {
		out[i] = f.group
	}
	return out
}

// Warnings are the warnings Open gave, one line each.
func (c *Conn) Warnings() []string { return slices.Clone(c.warnings) }

// Send multicasts one datagram to every group through every interface of
// its family and returns how many (group, interface) pairs took it; an
// error is returned only when none did.
func (c *Conn) Send(b []byte) (int, error) {
	var errs []error
	sent := 0
	for _, f := range c.fams {
		for _, ifi := range f.ifaces {
			var err error
			if f.p6 != nil {
				_, err = f.p6.WriteTo(b, &ipv6.ControlMessage{IfIndex: ifi.Index}, f.dst)
			} else {
				_, err = f.p4.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifi.Index}, f.dst)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("sending to %s on %s: %w", f.group, ifi.Name, err))
				continue
			}
			sent++
		}
	}
	if sent == 0 {
		return 0, errors.Join(errs...)
	}
	return sent, nil
}

// read reads one datagram of the family.
func (f *famConn) read(buf []byte) (int, netip.Addr, error) {
	var n int
	var src net.Addr
	var err error
	if f.p6 != nil {
		n, _, src, err = f.p6.ReadFrom(buf)
	} else {
		n, _, src, err = f.p4.ReadFrom(buf)
	}
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

// Recv reads one datagram of any family into buf and returns its length
// (at most len(buf): a longer datagram is cut) and source. A datagram whose
// bytes came on another family less than 2 s before (a dual-stack peer
// sends each one once per family) is not returned again: what is heard on
// either family is one stream, and the copy is counted in Duplicates.
func (c *Conn) Recv(buf []byte) (int, netip.Addr, error) {
	if c.packets == nil {
		return c.fams[0].read(buf)
	}
	for {
		select {
		case p := <-c.packets:
			if p.err != nil {
				close(p.done)
				return 0, netip.Addr{}, p.err
			}
			dup := c.duplicate(p.b, p.fam, time.Now())
			n := copy(buf, p.b)
			close(p.done)
			if dup {
				c.duplicates.Add(1)
				continue
			}
			return n, p.src, nil
		case <-c.closing:
			return 0, netip.Addr{}, net.ErrClosed
		}
	}
}

// duplicate records that b came on family fam at now, and reports whether
// the same bytes came on another family within dupWindow. The same bytes
// on the same family are never a duplicate here: a replay is the
// protocol's to count.
func (c *Conn) duplicate(b []byte, fam int, now time.Time) bool {
	h := maphash.Bytes(c.seed, b)
	c.recentMu.Lock()
	defer c.recentMu.Unlock()
	if last, ok := c.recent[h]; ok && last.fam != fam && now.Sub(last.at) < dupWindow {
		delete(c.recent, h) // a third copy is not a duplicate of these two
		return true
	}
	if _, ok := c.recent[h]; !ok {
		if len(c.recentRing) < dupMemory {
			c.recentRing = append(c.recentRing, h)
		} else {
			delete(c.recent, c.recentRing[c.recentNext])
			c.recentRing[c.recentNext] = h
			c.recentNext = (c.recentNext + 1) % dupMemory
		}
	}
	c.recent[h] = seen{fam: fam, at: now}
	return false
}

// Duplicates counts the datagrams Recv did not return because the same
// bytes had just come on another family.
func (c *Conn) Duplicates() uint64 { return c.duplicates.Load() }

// readLoop hands one family's datagrams to Recv until Close.
func (c *Conn) readLoop(fam int, f *famConn) {
	buf := make([]byte, 1<<16)
	for {
		n, src, err := f.read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		p := packet{b: buf[:n], src: src, fam: fam, err: err, done: make(chan struct{})}
		select {
		case c.packets <- p:
		case <-c.closing:
			return
		}
		<-p.done
	}
}

// Close closes the sockets; a blocked Recv returns. It may be called more
// than once.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.closing != nil {
			close(c.closing)
		}
		err = c.closeAll()
		c.readers.Wait()
	})
	return err
}

func (c *Conn) closeAll() error {
	var errs []error
	for _, f := range c.fams {
		errs = append(errs, f.raw.Close())
	}
	return errors.Join(errs...)
}
