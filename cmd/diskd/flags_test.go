package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/daemon"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// none is an exists func for a machine with no files.
func none(string) bool { return false }

func TestParseArgsErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // the error must name this
	}{
		{[]string{"-d", "--ttl", "0"}, "flag --ttl: 0 is out of range 1..255"},
		{[]string{"-d", "--ttl", "300"}, "--ttl"},
		{[]string{"-d", "--ttl", "x"}, `invalid value "x" for flag --ttl`},
		{[]string{"-d", "--group", "10.0.0.1:4277"}, "flag --group: 10.0.0.1 is not an IPv4 multicast"},
		{[]string{"-d", "--group", "239.1.1.1"}, "flag --group"},
		{[]string{"-d", "--group", "239.1.1.1:0"}, "flag --group: port 0"},
		{[]string{"-d", "--group", "[ff01::1]:4277"}, "flag --group: ff01::1 has interface-local"},
		{[]string{"-d", "--group", "[fd00::1]:4277"}, "flag --group: fd00::1 is not an IPv6 multicast"},
		{[]string{"-d", "--group", "[ff15::1%e0]:4277"}, `flag --group: "ff15::1%e0": a group takes no zone`},
		{[]string{"-d", "--group", "239.1.1.1:1", "--group", "239.1.1.2:1"}, "flag --group: two IPv4 groups"},
		{[]string{"-d", "--group", "[ff15::1]:1", "--group", "[ff15::2]:1"}, "flag --group: two IPv6 groups"},
		{[]string{"-d", "--announce-interval", "10ms"}, "flag --announce-interval: 10ms is out of range"},
		{[]string{"-d", "--announce-interval", "soon"}, `invalid value "soon" for flag --announce-interval`},
		{[]string{"-d", "--scan-interval", "-1s"}, "flag --scan-interval"},
		{[]string{"-d", "--peer-timeout", "0"}, "flag --peer-timeout: 0s is out of range"},
		{[]string{"-d", "--blkid-timeout", "0s"}, "flag --blkid-timeout"},
		{[]string{"-d", "--blkid", ""}, "flag --blkid: empty"},
		{[]string{"-d", "--device", "dev/sd*"}, "flag --device"},
		{[]string{"-d", "--device", "/dev/sd[a"}, "flag --device"},
		{[]string{"-d", "--interface", "a/b"}, "flag --interface"},
		{[]string{"-d", "--interface", "averyveryverylongname"}, "flag --interface"},
		{[]string{"-d", "--host-id", "has space"}, "flag --host-id"},
		{[]string{"-d", "--host-id", ""}, "flag --host-id"},
		{[]string{"-d", "--hostname", "bad\x1b[2Jname"}, "flag --hostname"},
		{[]string{"-d", "--hostname", strings.Repeat("h", 254)}, "flag --hostname"},
		{[]string{"-d", "--bus", "sometimes"}, "flag --bus"},
		{[]string{"-d", "--frobnicate"}, "unknown flag --frobnicate"},
		{[]string{"-d", "--socket"}, "flag needs an argument: --socket"},
		{[]string{"-d", "extra"}, `unexpected argument "extra"`},
		{[]string{"--group", "239.1.1.1:1"}, "flag --group needs -d"},
		{[]string{"-d", "--log-level", "loud"}, `flag --log-level: "loud" is not one of debug, info, warning, error`},
		{[]string{"-d", "--log-level"}, "flag needs an argument: --log-level"},
		{[]string{"--log-level", "debug"}, "flag --log-level needs -d"},
	} {
		_, err := parseArgs(c.args, env(nil), 0, none)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: error %v, want a usage error", c.args, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %q, want one line containing %q", c.args, err, c.want)
		}
	}
}

func TestParseArgsValues(t *testing.T) {
	o, err := parseArgs([]string{"--daemon", "--group", "239.1.2.3:999", "--interface", "e0", "--interface", "e1",
		"--device", "/dev/loop*", "--device", "/dev/sdb1", "--ttl", "3", "--announce-interval", "2.5",
		"--scan-interval", "1m", "--peer-timeout", "7s", "--blkid", "/sbin/blkid", "--blkid-timeout", "500ms",
		"--host-id", "abc123", "--hostname", "Straße", "--bus", "unix:path=/tmp/bus", "--socket", "/tmp/s.sock",
		"--no-uevents"}, env(nil), 1000, none)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	switch {
	case !o.daemon, fmt.Sprint(c.Groups) != "[239.1.2.3:999]", strings.Join(c.Interfaces, ",") != "e0,e1",
		strings.Join(c.Devices, ",") != "/dev/loop*,/dev/sdb1", c.TTL != 3,
		c.AnnounceInterval != 2500*time.Millisecond, c.ScanInterval != time.Minute, c.PeerTimeout != 7*time.Second,
		c.Blkid != "/sbin/blkid", c.BlkidTimeout != 500*time.Millisecond, c.HostID != "abc123",
		c.Hostname != "Straße", c.Bus != "unix:path=/tmp/bus", c.Socket != "/tmp/s.sock", !c.NoUevents:
		t.Fatalf("parsed %+v", o)
	}
	d, err := parseArgs([]string{"-d"}, env(nil), 0, none)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d.cfg.Groups) != "[239.255.77.77:4277]" || d.cfg.TTL != 1 || d.cfg.AnnounceInterval != 10*time.Second ||
		d.cfg.ScanInterval != time.Minute || d.cfg.PeerTimeout != 0 || d.cfg.BlkidTimeout != 10*time.Second ||
		d.cfg.Blkid != "blkid" || d.cfg.Bus != "system" {
		t.Fatalf("defaults %+v", d.cfg)
	}
	if _, err := parseArgs([]string{"-h"}, env(nil), 0, none); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestClientFallsBackToSystemSocket(t *testing.T) {
	only := func(paths ...string) func(string) bool {
		return func(p string) bool { return slices.Contains(paths, p) }
	}
	e := env(map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"})
	for _, c := range []struct {
		args   []string
		exists func(string) bool
		want   string
	}{
		{nil, only(systemSocket), systemSocket},                                             // no daemon of one's own
		{nil, only(systemSocket, "/run/user/1000/diskd.sock"), "/run/user/1000/diskd.sock"}, // one's own daemon wins
		{nil, none, "/run/user/1000/diskd.sock"},                                            // nothing anywhere: say so with one's own path
		{[]string{"--socket", "/x.sock"}, only(systemSocket), "/x.sock"},                    // an explicit --socket is kept
		{[]string{"-d"}, only(systemSocket), "/run/user/1000/diskd.sock"},                   // a daemon never takes the system's
	} {
		o, err := parseArgs(c.args, e, 1000, c.exists)
		if err != nil {
			t.Fatal(err)
		}
		if o.socket != c.want {
			t.Errorf("%q: socket %q, want %q", c.args, o.socket, c.want)
		}
	}
}

func TestSocketPathDefaults(t *testing.T) {
	for _, c := range []struct {
		uid  int
		env  map[string]string
		want string
	}{
		{0, map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"}, "/run/diskd/diskd.sock"},
		{1000, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/u"}, "/run/user/1000/diskd.sock"},
		{1000, map[string]string{"HOME": "/home/u"}, "/home/u/.diskd/diskd.sock"},
	} {
		o, err := parseArgs(nil, env(c.env), c.uid, none)
		if err != nil {
			t.Fatal(err)
		}
		if o.socket != c.want {
			t.Errorf("uid %d env %v: %q, want %q", c.uid, c.env, o.socket, c.want)
		}
	}
}

// TestExitStatus runs the real binary: a bad flag is one line on stderr and
// exit status 2; --version prints the version.
func TestExitStatus(t *testing.T) {
	if os.Getenv("DISKD_FLAGS_CHILD") == "1" {
		os.Exit(run(strings.Fields(os.Getenv("DISKD_ARGS"))))
	}
	for _, c := range []struct {
		args   string
		status int
		stdout string
		stderr string
	}{
		{"-d --ttl 0", 2, "", "diskd: flag --ttl: 0 is out of range 1..255\n"},
		{"--version", 0, "diskd " + version + "\n", ""},
		{"-V", 0, "diskd " + version + "\n", ""},
		{"-d --log-level loud", 2, "", "diskd: flag --log-level: \"loud\" is not one of debug, info, warning, error\n"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExitStatus$")
		cmd.Env = append(os.Environ(), "DISKD_FLAGS_CHILD=1", "DISKD_ARGS="+c.args)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		status := 0
		if ee, ok := err.(*exec.ExitError); ok {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if status != c.status || out.String() != c.stdout || errb.String() != c.stderr {
			t.Errorf("diskd %s: status %d, stdout %q, stderr %q", c.args, status, out.String(), errb.String())
		}
	}
}

// helpEntries reads `diskd --help`: each flag's spellings (as printed,
// e.g. "-d, --daemon" or "--ttl N") and its text, wrapped lines joined.
func helpEntries(t *testing.T) map[string]string {
	t.Helper()
	var b strings.Builder
	printUsage(&b)
	_, flags, ok := strings.Cut(b.String(), "\nflags:\n")
	if !ok {
		t.Fatalf("no flags: section in the help:\n%s", b.String())
	}
	entries := map[string]string{}
	var last string
	for _, line := range strings.Split(strings.TrimSuffix(flags, "\n"), "\n") {
		if len(line) > usageWidth {
			t.Errorf("help line longer than %d: %q", usageWidth, line)
		}
		if strings.HasPrefix(line, strings.Repeat(" ", usageIndent)) {
			entries[last] += " " + strings.TrimSpace(line)
			continue
		}
		names, text, _ := strings.Cut(strings.TrimSpace(line), "  ")
		last = names
		entries[last] = strings.TrimSpace(text)
	}
	return entries
}

var helpDefaultRe = regexp.MustCompile(`\(default (.*)\)$`)

// durationDefaults are the duration flags whose defaults are the daemon's
// constants, which --help and diskd(8) must show.
var durationDefaults = []struct {
	flag string
	want time.Duration
}{
	{"announce-interval", daemon.DefaultAnnounceInterval},
	{"scan-interval", daemon.DefaultScanInterval},
	{"blkid-timeout", daemon.DefaultBlkidTimeout},
}

// TestHelpShowsTrueDefaults: every default --help shows is what the daemon
// uses when the flag is not given, and the duration and group defaults are
// the daemon's constants: the help breaks this test if it and the code
// disagree, whichever of them changed.
func TestHelpShowsTrueDefaults(t *testing.T) {
	entries := helpEntries(t)
	base, err := parseArgs([]string{"-d"}, env(nil), 0, none)
	if err != nil {
		t.Fatal(err)
	}
	defaultOf := func(spelling string) string {
		t.Helper()
		text, ok := entries[spelling]
		if !ok {
			t.Fatalf("no %q in the help; it has %q", spelling, slices.Sorted(maps.Keys(entries)))
		}
		m := helpDefaultRe.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("%s: no default in %q", spelling, text)
		}
		return m[1]
	}
	// The values the daemon's own constants give.
	for _, c := range durationDefaults {
		spelling := "--" + c.flag + " D"
		var d time.Duration
		if err := (durationFlag{&d}).Set(defaultOf(spelling)); err != nil || d != c.want {
			t.Errorf("%s: help says default %q, the daemon uses %v", spelling, defaultOf(spelling), c.want)
		}
	}
	if got := defaultOf("--group ADDR:PORT"); got != daemon.DefaultGroup.String() {
		t.Errorf("--group: help says %q, the daemon uses %v", got, daemon.DefaultGroup)
	}
	if got := defaultOf("--log-level LEVEL"); got != "info" || base.logLevel != slog.LevelInfo {
		t.Errorf("--log-level: help says %q, parsed default is %v", got, base.logLevel)
	}
	// Every flag shown with a plain value as default: giving that value
	// changes nothing.
	checked := 0
	for spelling, text := range entries {
		m := helpDefaultRe.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		name := strings.TrimPrefix(strings.Fields(spelling)[0], "--")
		if defaultTexts[name] != "" {
			continue // a description, not a value
		}
		o, err := parseArgs([]string{"-d", "--" + name, m[1]}, env(nil), 0, none)
		if err != nil {
			t.Errorf("--%s %s (its default in --help): %v", name, m[1], err)
			continue
		}
		if !reflect.DeepEqual(o, base) {
			t.Errorf("--%s %s (its default in --help) changes the options:\n%+v\nwithout it:\n%+v", name, m[1], o, base)
		}
		checked++
	}
	if checked < 8 {
		t.Errorf("only %d flags with a default value checked", checked)
	}
	for spelling, text := range entries {
		if strings.Contains(text, "(default 0s)") || strings.Count(text, "(default") > 1 {
			t.Errorf("%s: %q", spelling, text)
		}
	}
}

// TestHelpSpellsEveryFlag: --help names every flag once, as it is typed
// (short and long spelling together, never "--d").
func TestHelpSpellsEveryFlag(t *testing.T) {
	entries := helpEntries(t)
	var all strings.Builder
	for spelling := range entries {
		all.WriteString(spelling + "\n")
	}
	o := defaults()
	var a, b listFlag
	var g groupFlag
	var l string
	newFlagSet(&o, &a, &b, &g, &l).VisitAll(func(f *flag.Flag) {
		want := "--" + f.Name
		if len(f.Name) == 1 {
			want = "-" + f.Name + ", --" + shortFlags[f.Name]
		}
		if !strings.Contains(all.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	})
	if bad := regexp.MustCompile(`--[A-Za-z]\b[^-]`).FindString(all.String()); bad != "" {
		t.Errorf("--help spells a one-letter flag with two dashes: %q", bad)
	}
	if _, ok := entries["-h, --help"]; !ok {
		t.Error("--help lacks -h, --help")
	}
}

// TestManPageCoversFlags: diskd(8) documents every flag, and the defaults
// it states for the durations and the group are the daemon's.
func TestManPageCoversFlags(t *testing.T) {
	b, err := os.ReadFile("../../packaging/man/diskd.8")
	if err != nil {
		t.Fatal(err)
	}
	man := string(b)
	roff := func(s string) string { return strings.ReplaceAll(s, "-", `\-`) }
	o := defaults()
	var a, d listFlag
	var g groupFlag
	var l string
	newFlagSet(&o, &a, &d, &g, &l).VisitAll(func(f *flag.Flag) {
		want := roff("--" + f.Name)
		if len(f.Name) == 1 {
			want = `.BR \-` + f.Name + ` ", " ` + roff("--"+shortFlags[f.Name])
		}
		if !strings.Contains(man, want) {
			t.Errorf("diskd(8) does not document %q", want)
		}
	})
	for _, c := range durationDefaults {
		re := regexp.MustCompile(`(?s)\.BI ` + regexp.QuoteMeta(roff("--"+c.flag)) + `[^\n]*\n[^.]*?\(default ([0-9a-z]+)\)`)
		m := re.FindStringSubmatch(man)
		var got time.Duration
		if m == nil || (durationFlag{&got}).Set(m[1]) != nil || got != c.want {
			t.Errorf("diskd(8) --%s: default %q, the daemon uses %v", c.flag, m, c.want)
		}
	}
	if !strings.Contains(man, daemon.DefaultGroup.String()) {
		t.Errorf("diskd(8) does not name the default group %v", daemon.DefaultGroup)
	}
	if !strings.Contains(man, `.TH DISKD 8 "@DATE@" "diskd @VERSION@"`) {
		t.Error("diskd(8): .TH does not take the date and version make deb puts in")
	}
}
