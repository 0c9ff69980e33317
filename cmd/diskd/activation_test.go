package main_test

// Socket activation for real: the daemon runs under systemd-socket-activate
// (from the systemd package), which creates the control socket, listens on
// it and passes it on (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES=control).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// activatedHost builds a host with one disk for a socket-activation test.
func activatedHost(t *testing.T) *node {
	t.Helper()
	testbed.RequireTools(t, "systemd-socket-activate")
	return newNodes(t, "alpha")[0]
}

// socketActivate is the wrapper that creates and listens on the host's
// control socket and passes it to the program after it.
func socketActivate(n *node) []string {
	return []string{"systemd-socket-activate", "-l", n.Socket, "--fdname=control"}
}

// exeOf returns the program that pid runs.
func exeOf(pid int) string {
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return exe
}

// realPath is p made absolute with symlinks resolved.
func realPath(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// socketInode returns the inode of the socket file at path, failing the
// test when it is missing or not a socket.
func socketInode(t *testing.T, path, when string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%s: control socket: %v", when, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s: %s is not a socket (%v)", when, path, fi.Mode())
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestSocketActivation: under systemd-socket-activate the daemon serves the
// socket it was passed (not the --socket path), and leaves the socket file
// in place when it stops.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	n := activatedHost(t)
	bin := diskdBin(t)
	unused := filepath.Join(t.TempDir(), "not-used.sock")
	// A client connects as soon as the socket listens and asks for the
	// list at once: systemd-socket-activate starts the daemon on the first
	// connection (this one's or testbed's own), so the request is there
	// before the daemon has scanned anything.
	early := make(chan string, 1)
	go func() {
		// The file exists from bind(2) on, but refuses connections until
		// systemd-socket-activate calls listen(2) right after.
		var c net.Conn
		var err error
		for deadline := time.Now().Add(testbed.StartTimeout); time.Now().Before(deadline); {
			if c, err = net.Dial("unix", n.Socket); err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err != nil {
			early <- "connecting: " + err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(testbed.StartTimeout))
		if _, err := c.Write([]byte("list --json\n")); err != nil {
			early <- err.Error()
			return
		}
		var ds []disk
		if msg := readAnswer(bufio.NewReader(c), &ds); msg != "" {
			early <- msg
			return
		}
		if findDisk(ds, n) == nil {
			early <- "its disk is not in the answer: " + describe(ds)
			return
		}
		early <- ""
	}()
	d, err := n.StartWrapped(socketActivate(n), bin, "--socket", unused)
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	select {
	case msg := <-early:
		if msg != "" {
			t.Errorf("client that connected before the daemon ran: %s", msg)
		}
	case <-time.After(testbed.StartTimeout):
		t.Fatal("client that connected before the daemon ran got no answer")
	}
	// "ip netns exec" and systemd-socket-activate exec: the process is the
	// daemon, with LISTEN_PID its own pid.
	if got, want := exeOf(d.PID()), realPath(t, bin); got != want {
		t.Fatalf("pid %d runs %q, want the daemon %s", d.PID(), got, want)
	}
	log := d.Log()
	for _, want := range []string{"socket_activated=true", `msg="control socket from systemd"`} {
		if !strings.Contains(log, want) {
			t.Errorf("daemon log lacks %s:\n%s", want, log)
		}
	}
	if ok, desc := n.has(n); !ok {
		t.Errorf("through the passed socket: %s", desc)
	}
	var st status
	if err := d.DoJSON("status --json", &st); err != nil || st.Started.IsZero() {
		t.Errorf("status --json through the passed socket: %+v, %v", st, err)
	}
	if _, err := os.Lstat(unused); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the daemon created its --socket path %s although systemd passed one (%v)", unused, err)
	}

	ino := socketInode(t, n.Socket, "before stop")
	if err := d.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if got := socketInode(t, n.Socket, "after stop"); got != ino {
		t.Errorf("socket file replaced: inode %d, was %d", got, ino)
	}
	t.Logf("served through the passed socket; %s is still there after the daemon stopped", n.Socket)
}

// supervisor runs under systemd-socket-activate, which passes it the
// listening socket as fd 3. It runs the daemon ("$@") with LISTEN_PID set
// to the daemon's own pid, writes that pid to DIR/pid, records each exit in
// DIR/exits, and starts the daemon again when the test creates DIR/go, or
// exits when it creates DIR/stop. setpriv makes the daemon die with it. The
// socket stays open in the supervisor all along.
const supervisor = `#!/bin/sh
dir='DIR'
n=0
while :; do
	n=$((n + 1))
	sh -c 'echo $$ > "$0/pid.new" && mv "$0/pid.new" "$0/pid" && export LISTEN_PID=$$ && exec setpriv --pdeathsig KILL -- "$@"' "$dir" "$@"
	echo "$n $?" >> "$dir/exits"
	while [ ! -e "$dir/go" ] && [ ! -e "$dir/stop" ]; do sleep 0.01; done
	if [ -e "$dir/stop" ]; then exit 0; fi
	rm -f "$dir/go"
done
`

// TestSocketActivationRestart: the daemon is restarted under
// systemd-socket-activate; clients that connect while no daemon runs are
// not refused: they wait in the socket's backlog and the new daemon serves
// them.
func TestSocketActivationRestart(t *testing.T) {
	t.Parallel()
	testbed.RequireTools(t, "setpriv")
	n := activatedHost(t)
	bin := diskdBin(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "supervise")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(supervisor, "DIR", dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	touch := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	daemonPid := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	exits := func() []string {
		b, _ := os.ReadFile(filepath.Join(dir, "exits"))
		return strings.Fields(string(b))
	}
	want := realPath(t, bin)
	// Whatever happens, the supervisor stops and the daemon it runs ends
	// (by pid, and only while that pid is still the daemon) before the lab
	// kills the supervisor.
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644)
		if pid := daemonPid(); pid > 0 && exeOf(pid) == want {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if d := n.Daemon(); d != nil {
			select {
			case <-d.Done():
			case <-time.After(testbed.StopTimeout):
			}
		}
	})

	d, err := n.StartWrapped(append(socketActivate(n), "sh", script), bin, "--socket", filepath.Join(dir, "not-used.sock"))
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	pid1 := daemonPid()
	if exeOf(pid1) != want {
		t.Fatalf("pid file says %d, which runs %q, not the daemon", pid1, exeOf(pid1))
	}
	var st1 status
	if err := d.DoJSON("status --json", &st1); err != nil {
		t.Fatal(err)
	}
	ino := socketInode(t, n.Socket, "first daemon running")

	// Stop the first daemon and wait until it is gone.
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, testbed.StopTimeout, func() (bool, string) {
		e := exits()
		return len(e) >= 2, fmt.Sprintf("exits %v", e)
	})
	if e := exits(); e[0] != "1" || e[1] != "0" {
		t.Errorf("first daemon's exit: %v, want status 0", e)
	}
	restart := time.Now()
	if got := socketInode(t, n.Socket, "no daemon running"); got != ino {
		t.Fatalf("socket file replaced while no daemon ran: inode %d, was %d", got, ino)
	}

	// Clients connect while no daemon runs: not refused.
	const clients = 3
	type client struct {
		conn net.Conn
		r    *bufio.Reader
	}
	var cs []client
	for i := range clients {
		c, err := net.Dial("unix", n.Socket)
		if err != nil {
			t.Fatalf("client %d connecting while no daemon runs: %v", i, err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("list --json\nstatus --json\n")); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		cs = append(cs, client{c, bufio.NewReader(c)})
	}
	// Nobody answers them yet, and nobody closes them.
	_ = cs[0].conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := cs[0].r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client 0 got %q, %v while no daemon ran; want it to wait", line, err)
	}

	// Now the second daemon starts and serves them.
	touch("go")
	goAt := time.Now()
	for i, c := range cs {
		_ = c.conn.SetReadDeadline(time.Now().Add(testbed.StartTimeout))
		var ds []disk
		readJSON(t, c.r, &ds)
		served := time.Since(goAt)
		var st status
		readJSON(t, c.r, &st)
		if findDisk(ds, n) == nil {
			t.Errorf("client %d: the new daemon's first answer lacks its own disk: %s", i, describe(ds))
		}
		if !st.Started.After(restart) {
			t.Errorf("client %d was answered by a daemon started at %v, not after the restart at %v", i, st.Started, restart)
		}
		t.Logf("client %d, connected while no daemon ran, served %v after the second daemon was let start", i, ms(served))
	}
	pid2 := daemonPid()
	if pid2 == pid1 || exeOf(pid2) != want {
		t.Errorf("second daemon: pid %d (%q), first was %d", pid2, exeOf(pid2), pid1)
	}
	if !strings.Contains(d.Log(), "socket_activated=true") {
		t.Errorf("daemon log lacks socket_activated=true:\n%s", d.Log())
	}

	// Stop for good: the supervisor exits 0, and the socket file stays.
	touch("stop")
	if err := syscall.Kill(pid2, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
		if err := d.Wait(); err != nil {
			t.Errorf("supervisor: %v", err)
		}
	case <-time.After(testbed.StopTimeout):
		t.Fatal("the supervisor did not exit after the second daemon stopped")
	}
	if e := exits(); len(e) != 4 || e[3] != "0" {
		t.Errorf("exits %v, want two daemons that exited with status 0", e)
	}
	socketInode(t, n.Socket, "after both daemons stopped")
}

// readJSON reads one answer (lines up to OK) from r and decodes it into v.
func readJSON(t *testing.T, r *bufio.Reader, v any) {
	t.Helper()
	if msg := readAnswer(r, v); msg != "" {
		t.Fatal(msg)
	}
}

// readAnswer reads one answer (lines up to OK) from r and decodes it into
// v; it returns what went wrong, or "".
func readAnswer(r *bufio.Reader, v any) string {
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Sprintf("reading an answer: %v after %q", err, lines)
		}
		line = strings.TrimRight(line, "\n")
		if line == "OK" {
			break
		}
		if strings.HasPrefix(line, "ERR") {
			return fmt.Sprintf("answer: %s after %q", line, lines)
		}
		lines = append(lines, line)
	}
	if err := json.Unmarshal([]byte(strings.Join(lines, "\n")), v); err != nil {
		return fmt.Sprintf("%v in %q", err, lines)
	}
	return ""
}
