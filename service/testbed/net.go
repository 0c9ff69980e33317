package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Family is what a host or segment speaks: IPv4, IPv6 or both.
type Family uint8

// Families.
const (
	IPv4      Family        = 1 << iota // an IPv4 address; IPv6 turned off
	IPv6                                // an IPv6 address; no IPv4 address
	DualStack = IPv4 | IPv6             // both
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	case DualStack:
		return "dual-stack"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// Segment is one Ethernet segment of a lab, and one subnet: a bridge in
// the hub namespace. Segment K (0 is the default segment, on Bridge) has
// the subnets 10.77.K.0/24 and fd77:0:0:K::/64; its hosts are numbered 1,
// 2, ... in the order they join, and a router's address on it is
// 10.77.K.254 and fd77:0:0:K::fe.
type Segment struct {
	// Name labels the segment ("lan" for the default one).
	Name string
	// Index is K.
	Index int
	// Bridge is the bridge's name in the hub namespace ("brK").
	Bridge string
	// Family is what the segment's hosts (and routers) speak unless
	// HostOptions say otherwise.
	Family Family

	lab       *Lab
	hostCount int     // under lab.mu
	gateway   *Router // the first router on the segment; under lab.mu
}

// maxSegments keeps segment numbers inside 10.77.K.
const maxSegments = 255

// routerHost is the host number of a router on every segment.
const routerHost = 254

// Prefix4 is the segment's IPv4 subnet, 10.77.K.0/24.
func (s *Segment) Prefix4() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(s.Index), 0}), 24)
}

// Prefix6 is the segment's IPv6 subnet, fd77:0:0:K::/64.
func (s *Segment) Prefix6() netip.Prefix { return netip.PrefixFrom(s.addr6(0), 64) }

func (s *Segment) addr4(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 77, byte(s.Index), byte(n)})
}

func (s *Segment) addr6(n int) netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0xfd, 0x77, 0, 0
	b[6], b[7] = byte(s.Index>>8), byte(s.Index)
	b[14], b[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(b)
}

// Lab returns the lab the segment belongs to.
func (s *Segment) Lab() *Lab { return s.lab }

// DefaultSegment is the segment that Lab.AddHost uses: segment 0 on
// Bridge, IPv4.
func (l *Lab) DefaultSegment() *Segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segments[0]
}

// Segments returns the lab's segments, the default one first.
func (l *Lab) Segments() []*Segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Segment(nil), l.segments...)
}

// AddSegment adds a segment (a bridge in the hub, with multicast snooping
// off like the default one) whose hosts speak fam by default.
func (l *Lab) AddSegment(name string, fam Family) (*Segment, error) {
	if !hostNameRE.MatchString(name) {
		return nil, fmt.Errorf("testbed: bad segment name %q (want %s)", name, hostNameRE)
	}
	if fam == 0 || fam&^DualStack != 0 {
		return nil, fmt.Errorf("testbed: segment %s: bad family %d", name, fam)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("testbed: lab is closed")
	}
	for _, s := range l.segments {
		if s.Name == name {
			l.mu.Unlock()
			return nil, fmt.Errorf("testbed: segment %q exists", name)
		}
	}
	k := len(l.segments)
	if k >= maxSegments {
		l.mu.Unlock()
		return nil, errors.New("testbed: too many segments")
	}
	s := &Segment{Name: name, Index: k, Bridge: "br" + strconv.Itoa(k), Family: fam, lab: l}
	l.segments = append(l.segments, s)
	l.mu.Unlock()
	// The bridge lives in the hub: deleting the hub removes it.
	if err := runAll(
		[]string{"ip", "-n", l.Hub, "link", "add", s.Bridge, "type", "bridge", "mcast_snooping", "0"},
		[]string{"ip", "-n", l.Hub, "link", "set", s.Bridge, "up"},
	); err != nil {
		return nil, fmt.Errorf("testbed: segment %s: %w", name, err)
	}
	return s, nil
}

// configureIface gives the interface ifname of namespace ns the addresses
// of fam on seg and brings it up: IPv6 is turned off on it unless fam has
// IPv6, and has no duplicate address detection (the link-local address
// too) when it does.
func configureIface(ns, ifname, addr4, addr6 string, seg *Segment, fam Family) error {
	sysctl := map[string]string{}
	if fam&IPv6 == 0 {
		sysctl["net/ipv6/conf/"+ifname+"/disable_ipv6"] = "1"
	} else {
		sysctl["net/ipv6/conf/"+ifname+"/accept_dad"] = "0"
	}
	if err := setSysctls(ns, sysctl); err != nil {
		return err
	}
	var cmds [][]string
	if addr4 != "" {
		cmds = append(cmds, []string{"ip", "-n", ns, "addr", "add", addr4 + "/24", "dev", ifname})
	}
	if addr6 != "" {
		cmds = append(cmds, []string{"ip", "-n", ns, "-6", "addr", "add", addr6 + "/64", "dev", ifname, "nodad"})
	}
	cmds = append(cmds, []string{"ip", "-n", ns, "link", "set", ifname, "up"})
	return runAll(cmds...)
}

// multicastRoutes are a host's routes that send multicast out of ifname.
func multicastRoutes(ns, ifname string, fam Family) [][]string {
	var cmds [][]string
	if fam&IPv4 != 0 {
		cmds = append(cmds, []string{"ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", ifname})
	}
	if fam&IPv6 != 0 {
		cmds = append(cmds, []string{"ip", "-n", ns, "-6", "route", "add", "ff00::/8", "dev", ifname})
	}
	return cmds
}

// defaultRoutes point a host's default routes at the router on seg, for
// the families both the host and the segment speak.
func defaultRoutes(ns string, gw *Router, seg *Segment, fam Family) [][]string {
	var cmds [][]string
	if fam&seg.Family&IPv4 != 0 {
		cmds = append(cmds, []string{"ip", "-n", ns, "route", "add", "default", "via", seg.addr4(routerHost).String()})
	}
	if fam&seg.Family&IPv6 != 0 {
		cmds = append(cmds, []string{"ip", "-n", ns, "-6", "route", "add", "default", "via", seg.addr6(routerHost).String()})
	}
	return cmds
}

// setSysctls writes /proc/sys/KEY = value inside namespace ns.
func setSysctls(ns string, kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	return inNetns(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("testbed: sysctl %s=%s in %s: %w", strings.ReplaceAll(k, "/", "."), v, ns, err)
			}
		}
		return nil
	})
}

// RouterOptions say what a router does besides routing unicast.
type RouterOptions struct {
	// Groups are multicast groups (IPv4 or IPv6) that smcrouted forwards
	// from each of the router's segments to all its others. Empty: no
	// multicast routing daemon runs, so the router forwards no multicast.
	Groups []netip.Addr
	// DropMulticast adds an nftables rule set that drops every forwarded
	// datagram to 224.0.0.0/4 or ff00::/8, whatever smcrouted would do.
	DropMulticast bool
}

// Router is a namespace joined to several segments, with forwarding on:
// it routes unicast between them (net.ipv4.ip_forward=1 and
// net.ipv6.conf.all.forwarding=1) and, with RouterOptions.Groups, multicast
// too (smcrouted). Its interface on segment K is named "rK".
type Router struct {
	// Name is the router's name.
	Name string
	// NS is its network namespace.
	NS string
	// Segments are the segments it joins.
	Segments []*Segment
	// Options are the options it was made with.
	Options RouterOptions
	// LogPath collects smcrouted's output.
	LogPath string

	lab     *Lab
	n       int // 1, 2, ... in the lab: names its veth ends in the hub
	mu      sync.Mutex
	cmd     *exec.Cmd // smcrouted, or nil
	done    chan struct{}
	waitErr error
}

// AddRouter creates a router on two or more segments: its namespace, a
// veth pair into each segment's bridge with the router's addresses there,
// forwarding, the optional nftables rules, and smcrouted when
// o.Groups is not empty (it returns once smcrouted has installed every
// route). The first router on a segment becomes the default route of the
// segment's hosts, those there already and those added later.
//
// smcrouted runs as
//
//	ip netns exec NS smcrouted -n -N -f Dir/NAME-smcroute.conf -u Dir/NAME-smcroute.sock -P Dir/NAME-smcroute.pid -l info
//
// with "phyint rK enable" for each segment and, for each group G and
// segment K, "mroute from rK group G to" every other segment's interface.
// Close stops it (SIGTERM, then SIGKILL, by PID).
func (l *Lab) AddRouter(name string, segs []*Segment, o RouterOptions) (*Router, error) {
	if !hostNameRE.MatchString(name) {
		return nil, fmt.Errorf("testbed: bad router name %q (want %s)", name, hostNameRE)
	}
	if len(segs) < 2 {
		return nil, fmt.Errorf("testbed: router %s: needs two segments or more, got %d", name, len(segs))
	}
	for i, s := range segs {
		if s == nil || s.lab != l {
			return nil, fmt.Errorf("testbed: router %s: segment %d is not of this lab", name, i)
		}
		for _, t := range segs[:i] {
			if t == s {
				return nil, fmt.Errorf("testbed: router %s: segment %s given twice", name, s.Name)
			}
		}
	}
	for _, g := range o.Groups {
		if !g.IsMulticast() || g.Zone() != "" {
			return nil, fmt.Errorf("testbed: router %s: %s is not a multicast group", name, g)
		}
	}
	if len(o.Groups) > 0 {
		if err := checkTools("smcrouted", "smcroutectl"); err != nil {
			return nil, err
		}
	}
	if o.DropMulticast {
		if err := checkTools("nft"); err != nil {
			return nil, err
		}
	}
	r := &Router{
		Name: name, Segments: append([]*Segment(nil), segs...), Options: o,
		LogPath: filepath.Join(l.Dir, name+".log"), lab: l,
	}
	r.Options.Groups = append([]netip.Addr(nil), o.Groups...)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("testbed: lab is closed")
	}
	if err := l.nameFreeLocked(name); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	r.n = len(l.routers) + 1
	r.NS = l.ID + "-" + name
	l.mu.Unlock()

	if err := run("ip", "netns", "add", r.NS); err != nil {
		return nil, err
	}
	// Recorded from here on: Close deletes the namespace and stops the
	// daemon whatever fails next.
	l.mu.Lock()
	l.routers = append(l.routers, r)
	l.mu.Unlock()
	if err := r.setUp(); err != nil {
		return nil, fmt.Errorf("testbed: router %s: %w", name, err)
	}

	// The router becomes the gateway of segments without one.
	type hostRoute struct {
		h   *Host
		seg *Segment
	}
	var todo []hostRoute
	l.mu.Lock()
	for _, s := range segs {
		if s.gateway != nil {
			continue
		}
		s.gateway = r
		for _, h := range l.hosts {
			if h.Segment == s {
				todo = append(todo, hostRoute{h, s})
			}
		}
	}
	l.mu.Unlock()
	for _, hr := range todo {
		if err := runAll(defaultRoutes(hr.h.NS, r, hr.seg, hr.h.Family)...); err != nil {
			return nil, fmt.Errorf("testbed: router %s: default route of %s: %w", name, hr.h.Name, err)
		}
	}
	return r, nil
}

// Iface is the name of the router's interface on segment s.
func (r *Router) Iface(s *Segment) string { return "r" + strconv.Itoa(s.Index) }

// Addr is the router's IPv4 address on segment s (10.77.K.254).
func (r *Router) Addr(s *Segment) netip.Addr { return s.addr4(routerHost) }

// Addr6 is the router's IPv6 address on segment s (fd77:0:0:K::fe).
func (r *Router) Addr6(s *Segment) netip.Addr { return s.addr6(routerHost) }

func (r *Router) setUp() error {
	l := r.lab
	fams := Family(0)
	if err := run("ip", "-n", r.NS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	for _, s := range r.Segments {
		fams |= s.Family
		hub := l.ID + "-r" + strconv.Itoa(r.n) + "s" + strconv.Itoa(s.Index)
		ifname := r.Iface(s)
		if err := runAll(
			[]string{"ip", "-n", l.Hub, "link", "add", hub, "type", "veth", "peer", "name", ifname, "netns", r.NS},
			[]string{"ip", "-n", l.Hub, "link", "set", hub, "master", s.Bridge, "up"},
		); err != nil {
			return err
		}
		var a4, a6 string
		if s.Family&IPv4 != 0 {
			a4 = r.Addr(s).String()
		}
		if s.Family&IPv6 != 0 {
			a6 = r.Addr6(s).String()
		}
		if err := configureIface(r.NS, ifname, a4, a6, s, s.Family); err != nil {
			return err
		}
	}
	fwd := map[string]string{"net/ipv4/ip_forward": "1"}
	if fams&IPv6 != 0 {
		fwd["net/ipv6/conf/all/forwarding"] = "1"
	}
	if err := setSysctls(r.NS, fwd); err != nil {
		return err
	}
	if r.Options.DropMulticast {
		rules := filepath.Join(l.Dir, r.Name+"-nft.conf")
		if err := os.WriteFile(rules, []byte(dropMulticastRules), 0o600); err != nil {
			return err
		}
		if err := run("ip", "netns", "exec", r.NS, "nft", "-f", rules); err != nil {
			return err
		}
	}
	if len(r.Options.Groups) > 0 {
		return r.startSmcroute()
	}
	return nil
}

// dropMulticastRules is the nftables rule set of RouterOptions.DropMulticast.
const dropMulticastRules = `table inet testbed {
	chain forward {
		type filter hook forward priority 0; policy accept;
		ip daddr 224.0.0.0/4 counter drop
		ip6 daddr ff00::/8 counter drop
	}
}
`

// smcrouteConf is smcrouted's configuration for the router.
func (r *Router) smcrouteConf() string {
	var b strings.Builder
	b.WriteString("# testbed router " + r.Name + "\n")
	for _, s := range r.Segments {
		fmt.Fprintf(&b, "phyint %s enable\n", r.Iface(s))
	}
	for _, g := range r.Options.Groups {
		for _, in := range r.Segments {
			var outs []string
			for _, s := range r.Segments {
				if s != in {
					outs = append(outs, r.Iface(s))
				}
			}
			fmt.Fprintf(&b, "mroute from %s group %s to %s\n", r.Iface(in), g, strings.Join(outs, " "))
		}
	}
	return b.String()
}

func (r *Router) smcroutePath(ext string) string {
	return filepath.Join(r.lab.Dir, r.Name+"-smcroute."+ext)
}

func (r *Router) startSmcroute() error {
	conf, sock := r.smcroutePath("conf"), r.smcroutePath("sock")
	if len(sock) >= 108 {
		return fmt.Errorf("socket path %s too long for a Unix socket (set TMPDIR shorter)", sock)
	}
	if err := os.WriteFile(conf, []byte(r.smcrouteConf()), 0o600); err != nil {
		return err
	}
	log, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	args := []string{"netns", "exec", r.NS, "smcrouted", "-n", "-N", "-f", conf, "-u", sock, "-P", r.smcroutePath("pid"), "-l", "info"}
	fmt.Fprintf(log, "### testbed %s: ip %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r.mu.Lock()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("starting smcrouted: %w", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	r.mu.Unlock()
	go func() {
		r.waitErr = cmd.Wait()
		close(r.done)
	}()

	// Ready when smcroutectl lists every (*,G) route of the configuration.
	want := len(r.Options.Groups) * len(r.Segments)
	deadline := time.Now().Add(StartTimeout)
	for {
		out, err := output("ip", "netns", "exec", r.NS, "smcroutectl", "-p", "-u", sock, "show", "routes")
		got := 0
		if err == nil {
			got = strings.Count(out, "(*, ")
		}
		if got >= want {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("smcrouted exited at start (%v); log:\n%s", r.waitErr, tail(readFile(r.LogPath), 20))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smcrouted installed %d of %d routes within %v (last: %v); log:\n%s",
				got, want, StartTimeout, err, tail(readFile(r.LogPath), 20))
		}
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// PID is smcrouted's process id, or 0 when the router runs none.
func (r *Router) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Stop stops smcrouted, if it runs: SIGTERM, then SIGKILL after
// StopTimeout, by PID. The router keeps routing unicast, and multicast
// routes it installed go with it. Calling it again does nothing.
func (r *Router) Stop() error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(StopTimeout):
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testbed: SIGKILL smcrouted %d: %w", cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return fmt.Errorf("testbed: smcrouted of %s (pid %d) ignored SIGTERM for %v; killed", r.Name, cmd.Process.Pid, StopTimeout)
	case <-time.After(StopTimeout):
		return fmt.Errorf("testbed: smcrouted %d still there %v after SIGKILL", cmd.Process.Pid, StopTimeout)
	}
}

// VIF is one line of the kernel's multicast routing interface table
// (/proc/net/ip_mr_vif, /proc/net/ip6_mr_vif): what the router received
// and forwarded on one interface.
type VIF struct {
	Iface           string
	PktsIn, PktsOut uint64
}

// MulticastStats returns the router's multicast interface counters of
// one family (IPv4 or IPv6), one entry per interface smcrouted enabled.
func (r *Router) MulticastStats(fam Family) ([]VIF, error) {
	file := "ip_mr_vif"
	switch fam {
	case IPv4:
	case IPv6:
		file = "ip6_mr_vif"
	default:
		return nil, fmt.Errorf("testbed: MulticastStats of %v: want IPv4 or IPv6", fam)
	}
	var data []byte
	err := inNetns(r.NS, func() error {
		var err error
		// thread-self: /proc/self/net would be the process's namespace.
		data, err = os.ReadFile("/proc/thread-self/net/" + file)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: router %s: %w", r.Name, err)
	}
	var out []VIF
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 6 {
			continue // the header
		}
		// Index Interface BytesIn PktsIn BytesOut PktsOut ...
		in, err1 := strconv.ParseUint(f[3], 10, 64)
		outp, err2 := strconv.ParseUint(f[5], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("testbed: router %s: bad line in %s: %q", r.Name, file, line)
		}
		out = append(out, VIF{Iface: f[1], PktsIn: in, PktsOut: outp})
	}
	return out, nil
}

// Routers returns the lab's routers in the order they were added.
func (l *Lab) Routers() []*Router {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Router(nil), l.routers...)
}
