package main_test

// Integration tests: three simulated hosts (alpha = A, beta = B, gamma = C)
// in network namespaces on one bridge, a real loop-device disk each, and the
// real diskd binary on each (service/testbed). They need root; without it
// they skip, except with CI=true, where they fail.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
)

// daemonBuild is the daemon under test, built once per test binary by the
// first test that needs it (or named by $DISKD_TEST_BIN). Lazily, so that
// helper processes re-executing this binary (TestHelperProcess, the flag
// tests' children) never build it.
var daemonBuild struct {
	once sync.Once
	dir  string // removed by TestMain
	bin  string
	err  error
	took time.Duration
}

// diskdBin returns the daemon under test, building it on first use.
func diskdBin(t *testing.T) string {
	t.Helper()
	b := &daemonBuild
	b.once.Do(func() {
		if bin := os.Getenv("DISKD_TEST_BIN"); bin != "" {
			b.bin = bin // a prebuilt daemon (CI, or a build with other flags)
			return
		}
		b.dir, b.err = os.MkdirTemp("", "diskd-itest-")
		if b.err != nil {
			return
		}
		start := time.Now()
		b.bin, b.err = testbed.BuildDiskd(b.dir)
		b.took = time.Since(start)
		if b.err == nil {
			t.Logf("built %s in %v", b.bin, b.took.Round(time.Millisecond))
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if daemonBuild.dir != "" {
		os.RemoveAll(daemonBuild.dir)
	}
	os.Exit(code)
}

// The daemon's default multicast group, which the tests leave unchanged.
const group = "239.255.77.77:4277"

// fastFlags is the timing of every daemon in these tests.
func fastFlags() []string { return []string{"--announce-interval", "1s", "--scan-interval", "1s"} }

// disk is one entry of `list --json` (and, with the memory's keys, of
// `find --json` and `list --all --json`).
type disk = diskstate.Disk

// status is the part of `status --json` the tests read.
type status struct {
	Started        time.Time         `json:"started"`
	Peers          int               `json:"peers"`
	Disks          int               `json:"disks"`
	ScanError      string            `json:"scan_error"`
	PacketsIn      uint64            `json:"packets_in"`
	PacketsOut     uint64            `json:"packets_out"`
	PacketsDropped uint64            `json:"packets_dropped"`
	Drops          map[string]uint64 `json:"drops"`
}

// status returns n's `status --json`.
func (n *node) status(t *testing.T) status {
	t.Helper()
	var st status
	if err := n.d.DoJSON("status --json", &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// node is a simulated host with its disk and running daemon.
type node struct {
	*testbed.Host
	disk *testbed.Disk
	d    *testbed.Daemon
}

// list returns the daemon's `list --json`.
func (n *node) list() ([]disk, error) {
	var ds []disk
	err := n.d.DoJSON("list --json", &ds)
	return ds, err
}

// exitWithin runs cmd, which must exit on its own within timeout, and
// returns what Wait returned. Otherwise it kills cmd and fails the test,
// showing cmd's stderr when that is a buffer; what names cmd.
func exitWithin(t *testing.T, cmd *exec.Cmd, timeout time.Duration, what string) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		var stderr string
		if s, ok := cmd.Stderr.(fmt.Stringer); ok {
			stderr = s.String()
		}
		t.Fatalf("%s did not exit within %v; stderr:\n%s", what, timeout, stderr)
		return nil
	}
}

// has reports whether n's list has the disk of peer p (and describes the
// list for failure messages).
func (n *node) has(p *node) (bool, string) {
	ds, err := n.list()
	if err != nil {
		return false, "list: " + err.Error()
	}
	return findDisk(ds, p) != nil, fmt.Sprintf("%s lists %s", n.Name, describe(ds))
}

func findDisk(ds []disk, p *node) *disk {
	for i := range ds {
		if ds[i].HostID == p.HostID && ds[i].Device == p.disk.Path {
			return &ds[i]
		}
	}
	return nil
}

func describe(ds []disk) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%s:%s(%s)", d.Hostname, d.Device, d.Label))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// lab3 builds alpha, beta and gamma with one ext4 disk each and starts
// diskd on each: alpha with fastFlags and aFlags, the others with
// fastFlags. Beta and gamma start first.
func lab3(t *testing.T, aFlags ...string) (a, b, c *node) {
	t.Helper()
	bin := diskdBin(t)
	nodes := newNodes(t, "alpha", "beta", "gamma")
	a, b, c = nodes[0], nodes[1], nodes[2]
	for _, n := range []*node{b, c, a} {
		flags := fastFlags()
		if n == a {
			flags = append(flags, aFlags...)
		}
		d, err := n.Start(bin, flags...)
		if err != nil {
			t.Fatal(err)
		}
		n.d = d
	}
	return a, b, c
}

// awaitPeerDisk waits (≤ 5s) until a lists p's disk and returns how long
// that took.
func awaitPeerDisk(t *testing.T, a, p *node) time.Duration {
	t.Helper()
	start := time.Now()
	testbed.Eventually(t, 5*time.Second, func() (bool, string) { return a.has(p) })
	return time.Since(start)
}

// hangingBlkid is a blkid that never ends and has a child: both must die
// when the probe times out. It records "PID START-TIME" of both.
const hangingBlkid = `#!/bin/sh
echo "$$ $(date +%s.%N)" >> PIDFILE
sleep 3600 &
echo "$! $(date +%s.%N)" >> PIDFILE
exec sleep 3600
`

type probeProc struct {
	pid   int
	start time.Time
}

func readProbePids(t *testing.T, file string) []probeProc {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ps []probeProc
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err1 := strconv.Atoi(f[0])
		sec, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line in %s: %q", file, line)
		}
		ps = append(ps, probeProc{pid, time.Unix(0, int64(sec*1e9))})
	}
	return ps
}

// probeAlive reports whether pid is still one of the script's processes
// (running, not a zombie, and still the script or its sleep).
func probeAlive(pid int, script string) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	c := string(cmdline)
	return c == "sleep\x003600\x00" || strings.Contains(c, script)
}

func TestHangingBlkid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := filepath.Join(dir, "blkid-hang")
	pidfile := filepath.Join(dir, "pids")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(hangingBlkid, "PIDFILE", pidfile)), 0o755); err != nil {
		t.Fatal(err)
	}
	// Whatever the daemon leaves behind, the test ends it (by PID).
	t.Cleanup(func() {
		for _, p := range readProbePids(t, pidfile) {
			if probeAlive(p.pid, script) {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	a, b, _ := lab3(t, "--blkid", script, "--blkid-timeout", "3s")

	const want = "blkid: timed out after 3s; killed it and its process group"
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		st := a.status(t)
		return st.ScanError == want, fmt.Sprintf("scan_error %q, want %q", st.ScanError, want)
	})
	t.Logf("scan_error: %q", a.status(t).ScanError)

	// The control socket answers while probes hang: well within the 3s a
	// list waiting for a probe would take (it takes milliseconds).
	for i := range 6 {
		start := time.Now()
		if _, err := a.d.DoTimeout("list", 2*time.Second); err != nil {
			t.Fatalf("list #%d while blkid hangs: %v", i, err)
		}
		if took := time.Since(start); took >= 2*time.Second {
			t.Fatalf("list #%d took %v while blkid hangs", i, took)
		}
		time.Sleep(250 * time.Millisecond)
	}
	awaitPeerDisk(t, a, b)

	// Probes that started more than the timeout plus 1.5s ago are dead,
	// children included, while the daemon keeps running.
	testbed.Eventually(t, 20*time.Second, func() (bool, string) {
		var old, alive []int
		for _, p := range readProbePids(t, pidfile) {
			if time.Since(p.start) > 4500*time.Millisecond {
				old = append(old, p.pid)
				if probeAlive(p.pid, script) {
					alive = append(alive, p.pid)
				}
			}
		}
		return len(old) >= 2 && len(alive) == 0, fmt.Sprintf("old probe pids %v, still alive %v", old, alive)
	})
	if a.d.Exited() {
		t.Fatal("alpha exited")
	}

	if err := a.d.Stop(); err != nil {
		t.Errorf("alpha on SIGTERM: %v", err)
	}
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		var alive []int
		for _, p := range readProbePids(t, pidfile) {
			if probeAlive(p.pid, script) {
				alive = append(alive, p.pid)
			}
		}
		return len(alive) == 0, fmt.Sprintf("probe processes left after alpha stopped: %v", alive)
	})
	t.Logf("%d probe processes started, none left", len(readProbePids(t, pidfile)))
}

func TestMissingBlkid(t *testing.T) {
	t.Parallel()
	a, b, _ := lab3(t, "--blkid", "/nonexistent/blkid")
	testbed.Eventually(t, 5*time.Second, func() (bool, string) {
		st := a.status(t)
		return strings.Contains(st.ScanError, "/nonexistent/blkid"), fmt.Sprintf("scan_error %q", st.ScanError)
	})
	t.Logf("scan_error: %q", a.status(t).ScanError)
	if _, err := a.d.DoTimeout("list", time.Second); err != nil {
		t.Fatal(err)
	}
	awaitPeerDisk(t, a, b)
	if ok, _ := a.has(a); ok {
		t.Error("alpha lists its own disk without a working blkid")
	}
}

// TestGarbageDatagrams runs the garbage scenario of the family-generic
// link scenarios on IPv4.
func TestGarbageDatagrams(t *testing.T) {
	t.Parallel()
	garbageDroppedAndCounted(t, ipv4)
}

// garbage returns n random datagrams of 1 to 1200 bytes: a quarter of them
// start with diskd's magic and version, another quarter with magic,
// version 1 and no flags, so that their bodies reach the decoder.
func garbage(rng *rand.Rand, n int) [][]byte {
	grams := make([][]byte, n)
	for i := range grams {
		b := randomBytes(rng, 1+rng.IntN(1200))
		switch {
		case i%4 == 1 && len(b) >= 6:
			copy(b, "DSKD\x01") // looks like diskd's at first glance
		case i%4 == 3 && len(b) >= 7:
			copy(b, "DSKD\x01\x00")
		}
		grams[i] = b
	}
	return grams
}

// randomBytes returns n random bytes.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, (n+7)&^7)
	for j := 0; j < len(b); j += 8 {
		binary.LittleEndian.PutUint64(b[j:], rng.Uint64())
	}
	return b[:n]
}

// Helper processes. A socket lives in the network namespace of the process
// that opens it, so a test that must send or receive datagrams on a
// simulated host's link runs this test binary again inside the host's
// namespace (testbed.Host.Command), as TestHelperProcess with a mode:
//
//   - "send" multicasts the datagrams of a datagram file to the group,
//     pausing 1ms after every $DISKD_TEST_HELPER_PACE datagrams (default 10,
//     which does not overrun a receiver's socket buffer), then exits;
//   - "capture" joins the group on the host's interface and appends every
//     datagram it receives, with its source address, to a datagram file
//     until it is killed; it creates FILE.ready once it has joined.
//
// A datagram file is a sequence of records: a 4-byte big-endian length N,
// the 4-byte IPv4 source address (zero in files to send), N bytes of
// payload. Each record is written with one write, so a reader sees at most
// an incomplete last record, which readDatagrams leaves out.
const (
	helperEnv     = "DISKD_TEST_HELPER"      // the mode
	helperFileEnv = "DISKD_TEST_HELPER_FILE" // the datagram file
	helperPaceEnv = "DISKD_TEST_HELPER_PACE" // send: datagrams between 1ms pauses
)

// datagram is one record of a datagram file.
type datagram struct {
	src netip.Addr // source; invalid in files to send
	b   []byte
}

// appendRecord appends one datagram-file record to dst.
func appendRecord(dst []byte, src netip.Addr, b []byte) []byte {
	var addr [4]byte
	if src.Is4() {
		addr = src.As4()
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	dst = append(dst, addr[:]...)
	return append(dst, b...)
}

// readDatagrams reads the complete records of a datagram file.
func readDatagrams(path string) ([]datagram, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []datagram
	for len(data) >= 8 {
		n := int(binary.BigEndian.Uint32(data))
		if len(data) < 8+n {
			break // being written
		}
		var src netip.Addr
		if a := [4]byte(data[4:8]); a != [4]byte{} {
			src = netip.AddrFrom4(a)
		}
		out = append(out, datagram{src: src, b: data[8 : 8+n]})
		data = data[8+n:]
	}
	return out, nil
}

// helperProc is a helper process running in a host's namespace. The test's
// cleanup kills it (by PID) if it still runs.
type helperProc struct {
	mode string
	host *testbed.Host
	file string
	cmd  *exec.Cmd
	out  bytes.Buffer // its combined output
	done chan struct{}
	err  error // of Wait, set before done is closed
}

// startHelper runs this test binary as TestHelperProcess in mode inside h's
// namespace, with file as its datagram file and env added to its
// environment.
func startHelper(t *testing.T, h *testbed.Host, mode, file string, env ...string) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &helperProc{mode: mode, host: h, file: file, done: make(chan struct{})}
	p.cmd = h.Command(exe, "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	p.cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, helperFileEnv + "=" + file}, env...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s helper in %s: %v", mode, h.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill ends the helper (SIGKILL, by PID) and waits for it.
func (p *helperProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits for the helper to exit and fails the test unless it passed.
func (p *helperProc) wait(t *testing.T) {
	t.Helper()
	<-p.done
	if p.err != nil || !strings.Contains(p.out.String(), "--- PASS: TestHelperProcess") {
		t.Fatalf("%s helper in %s: %v\n%s", p.mode, p.host.Name, p.err, p.out.String())
	}
}

// startSend starts a sender in h's namespace that multicasts grams to the
// group, pausing 1ms after every pace datagrams (pace <= 0: 10).
func startSend(t *testing.T, h *testbed.Host, grams [][]byte, pace int) *helperProc {
	t.Helper()
	var data []byte
	for _, g := range grams {
		data = appendRecord(data, netip.Addr{}, g)
	}
	file := filepath.Join(t.TempDir(), "send")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if pace <= 0 {
		pace = 10
	}
	return startHelper(t, h, "send", file, helperPaceEnv+"="+strconv.Itoa(pace))
}

// sendDatagrams multicasts grams from h (see startSend), waits for the
// sender and returns how long it ran, its start-up included.
func sendDatagrams(t *testing.T, h *testbed.Host, grams [][]byte, pace int) time.Duration {
	t.Helper()
	start := time.Now()
	startSend(t, h, grams, pace).wait(t)
	return time.Since(start)
}

// capture is a running "capture" helper.
type capture struct{ *helperProc }

// startCapture starts a capture in h's namespace and returns once it has
// joined the group. Run it on a host of its own, or filter by source: it
// also hears what its own host sends.
func startCapture(t *testing.T, h *testbed.Host) *capture {
	t.Helper()
	file := filepath.Join(t.TempDir(), "capture")
	p := startHelper(t, h, "capture", file)
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		select {
		case <-p.done:
			t.Fatalf("capture in %s exited: %v\n%s", h.Name, p.err, p.out.String())
		default:
		}
		_, err := os.Stat(file + ".ready")
		return err == nil, fmt.Sprintf("capture in %s not ready", h.Name)
	})
	return &capture{p}
}

// from returns the datagrams captured so far that src sent.
func (c *capture) from(t *testing.T, src string) []datagram {
	t.Helper()
	all, err := readDatagrams(c.file)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr(src)
	var out []datagram
	for _, d := range all {
		if d.src == want {
			out = append(out, d)
		}
	}
	return out
}

// stop kills the capture; what it captured stays readable.
func (c *capture) stop() { c.kill() }

// TestHelperProcess is not a test: tests run this test binary as a helper
// process inside a host's namespace (see startHelper).
func TestHelperProcess(t *testing.T) {
	file := os.Getenv(helperFileEnv)
	switch mode := os.Getenv(helperEnv); mode {
	case "":
		return // the helper process of the tests that send or capture datagrams
	case "send":
		helperSend(t, file)
	case "capture":
		helperCapture(t, file)
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

func helperSend(t *testing.T, file string) {
	grams, err := readDatagrams(file)
	if err != nil {
		t.Fatal(err)
	}
	pace, err := strconv.Atoi(os.Getenv(helperPaceEnv))
	if err != nil || pace <= 0 {
		t.Fatalf("bad %s %q", helperPaceEnv, os.Getenv(helperPaceEnv))
	}
	conn, err := net.Dial("udp4", group) // TTL 1, out of e0 by the 224.0.0.0/4 route
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, g := range grams {
		if _, err := conn.Write(g.b); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if i%pace == pace-1 {
			time.Sleep(time.Millisecond) // do not overrun the receiver's socket buffer
		}
	}
}

func helperCapture(t *testing.T, file string) {
	ifi, err := net.InterfaceByName(testbed.Interface)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenMulticastUDP("udp4", ifi, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(group)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(file+".ready", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	var rec []byte
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		rec = appendRecord(rec[:0], src.Addr().Unmap(), buf[:n])
		if _, err := f.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
}
