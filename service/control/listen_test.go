package control_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
)

// TestHelperProcess is not a test: the tests that need another process
// (socket activation) run the test binary again with
// DISKD_CONTROL_HELPER set, and this is what it then does.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("DISKD_CONTROL_HELPER") {
	case "serve":
		os.Exit(helperServe())
	case "hog":
		os.Exit(helperHog())
	case "lister":
		os.Exit(helperLister())
	}
}

// helperServe is a tiny daemon: control.Listen (with DISKD_TEST_FALLBACK as the path
// to use without socket activation), report "activated=BOOL", serve one
// disk until stdin is closed.
func helperServe() int {
	ln, activated, err := control.Listen(os.Getenv("DISKD_TEST_FALLBACK"), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("activated=%v\n", activated)
	inv := inventory.New(inventory.Options{HostID: "helper-id", Hostname: "helper"})
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/helper1", UUID: "h-uuid", Label: "HELPER", Type: "ext4"}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with the process
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := (&control.Server{Inv: inv}).Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

func TestListenCreatesSocket(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "run", "diskd")
	path := filepath.Join(dir, "diskd.sock")
	ln, activated, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if activated {
		t.Error("activated = true without systemd")
	}
	if m := testbed.FileMode(t, path); m.Type() != os.ModeSocket || m.Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", m)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if m := testbed.FileMode(t, d); !m.IsDir() || m.Perm() != 0o700 {
			t.Errorf("%s mode %v, want a directory with 0700", d, m)
		}
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed on close: %v", err)
	}
}

func TestListenRefusesWhenServed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diskd.sock")
	ln, _, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln2, _, err := control.Listen(path, nil)
	if err == nil {
		ln2.Close()
		t.Fatal("second control.Listen succeeded")
	}
	if want := "another diskd is already listening on " + path; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("first listener lost its socket: %v", err)
	}
	c.Close()
}

func TestListenRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diskd.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a daemon that died: the file stays, nobody listens
	if m := testbed.FileMode(t, path); m.Type() != os.ModeSocket {
		t.Fatalf("no stale socket: %v", m)
	}
	ln, _, err := control.Listen(path, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	if m := testbed.FileMode(t, path); m.Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", m)
	}
}

func TestListenRefuses(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string) // dir is the socket's directory
		wantErr string                         // empty: control.Listen must succeed
	}{
		{"private directory", func(t *testing.T, dir string) { chmod(t, dir, 0o700) }, ""},
		{"world-readable directory", func(t *testing.T, dir string) { chmod(t, dir, 0o755) }, ""},
		{"sticky world-writable directory", func(t *testing.T, dir string) { chmod(t, dir, 0o777|os.ModeSticky) }, ""},
		{"group-writable directory", func(t *testing.T, dir string) { chmod(t, dir, 0o770) }, "writable by group or others without the sticky bit (mode 0770)"},
		{"world-writable directory", func(t *testing.T, dir string) { chmod(t, dir, 0o777) }, "writable by group or others without the sticky bit (mode 0777)"},
		{"not a socket", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "diskd.sock"), []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "exists and is not a socket; not removing it"},
		{"parent is a file", func(t *testing.T, dir string) {
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is not a directory"},
		{"directory of another user", func(t *testing.T, dir string) {
			testbed.RequireRoot(t) // to chown
			if err := os.Chown(dir, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 12345, not by root or by us"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir)
			path := filepath.Join(dir, "diskd.sock")
			ln, _, err := control.Listen(path, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				ln.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}
			if data, _ := os.ReadFile(path); tc.name == "not a socket" && string(data) != "precious" {
				t.Errorf("the file was touched: %q", data)
			}
		})
	}
	t.Run("path too long", func(t *testing.T) {
		if _, _, err := control.Listen(long, nil); err == nil || !strings.Contains(err.Error(), "too long") {
			t.Errorf("Listen(long path) = %v", err)
		}
	})
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestListenSocketActivation passes a listening socket to a child process
// the way systemd does (fd 3, LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES).
func TestListenSocketActivation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "act.sock")
	fallback := filepath.Join(dir, "fallback", "diskd.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	ul.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=control exec "$0" "$@"`,
		os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "DISKD_CONTROL_HELPER=serve", "DISKD_TEST_FALLBACK="+fallback,
		"GORACE=atexit_sleep_ms=0")
	cmd.ExtraFiles = []*os.File{f}
	runActivatedHelper(t, cmd, path, fallback, f)
}

// TestListenSystemdSocketActivate runs the helper under the real
// systemd-socket-activate. Under CI=true its absence is a failure.
func TestListenSystemdSocketActivate(t *testing.T) {
	testbed.RequireTools(t, "systemd-socket-activate")
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "act.sock")
	fallback := filepath.Join(dir, "fallback", "diskd.sock")
	cmd := exec.Command(bin, "-l", path, "--fdname=control",
		"-E", "DISKD_CONTROL_HELPER=serve", "-E", "DISKD_TEST_FALLBACK="+fallback, "-E", "GORACE=atexit_sleep_ms=0",
		os.Args[0], "-test.run=^TestHelperProcess$")
	runActivatedHelper(t, cmd, path, fallback, nil)
}

// runActivatedHelper starts cmd (which runs helperServe with a socket
// passed by systemd's protocol), talks to it through path, and checks that
// it reported activated=true, did not create its fallback socket, and ends
// cleanly when its stdin is closed.
func runActivatedHelper(t *testing.T, cmd *exec.Cmd, path, fallback string, passed *os.File) {
	t.Helper()
	stderr := &controltest.LockedBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if passed != nil {
		passed.Close() // the child has it now
	}
	// One goroutine reads what the child prints, then reaps it (Wait must
	// come after the last read from the pipe).
	lines := make(chan string, 16)
	exited := make(chan struct{})
	var waitErr error
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var c *control.Client
	controltest.WaitFor(t, "the activated socket", func() bool {
		c, err = control.Dial(context.Background(), path)
		return err == nil
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := c.Do(ctx, "list")
	if err != nil {
		t.Fatalf("list through the activated socket: %v\nstderr:\n%s", err, stderr)
	}
	if len(got) != 2 || !strings.Contains(got[1], "/dev/helper1") || !strings.Contains(got[1], "HELPER") {
		t.Errorf("list = %q, want the helper's disk", got)
	}
	select {
	case l := <-lines:
		if l != "activated=true" {
			t.Errorf("helper says %q, want activated=true; stderr:\n%s", l, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("helper said nothing; stderr:\n%s", stderr)
	}
	if _, err := os.Lstat(filepath.Dir(fallback)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fallback socket directory was created: %v", err)
	}
	c.Close()
	stdin.Close()
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("helper exited: %v; stderr:\n%s", waitErr, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("helper did not stop when its stdin was closed; stderr:\n%s", stderr)
	}
	if !strings.Contains(stderr.String(), "control socket from systemd") {
		t.Errorf("helper did not log the activated socket; stderr:\n%s", stderr)
	}
}
