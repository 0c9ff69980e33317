// Package logging makes diskd's logger: log/slog text lines on standard
// error, one record a line, at or above a chosen level.
//
// When standard error is connected to the systemd journal (the environment
// variable JOURNAL_STREAM names its device and inode, as sd-daemon(3)
// describes), every line starts with its syslog priority, "<4>" for a
// warning, which journald strips and stores as the entry's PRIORITY, so
// that `journalctl -p warning` shows warnings and errors and not the
// information lines; the timestamp is left out there, since the journal
// stamps every entry itself. Anywhere else the lines are plain slog text.
//
// It deliberately is not a client of the journal's native protocol: lines
// on the inherited stream keep their order with anything else the process
// writes there (a Go runtime panic or the watchdog's goroutine dump), need
// no socket of their own, and read the same in `journalctl -o cat` as on a
// terminal.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Levels are the names --log-level accepts, least to most severe.
var Levels = []string{"debug", "info", "warning", "error"}

// ParseLevel reads a level name: debug, info, warning (or warn), error;
// case is ignored.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of %s", s, strings.Join(Levels, ", "))
}

// LevelName is the --log-level name of a level (the nearest one at or
// below it).
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warning"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// Priority is the syslog priority (0 emerg .. 7 debug) of a slog level:
// error 3, warning 4, info 6, debug 7.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// IsJournal reports whether f is the stream named by journalStream, the
// value of JOURNAL_STREAM ("DEVICE:INODE", both decimal): whether systemd
// connected f to the journal. A file that was redirected elsewhere since
// (diskd -d 2>file under a service) is not.
func IsJournal(f *os.File, journalStream string) bool {
	devText, inoText, ok := strings.Cut(journalStream, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devText, 10, 64)
	ino, err2 := strconv.ParseUint(inoText, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// New is the logger for stderr: with journal priorities when stderr is the
// journal (see IsJournal), else plain text.
func New(level slog.Level) *slog.Logger {
	return NewWriter(os.Stderr, level, IsJournal(os.Stderr, os.Getenv("JOURNAL_STREAM")))
}

// NewWriter is a logger writing slog text lines to w, records below level
// left out. With journal, each line starts with its priority ("<6>") and
// has no time.
func NewWriter(w io.Writer, level slog.Level, journal bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if !journal {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	pw := &prefixWriter{w: w}
	return slog.New(&journalHandler{inner: slog.NewTextHandler(pw, opts), pw: pw})
}

// prefixWriter puts the priority of the record being written before the
// line. slog's text handler writes each record with one Write, while
// journalHandler holds mu.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

// journalHandler is slog's text handler with each record's syslog priority
// in front of its line.
type journalHandler struct {
	inner slog.Handler
	pw    *prefixWriter // shared by every handler derived with WithAttrs, WithGroup
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = append(h.pw.prefix[:0], '<')
	h.pw.prefix = strconv.AppendInt(h.pw.prefix, int64(Priority(r.Level)), 10)
	h.pw.prefix = append(h.pw.prefix, '>')
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), pw: h.pw}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), pw: h.pw}
}
