package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
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
			errOut: "error: unknown command \"bogus\"\nerror: usage: find [--json] [OPTIONS] TERM\n"},
		{name: "quit stops reading", in: "refresh\nquit\nbogus\nannounce\n", status: 0,
			actions: []string{"refresh"}},
		{name: "too long line", in: strings.Repeat("z", control.MaxLineBytes+1) + "\nping\n", status: 1,
			errOut:  fmt.Sprintf("error: request line too long (more than %d bytes)\n", control.MaxLineBytes),
			actions: []string{"ping"}},
		{name: "empty input", in: "", status: 0},
		{name: "suggestion", in: "lsit\n", status: 1,
			errOut: "error: unknown command \"lsit\"; did you mean \"list\"?\n"},
		{name: "help command", in: "help find\n?\n? LIST\n", status: 0,
			out: []string{"### help find: ", "usage: find [--json] [OPTIONS] TERM\ndisks where one of uuid", "### ?: ",
				"help [COMMAND]  ", "quit ", "### ? LIST: ", "usage: list [--json] [--all] [OPTIONS] [PATTERN]\nevery known disk"}},
		{name: "help for the client's words", in: "help exit\n? ?\n", status: 0,
			out: []string{"usage: exit\nleave the client, as quit\n", "usage: ? [COMMAND]\nthe same as help\n"}},
		{name: "help unknown command", in: "help stauts\n", status: 1,
			errOut: "error: unknown command \"stauts\"; did you mean \"status\"?\n"},
		{name: "exit stops reading", in: "refresh\n  EXIT \nannounce\n", status: 0,
			actions: []string{"refresh"}},
		{name: "exit after an error", in: "bogus\nexit\n", status: 1,
			errOut: "error: unknown command \"bogus\"\n"},
		{name: "find without match", in: "find zzz\nstatus\n", status: 1, out: []string{"version: 1.2.3"},
			errOut: "no disk matches \"zzz\"\n"},
		{name: "find --json without match", in: "find --json zzz\n", status: 1, out: []string{"[]\n"}},
		{name: "find with match", in: "find media\n", status: 0, out: []string{"beta  /dev/sdd1"}},
		{name: "list without match", in: "list zz*z\nlist --json zzz\n", status: 0, out: []string{"[]\n"},
			errOut: "no disk matches \"zz*z\"\n"},
		{name: "no match escaped", in: "list a\x1b[2Jb\"c\n", status: 0,
			errOut: `no disk matches "a\\x1b[2Jb\"c"` + "\n"},
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

// TestRunClientPipeNothingKnown: a daemon that knows no disk and no peer.
func TestRunClientPipeNothingKnown(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "hostid-lonely", Hostname: "lonely"})
	ts := controltest.Start(t, &control.Server{Inv: inv})
	for _, tc := range []struct {
		in, out, errOut string
		status          int
	}{
		{"list\n", "", "no disks known\n", 0},
		{"peers\n", "", "no peers heard\n", 0},
		{"list --json\npeers --json\n", "### list --json: 1 line\n[]\n### peers --json: 1 line\n[]\n", "", 0},
		{"list\nbogus\n", "### list: 0 lines\n### bogus: error\n", "no disks known\nerror: unknown command \"bogus\"\n", 1},
		{"find x\n", "", "no disk matches \"x\"\n", 1},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var out, errOut bytes.Buffer
			status := RunClient(context.Background(), ts.Path, strings.NewReader(tc.in), &out, &errOut)
			if status != tc.status || out.String() != tc.out || errOut.String() != tc.errOut {
				t.Errorf("status %d, stdout %q, stderr %q; want %d, %q, %q",
					status, out.String(), errOut.String(), tc.status, tc.out, tc.errOut)
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
	t      *testing.T
	sock   string
	prompt string // the client's prompt; "alpha=> " unless a test sets it
}

func startTmux(t *testing.T, env []string, argv ...string) *tmux {
	t.Helper()
	testbed.RequireTools(t, "tmux")
	tm := &tmux{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock"), prompt: "alpha=> "}
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
		return strings.Count(s, tm.prompt) >= n-1 && tm.atPrompt(s)
	})
}

// atPrompt reports whether the screen ends with an empty prompt.
func (tm *tmux) atPrompt(screen string) bool {
	return lastLine(screen) == strings.TrimRight(tm.prompt, " ")
}

// waitLine waits until the last line of the screen is the prompt and then
// text.
func (tm *tmux) waitLine(what, text string) string {
	tm.t.Helper()
	return tm.wait(what, func(s string) bool { return lastLine(s) == tm.prompt+text })
}

// startClientTerminal runs the interactive client (TestInteractiveHelper)
// under tmux against the control socket at socket; it writes its exit
// status to exitFile and keeps its history under stateDir.
func startClientTerminal(t *testing.T, socket, exitFile, stateDir string) *tmux {
	t.Helper()
	return startTmux(t, []string{"DISKD_CONTROL_HELPER=client", "DISKD_TEST_SOCKET=" + socket,
		"DISKD_TEST_EXITFILE=" + exitFile, "XDG_STATE_HOME=" + stateDir},
		os.Args[0], "-test.run=^TestInteractiveHelper$")
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
	tm := startClientTerminal(t, ts.Path, exitFile, state)

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
	tm.waitLine("history recall", "list")
	tm.keys("Enter")
	tm.wait("the list again", func(s string) bool {
		return strings.Count(s, "HOST   DEVICE") == 2 && tm.atPrompt(s)
	})

	tm.typ("sta")
	tm.keys("Tab")
	tm.waitLine("completion of sta", "status")
	tm.typ("--j") // the completion added a space
	tm.keys("Tab")
	tm.waitLine("completion of --j", "status --json")
	tm.keys("Enter")
	tm.wait("status --json", func(s string) bool {
		return strings.Contains(s, `{"version":"1.2.3"`) && tm.atPrompt(s)
	})

	tm.typ("bogus")
	tm.keys("Enter")
	tm.wait("the error", func(s string) bool {
		return strings.Contains(s, "error: unknown command \"bogus\"\n") && tm.atPrompt(s)
	})

	tm.typ("junk")
	tm.keys("C-c")
	tm.wait("^C clearing the line", func(s string) bool {
		return strings.Contains(s, "alpha=> junk^C\n") && tm.atPrompt(s)
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
	if m := testbed.FileMode(t, hist); m.Perm() != 0o600 {
		t.Errorf("history mode %v, want 0600", m)
	}
	if m := testbed.FileMode(t, filepath.Dir(hist)); m.Perm() != 0o700 {
		t.Errorf("history directory mode %v, want 0700", m)
	}
	if got := ts.Actions.Calls(); len(got) != 0 {
		t.Errorf("actions %v, want none", got)
	}
}

// TestRunClientTerminalFriendly drives what helps a person on a real
// terminal: the host name in the prompt, the suggestion for a typo, help
// COMMAND and ?, a message for an empty answer, Tab completion of a host
// after list and of a label after find, and exit.
func TestRunClientTerminalFriendly(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	exitFile := filepath.Join(t.TempDir(), "exit")
	tm := startClientTerminal(t, ts.Path, exitFile, t.TempDir())
	if s := tm.waitPrompt("the prompt", 1); lastLine(s) != "alpha=>" {
		t.Fatalf("prompt %q, want %q", lastLine(s), "alpha=>")
	}

	steps := []struct {
		typed string
		want  string // on the screen after Enter, then the prompt
	}{
		{"lsit", "error: unknown command \"lsit\"; did you mean \"list\"?\n"},
		{"help find", "alpha=> help find\nusage: find [--json] [OPTIONS] TERM\ndisks where one of uuid, partuuid, label"},
		{"? peers", "alpha=> ? peers\nusage: peers [--json]\nthe hosts heard on the network\n"},
		{"?", "alpha=> ?\nhelp [COMMAND]  "},
		{"find zzz", "alpha=> find zzz\nno disk matches \"zzz\"\n"},
	}
	for _, st := range steps {
		tm.typ(st.typed)
		tm.keys("Enter")
		tm.wait(st.typed, func(s string) bool {
			return strings.Contains(s, st.want) && strings.Count(s, tm.prompt) >= 2 && tm.atPrompt(s)
		})
		tm.keys("C-l") // a clear screen for the next step
		tm.wait("a clear screen", func(s string) bool { return strings.Count(s, tm.prompt) == 1 })
	}

	tm.typ("list be")
	tm.keys("Tab")
	tm.waitLine("completion of a host", "list beta")
	tm.keys("Enter")
	tm.wait("the list of beta", func(s string) bool {
		return strings.Contains(s, "beta  /dev/sdd1  xfs   media") && !strings.Contains(s, "alpha  /dev/") && tm.atPrompt(s)
	})

	tm.typ("find --json me")
	tm.keys("Tab")
	tm.waitLine("completion of a label after --json", "find --json media")
	tm.keys("C-u")
	tm.waitPrompt("an empty line", 1)

	tm.typ("find BACK")
	tm.keys("Tab") // two labels start with BACKUP-2019: their common part
	tm.waitLine("completion of a common part", "find BACKUP-2019")
	tm.typ("-")
	tm.keys("Tab")
	tm.waitLine("completion of a label", "find BACKUP-2019-old")
	tm.keys("Enter")
	tm.wait("the found disk", func(s string) bool {
		return strings.Contains(s, "beta  /dev/sdc1  ext4  BACKUP-2019-old") && tm.atPrompt(s)
	})

	tm.typ("exit")
	tm.keys("Enter")
	if code := readExit(t, exitFile); code != "0" {
		t.Errorf("exit status %s, want 0; screen:\n%s", code, tm.screen())
	}
	if got := ts.Actions.Calls(); len(got) != 0 {
		t.Errorf("actions %v, want none", got)
	}
}

// TestHostPrompt: the prompt carries the daemon's host name, escaped and
// bounded, and is "=> " when there is none or the daemon does not answer.
func TestHostPrompt(t *testing.T) {
	for _, tc := range []struct{ host, want string }{
		{"alpha", "alpha=> "},
		{"", "=> "},
		{"evil\x1b[2J\x07\u202ehost\n", `evil\x1b[2J\x07\u202ehost\n=> `},
		{"Straße-日本", "Straße-日本=> "},
		{strings.Repeat("h", 300), strings.Repeat("h", 63) + "…=> "},
	} {
		t.Run(tc.host, func(t *testing.T) {
			a := controltest.NewActions()
			a.St.Hostname = tc.host
			ts := controltest.Start(t, &control.Server{Actions: a})
			if got := hostPrompt(context.Background(), ts.Path); got != tc.want {
				t.Errorf("prompt %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("daemon does not answer", func(t *testing.T) {
		path := hangingSocket(t)
		start := time.Now()
		if got := hostPrompt(context.Background(), path); got != "=> " {
			t.Errorf("prompt %q, want %q", got, "=> ")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v with a daemon that does not answer", d)
		}
	})
}

// hangingSocket is a socket that accepts connections and never answers,
// until the test ends.
func hangingSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return path
}

// TestCompleter asks the completer what Tab offers, as readline does, with
// the cursor at the end of the line.
func TestCompleter(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	comp := newCompleter(context.Background(), ts.Path)
	for _, tc := range []struct {
		line string
		want []string // the whole completed texts
	}{
		{"", []string{"help ", "list ", "find ", "info ", "history ", "peers ", "status ", "refresh ", "announce ", "ping ", "quit ", "exit "}},
		{"li", []string{"list "}},
		{"  p", []string{"  peers ", "  ping "}},
		{"e", []string{"exit "}},
		{"zz", nil},
		{"status --j", []string{"status --json "}},
		{"status x", nil},
		{"refresh ", nil},
		{"help ", []string{"help help", "help list", "help find", "help info", "help history", "help peers", "help status", "help refresh",
			"help announce", "help ping", "help quit"}},
		{"help st", []string{"help status"}},
		{"help list x", nil},
		{"list be", []string{"list beta"}},
		{"LIST  al", []string{"LIST  alpha"}},
		{"list --json al", []string{"list --json alpha"}},
		{"list -- al", []string{"list -- alpha"}},
		{"list 11", []string{"list 1111-aaaa"}},
		{"list B", []string{"list BACKUP-2019", "list BACKUP-2019-old"}},
		{"list --", []string{"list --json "}},
		{"list ", []string{"list --json ", "list 1111-aaaa", "list 2222-BBBB", "list 3333-cccc", "list 4444-dddd",
			"list BACKUP-2019", "list BACKUP-2019-old", "list alpha", "list beta", "list media"}},
		{"find be", []string{"find beta"}}, // find matches hosts, as list does
		{"find BACKUP-2019-", []string{"find BACKUP-2019-old"}},
		{"find --json me", []string{"find --json media"}},
		{"find ", []string{"find --json ", "find 1111-aaaa", "find 2222-BBBB", "find 3333-cccc", "find 4444-dddd",
			"find BACKUP-2019", "find BACKUP-2019-old", "find alpha", "find beta", "find media"}},
		{"bogus a", nil},
	} {
		t.Run(tc.line, func(t *testing.T) {
			if got := complete(comp, tc.line); !slices.Equal(got, tc.want) {
				t.Errorf("Tab after %q offers %q, want %q", tc.line, got, tc.want)
			}
		})
	}
}

// complete runs the completer at the end of line and returns each
// candidate as the line it would make.
func complete(comp *completer, line string) []string {
	rs := []rune(line)
	cands, n := comp.Do(rs, len(rs))
	var out []string
	for _, c := range cands {
		out = append(out, string(rs[:len(rs)-n])+string(rs[len(rs)-n:])+string(c))
	}
	return out
}

// TestCompleterHostileAndBounded: disk values that are not printable are
// never offered; more than the limit are offered only as their common
// start; a daemon that does not answer costs at most the timeout.
func TestCompleterHostileAndBounded(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "hostid-local", Hostname: "alpha", Now: controltest.T0})
	var disks []diskstate.Disk
	for i := range 200 {
		disks = append(disks, diskstate.Disk{Device: fmt.Sprintf("/dev/vd%d", i), UUID: fmt.Sprintf("u-%03d", i),
			Label: fmt.Sprintf("L-%03d", i)})
	}
	disks = append(disks,
		diskstate.Disk{Device: "/dev/e1", UUID: "e1", Label: "evil\x1b[2J"},
		diskstate.Disk{Device: "/dev/e2", UUID: "e2", Label: "evil\u202etxt"},
		diskstate.Disk{Device: "/dev/e3", UUID: "e3", Label: "evil\xff"},
		diskstate.Disk{Device: "/dev/e4", UUID: "e4", Label: "evil\tx"},
		diskstate.Disk{Device: "/dev/e5", UUID: "e5", Label: "evil" + strings.Repeat("x", 300)},
		diskstate.Disk{Device: "/dev/e6", UUID: "e6", Label: "evil ok-Straße"},
	)
	inv.SetLocal(disks, nil)
	ts := controltest.Start(t, &control.Server{Inv: inv})
	comp := newCompleter(context.Background(), ts.Path)
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"find ev", []string{"find evil ok-Straße"}},
		{"find L-", nil},                // 200 start with L-, and share nothing more
		{"find L-1", nil},               // 100 do
		{"find L", []string{"find L-"}}, // too many, but they share "L-"
		{"find L-19", []string{"find L-190", "find L-191", "find L-192", "find L-193", "find L-194",
			"find L-195", "find L-196", "find L-197", "find L-198", "find L-199"}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			if got := complete(comp, tc.line); !slices.Equal(got, tc.want) {
				t.Errorf("Tab after %q offers %q, want %q", tc.line, got, tc.want)
			}
		})
	}
	// Under the limit, every offer is printable.
	comp.max = 1000
	got := complete(comp, "find ")
	if len(got) != 1+200+200+6+1+1 { // as before, and the host name, which find matches too
		t.Errorf("find offers %d values, want %d", len(got), 1+200+200+6+1+1)
	}
	for _, l := range got {
		if l == "find evil ok-Straße" {
			continue
		}
		if strings.HasPrefix(l, "find evil") {
			t.Errorf("offered %q", l)
		}
	}

	t.Run("daemon does not answer", func(t *testing.T) {
		comp := newCompleter(context.Background(), hangingSocket(t))
		start := time.Now()
		if got := complete(comp, "list a"); got != nil {
			t.Errorf("offers %q", got)
		}
		if d := time.Since(start); d < queryTimeout/2 || d > 5*time.Second {
			t.Errorf("took %v with a daemon that does not answer, want about %v", d, queryTimeout)
		}
	})
}

// TestRunClientTerminalQuitAndDaemonGone: quit ends with 0; a daemon that
// goes away while the user sits at the prompt ends the client with 1 and a
// clear message.
func TestRunClientTerminalQuitAndDaemonGone(t *testing.T) {
	t.Run("quit", func(t *testing.T) {
		ts := controltest.Start(t, &control.Server{})
		exitFile := filepath.Join(t.TempDir(), "exit")
		tm := startClientTerminal(t, ts.Path, exitFile, t.TempDir())
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
		tm := startClientTerminal(t, ts.Path, exitFile, t.TempDir())
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
