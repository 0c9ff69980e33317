package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// utime 250, stime 50 ticks; the command name has spaces and parentheses.
	line := "1234 (diskd (x) y) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 2000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("a short line was accepted")
	}
}

func TestPercentiles(t *testing.T) {
	var s samples
	for i := 1; i <= 20; i++ {
		s.add(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 10 * time.Millisecond}, {99, 20 * time.Millisecond}, {100, 20 * time.Millisecond}, {0.0001, time.Millisecond}} {
		if got := s.pct(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	var empty samples
	if empty.pct(50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestGobenchTable(t *testing.T) {
	in := `goos: linux
pkg: github.com/diskd/diskd/service/peer
cpu: AMD EPYC
BenchmarkHandleAnnounce16        	  101714	     10553 ns/op	     94763 announcements/s	         2.000 datagrams/op	    6288 B/op	      18 allocs/op
BenchmarkEncodeAnnounce16-2      	  212414	      6166 ns/op	    162189 announcements/s	         2.000 datagrams/op	    7976 B/op	      11 allocs/op
PASS
ok  	github.com/diskd/diskd/service/peer	4.1s
`
	var out, errw bytes.Buffer
	if code := runGobench(nil, strings.NewReader(in), &out, &errw); code != 0 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	for _, want := range []string{"CPU: AMD EPYC", "peer.HandleAnnounce16", "94,763 announcements/s", "≥ 200,000/s on one core", "NO",
		"peer.EncodeAnnounce16", "18 allocs/op"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if code := runGobench(nil, strings.NewReader("FAIL\tgithub.com/x [build failed]\n"), &out, &errw); code == 0 {
		t.Error("a failed build was not an error")
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 16001: "16,001", 200000: "200,000", -1234567: "-1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestCtlConn speaks the control protocol with a fake server: answers up
// to OK, ERR as an error, and a line longer than the reader's buffer.
func TestCtlConn(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	long := strings.Repeat("x", 200<<10)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for _, answer := range []string{"a\nb\nOK\n", "ERR no such thing\n", long + "\nOK\n"} {
			if _, err := c.Read(buf); err != nil {
				return
			}
			c.Write([]byte(answer))
		}
	}()
	c, err := dialCtl(sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	body, n, err := c.do("one", time.Second, true)
	if err != nil || string(body) != "a\nb\n" || n != 4 {
		t.Fatalf("do = %q, %d, %v", body, n, err)
	}
	if _, _, err := c.do("two", time.Second, true); err == nil || !strings.Contains(err.Error(), "ERR no such thing") {
		t.Fatalf("ERR answer: %v", err)
	}
	if _, n, err := c.do("three", time.Second, false); err != nil || n != len(long)+1 {
		t.Fatalf("long answer: %d bytes, %v", n, err)
	}
}

// The daemons run with the shipped unit's environment: every variable the
// benchmark sets must be one the unit sets, with the same value.
func TestUnitEnvMatchesTheUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("..", "..", "systemd", "diskd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range unitEnv {
		if !strings.Contains(string(unit), "\nEnvironment="+kv+"\n") {
			t.Errorf("systemd/diskd.service has no line Environment=%s: update unitEnv", kv)
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*options)
		err  string // "" when valid
	}{
		{"defaults", func(*options) {}, ""},
		{"only gossip", func(o *options) { o.only = "gossip" }, ""},
		{"only scale", func(o *options) { o.only = "scale" }, ""},
		{"only idle", func(o *options) { o.only = "idle" }, ""},
		{"only an unknown case", func(o *options) { o.only = "events" }, `--only "events": the cases that run alone are gossip, scale and idle`},
		{"gossip alone without a mesh", func(o *options) { o.only, o.gossipNodes = "gossip", 1 }, "--only gossip: --gossip-nodes must be at least 2"},
		{"too many peers", func(o *options) { o.peers = 4001 }, "--peers: at most 4000 (the daemon holds at most 4096)"},
		{"a short window", func(o *options) { o.window = time.Millisecond }, "--window: at least 1s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := defaultOptions()
			c.set(&o)
			err := o.check()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("check: %v, want no error", err)
			case c.err != "" && (err == nil || err.Error() != c.err):
				t.Errorf("check: %v, want %q", err, c.err)
			}
		})
	}
}
