package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
)

// nobody is the uid and gid tests switch to with setpriv.
const nobody = "65534"

// buildDiskctl builds ./cmd/diskctl into a directory every user can read
// (tests run it as nobody too) and returns the binary's path.
func buildDiskctl(t *testing.T) string {
	t.Helper()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := testbed.OpenTempDir(t)
	bin := filepath.Join(dir, "diskctl")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/diskctl")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// result is what a diskctl run gave.
type result struct {
	stdout, stderr string
	code           int
}

// diskctl runs the binary with env added to the environment (without any
// DBUS_*_BUS_ADDRESS of the test's own), as nobody when asNobody.
func diskctl(t *testing.T, bin string, env []string, asNobody bool, args ...string) result {
	t.Helper()
	argv := append([]string{bin}, args...)
	if asNobody {
		argv = append([]string{"setpriv", "--reuid=" + nobody, "--regid=" + nobody, "--clear-groups"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	if took := time.Since(began); took > time.Second {
		t.Logf("diskctl %s took %v", strings.Join(args, " "), took.Round(time.Millisecond))
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// cleanEnv is the environment without D-Bus addresses and display, and
// without the race detector's one-second pause at exit (diskctl is built
// with -race when the tests are).
func cleanEnv() []string {
	race := "GORACE=atexit_sleep_ms=0"
	var out []string
	for _, e := range os.Environ() {
		switch {
		case strings.HasPrefix(e, "DBUS_") || strings.HasPrefix(e, "DISPLAY="):
			continue
		case strings.HasPrefix(e, "GORACE="):
			race = e + " atexit_sleep_ms=0"
			continue
		}
		out = append(out, e)
	}
	return append(out, race)
}

// proc is a long-running child (diskctl monitor, Xvfb, dunst) whose stdout
// lines are collected.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	errb  bytes.Buffer
	done  chan struct{}
	err   error // set before done is closed
}

// start starts argv with env added and ends it (SIGTERM, then SIGKILL, by
// PID) when the test ends.
func start(t *testing.T, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stderr = &lockedWriter{w: &p.errb, mu: &p.mu}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		s := bufio.NewScanner(stdout)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, s.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		<-read // Wait closes stdout: read it all first
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// stop sends SIGTERM and waits (SIGKILL after 5s); it returns the exit
// error. Calling it again returns the same.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	if testbed.Terminate(p.cmd.Process, p.done, 5*time.Second) {
		t.Errorf("%s ignored SIGTERM for 5s; killed", p.cmd.Path)
	}
	return p.err
}

func (p *proc) output() ([]string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...), p.errb.String()
}

// waitLine waits for a stdout line containing s and returns it.
func (p *proc) waitLine(t *testing.T, timeout time.Duration, s string) string {
	t.Helper()
	var found string
	ok, _ := testbed.Poll(timeout, func() (bool, string) {
		lines, _ := p.output()
		for _, l := range lines {
			if strings.Contains(l, s) {
				found = l
				return true, ""
			}
		}
		return false, ""
	})
	if !ok {
		lines, errs := p.output()
		t.Fatalf("no line with %q within %v; stdout:\n%s\nstderr:\n%s", s, timeout, strings.Join(lines, "\n"), errs)
	}
	return found
}

// daemon is dbusapi.Serve and a control socket server on one real
// inventory, in this process, until the end of the test.
type daemon struct {
	inv    *inventory.Inventory
	socket string
}

func startDaemon(t *testing.T, busAddress string, inv *inventory.Inventory) *daemon {
	t.Helper()
	d := &daemon{inv: inv, socket: filepath.Join(t.TempDir(), "control.sock")}
	ln, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	log := slog.New(slog.DiscardHandler)
	srv := &control.Server{Inv: inv, Log: log}
	wg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("control server: %v", err)
		}
	})
	wg.Go(func() {
		if err := dbusapi.Serve(ctx, dbusapi.Options{Bus: busAddress, Inv: inv, Version: "test", Log: log}); err != nil {
			t.Errorf("dbusapi.Serve: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	waitOnBus(t, busAddress)
	return d
}

// waitOnBus waits until org.diskd answers on the bus.
func waitOnBus(t *testing.T, address string) {
	t.Helper()
	c, err := dbusapi.Dial(context.Background(), address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last error
	ok, _ := testbed.Poll(15*time.Second, func() (bool, string) {
		_, last = c.Status(context.Background())
		return last == nil, ""
	})
	if !ok {
		t.Fatalf("org.diskd does not answer on %s: %v", address, last)
	}
}

// waitSubscribed waits until the process pid has its two match rules
// (Finder signals, owner changes) on the bus, so that no signal sent after
// it returns can be missed. It asks the bus (Debug.Stats, allowed to root
// and on session buses).
func waitSubscribed(t *testing.T, address string, pid int) {
	t.Helper()
	conn, err := dbus.Connect(address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bus := conn.BusObject()
	var last string
	ok, _ := testbed.Poll(10*time.Second, func() (bool, string) {
		var names []string
		if err := bus.Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
			last = err.Error()
			return false, ""
		}
		for _, n := range names {
			var p uint32
			if !strings.HasPrefix(n, ":") ||
				bus.Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, n).Store(&p) != nil || int(p) != pid {
				continue
			}
			var stats map[string]dbus.Variant
			if err := bus.Call("org.freedesktop.DBus.Debug.Stats.GetConnectionStats", 0, n).Store(&stats); err != nil {
				last = err.Error()
				return false, ""
			}
			rules, _ := stats["MatchRules"].Value().(uint32)
			last = fmt.Sprintf("%s has %d match rules", n, rules)
			return rules >= 2, ""
		}
		last = fmt.Sprintf("pid %d is not on the bus", pid)
		return false, ""
	})
	if !ok {
		t.Fatalf("pid %d did not subscribe on %s: %s", pid, address, last)
	}
}

// control sends a request to a control socket and returns the answer.
func controlDo(t *testing.T, socket, req string) string {
	t.Helper()
	lines, err := testbed.Control(socket, req, 5*time.Second)
	if err != nil {
		t.Fatalf("control %q: %v", req, err)
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// sameJSON compares two JSON documents as data, with every "last_seen"
// removed when dropSeen (it moves with every announcement).
func sameJSON(t *testing.T, a, b string, dropSeen bool) bool {
	t.Helper()
	norm := func(s string) string {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, s)
		}
		if dropSeen {
			v = dropKey(v, "last_seen")
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	return norm(a) == norm(b)
}

func dropKey(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		delete(x, key)
		for k, e := range x {
			x[k] = dropKey(e, key)
		}
	case []any:
		for i, e := range x {
			x[i] = dropKey(e, key)
		}
	}
	return v
}

// requireRoot skips unless root with setpriv (fails under CI=true).
func requireRoot(t *testing.T) {
	t.Helper()
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "setpriv")
}

// desktop is a headless X server, a session bus and dunst serving
// org.freedesktop.Notifications on it.
type desktop struct {
	session *dbustest.Bus
	env     []string // DISPLAY and DBUS_SESSION_BUS_ADDRESS
}

// startDesktop starts Xvfb, a session bus and dunst; it skips when they
// are not installed (fails under CI=true).
func startDesktop(t *testing.T) *desktop {
	t.Helper()
	// Debian: xvfb dunst libnotify-bin dbus-x11 xauth.
	testbed.RequireTools(t, "Xvfb", "dunst", "dunstctl", "dbus-send")
	dir := t.TempDir()
	// Xvfb picks a free display and writes its number to fd 3.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "800x600x24", "-nolisten", "tcp")
	x.ExtraFiles = []*os.File{w}
	x.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var xerr bytes.Buffer
	x.Stderr = &xerr
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		_ = x.Process.Kill()
		_ = x.Wait()
	})
	display := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		display <- strings.TrimSpace(line)
	}()
	var num string
	select {
	case num = <-display:
	case <-time.After(10 * time.Second):
		t.Fatalf("Xvfb did not report a display: %s", xerr.String())
	}
	if _, err := strconv.Atoi(num); err != nil {
		t.Fatalf("Xvfb reported display %q: %s", num, xerr.String())
	}

	d := &desktop{session: dbustest.Session(t)}
	d.env = []string{"DISPLAY=:" + num, "DBUS_SESSION_BUS_ADDRESS=" + d.session.Address}
	rc := filepath.Join(dir, "dunstrc")
	if err := os.WriteFile(rc, []byte("[global]\n    markup = full\n    timeout = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, d.env, "dunst", "-config", rc)
	conn, err := dbus.Connect(d.session.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ok, _ := testbed.Poll(10*time.Second, func() (bool, string) {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.Notifications").Store(&has)
		return err == nil && has, ""
	})
	if !ok {
		t.Fatal("dunst did not take org.freedesktop.Notifications")
	}
	return d
}

// dunstctl runs dunstctl on the desktop and returns its output.
func (d *desktop) dunstctl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("dunstctl", args...)
	cmd.Env = append(cleanEnv(), d.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dunstctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shown is one entry of `dunstctl history`.
type shown struct {
	AppName, Summary, Body, Category string
}

// history closes what dunst shows (so that it moves to the history) and
// returns the history.
func (d *desktop) history(t *testing.T) []shown {
	t.Helper()
	d.dunstctl(t, "close-all")
	var h struct {
		Data [][]map[string]struct {
			Data any `json:"data"`
		} `json:"data"`
	}
	out := d.dunstctl(t, "history")
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("dunstctl history: %v\n%s", err, out)
	}
	var list []shown
	for _, group := range h.Data {
		for _, n := range group {
			s := func(k string) string { v, _ := n[k].Data.(string); return v }
			list = append(list, shown{AppName: s("appname"), Summary: s("summary"), Body: s("body"), Category: s("category")})
		}
	}
	return list
}
