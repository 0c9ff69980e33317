// Package dbustest starts private dbus-daemon processes for tests: a bus
// configured like Debian's system bus, with the policy files under test
// applied for real, or a plain session bus. Each bus listens on a socket in
// the test's temporary directory and is killed (by PID) when the test ends.
//
// It is for tests, and for the benchmark (StartSystem, which does not need
// a testing.TB); diskd never imports it. It needs dbus-daemon (the Debian
// package dbus-daemon): without it, tests skip, or fail when the
// environment variable CI is "true".
package dbustest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// Bus is a running private dbus-daemon.
type Bus struct {
	// Address is its D-Bus address, for --bus and DBUS_*_BUS_ADDRESS.
	Address string
	// Socket is the path of its listening socket.
	Socket string
	// PolicyDir is where a system bus reads policy files (empty for a
	// session bus).
	PolicyDir string
	// PID is the dbus-daemon's process id.
	PID int
}

// SystemConfig is the module-relative path of the configuration template of
// a system bus: Debian's system bus policy, with @SOCKET@ and @POLICY_DIR@
// to fill in.
const SystemConfig = "dbusapi/testdata/dbus-system-test.conf"

// Installed reports why no bus can be started (dbus-daemon is missing), if
// it cannot.
func Installed() error {
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		return fmt.Errorf("dbus-daemon is not installed (apt-get install dbus-daemon): %w", err)
	}
	return nil
}

// Require skips the test when dbus-daemon is not installed (fails under
// CI=true).
func Require(t testing.TB) {
	t.Helper()
	if err := Installed(); err != nil {
		testbed.SkipOrFail(t, "%v", err)
	}
}

// File returns the path of a file of the module, such as
// "packaging/dbus/org.diskd.conf".
func File(t testing.TB, rel string) string {
	t.Helper()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}

// StartSystem starts a bus configured like a system bus, for tests and for
// programs that cannot use testing.TB (the benchmark). Its configuration
// is the template conf ("" means SystemConfig of the module that contains
// the working directory); its socket, configuration and policy directory
// are in dir (created if need be), and the given policy files are copied
// into the policy directory first. dbus-daemon forks: the caller must
// Kill the bus.
func StartSystem(conf, dir string, policies ...string) (*Bus, error) {
	if conf == "" {
		root, err := testbed.ModuleRoot()
		if err != nil {
			return nil, err
		}
		conf = filepath.Join(root, filepath.FromSlash(SystemConfig))
	}
	b := &Bus{Socket: filepath.Join(dir, "bus"), PolicyDir: filepath.Join(dir, "policy")}
	if err := checkSocketPath(b.Socket); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.PolicyDir, 0o755); err != nil {
		return nil, fmt.Errorf("dbustest: %w", err)
	}
	for _, p := range policies {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("dbustest: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.PolicyDir, filepath.Base(p)), data, 0o644); err != nil {
			return nil, fmt.Errorf("dbustest: %w", err)
		}
	}
	tmpl, err := os.ReadFile(conf)
	if err != nil {
		return nil, fmt.Errorf("dbustest: %w", err)
	}
	text := strings.NewReplacer("@SOCKET@", b.Socket, "@POLICY_DIR@", b.PolicyDir).Replace(string(tmpl))
	confPath := filepath.Join(dir, "system.conf")
	if err := os.WriteFile(confPath, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("dbustest: %w", err)
	}
	if err := b.launch("--config-file=" + confPath); err != nil {
		return nil, err
	}
	return b, nil
}

// System starts a bus with the configuration of SystemConfig (Debian's
// system bus policy) and copies the given policy files into its policy
// directory first. Its directory and socket are open to every user, so
// that tests can call it as another uid (setpriv).
func System(t testing.TB, policies ...string) *Bus {
	t.Helper()
	Require(t)
	b, err := StartSystem("", testbed.OpenTempDir(t), policies...)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, b)
	return b
}

// Session starts a bus with dbus-daemon's standard session configuration.
func Session(t testing.TB) *Bus {
	t.Helper()
	Require(t)
	return At(t, filepath.Join(testbed.OpenTempDir(t), "bus"))
}

// At starts a session bus listening on the given socket path, for tests
// that need a bus to come back at the same address.
func At(t testing.TB, socket string) *Bus {
	t.Helper()
	Require(t)
	if err := checkSocketPath(socket); err != nil {
		t.Fatal(err)
	}
	b := &Bus{Socket: socket}
	if err := b.launch("--session", "--address=unix:path="+socket); err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, b)
	return b
}

func killAtCleanup(t testing.TB, b *Bus) {
	t.Cleanup(func() {
		if err := b.Kill(); err != nil {
			t.Error(err)
		}
	})
}

// launch runs dbus-daemon with args, which fork, and sets b.PID and
// b.Address. If the bus runs but not at b.Socket, it is killed.
func (b *Bus) launch(args ...string) error {
	args = append(args, "--fork", "--print-address=1", "--print-pid=1")
	cmd := exec.Command("dbus-daemon", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("dbustest: dbus-daemon %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 {
		return fmt.Errorf("dbustest: dbus-daemon printed %q, want an address and a pid", out)
	}
	pid, err := strconv.Atoi(lines[1])
	if err != nil || pid <= 1 {
		return fmt.Errorf("dbustest: dbus-daemon printed pid %q", lines[1])
	}
	b.PID = pid
	b.Address = "unix:path=" + b.Socket
	if !strings.HasPrefix(lines[0], b.Address) {
		err := fmt.Errorf("dbustest: dbus-daemon listens on %s, want %s", lines[0], b.Address)
		return errors.Join(err, b.Kill())
	}
	return nil
}

// Kill stops the bus (SIGTERM, then SIGKILL after 5s) and waits until the
// process is gone. Calling it again does nothing.
func (b *Bus) Kill() error {
	if b.PID == 0 {
		return nil
	}
	pid := b.PID
	b.PID = 0
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("dbustest: kill %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	killed := false
	for alive(pid) {
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("dbustest: dbus-daemon %d still there 5s after SIGKILL", pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed, deadline = true, time.Now().Add(5*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = os.Remove(b.Socket)
	return nil
}

// alive reports whether pid runs (a zombie, which the forked dbus-daemon
// becomes until init reaps it, does not).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func checkSocketPath(p string) error {
	if len(p) >= 108 {
		return fmt.Errorf("dbustest: socket path %s is too long for a Unix socket (set TMPDIR shorter)", p)
	}
	return nil
}

// Env returns environ with DBUS_SYSTEM_BUS_ADDRESS (system true) or
// DBUS_SESSION_BUS_ADDRESS set to the bus.
func (b *Bus) Env(environ []string, system bool) []string {
	key := "DBUS_SESSION_BUS_ADDRESS="
	if system {
		key = "DBUS_SYSTEM_BUS_ADDRESS="
	}
	out := make([]string, 0, len(environ)+1)
	for _, e := range environ {
		if !strings.HasPrefix(e, key) {
			out = append(out, e)
		}
	}
	return append(out, key+b.Address)
}
