package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
	"github.com/diskd/diskd/service/testbed"
)

func TestRunClientPipe(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	for _, tc := range []struct {
		name    string
		in      string
		status  int
		out     []string // substrings of stdout, in order
		notOut  []string
		errOut  string // exact stderr
		actions []string
	}{
		{name: "list and status", in: "list\n\n   \nstatus --json\r\n", status: 0,
			out:    []string{"HOST   DEVICE", "/dev/sdd1", `{"version":"1.2.3"`},
			notOut: []string{"OK"}},
		{name: "no final newline", in: "peers", status: 0, out: []string{"HOSTNAME", "beta"}},
		{name: "an error", in: "list\nbogus\nfind\nstatus\n", status: 1,
			out:    []string{"HOST", "version: 1.2.3"},
			errOut: "error: unknown command \"bogus\"\nerror: usage: find [--json] TERM\n"},
		{name: "quit stops reading", in: "refresh\nquit\nbogus\nannounce\n", status: 0,
			actions: []string{"refresh"}},
		{name: "too long line", in: strings.Repeat("z", control.MaxLineBytes+1) + "\nping\n", status: 1,
			errOut:  fmt.Sprintf("error: request line too long (more than %d bytes)\n", control.MaxLineBytes),
			actions: []string{"ping"}},
		{name: "empty input", in: "", status: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ts.Actions.Calls())
			var out, errOut bytes.Buffer
			status := RunClient(context.Background(), ts.Path, strings.NewReader(tc.in), &out, &errOut)
			if status != tc.status {
				t.Errorf("status %d, want %d; stderr:\n%s", status, tc.status, errOut.String())
			}
			rest := out.String()
			for _, want := range tc.out {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", want, out.String())
				}
				rest = rest[i+len(want):]
			}
			for _, line := range strings.Split(out.String(), "\n") {
				for _, bad := range append(tc.notOut, "ERR") {
					if line == bad || strings.HasPrefix(line, "ERR ") {
						t.Errorf("stdout has protocol line %q", line)
					}
				}
			}
			if errOut.String() != tc.errOut {
				t.Errorf("stderr %q, want %q", errOut.String(), tc.errOut)
			}
			if got := ts.Actions.Calls()[before:]; tc.actions != nil && fmt.Sprint(got) != fmt.Sprint(tc.actions) {
				t.Errorf("actions %v, want %v", got, tc.actions)
			}
		})
	}
}

func TestRunClientNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	var out, errOut bytes.Buffer
	if status := RunClient(context.Background(), path, strings.NewReader("list\n"), &out, &errOut); status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	want := "diskd: cannot connect to " + path + ": no such file or directory" +
		" (is the daemon running? start it with: diskd -d, or systemctl start diskd)\n"
	if errOut.String() != want || out.Len() != 0 {
		t.Errorf("stderr %q, stdout %q; want stderr %q", errOut.String(), out.String(), want)
	}
}

// TestRunClientDaemonGone: the daemon stops between two lines.
func TestRunClientDaemonGone(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	pr, pw := io.Pipe()
	var out, errOut controltest.LockedBuffer
	done := make(chan int, 1)
	go func() { done <- RunClient(context.Background(), ts.Path, pr, &out, &errOut) }()
	if _, err := io.WriteString(pw, "status\n"); err != nil {
		t.Fatal(err)
	}
	controltest.WaitFor(t, "the first answer", func() bool { return strings.Contains(out.String(), "version: 1.2.3") })
	ts.Stop(t)
	if _, err := io.WriteString(pw, "status\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case status := <-done:
		if status != 1 {
			t.Errorf("status %d, want 1", status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunClient did not return")
	}
	pw.Close()
	if want := "diskd: lost the connection to the daemon at " + ts.Path + ": "; !strings.HasPrefix(errOut.String(), want) {
		t.Errorf("stderr %q, want it to start with %q", errOut.String(), want)
	}
}

// tmux drives a program on a real terminal.
type tmux struct {
	t    *testing.T
	sock string
}

func startTmux(t *testing.T, env []string, argv ...string) *tmux {
	t.Helper()
	testbed.RequireTools(t, "tmux")
	tm := &tmux{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	args := []string{"-S", tm.sock, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "24"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	cmd := exec.Command("tmux", append(args, argv...)...)
	cmd.Env = append(os.Environ(), "TMUX=") // also when the tests run inside tmux
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Only the server this test started, through its own socket.
		_ = exec.Command("tmux", "-S", tm.sock, "kill-server").Run()
	})
	tm.run("set-option", "-g", "remain-on-exit", "on")
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

func (tm *tmux) keys(keys ...string) {
	tm.t.Helper()
	tm.run(append([]string{"send-keys", "-t", "0"}, keys...)...)
}

// type sends text literally.
func (tm *tmux) typ(text string) {
	tm.t.Helper()
	tm.run("send-keys", "-t", "0", "-l", "--", text)
}

func (tm *tmux) screen() string {
	tm.t.Helper()
	return tm.run("capture-pane", "-p", "-J", "-t", "0")
}

// lastLine is the last non-empty line of the screen.
func lastLine(screen string) string {
	lines := strings.Split(strings.TrimRight(screen, "\n "), "\n")
	return strings.TrimRight(lines[len(lines)-1], " ")
}

// wait polls the screen until cond holds.
func (tm *tmux) wait(what string, cond func(screen string) bool) string {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := tm.screen()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("timed out waiting for %s; screen:\n%s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPrompt waits for an empty prompt as the last line, after n prompts.
func (tm *tmux) waitPrompt(what string, n int) string {
	tm.t.Helper()
	return tm.wait(what, func(s string) bool {
		return strings.Count(s, "=> ") >= n-1 && lastLine(s) == "=>"
	})
}

func readExit(t *testing.T, path string) string {
	t.Helper()
	var data []byte
	controltest.WaitFor(t, "the client to exit", func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil && len(data) > 0
	})
	return string(data)
}

// TestRunClientTerminal drives the interactive client on a real terminal:
// prompt, a table, Up for history, Tab completion, ^C, errors, ^D.
func TestRunClientTerminal(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	exitFile := filepath.Join(dir, "exit")
	tm := startTmux(t, []string{"DISKD_CONTROL_HELPER=client", "DISKD_TEST_SOCKET=" + ts.Path,
		"DISKD_TEST_EXITFILE=" + exitFile, "XDG_STATE_HOME=" + state},
		os.Args[0], "-test.run=^TestInteractiveHelper$")

	tm.waitPrompt("the prompt", 1)
	tm.typ("list")
	tm.keys("Enter")
	s := tm.waitPrompt("the list", 2)
	for _, want := range []string{"=> list\n", "HOST   DEVICE     TYPE  LABEL", "beta   /dev/sdd1  xfs   media"} {
		if !strings.Contains(s, want) {
			t.Errorf("screen lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\nOK\n") {
		t.Errorf("OK shown:\n%s", s)
	}

	tm.keys("Up")
	tm.wait("history recall", func(s string) bool { return lastLine(s) == "=> list" })
	tm.keys("Enter")
	tm.wait("the list again", func(s string) bool {
		return strings.Count(s, "HOST   DEVICE") == 2 && lastLine(s) == "=>"
	})

	tm.typ("sta")
	tm.keys("Tab")
	tm.wait("completion of sta", func(s string) bool { return lastLine(s) == "=> status" })
	tm.typ("--j") // the completion added a space
	tm.keys("Tab")
	tm.wait("completion of --j", func(s string) bool { return lastLine(s) == "=> status --json" })
	tm.keys("Enter")
	tm.wait("status --json", func(s string) bool {
		return strings.Contains(s, `{"version":"1.2.3"`) && lastLine(s) == "=>"
	})

	tm.typ("bogus")
	tm.keys("Enter")
	tm.wait("the error", func(s string) bool {
		return strings.Contains(s, "error: unknown command \"bogus\"\n") && lastLine(s) == "=>"
	})

	tm.typ("junk")
	tm.keys("C-c")
	tm.wait("^C clearing the line", func(s string) bool {
		return strings.Contains(s, "=> junk^C\n") && lastLine(s) == "=>"
	})

	tm.keys("C-d")
	if code := readExit(t, exitFile); code != "0" {
		t.Errorf("exit status %s, want 0; screen:\n%s", code, tm.screen())
	}

	hist := filepath.Join(state, "diskd", "history")
	data, err := os.ReadFile(hist)
	if err != nil {
		t.Fatal(err)
	}
	// Completion leaves a space after "--json"; readline keeps lines as typed.
	var got []string
	for l := range strings.Lines(string(data)) {
		got = append(got, strings.TrimSpace(l))
	}
	if want := []string{"list", "status --json", "bogus"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history %q, want the lines %q", data, want)
	}
	if m := fileMode(t, hist); m.Perm() != 0o600 {
		t.Errorf("history mode %v, want 0600", m)
	}
	if m := fileMode(t, filepath.Dir(hist)); m.Perm() != 0o700 {
		t.Errorf("history directory mode %v, want 0700", m)
	}
	if got := ts.Actions.Calls(); len(got) != 0 {
		t.Errorf("actions %v, want none", got)
	}
}

// TestRunClientTerminalQuitAndDaemonGone: quit ends with 0; a daemon that
// goes away while the user sits at the prompt ends the client with 1 and a
// clear message.
func TestRunClientTerminalQuitAndDaemonGone(t *testing.T) {
	t.Run("quit", func(t *testing.T) {
		ts := controltest.Start(t, &control.Server{})
		exitFile := filepath.Join(t.TempDir(), "exit")
		tm := startTmux(t, []string{"DISKD_CONTROL_HELPER=client", "DISKD_TEST_SOCKET=" + ts.Path,
			"DISKD_TEST_EXITFILE=" + exitFile, "XDG_STATE_HOME=" + t.TempDir()},
			os.Args[0], "-test.run=^TestInteractiveHelper$")
		tm.waitPrompt("the prompt", 1)
		tm.typ("quit")
		tm.keys("Enter")
		if code := readExit(t, exitFile); code != "0" {
			t.Errorf("exit status %s, want 0", code)
		}
	})
	t.Run("daemon gone", func(t *testing.T) {
		ts := controltest.Start(t, &control.Server{})
		exitFile := filepath.Join(t.TempDir(), "exit")
		tm := startTmux(t, []string{"DISKD_CONTROL_HELPER=client", "DISKD_TEST_SOCKET=" + ts.Path,
			"DISKD_TEST_EXITFILE=" + exitFile, "XDG_STATE_HOME=" + t.TempDir()},
			os.Args[0], "-test.run=^TestInteractiveHelper$")
		tm.waitPrompt("the prompt", 1)
		ts.Stop(t)
		if code := readExit(t, exitFile); code != "1" {
			t.Errorf("exit status %s, want 1", code)
		}
		tm.wait("the message", func(s string) bool {
			return strings.Contains(s, "diskd: lost the connection to the daemon at "+ts.Path)
		})
	})
}

// TestInteractiveHelper is not a test: the terminal tests run the test
// binary again with DISKD_CONTROL_HELPER=client under tmux, and this is what
// it then does: RunClient on the process's own terminal, its exit status
// written to DISKD_TEST_EXITFILE.
func TestInteractiveHelper(t *testing.T) {
	if os.Getenv("DISKD_CONTROL_HELPER") != "client" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	code := RunClient(ctx, os.Getenv("DISKD_TEST_SOCKET"), os.Stdin, os.Stdout, os.Stderr)
	_ = os.WriteFile(os.Getenv("DISKD_TEST_EXITFILE"), []byte(strconv.Itoa(code)), 0o644)
	os.Exit(code)
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
