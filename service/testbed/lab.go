package testbed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// netnsDir is where "ip netns" keeps its named namespaces.
const netnsDir = "/var/run/netns"

// Bridge is the name of the bridge inside a lab's hub namespace.
const Bridge = "br0"

// Interface is the name of every host's network interface.
const Interface = "e0"

// Subnet is the prefix of the default segment's host addresses: its host N
// has 10.77.0.N/24 (segment K: 10.77.K.N/24, see Segment).
const Subnet = "10.77.0."

// maxHosts keeps host addresses inside the /24 (.254 is a router's).
const maxHosts = 250

var (
	hostNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)
	unsafeRE   = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
)

// Lab is a set of simulated hosts on one bridge. Create it with New (or NewT
// in tests) and always Close it. Its methods are safe for concurrent use.
type Lab struct {
	// Name is the name given to New.
	Name string
	// ID is the random prefix of every namespace and interface name of the
	// lab, such as "dk3f9a".
	ID string
	// Dir is the lab's temporary directory: disk images, control sockets,
	// daemon logs, mount points. Close removes it.
	Dir string
	// Hub is the name of the namespace that holds the bridge.
	Hub string
	// MountDir (Dir/mnt) holds the mount points of Disk.Mount(""). It is a
	// bind mount of its own, made shared, so that mounts and unmounts below
	// it reach the daemons while they run: "ip netns exec" gives each daemon
	// a mount namespace whose mounts are slaves of the caller's, and without
	// a shared mount above them (a machine whose / is private, not made
	// shared by systemd) a daemon would never see a later mount.
	MountDir string

	mu        sync.Mutex
	hosts     []*Host
	disks     []*Disk
	daemons   []*Daemon
	segments  []*Segment // segments[0] is the default one, on Bridge
	routers   []*Router
	listeners []*Listener
	closed    bool
	hubMade   bool
	mntMade   bool
}

// New creates a lab: a temporary directory and the hub namespace with its
// bridge. The name only labels the directory. On error nothing is left.
func New(name string) (*Lab, error) {
	if err := checkTools("ip", "losetup"); err != nil {
		return nil, err
	}
	name = unsafeRE.ReplaceAllString(name, "_")
	if len(name) > 40 {
		name = name[:40]
	}
	dir, err := os.MkdirTemp("", "diskd-lab-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	l := &Lab{Name: name, Dir: dir}
	for range 10 {
		id, err := randomHex(2)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(netnsDir, "dk"+id+"-hub")); err != nil {
			l.ID = "dk" + id
			break
		}
	}
	if l.ID == "" {
		os.RemoveAll(dir)
		return nil, errors.New("testbed: no free lab id")
	}
	l.Hub = l.ID + "-hub"
	l.segments = []*Segment{{Name: "lan", Index: 0, Bridge: Bridge, Family: IPv4, lab: l}}
	if err := l.setupHub(); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if err := l.setupMountDir(); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// setupMountDir makes MountDir a shared mount in a peer group of its own.
func (l *Lab) setupMountDir() error {
	dir := filepath.Join(l.Dir, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	if err := run("mount", "--bind", dir, dir); err != nil {
		return err
	}
	l.mu.Lock()
	l.MountDir, l.mntMade = dir, true
	l.mu.Unlock()
	return runAll(
		[]string{"mount", "--make-private", dir},
		[]string{"mount", "--make-shared", dir},
	)
}

func (l *Lab) setupHub() error {
	if err := run("ip", "netns", "add", l.Hub); err != nil {
		return err
	}
	l.mu.Lock()
	l.hubMade = true
	l.mu.Unlock()
	return runAll(
		[]string{"ip", "-n", l.Hub, "link", "set", "lo", "up"},
		[]string{"ip", "-n", l.Hub, "link", "add", Bridge, "type", "bridge", "mcast_snooping", "0"},
		[]string{"ip", "-n", l.Hub, "link", "set", Bridge, "up"},
	)
}

// Host is one simulated machine: a network namespace joined to one
// segment's bridge, its disks, and at most one running daemon.
type Host struct {
	// Name is the host's name (also its --hostname).
	Name string
	// NS is the network namespace, for "ip netns exec NS".
	NS string
	// Addr is the IPv4 address of e0, such as "10.77.0.2"; empty when the
	// host speaks only IPv6.
	Addr string
	// Addr6 is the IPv6 address of e0, such as "fd77::2"; empty when the
	// host speaks only IPv4.
	Addr6 string
	// Segment is the segment (bridge, subnet) the host is on.
	Segment *Segment
	// Family is what the host speaks: IPv4 (IPv6 is off on e0), IPv6 (e0
	// has no IPv4 address) or DualStack.
	Family Family
	// HostID is the --host-id: 32 hex digits like /etc/machine-id.
	HostID string
	// Socket is the control socket path its daemon is started with.
	Socket string
	// StateDir is the --state-dir its daemons are started with: the
	// host's store, kept across restarts of its daemon (a --state-dir in
	// Start's extra arguments overrides it; empty: no --state-dir).
	StateDir string
	// LogPath is the file that collects the stdout and stderr of every
	// daemon started on this host.
	LogPath string

	lab    *Lab
	n      int // 1, 2, ... in the lab: names its veth end in the hub
	mu     sync.Mutex
	disks  []*Disk
	daemon *Daemon
}

// HostOptions say where a host goes and what it speaks.
type HostOptions struct {
	// Segment is the segment to join; nil: the default segment.
	Segment *Segment
	// Family is what the host speaks; 0: its segment's Family.
	Family Family
}

// AddHost creates a host on the default segment: its namespace, the veth
// pair to the bridge, its address and multicast route. Names are lower case
// letters, digits and dashes, starting with a letter, at most 20
// characters, unique in the lab (routers included).
func (l *Lab) AddHost(name string) (*Host, error) { return l.AddHostWith(name, HostOptions{}) }

// AddHost creates a host on this segment (see Lab.AddHost).
func (s *Segment) AddHost(name string) (*Host, error) {
	return s.lab.AddHostWith(name, HostOptions{Segment: s})
}

// AddHostWith creates a host on the segment and with the family of o.
// Host number N of segment K gets 10.77.K.N/24 and the route 224.0.0.0/4
// dev e0 when it speaks IPv4 (otherwise no IPv4 address, IPv6 on e0 only),
// fd77:0:0:K::N/64 (hexadecimal N) without duplicate address detection and
// the route ff00::/8 dev e0 when it speaks IPv6 (otherwise IPv6 is turned
// off on e0). When a router serves the segment, the router's addresses are
// the host's default routes.
func (l *Lab) AddHostWith(name string, o HostOptions) (*Host, error) {
	if !hostNameRE.MatchString(name) {
		return nil, fmt.Errorf("testbed: bad host name %q (want %s)", name, hostNameRE)
	}
	hostID, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("testbed: lab is closed")
	}
	seg := o.Segment
	if seg == nil {
		seg = l.segments[0]
	}
	if seg.lab != l {
		l.mu.Unlock()
		return nil, fmt.Errorf("testbed: segment %q is not of this lab", seg.Name)
	}
	fam := o.Family
	if fam == 0 {
		fam = seg.Family
	}
	if fam&^DualStack != 0 {
		l.mu.Unlock()
		return nil, fmt.Errorf("testbed: host %s: bad family %d", name, fam)
	}
	if err := l.nameFreeLocked(name); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	m := seg.hostCount + 1
	if m > maxHosts {
		l.mu.Unlock()
		return nil, fmt.Errorf("testbed: too many hosts on segment %s", seg.Name)
	}
	seg.hostCount = m
	n := len(l.hosts) + 1
	h := &Host{
		Name:     name,
		NS:       l.ID + "-" + name,
		Segment:  seg,
		Family:   fam,
		HostID:   hostID,
		Socket:   filepath.Join(l.Dir, name+".sock"),
		StateDir: filepath.Join(l.Dir, name+".state"),
		LogPath:  filepath.Join(l.Dir, name+".log"),
		lab:      l,
		n:        n,
	}
	if fam&IPv4 != 0 {
		h.Addr = seg.addr4(m).String()
	}
	if fam&IPv6 != 0 {
		h.Addr6 = seg.addr6(m).String()
	}
	gw := seg.gateway
	l.mu.Unlock()
	if len(h.Socket) >= 108 {
		return nil, fmt.Errorf("testbed: socket path %s too long for a Unix socket (set TMPDIR shorter)", h.Socket)
	}

	if err := run("ip", "netns", "add", h.NS); err != nil {
		return nil, err
	}
	// Recorded from here on: Close deletes the namespace whatever fails next.
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()

	veth := h.hubVeth()
	err = runAll(
		[]string{"ip", "-n", l.Hub, "link", "add", veth, "type", "veth", "peer", "name", Interface, "netns", h.NS},
		[]string{"ip", "-n", l.Hub, "link", "set", veth, "master", seg.Bridge, "up"},
		[]string{"ip", "-n", h.NS, "link", "set", "lo", "up"},
	)
	if err == nil {
		err = configureIface(h.NS, Interface, h.Addr, h.Addr6, seg, fam)
	}
	if err == nil {
		err = runAll(multicastRoutes(h.NS, Interface, fam)...)
	}
	if err == nil && gw != nil {
		err = runAll(defaultRoutes(h.NS, gw, seg, fam)...)
	}
	if err != nil {
		return nil, fmt.Errorf("testbed: host %s: %w", name, err)
	}
	return h, nil
}

// nameFreeLocked checks that no host or router of the lab has the name.
func (l *Lab) nameFreeLocked(name string) error {
	for _, h := range l.hosts {
		if h.Name == name {
			return fmt.Errorf("testbed: host %q exists", name)
		}
	}
	for _, r := range l.routers {
		if r.Name == name {
			return fmt.Errorf("testbed: router %q exists", name)
		}
	}
	return nil
}

// hubVeth is the name of the host's veth end in the hub (≤ 15 bytes).
func (h *Host) hubVeth() string { return h.lab.ID + "-v" + strconv.Itoa(h.n) }

// Hosts returns the lab's hosts in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Disks returns the host's disks in the order they were added.
func (h *Host) Disks() []*Disk {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Disk(nil), h.disks...)
}

// Daemon returns the daemon started last on the host, or nil.
func (h *Host) Daemon() *Daemon {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.daemon
}

// Command returns a command that runs name with args inside the host's
// network namespace ("ip netns exec NS name args..."). The caller starts it
// and must end it; the lab does not track it, and Close cannot delete a
// namespace that still has processes in it.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Close tears the lab down: kills (SIGKILL, by PID) every daemon it started
// and waits for it, stops the routers' smcrouted (by PID), unmounts the
// disks it mounted and MountDir, detaches the loop devices still backed by
// its images, deletes the host and router namespaces and the hub (and with
// them the veth pairs and the bridges) and removes Dir. It returns every
// error it met but always tries every step. Calling it again does nothing.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	daemons := append([]*Daemon(nil), l.daemons...)
	disks := append([]*Disk(nil), l.disks...)
	hosts := append([]*Host(nil), l.hosts...)
	routers := append([]*Router(nil), l.routers...)
	listeners := append([]*Listener(nil), l.listeners...)
	hubMade, mntMade := l.hubMade, l.mntMade
	l.mu.Unlock()

	var errs []error
	for _, ln := range listeners {
		_ = ln.Close() // closed twice is not an error worth reporting
	}
	for _, d := range daemons {
		if err := d.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range routers {
		if err := r.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	mountsOK := true
	for _, d := range disks {
		if err := d.Unmount(); err != nil {
			// A busy mount point: detach it lazily, it is ours.
			if err2 := run("umount", "-l", d.mountpoint()); err2 != nil {
				errs = append(errs, err, err2)
				mountsOK = false
				continue
			}
			d.clearMount()
		}
	}
	if mntMade && mountsOK {
		if err := run("umount", l.MountDir); err != nil {
			if err2 := run("umount", "-l", l.MountDir); err2 != nil {
				errs = append(errs, err, err2)
				mountsOK = false
			}
		}
	}
	for _, d := range disks {
		if err := d.release(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(hosts) - 1; i >= 0; i-- {
		if err := delNetns(hosts[i].NS); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(routers) - 1; i >= 0; i-- {
		if err := delNetns(routers[i].NS); err != nil {
			errs = append(errs, err)
		}
	}
	if hubMade {
		if err := delNetns(l.Hub); err != nil {
			errs = append(errs, err)
		}
	}
	// Never remove a directory with something still mounted below it: that
	// would delete files inside the mounted filesystem.
	if mountsOK && !mountedBelow(l.Dir) {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	} else {
		errs = append(errs, fmt.Errorf("testbed: %s left in place: something is still mounted below it", l.Dir))
	}
	return errors.Join(errs...)
}

// delNetns deletes a named namespace if it exists.
func delNetns(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return run("ip", "netns", "del", name)
}

// mountedBelow reports whether a mount point lies at or below dir.
func mountedBelow(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true // unknown: be safe
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the octal escapes (\040 etc.) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// run runs a command and returns an error that includes its output.
func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

// output runs a command and returns its stdout.
func output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + " " + stdout.String())
		return stdout.String(), fmt.Errorf("testbed: %s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

func runAll(cmds ...[]string) error {
	for _, c := range cmds {
		if err := run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

func checkTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("testbed: %s not found: %w", n, err)
		}
	}
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	return hex.EncodeToString(b), nil
}
