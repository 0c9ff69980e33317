package control_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
)

func dialClient(t *testing.T, path string) *control.Client {
	t.Helper()
	c, err := control.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn speaks the protocol byte for byte.
type rawConn struct {
	t  *testing.T
	c  *net.UnixConn
	br *bufio.Reader
}

func dialRaw(t *testing.T, path string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c.(*net.UnixConn), br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// ok sends line and fails the test unless the answer ends with OK.
func (r *rawConn) ok(line string) {
	r.t.Helper()
	r.send(line)
	if _, final := r.answer(); final != "OK" {
		r.t.Fatalf("%q: %s", line, final)
	}
}

// dialFull connects to a server that has no room: its first line must be
// the refusal. It returns the connection for more checks.
func dialFull(t *testing.T, path string) *rawConn {
	t.Helper()
	r := dialRaw(t, path)
	if l, err := r.readLine(); err != nil || l != "ERR too many connections" {
		t.Fatalf("connection beyond the limit got %q, %v", l, err)
	}
	return r
}

// sendRefused writes s to a server that refuses it and may close the
// connection before it has read all of it (an over-long line): a broken
// pipe or a reset is then what the write gets, and no error.
func (r *rawConn) sendRefused(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		r.t.Fatalf("write: %v", err)
	}
}

// readLine returns one line without "\n", or an error (io.EOF when the
// server closed the connection).
func (r *rawConn) readLine() (string, error) {
	s, err := r.br.ReadString('\n')
	if err != nil {
		if s != "" {
			return s, fmt.Errorf("partial line %q: %w", s, err)
		}
		return "", err
	}
	return strings.TrimSuffix(s, "\n"), nil
}

// answer reads lines up to and including the final OK or ERR line.
func (r *rawConn) answer() (lines []string, final string) {
	r.t.Helper()
	for {
		l, err := r.readLine()
		if err != nil {
			r.t.Fatalf("reading answer (after %q): %v", lines, err)
		}
		if l == "OK" || l == "ERR" || strings.HasPrefix(l, "ERR ") {
			return lines, l
		}
		lines = append(lines, l)
	}
}

// expectEOF checks that the server closed the connection.
func (r *rawConn) expectEOF() {
	r.t.Helper()
	l, err := r.readLine()
	if err == nil {
		r.t.Fatalf("got line %q, want the connection closed", l)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection not closed: %v", err)
	}
}

// probeStatus reports whether a new connection is served a status answer.
func probeStatus(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("status\n")); err != nil {
		return false
	}
	l, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(l, "version: ")
}
