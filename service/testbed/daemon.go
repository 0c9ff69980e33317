package testbed

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartTimeout is how long Start waits for the control socket to answer.
// A daemon starts in well under a second; on a machine loaded by a whole
// test suite (15 daemons of one test beside other packages' tests) it
// has been seen to take 7 s, hence the margin.
const StartTimeout = 30 * time.Second

// StopTimeout is how long Stop waits after SIGTERM.
const StopTimeout = 5 * time.Second

// DefaultTimeout bounds one control-socket exchange in Do and DoJSON.
const DefaultTimeout = 5 * time.Second

// Daemon is a diskd process running in a host's namespace.
type Daemon struct {
	// Host is the host it runs on.
	Host *Host
	// Args is the full command line (starting with "ip netns exec").
	Args []string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done is closed
	killMu  sync.Mutex
}

// Start runs bin as a daemon in the host's namespace:
//
//	ip netns exec NS BIN -d --host-id ID --hostname NAME --socket SOCK
//	    --interface e0 --bus none --state-dir DIR [--device DEV]... EXTRA...
//
// with stdout and stderr appended to the host's LogPath, in a process group
// of its own (a terminal's ^C does not reach it). It returns once the control
// socket answers "status", with OK or ERR (≤ StartTimeout); if the daemon exits or does not
// answer in time, Start kills it and returns an error with the log's tail.
// A host runs at most one daemon at a time.
func (h *Host) Start(bin string, extra ...string) (*Daemon, error) {
	return h.StartWrapped(nil, bin, extra...)
}

// StartWrapped is Start with a wrapper command between "ip netns exec NS"
// and the daemon:
//
//	ip netns exec NS WRAPPER... BIN -d --host-id ID ... EXTRA...
//
// such as systemd-socket-activate -l SOCKET, which passes a listening
// socket and execs the rest. The lab tracks, stops and kills the wrapper's
// process: PID is the daemon's only when the wrapper execs it. A wrapper
// that forks must see to it that its children die with it.
func (h *Host) StartWrapped(wrapper []string, bin string, extra ...string) (*Daemon, error) {
	h.mu.Lock()
	if h.daemon != nil && !h.daemon.Exited() {
		h.mu.Unlock()
		return nil, fmt.Errorf("testbed: a daemon runs on %s already (pid %d)", h.Name, h.daemon.PID())
	}
	args := append([]string{"netns", "exec", h.NS}, wrapper...)
	args = append(args, bin, "-d",
		"--host-id", h.HostID,
		"--hostname", h.Name,
		"--socket", h.Socket,
		"--interface", Interface,
		"--bus", "none",
	)
	if h.StateDir != "" { // empty for a diskd from before --state-dir
		args = append(args, "--state-dir", h.StateDir)
	}
	for _, d := range h.disks {
		args = append(args, "--device", d.Path)
	}
	args = append(args, extra...)
	h.mu.Unlock()

	l := h.lab
	log, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	defer log.Close() // the child has its own copy
	fmt.Fprintf(log, "### testbed %s: ip %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))

	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	d := &Daemon{Host: h, Args: append([]string{"ip"}, args...), cmd: cmd, done: make(chan struct{})}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("testbed: lab is closed")
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("testbed: start %s on %s: %w", bin, h.Name, err)
	}
	l.daemons = append(l.daemons, d)
	l.mu.Unlock()
	h.mu.Lock()
	h.daemon = d
	h.mu.Unlock()
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()

	deadline := time.Now().Add(StartTimeout)
	for {
		_, err := d.DoTimeout("status", time.Second)
		var ce *ControlError
		if err == nil || errors.As(err, &ce) { // an ERR is an answer too
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("testbed: daemon on %s exited at start (%v); log:\n%s", h.Name, d.waitErr, tail(d.Log(), 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = d.kill()
			return nil, fmt.Errorf("testbed: daemon on %s did not answer on %s within %v (last: %v); log:\n%s",
				h.Name, h.Socket, StartTimeout, err, tail(d.Log(), 40))
		}
	}
}

// PID is the daemon's process id ("ip netns exec" execs the daemon, so it
// is the daemon itself; after StartWrapped, it is the wrapper's unless the
// wrapper execs the daemon).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Socket is the daemon's control socket.
func (d *Daemon) Socket() string { return d.Host.Socket }

// Log returns everything the host's daemons wrote so far.
func (d *Daemon) Log() string {
	b, err := os.ReadFile(d.Host.LogPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(b)
}

// Done is closed when the process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited reports whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit error (nil for
// status 0).
func (d *Daemon) Wait() error {
	<-d.done
	return d.waitErr
}

// Stop sends SIGTERM and waits up to StopTimeout. It returns nil when the
// daemon exited with status 0, its *exec.ExitError otherwise; if it did not
// exit in time, Stop kills it and says so.
func (d *Daemon) Stop() error {
	if d.Exited() {
		return d.waitErr
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testbed: SIGTERM %d: %w", d.PID(), err)
	}
	select {
	case <-d.done:
		return d.waitErr
	case <-time.After(StopTimeout):
		_ = d.kill()
		return fmt.Errorf("testbed: daemon on %s (pid %d) ignored SIGTERM for %v; killed", d.Host.Name, d.PID(), StopTimeout)
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (d *Daemon) Kill() error { return d.kill() }

func (d *Daemon) kill() error {
	d.killMu.Lock()
	defer d.killMu.Unlock()
	if d.Exited() {
		return nil
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testbed: SIGKILL %d: %w", d.PID(), err)
	}
	select {
	case <-d.done:
		return nil
	case <-time.After(StopTimeout):
		return fmt.Errorf("testbed: pid %d still there %v after SIGKILL", d.PID(), StopTimeout)
	}
}

// Do sends one command to the control socket and returns the response
// lines without the final "OK". An "ERR msg" response is an error carrying
// msg (the lines before it are returned too).
func (d *Daemon) Do(cmd string) ([]string, error) {
	return Control(d.Host.Socket, cmd, DefaultTimeout)
}

// DoTimeout is Do with its own time limit.
func (d *Daemon) DoTimeout(cmd string, timeout time.Duration) ([]string, error) {
	return Control(d.Host.Socket, cmd, timeout)
}

// DoJSON sends a command (such as "list --json") and decodes the response
// lines as one JSON document into v.
func (d *Daemon) DoJSON(cmd string, v any) error {
	lines, err := d.Do(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(strings.Join(lines, "\n")), v); err != nil {
		return fmt.Errorf("testbed: %q: decoding response: %w\n%s", cmd, err, strings.Join(lines, "\n"))
	}
	return nil
}

// ControlError is an "ERR msg" answer from the control socket.
type ControlError struct {
	Cmd string
	Msg string
}

func (e *ControlError) Error() string { return fmt.Sprintf("%q: ERR %s", e.Cmd, e.Msg) }

// Control is a minimal client of the diskd control protocol: it connects to
// socket, sends cmd as one line and reads lines until "OK" or "ERR msg",
// all within timeout.
func Control(socket, cmd string, timeout time.Duration) ([]string, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return nil, fmt.Errorf("testbed: command %q has a line break", cmd)
	}
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if line != "" {
				lines = append(lines, line)
			}
			return lines, fmt.Errorf("testbed: %q: no OK/ERR after %d lines: %w", cmd, len(lines), err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "OK":
			return lines, nil
		case line == "ERR" || strings.HasPrefix(line, "ERR "):
			return lines, &ControlError{Cmd: cmd, Msg: strings.TrimPrefix(strings.TrimPrefix(line, "ERR"), " ")}
		}
		lines = append(lines, line)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RSS returns the resident set size (VmRSS) of process pid in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("memory of %d: %w", pid, err)
	}
	return 0, fmt.Errorf("memory of %d: no VmRSS (a zombie?)", pid)
}
