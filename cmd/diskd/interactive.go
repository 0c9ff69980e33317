package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ergochat/readline"
	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/control"
)

// historyLimit is how many lines the interactive client's history keeps.
const historyLimit = 1000

// RunClient is the client that `diskd` without -d runs: it connects to the
// control socket at path, sends the lines it reads from in, and prints the
// answers without their OK to out and ERR answers as "error: <message>" to
// errOut. It returns the exit status.
//
// When in is a terminal it is interactive: line editing with the prompt
// "=> ", a history file ($XDG_STATE_HOME/diskd/history, else
// ~/.local/state/diskd/history; none when it cannot be created), Tab
// completion of command names and --json, ^C clears the line, ^D (on an
// empty line) or `quit` ends with status 0. Otherwise it reads lines until
// the end of in (or `quit`) and returns 0 when every answer was OK, else 1.
// Blank lines are skipped in both modes. When the daemon cannot be reached,
// goes away, or ctx is done, it prints why (not for ctx) and returns 1.
func RunClient(ctx context.Context, path string, in io.Reader, out, errOut io.Writer) int {
	c, err := control.Dial(ctx, path)
	if err != nil {
		fmt.Fprintf(errOut, "diskd: cannot connect to %s: %s (is the daemon running? start it with: diskd -d, or systemctl start diskd)\n",
			path, dialReason(err))
		return 1
	}
	defer c.Close()
	if f, ok := in.(*os.File); ok && isTerminal(int(f.Fd())) {
		return runInteractive(ctx, c, path, f, out, errOut)
	}
	return runBatch(ctx, c, path, in, out, errOut)
}

// dialReason is the heart of a dial error: "no such file or directory",
// "connection refused", "permission denied".
func dialReason(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}

// outcome is what became of one line sent by the client.
type outcome int

const (
	sentOK outcome = iota
	sentERR
	connLost
	interrupted
)

// send sends one line and prints its answer.
func send(ctx context.Context, c *control.Client, path, line string, out, errOut io.Writer) outcome {
	if err := control.CheckRequestLine(line); err != nil {
		fmt.Fprintf(errOut, "error: %v\n", err)
		return sentERR
	}
	lines, err := c.Do(ctx, line)
	var remote *control.RemoteError
	switch {
	case errors.As(err, &remote):
		fmt.Fprintf(errOut, "error: %s\n", remote.Msg)
		return sentERR
	case ctx.Err() != nil:
		return interrupted
	case err != nil:
		fmt.Fprintf(errOut, "diskd: lost the connection to the daemon at %s: %v\n", path, err)
		return connLost
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_, _ = out.Write(b.Bytes())
	return sentOK
}

// isQuit reports whether a line is the quit command, which the client
// handles itself.
func isQuit(line string) bool {
	f := strings.Fields(line)
	return len(f) == 1 && strings.EqualFold(f[0], "quit")
}

func runBatch(ctx context.Context, c *control.Client, path string, in io.Reader, out, errOut io.Writer) int {
	br := bufio.NewReader(in)
	status := 0
	for {
		line, err := readInputLine(br)
		if line = strings.TrimSpace(line); line != "" {
			if isQuit(line) {
				return status
			}
			switch send(ctx, c, path, line, out, errOut) {
			case sentERR:
				status = 1
			case connLost, interrupted:
				return 1
			}
		}
		if errors.Is(err, io.EOF) {
			return status
		}
		if err != nil {
			fmt.Fprintf(errOut, "diskd: read input: %v\n", err)
			return 1
		}
	}
}

// readInputLine reads one line of input without its line end. A line longer
// than control.MaxLineBytes is read to its end and returned cut, so that sending it
// fails with "too long" rather than eating memory.
func readInputLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf) <= control.MaxLineBytes {
			buf = append(buf, chunk[:min(len(chunk), control.MaxLineBytes+2-len(buf))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		return string(bytes.TrimSuffix(buf, []byte("\r"))), err
	}
}

func runInteractive(ctx context.Context, c *control.Client, path string, in *os.File, out, errOut io.Writer) int {
	t := &tty{in: int(in.Fd()), size: int(in.Fd())}
	if f, ok := out.(*os.File); ok && isTerminal(int(f.Fd())) {
		t.size = int(f.Fd())
	}
	cfg := &readline.Config{
		Prompt:             "=> ",
		HistoryFile:        prepareHistory(historyPath(), historyLimit),
		HistoryLimit:       historyLimit,
		AutoComplete:       completer(),
		Stdin:              in,
		Stdout:             out,
		Stderr:             errOut,
		FuncIsTerminal:     func() bool { return true },
		FuncMakeRaw:        t.makeRaw,
		FuncExitRaw:        t.restore,
		FuncGetSize:        t.getSize,
		FuncOnWidthChanged: t.setOnResize,
	}
	rl, err := readline.NewFromConfig(cfg)
	if err != nil {
		fmt.Fprintf(errOut, "diskd: terminal: %v\n", err)
		return 1
	}
	defer rl.Close()

	// Two helpers, both stopped before RunClient returns: one forwards
	// window size changes to readline, one interrupts the prompt when the
	// daemon goes away or ctx ends.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	wg.Go(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGWINCH)
		defer signal.Stop(ch)
		for {
			select {
			case <-stop:
				return
			case <-ch:
				t.resized()
			}
		}
	})
	renewed := make(chan *control.Client, 1)
	defer func() { c.Close() }()
	wg.Go(func() { watchConn(ctx, stop, c, path, renewed, func() { rl.Close() }) })

	for {
		line, err := rl.ReadLine()
		if errors.Is(err, readline.ErrInterrupt) {
			continue // ^C: the line is discarded, read the next one
		}
		if err != nil {
			if lostForGood(ctx, c, path) {
				fmt.Fprintf(errOut, "\ndiskd: lost the connection to the daemon at %s: %v\n", path, c.LostErr())
				return 1
			}
			if ctx.Err() != nil {
				return 1
			}
			return 0 // ^D
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if isQuit(line) {
			return 0
		}
		nc, err := renewConn(ctx, c, path)
		if err != nil {
			fmt.Fprintf(errOut, "diskd: lost the connection to the daemon at %s: %v\n", path, err)
			return 1
		}
		if nc != c {
			c = nc
			select {
			case <-renewed: // not picked up yet: replaced by the newer one
			default:
			}
			renewed <- c
		}
		switch send(ctx, c, path, line, out, errOut) {
		case connLost, interrupted:
			return 1
		}
	}
}

// watchConn interrupts the prompt (closePrompt) when ctx ends or the daemon
// goes away. A connection that the daemon closed while it still answers on
// path (the idle timeout of a client left at its prompt) is not the end: the
// next line reconnects (renewConn), and the new connection, sent on
// renewed, is watched from then on. It returns when stop is closed.
func watchConn(ctx context.Context, stop <-chan struct{}, c *control.Client, path string,
	renewed <-chan *control.Client, closePrompt func()) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			closePrompt()
			return
		case c = <-renewed:
			continue
		case <-c.Lost():
		}
		if !daemonAnswers(ctx, path) {
			closePrompt()
			return
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			closePrompt()
			return
		case c = <-renewed:
		}
	}
}

// lostForGood reports whether c is lost and the daemon no longer answers
// (not merely closed an idle connection).
func lostForGood(ctx context.Context, c *control.Client, path string) bool {
	select {
	case <-c.Lost():
		return !daemonAnswers(ctx, path)
	default:
		return false
	}
}

// daemonAnswers reports whether something accepts connections on path.
func daemonAnswers(ctx context.Context, path string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// renewConn returns c while it is connected, else (the daemon closed an
// idle connection) c closed and a new connection to path.
func renewConn(ctx context.Context, c *control.Client, path string) (*control.Client, error) {
	select {
	case <-c.Lost():
	default:
		return c, nil
	}
	c.Close()
	nc, err := control.Dial(ctx, path)
	if err != nil {
		return c, fmt.Errorf("reconnecting: %w", err)
	}
	return nc, nil
}

// completer completes command names and, after list, find, peers and
// status, the --json option.
func completer() readline.AutoCompleter {
	var items []*readline.PrefixCompleter
	for _, c := range control.Commands() {
		if c.JSON {
			items = append(items, readline.PcItem(c.Name, readline.PcItem("--json")))
		} else {
			items = append(items, readline.PcItem(c.Name))
		}
	}
	return readline.NewPrefixCompleter(items...)
}

// historyPath is $XDG_STATE_HOME/diskd/history, else
// ~/.local/state/diskd/history; empty when there is no home.
func historyPath() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(dir) { // the XDG spec says to ignore a relative path
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "diskd", "history")
}

// prepareHistory creates the history file (0600, in a 0700 directory) and
// trims it to limit lines, so that readline never rewrites it (readline
// would create the rewritten file with mode 0666 less the umask). It returns
// the path, or "" when there can be no history.
func prepareHistory(path string, limit int) string {
	if path == "" {
		return ""
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return ""
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return ""
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return ""
	}
	if bytes.Count(data, []byte("\n")) <= limit {
		return path
	}
	var kept []string
	for l := range strings.Lines(string(data)) {
		if strings.TrimSpace(l) != "" {
			kept = append(kept, strings.TrimSuffix(l, "\n"))
		}
	}
	kept = kept[max(0, len(kept)-limit):]
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := os.WriteFile(tmp, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		os.Remove(tmp)
		return path
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
	}
	return path
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// tty does readline's terminal handling on the client's own input and
// output files (readline's defaults use file descriptors 0 and 1).
type tty struct {
	in   int // raw mode is set here
	size int // the window size is read here

	mu       sync.Mutex
	saved    *unix.Termios
	onResize func()
}

// makeRaw puts the input terminal in raw mode, as cfmakeraw(3) does but
// keeping output processing (readline writes "\n" and expects "\r\n"), as
// readline's own raw mode does.
func (t *tty) makeRaw() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, err := unix.IoctlGetTermios(t.in, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get terminal mode: %w", err)
	}
	saved := *cur
	raw := *cur
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(t.in, unix.TCSETS, &raw); err != nil {
		return fmt.Errorf("set terminal mode: %w", err)
	}
	if t.saved == nil {
		t.saved = &saved
	}
	return nil
}

// restore undoes makeRaw.
func (t *tty) restore() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.saved == nil {
		return nil
	}
	if err := unix.IoctlSetTermios(t.in, unix.TCSETS, t.saved); err != nil {
		return fmt.Errorf("restore terminal mode: %w", err)
	}
	t.saved = nil
	return nil
}

func (t *tty) getSize() (width, height int) {
	ws, err := unix.IoctlGetWinsize(t.size, unix.TIOCGWINSZ)
	if err != nil {
		return -1, -1
	}
	return int(ws.Col), int(ws.Row)
}

func (t *tty) setOnResize(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onResize = f
}

func (t *tty) resized() {
	t.mu.Lock()
	f := t.onResize
	t.mu.Unlock()
	if f != nil {
		f()
	}
}
