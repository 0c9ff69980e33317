package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ergochat/readline"
	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/present"
)

// historyLimit is how many lines the interactive client's history keeps.
const historyLimit = 1000

// RunClient is the client that `diskd` without -d runs: it connects to the
// control socket at path, sends the lines it reads from in, and prints the
// answers without their OK to out and ERR answers as "error: <message>" to
// errOut. A list, find or peers that selects nothing says so on errOut
// (`no disk matches "X"`, "no disks known", "no peers heard"; nothing for
// --json, whose answer says it). `exit` is quit and `?` is help. It returns
// the exit status.
//
// When in is a terminal it is interactive: line editing with the prompt
// "HOST=> " (the daemon's host name, escaped; "=> " when it cannot be
// had), a history file ($XDG_STATE_HOME/diskd/history, else
// ~/.local/state/diskd/history; none when it cannot be created), Tab
// completion of command names, --json, and after list and find of the
// daemon's labels, uuids and (for list) host names; ^C clears the line, ^D
// (on an empty line), `quit` or `exit` ends with status 0. Otherwise it
// reads lines until the end of in (or quit or exit) and returns 0 when every
// answer was OK and every find found a disk, as diskctl does, else 1; when
// the input holds several requests, each answer is introduced by a line
// "### REQUEST: N lines" (see introduce). The first answer is introduced
// when the second request is waiting by the time it is answered, as it is
// for a file or a here-document; a script that writes one request and
// waits for its answer gets it plain.
// Blank lines are skipped in both modes. When the daemon cannot be reached,
// goes away, or ctx is done, it prints why (not for ctx) and returns 1.
func RunClient(ctx context.Context, path string, in io.Reader, out, errOut io.Writer) int {
	c := dial(ctx, path, errOut)
	if c == nil {
		return 1
	}
	defer c.Close()
	if f, ok := in.(*os.File); ok && isTerminal(int(f.Fd())) {
		return runInteractive(ctx, c, path, f, out, errOut)
	}
	return runBatch(ctx, c, path, in, out, errOut)
}

// dial connects to the daemon's control socket at path; when it cannot, it
// says why on errOut, and how to start the daemon, and returns nil.
func dial(ctx context.Context, path string, errOut io.Writer) *control.Client {
	c, err := control.Dial(ctx, path)
	if err != nil {
		fmt.Fprintf(errOut, "diskd: cannot connect to %s: %s (is the daemon running? start it with: diskd -d, or systemctl start diskd)\n",
			path, dialReason(err))
		return nil
	}
	return c
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
	notFound // a find that found nothing
	connLost
	interrupted
)

// send sends one line and prints its answer; the client's own words (`?`)
// are turned into requests first.
func send(ctx context.Context, c *control.Client, path, line string, out, errOut io.Writer) outcome {
	line = rewrite(line)
	if text, ok := clientHelp(line); ok {
		_, _ = io.WriteString(out, text)
		return sentOK
	}
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
	req, err := control.ParseRequest(line)
	if err != nil {
		return sentOK // the daemon took what it does not understand itself
	}
	return noteEmpty(req, lines, errOut)
}

// noteEmpty says on errOut that a list, find or peers selected nothing, as
// diskctl does; the protocol answers it with a bare OK (or [] for --json).
// It returns notFound for a find that found nothing.
func noteEmpty(req control.Request, lines []string, errOut io.Writer) outcome {
	if len(lines) > 1 || (len(lines) == 1 && !(req.JSON && lines[0] == "[]")) {
		return sentOK
	}
	var msg string
	switch req.Command {
	case "list", "find":
		msg = "no disks known"
		if req.Arg != "" {
			msg = fmt.Sprintf("no disk matches %q", present.Escape(req.Arg))
		}
	case "peers":
		msg = "no peers heard"
	default:
		return sentOK
	}
	if !req.JSON {
		fmt.Fprintln(errOut, msg)
	}
	if req.Command == "find" {
		return notFound
	}
	return sentOK
}

// isQuit reports whether a line is quit or exit, which the client handles
// itself.
func isQuit(line string) bool {
	f := strings.Fields(line)
	return len(f) == 1 && (strings.EqualFold(f[0], "quit") || strings.EqualFold(f[0], "exit"))
}

// rewrite turns `?` (alone or before a command name) into help.
func rewrite(line string) string {
	word, rest, _ := cutBlank(strings.TrimSpace(line))
	if word != "?" {
		return line
	}
	return strings.TrimSpace("help " + rest)
}

// clientHelp is the answer of help for the client's own words, which the
// daemon does not know.
func clientHelp(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) != 2 || !strings.EqualFold(f[0], "help") {
		return "", false
	}
	switch strings.ToLower(f[1]) {
	case "exit":
		return "usage: exit\nleave the client, as quit\n", true
	case "?":
		return "usage: ? [COMMAND]\nthe same as help\n", true
	}
	return "", false
}

func runBatch(ctx context.Context, c *control.Client, path string, in io.Reader, out, errOut io.Writer) int {
	br := bufio.NewReader(in)
	status := 0
	answered := 0
	for {
		line, err := readInputLine(br)
		if line = strings.TrimSpace(line); line != "" {
			if isQuit(line) {
				return status
			}
			// Several requests: each answer is introduced (see
			// introduce), so that a script can tell them apart.
			several := answered > 0 || moreInput(br)
			w := out
			var answer bytes.Buffer
			if several {
				w = &answer
			}
			result := send(ctx, c, path, line, w, errOut)
			if several {
				introduce(out, line, answer.Bytes(), result)
			}
			answered++
			switch result {
			case sentERR, notFound:
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

// moreInput reports whether another request is waiting in br already
// (a here-document, a file, printf of several lines), without waiting for
// one.
func moreInput(br *bufio.Reader) bool {
	rest, _ := br.Peek(br.Buffered())
	return len(bytes.TrimSpace(rest)) > 0
}

// introduce writes one answer of several: a line
//
//	### REQUEST: N lines
//
// (REQUEST escaped; "### REQUEST: error" when it failed, its message on
// standard error as always), then exactly the N lines of the answer. A
// script reads the header and then N lines, so no answer can pass for the
// next one's header.
func introduce(out io.Writer, line string, answer []byte, result outcome) {
	n := bytes.Count(answer, []byte("\n"))
	var head string
	switch {
	case result == sentERR:
		head = "error"
	case n == 1:
		head = "1 line"
	default:
		head = fmt.Sprintf("%d lines", n)
	}
	_, _ = fmt.Fprintf(out, "### %s: %s\n", present.Escape(line), head)
	_, _ = out.Write(answer)
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
		Prompt:             hostPrompt(ctx, path),
		HistoryFile:        prepareHistory(historyPath(), historyLimit),
		HistoryLimit:       historyLimit,
		AutoComplete:       newCompleter(ctx, path),
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
	// The watcher gets the first connection as a value: the loop below
	// replaces c when it reconnects, and passes the new one on renewed.
	first := c
	wg.Go(func() { watchConn(ctx, stop, first, path, renewed, func() { rl.Close() }) })

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
	lost := c.Lost() // nil (never ready) while waiting for a renewed connection
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			closePrompt()
			return
		case c = <-renewed:
			lost = c.Lost()
			continue
		case <-lost:
		}
		if !daemonAnswers(ctx, path) {
			closePrompt()
			return
		}
		lost = nil
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

// How the client asks the daemon for its prompt and completions: on a
// connection of its own, so that a slow answer abandoned at the timeout
// cannot put the session's connection out of step.
const (
	queryTimeout   = time.Second
	maxCandidates  = 64  // Tab offers at most this many disk values
	maxPromptRunes = 64  // of the host name in the prompt
	maxValueBytes  = 256 // longer disk values are not offered
)

// query sends one request on a connection of its own and returns the
// answer's lines, giving up after timeout.
func query(ctx context.Context, path, line string, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := control.Dial(ctx, path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(ctx, line)
}

// hostPrompt is "HOST=> " with the host name from the daemon's
// `status --json`, escaped and cut to maxPromptRunes, or "=> " when there
// is none.
func hostPrompt(ctx context.Context, path string) string {
	const plain = "=> "
	lines, err := query(ctx, path, "status --json", queryTimeout)
	if err != nil || len(lines) != 1 {
		return plain
	}
	var st struct {
		Hostname string `json:"hostname"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &st); err != nil {
		return plain
	}
	host := []rune(present.Escape(st.Hostname))
	if len(host) > maxPromptRunes {
		host = append(host[:maxPromptRunes-1], '…')
	}
	return string(host) + plain
}

// completer is the interactive client's Tab completion: command names (and
// exit) for the first word; after a command, --json where it takes it, a
// command name after help, and after list and find the labels and uuids of
// the daemon's disks (host names too after list, whose pattern matches
// them), asked of the daemon with `list --json` at each Tab. Disk values
// are offered only when every character is printable, and at most
// maxCandidates of them: when more match, Tab inserts what they all start
// with, if that is more than was typed.
type completer struct {
	ctx     context.Context
	path    string
	timeout time.Duration
	max     int
	cmds    []control.CommandInfo
}

func newCompleter(ctx context.Context, path string) *completer {
	return &completer{ctx: ctx, path: path, timeout: queryTimeout, max: maxCandidates, cmds: control.Commands()}
}

// Do is readline's AutoCompleter: it returns what may follow the text
// before pos and how many runes of that text the candidates complete.
func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	text := strings.TrimLeftFunc(string(line[:pos]), unicode.IsSpace)
	word, rest, more := cutBlank(text)
	if !more {
		return suffixes(word, c.commandNames(), " ")
	}
	info, ok := c.lookup(word)
	if !ok {
		return nil, 0
	}
	hasJSON, opts := false, true
	for opts {
		opt, after, more := cutBlank(rest)
		switch {
		case !more:
			opts = false
		case opt == "--json" && info.JSON:
			hasJSON, rest = true, after
		case opt == "--":
			rest, opts = after, false
		default:
			opts = false
		}
	}
	var cands []string
	if info.JSON && !hasJSON && strings.HasPrefix("--json", rest) {
		cands = append(cands, "--json ")
	}
	switch info.Complete {
	case "command":
		if strings.ContainsFunc(rest, unicode.IsSpace) {
			return nil, 0
		}
		return suffixes(rest, c.commandNames()[:len(c.cmds)], "")
	case "disk":
		cands = append(cands, c.diskValues(rest, info.Hosts)...)
	}
	return suffixes(rest, cands, "")
}

func (c *completer) lookup(word string) (control.CommandInfo, bool) {
	for _, ci := range c.cmds {
		if strings.EqualFold(ci.Name, word) {
			return ci, true
		}
	}
	return control.CommandInfo{}, false
}

// commandNames is the command names, then the client's own exit.
func (c *completer) commandNames() []string {
	var names []string
	for _, ci := range c.cmds {
		names = append(names, ci.Name)
	}
	return append(names, "exit")
}

// diskValues returns the labels, uuids and, with hosts, host names of the
// daemon's disks that start with prefix; none when the daemon does not
// answer within the timeout.
func (c *completer) diskValues(prefix string, hosts bool) []string {
	lines, err := query(c.ctx, c.path, "list --json", c.timeout)
	if err != nil || len(lines) != 1 {
		return nil
	}
	var disks []struct {
		Hostname string `json:"hostname"`
		UUID     string `json:"uuid"`
		Label    string `json:"label"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &disks); err != nil {
		return nil
	}
	seen := map[string]bool{}
	var vals []string
	add := func(v string) {
		if v != "" && !seen[v] && strings.HasPrefix(v, prefix) && completable(v) {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	for _, d := range disks {
		add(d.Label)
		add(d.UUID)
		if hosts {
			add(d.Hostname)
		}
	}
	slices.Sort(vals)
	if len(vals) <= c.max {
		return vals
	}
	// Too many to show: only what they all start with, which the first
	// and the last in order share.
	common := commonPrefix(vals[0], vals[len(vals)-1])
	if len(common) > len(prefix) {
		return []string{common}
	}
	return nil
}

// completable reports whether a value from the network may go into the
// line: short enough, and every character printable (no control, format
// or invalid character, no U+FFFD standing for invalid UTF-8).
func completable(v string) bool {
	if len(v) > maxValueBytes || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if r == utf8.RuneError || (r != ' ' && !unicode.IsGraphic(r)) {
			return false
		}
	}
	return true
}

// commonPrefix is the longest common prefix of a and b, in whole runes.
func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) {
		r, size := utf8.DecodeRuneInString(a[n:])
		if r2, size2 := utf8.DecodeRuneInString(b[n:]); r2 != r || size2 != size {
			break
		}
		n += size
	}
	return a[:n]
}

// suffixes returns, for each candidate that starts with typed, the rest of
// it followed by tail, and the length of typed in runes: what readline
// takes from an AutoCompleter.
func suffixes(typed string, cands []string, tail string) ([][]rune, int) {
	var out [][]rune
	for _, cand := range cands {
		if rest, ok := strings.CutPrefix(cand, typed); ok {
			out = append(out, []rune(rest+tail))
		}
	}
	return out, utf8.RuneCountInString(typed)
}

// cutBlank cuts s at its first blank: the word before it, the rest after
// the blanks, and whether there was a blank.
func cutBlank(s string) (word, rest string, found bool) {
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, "", false
	}
	return s[:i], strings.TrimLeftFunc(s[i:], unicode.IsSpace), true
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
