package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/gossip"
	"github.com/diskd/diskd/service/logging"
	"github.com/diskd/diskd/service/multicast"
	"github.com/diskd/diskd/service/peer"
)

// options is what the command line asks for.
type options struct {
	daemon   bool
	version  bool
	socket   string
	logLevel slog.Level
	// stateDir is --state-dir as given ("" when not given).
	stateDir string
	cfg      daemon.Config
	// The gossip flags as given; parseArgs checks them into cfg.
	join                        listFlag
	gossipBind, gossipAdvertise string
	// command is a control request given as arguments (diskd list
	// --json): the client sends it alone and exits with its status.
	command []string
}

// usageError is a bad command line: one line on stderr, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// durationFlag accepts Go durations ("1.5s", "10m") and plain seconds ("30").
type durationFlag struct{ d *time.Duration }

// String is the duration as Go writes it, without trailing zero units
// ("1m", not "1m0s").
func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	s := f.d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (f durationFlag) Set(v string) error {
	if days, ok := strings.CutSuffix(v, "d"); ok { // "365d"
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 && n < 1e5 {
			*f.d = time.Duration(n * float64(24*time.Hour))
			return nil
		}
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		*f.d = time.Duration(s * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 10s, 1m or 500ms")
	}
	*f.d = d
	return nil
}

var hostIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// daemonOnly are the flags that mean nothing to the client.
var daemonOnly = []string{"group", "interface", "ttl", "announce-interval", "scan-interval",
	"peer-timeout", "blkid", "blkid-timeout", "device", "host-id", "hostname", "bus", "key-file", "no-uevents",
	"join", "gossip-bind", "gossip-advertise", "gossip-insecure", "no-multicast",
	"log-level", "max-clock-skew", "state-dir", "history-max", "history-max-age", "return-after"}

// shortFlags are the one-letter spellings of long flags.
var shortFlags = map[string]string{"d": "daemon", "V": "version"}

// defaultLogLevel is --log-level's default.
const defaultLogLevel = "info"

// defaults are the options before any flag: what --help shows as defaults.
func defaults() options {
	return options{cfg: daemon.Config{
		TTL:              1,
		AnnounceInterval: daemon.DefaultAnnounceInterval,
		ScanInterval:     daemon.DefaultScanInterval,
		BlkidTimeout:     daemon.DefaultBlkidTimeout,
		Blkid:            "blkid",
		Bus:              "system",
		HistoryMax:       daemon.DefaultHistoryMax,
		HistoryMaxAge:    daemon.DefaultHistoryMaxAge,
		ReturnAfter:      daemon.DefaultReturnAfter,
		MaxClockSkew:     peer.DefaultMaxClockSkew,
	}}
}

// groupFlag collects --group values; String shows the default when none
// was given.
type groupFlag struct{ vals []string }

func (g *groupFlag) String() string {
	if g == nil || len(g.vals) == 0 {
		return daemon.DefaultGroup.String()
	}
	return strings.Join(g.vals, ",")
}
func (g *groupFlag) Set(v string) error { g.vals = append(g.vals, v); return nil }

// parseGroups turns the --group values into at most one group per address
// family (none given: the IPv4 default).
func parseGroups(vals []string) ([]netip.AddrPort, error) {
	if len(vals) == 0 {
		return []netip.AddrPort{daemon.DefaultGroup}, nil
	}
	var out []netip.AddrPort
	for _, v := range vals {
		if len(v) > 64 {
			return nil, usagef("flag --group: %.64q... is too long for ADDR:PORT", v)
		}
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			return nil, usagef("flag --group: %q is not ADDR:PORT (e.g. %s or %s)", v, daemon.DefaultGroup, daemon.DefaultGroup6)
		}
		if ap, err = multicast.ValidateGroup(ap); err != nil {
			return nil, usagef("flag --group: %v", err)
		}
		for _, o := range out {
			if o.Addr().Is4() == ap.Addr().Is4() {
				fam := "IPv6"
				if ap.Addr().Is4() {
					fam = "IPv4"
				}
				return nil, usagef("flag --group: two %s groups (%s and %s); give at most one per address family", fam, o, ap)
			}
		}
		out = append(out, ap)
	}
	return out, nil
}

// newFlagSet defines the flags on o, whose values are the defaults.
func newFlagSet(o *options, ifaces, devices *listFlag, group *groupFlag, logLevel *string) *flag.FlagSet {
	fs := flag.NewFlagSet("diskd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &o.cfg
	fs.BoolVar(&o.daemon, "d", o.daemon, "same as --daemon")
	fs.BoolVar(&o.daemon, "daemon", o.daemon, "run the network daemon (without it: the interactive client)")
	fs.BoolVar(&o.version, "V", o.version, "same as --version")
	fs.BoolVar(&o.version, "version", o.version, "print the version and exit")
	fs.StringVar(&o.socket, "socket", "", "control socket path")
	fs.Var(group, "group", "multicast group and UDP port, IPv4 ADDR:PORT or IPv6 [ADDR]:PORT such as "+daemon.DefaultGroup6.String()+"; once per address family")
	fs.Var(ifaces, "interface", "interface to use (repeatable)")
	fs.IntVar(&c.TTL, "ttl", c.TTL, "multicast TTL (hops + 1 to cross routers)")
	fs.Var(durationFlag{&c.AnnounceInterval}, "announce-interval", "full announcement period")
	fs.Var(durationFlag{&c.ScanInterval}, "scan-interval", "safety rescan period")
	fs.Var(durationFlag{&c.PeerTimeout}, "peer-timeout", "peer lost after this long unheard")
	fs.StringVar(&c.Blkid, "blkid", c.Blkid, "program run to probe devices")
	fs.Var(durationFlag{&c.BlkidTimeout}, "blkid-timeout", "a probe running longer is killed")
	fs.Var(devices, "device", "probe only device paths matching this glob (repeatable)")
	fs.StringVar(&c.HostID, "host-id", c.HostID, "stable identity of this host")
	fs.StringVar(&c.Hostname, "hostname", c.Hostname, "name shown to people")
	fs.StringVar(&c.Bus, "bus", c.Bus, "D-Bus to export org.diskd on: system, session, none or an address")
	fs.StringVar(&c.KeyFile, "key-file", c.KeyFile, "keyring: seal every datagram, accept only sealed ones")
	fs.BoolVar(&c.NoUevents, "no-uevents", c.NoUevents, "do not listen to kernel uevents and mount changes; poll only")
	fs.StringVar(&o.stateDir, "state-dir", o.stateDir, "directory of the store (history, replay marks), or none")
	fs.IntVar(&c.HistoryMax, "history-max", c.HistoryMax, "remember at most this many disks (and peers)")
	fs.Var(durationFlag{&c.HistoryMaxAge}, "history-max-age", "forget disks not seen for this long (such as 365d)")
	fs.Var(durationFlag{&c.ReturnAfter}, "return-after", "a disk back after being gone this long is reported as returned")
	fs.Var(durationFlag{&c.MaxClockSkew}, "max-clock-skew", "with --key-file: drop sealed messages sent further than this from our clock (replay window)")
	fs.Var(&o.join, "join", "turn the gossip mesh on and join this seed (repeatable; a name may resolve to several hosts; default port "+strconv.Itoa(gossip.DefaultPort)+")")
	fs.StringVar(&o.gossipBind, "gossip-bind", o.gossipBind, "gossip address and port, UDP and TCP (turns the mesh on; default 0.0.0.0:"+strconv.Itoa(gossip.DefaultPort)+")")
	fs.StringVar(&o.gossipAdvertise, "gossip-advertise", o.gossipAdvertise, "address and port the other members reach this host on (behind NAT)")
	fs.BoolVar(&c.GossipInsecure, "gossip-insecure", c.GossipInsecure, "allow the gossip mesh without --key-file (unencrypted, unauthenticated)")
	fs.BoolVar(&c.NoMulticast, "no-multicast", c.NoMulticast, "open no multicast socket; peers only through the gossip mesh")
	fs.StringVar(logLevel, "log-level", defaultLogLevel, "log records of this level and above: "+strings.Join(logging.Levels, ", "))
	return fs
}

// parseArgs turns the command line into options, or a *usageError naming
// the flag that is wrong.
// env reads an environment variable and exists whether a path exists; uid
// is the caller's.
func parseArgs(args []string, env func(string) string, uid int, exists func(string) bool) (options, error) {
	o := defaults()
	var ifaces, devices listFlag
	var group groupFlag
	var logLevel string
	fs := newFlagSet(&o, &ifaces, &devices, &group, &logLevel)
	err := fs.Parse(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usagef("%s", flagErrorText(err))
	}
	if fs.NArg() > 0 {
		if o.daemon {
			return o, usagef("unexpected argument %q: the daemon (-d) takes no command (see diskd --help)", fs.Arg(0))
		}
		o.command = fs.Args()
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		set[f.Name] = true
		if long, ok := shortFlags[f.Name]; ok {
			set[long] = true
		}
	})
	if !o.daemon {
		for _, n := range daemonOnly {
			if set[n] {
				return o, usagef("flag --%s needs -d (it configures the daemon, not the client)", n)
			}
		}
	}
	c := &o.cfg
	c.Interfaces, c.Devices = ifaces, devices
	if o.logLevel, err = logging.ParseLevel(logLevel); err != nil {
		return o, usagef("flag --log-level: %v", err)
	}

	groups, err := parseGroups(group.vals)
	if err != nil {
		return o, err
	}
	c.Groups = groups
	if c.TTL < 1 || c.TTL > 255 {
		return o, usagef("flag --ttl: %d is out of range 1..255", c.TTL)
	}
	for _, d := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
		optional bool
	}{
		{"announce-interval", c.AnnounceInterval, 100 * time.Millisecond, time.Hour, false},
		{"scan-interval", c.ScanInterval, 100 * time.Millisecond, 24 * time.Hour, false},
		{"peer-timeout", c.PeerTimeout, 100 * time.Millisecond, 24 * time.Hour, true},
		{"blkid-timeout", c.BlkidTimeout, 10 * time.Millisecond, time.Hour, false},
		{"history-max-age", c.HistoryMaxAge, time.Hour, 100 * 365 * 24 * time.Hour, false},
		{"return-after", c.ReturnAfter, 0, 24 * time.Hour, false},
		{"max-clock-skew", c.MaxClockSkew, 100 * time.Millisecond, 24 * time.Hour, false},
	} {
		if d.optional && d.v == 0 && !set[d.name] {
			continue
		}
		if d.v < d.min || d.v > d.max {
			return o, usagef("flag --%s: %v is out of range %v..%v", d.name, d.v, d.min, d.max)
		}
	}
	if c.Blkid == "" {
		return o, usagef("flag --blkid: empty program name")
	}
	for _, g := range c.Devices {
		if _, err := filepath.Match(g, ""); err != nil || !strings.HasPrefix(g, "/") {
			return o, usagef("flag --device: %q is not an absolute path glob (e.g. /dev/sd*)", g)
		}
	}
	for _, n := range c.Interfaces {
		if n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t") {
			return o, usagef("flag --interface: %q is not an interface name", n)
		}
	}
	if set["host-id"] && !hostIDRe.MatchString(c.HostID) {
		return o, usagef("flag --host-id: %q must be 1 to 64 of A-Z a-z 0-9 . _ : -", c.HostID)
	}
	if set["hostname"] && !validHostname(c.Hostname) {
		return o, usagef("flag --hostname: %q must be 1 to 253 bytes of printable UTF-8", c.Hostname)
	}
	switch c.Bus {
	case "system", "session", "none":
	default:
		if !strings.Contains(c.Bus, ":") {
			return o, usagef("flag --bus: %q is not system, session, none or a D-Bus address (unix:path=...)", c.Bus)
		}
	}
	if c.HistoryMax < 1 || c.HistoryMax > 10_000_000 {
		return o, usagef("flag --history-max: %d is out of range 1..10000000", c.HistoryMax)
	}
	switch {
	case set["state-dir"] && o.stateDir == "":
		return o, usagef("flag --state-dir: empty; give a directory or none")
	case o.stateDir == "none":
		c.StateDir = ""
	case o.stateDir != "":
		c.StateDir = o.stateDir
	default:
		c.StateDir = stateDirPath(env, uid)
	}
	if err := parseGossip(&o, set); err != nil {
		return o, err
	}
	o.socket = socketPath(o.socket, env, uid)
	// A client of an ordinary user with no daemon of its own talks to the
	// system's (members of group diskd may use its socket).
	if !o.daemon && !set["socket"] && uid != 0 && !exists(o.socket) && exists(systemSocket) {
		o.socket = systemSocket
	}
	c.Socket = o.socket
	return o, nil
}

// flagErrorText rewrites the flag package's messages to name flags the way
// they are documented, with two dashes.
func flagErrorText(err error) string {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: -", "unknown flag --", 1)
	msg = strings.Replace(msg, " for flag -", " for flag --", 1)
	msg = strings.Replace(msg, "flag needs an argument: -", "flag needs an argument: --", 1)
	return msg
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 || !utf8.ValidString(h) {
		return false
	}
	for _, r := range h {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// systemSocket is the system daemon's control socket (diskd.socket).
const systemSocket = "/run/diskd/diskd.sock"

// pathExists is parseArgs' exists for real use.
func pathExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// stateDirPath is --state-dir's default: the directory systemd made for the
// unit's StateDirectory= ($STATE_DIRECTORY, its first entry), else
// /var/lib/diskd for root, else $XDG_STATE_HOME/diskd, else
// ~/.local/state/diskd.
func stateDirPath(env func(string) string, uid int) string {
	if dirs := env("STATE_DIRECTORY"); dirs != "" {
		first, _, _ := strings.Cut(dirs, ":")
		return first
	}
	switch {
	case uid == 0:
		return "/var/lib/diskd"
	case env("XDG_STATE_HOME") != "":
		return filepath.Join(env("XDG_STATE_HOME"), "diskd")
	}
	home := env("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".local", "state", "diskd")
}

// socketPath applies the documented default: /run/diskd/diskd.sock for root,
// else $XDG_RUNTIME_DIR/diskd.sock, else ~/.diskd/diskd.sock.
func socketPath(flagValue string, env func(string) string, uid int) string {
	switch {
	case flagValue != "":
		return flagValue
	case uid == 0:
		return systemSocket
	case env("XDG_RUNTIME_DIR") != "":
		return filepath.Join(env("XDG_RUNTIME_DIR"), "diskd.sock")
	}
	home := env("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".diskd", "diskd.sock")
}

const usageText = `usage: diskd [--socket PATH]          interactive client on the control socket
       diskd [--socket PATH] COMMAND  run one command (list, find X, status, ...) and exit
       diskd -d [flags]               the network daemon
       diskd -V | --version           print the version

diskd finds disks on a network: every host runs the daemon, which learns its
own disks with blkid, multicasts them to its peers and keeps the network-wide
view. Without -d, diskd is the interactive client (type "help" at its prompt);
with a COMMAND it sends that one request, prints the answer and exits with
0 (OK), 1 (an error, or find found nothing) as busctl and systemctl do.
Durations are Go durations (10s, 1m, 500ms) or plain seconds. See diskd(8).

flags:
`

// flagArgs name the value of each flag that takes one, for the help.
var flagArgs = map[string]string{
	"socket": "PATH", "group": "ADDR:PORT", "interface": "NAME", "ttl": "N",
	"announce-interval": "D", "scan-interval": "D", "peer-timeout": "D", "blkid": "PROGRAM",
	"blkid-timeout": "D", "device": "GLOB", "host-id": "ID", "hostname": "NAME", "bus": "BUS",
	"key-file": "PATH", "log-level": "LEVEL", "join": "HOST[:PORT]", "gossip-bind": "ADDR[:PORT]",
	"gossip-advertise": "ADDR[:PORT]",
}

// defaultTexts say what a flag without a plain default value does when not
// given; every other flag shows its value in defaults().
var defaultTexts = map[string]string{
	"socket":       systemSocket + " for root, else $XDG_RUNTIME_DIR/diskd.sock",
	"interface":    "every up, multicast-capable, non-loopback interface",
	"peer-timeout": "3 × the interval the peer announces",
	"device":       "every block device",
	"host-id":      "the contents of /etc/machine-id",
	"hostname":     "the kernel's hostname",
	"key-file":     "none: datagrams are neither sealed nor checked",
}

// usageLine is one flag's entry in the help: its spellings and value, its
// meaning and its default.
type usageLine struct {
	names, usage, def string
}

// usageLines lists the flags as the help shows them: one entry per flag,
// with its short spelling (-d, --daemon), in the order of the flag set.
func usageLines() []usageLine {
	o := defaults()
	var a, b listFlag
	var g groupFlag
	var l string
	fs := newFlagSet(&o, &a, &b, &g, &l)
	short := map[string]string{}
	for s, long := range shortFlags {
		short[long] = s
	}
	lines := []usageLine{{names: "-h, --help", usage: "print this help and exit"}}
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := shortFlags[f.Name]; ok {
			return
		}
		u := usageLine{names: "--" + f.Name, usage: f.Usage}
		if s, ok := short[f.Name]; ok {
			u.names = "-" + s + ", " + u.names
		}
		if arg, ok := flagArgs[f.Name]; ok {
			u.names += " " + arg
		}
		switch {
		case defaultTexts[f.Name] != "":
			u.def = defaultTexts[f.Name]
		case f.DefValue != "" && f.DefValue != "false":
			u.def = f.DefValue
		}
		lines = append(lines, u)
	})
	return lines
}

// usageWidth is the width the help is wrapped to; usageIndent where the
// text of a flag starts.
const (
	usageWidth  = 80
	usageIndent = 28
)

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageText)
	for _, u := range usageLines() {
		text := u.usage
		if u.def != "" {
			text += " (default " + u.def + ")"
		}
		line := fmt.Sprintf("  %-*s", usageIndent-2, u.names)
		if len(u.names)+3 > usageIndent {
			fmt.Fprintln(w, strings.TrimRight(line, " "))
			line = strings.Repeat(" ", usageIndent)
		}
		n := 0
		for _, word := range strings.Fields(text) {
			if n > 0 && len(line)+1+len(word) > usageWidth {
				fmt.Fprintln(w, line)
				line, n = strings.Repeat(" ", usageIndent), 0
			}
			if n > 0 {
				line += " "
			}
			line += word
			n++
		}
		fmt.Fprintln(w, line)
	}
}

// seedRe is a seed's host: a DNS name or an IP address (IPv6 in brackets
// when a port follows).
var seedRe = regexp.MustCompile(`^[A-Za-z0-9.:_-]{1,253}$`)

// parseGossip checks the gossip flags into o.cfg: seeds, addresses, and
// the rules that tie them (no multicast needs the mesh; the mesh needs a
// key file or --gossip-insecure).
func parseGossip(o *options, set map[string]bool) error {
	c := &o.cfg
	for _, j := range o.join {
		host, port := j, ""
		if h, p, err := net.SplitHostPort(j); err == nil {
			host, port = h, p
		}
		if !seedRe.MatchString(host) {
			return usagef("flag --join: %.80q is not HOST[:PORT] (e.g. 10.0.1.5, seed.example.org:%d)", j, gossip.DefaultPort)
		}
		if port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return usagef("flag --join: %.80q has no port in 1..65535", j)
			}
		}
		c.Join = append(c.Join, j)
	}
	var err error
	if set["gossip-bind"] {
		if c.GossipBind, err = parseHostPort(o.gossipBind, true); err != nil {
			return usagef("flag --gossip-bind: %v", err)
		}
	}
	if set["gossip-advertise"] {
		if c.GossipAdvertise, err = parseHostPort(o.gossipAdvertise, false); err != nil {
			return usagef("flag --gossip-advertise: %v", err)
		}
	}
	mesh := len(c.Join) > 0 || set["gossip-bind"]
	switch {
	case !mesh && (set["gossip-advertise"] || c.GossipInsecure):
		return usagef("flag --%s needs --join or --gossip-bind (the gossip mesh is off)", map[bool]string{true: "gossip-advertise", false: "gossip-insecure"}[set["gossip-advertise"]])
	case c.NoMulticast && !mesh:
		return usagef("flag --no-multicast needs --join or --gossip-bind: without multicast and gossip no peer is reachable")
	case mesh && c.KeyFile == "" && !c.GossipInsecure:
		return usagef("flag --join/--gossip-bind needs --key-file (the mesh is encrypted with its keys), or --gossip-insecure on a trusted network")
	}
	if mesh && !set["gossip-bind"] {
		c.GossipBind = netip.AddrPortFrom(netip.IPv4Unspecified(), gossip.DefaultPort)
	}
	return nil
}

// parseHostPort reads ADDR[:PORT] (IPv6 as [ADDR]:PORT or bare); a missing
// port is the gossip default. anyAddr allows 0.0.0.0 and ::.
func parseHostPort(v string, anyAddr bool) (netip.AddrPort, error) {
	if len(v) > 64 {
		return netip.AddrPort{}, fmt.Errorf("%.64q... is too long for ADDR[:PORT]", v)
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		a, err2 := netip.ParseAddr(v)
		if err2 != nil {
			return ap, fmt.Errorf("%q is not ADDR[:PORT] (e.g. 10.0.1.5 or 10.0.1.5:%d)", v, gossip.DefaultPort)
		}
		ap = netip.AddrPortFrom(a, gossip.DefaultPort)
	}
	if ap.Port() == 0 {
		return ap, fmt.Errorf("%q: port 0; give a port in 1..65535", v)
	}
	if ap.Addr().Zone() != "" || (!anyAddr && ap.Addr().IsUnspecified()) || ap.Addr().IsMulticast() {
		return ap, fmt.Errorf("%q is not an address other hosts can reach", v)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
