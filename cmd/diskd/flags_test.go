package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
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
