package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/diskd/diskd/service/defaults"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/present"
)

// MaxLineBytes is the longest request line the server reads, not counting
// its line end.
const MaxLineBytes = 4096

// Defaults for the Server's zero-valued fields.
const (
	DefaultMaxConns     = 64
	DefaultWriteTimeout = 10 * time.Second
)

// Server serves the control protocol (see the package documentation) on a
// listener. Inv is required; the other fields are optional. A Server must not
// be changed once Serve has been called.
type Server struct {
	// Inv is the inventory that list, find and peers read.
	Inv *inventory.Inventory
	// Actions runs refresh, announce, ping and status. When nil, those
	// commands answer ERR, and status shows what the inventory knows.
	Actions diskstate.Actions
	// Memory answers find for disks not attached now, history and
	// list --all. When nil, find answers from the inventory only, and
	// history answers ERR.
	Memory diskstate.Memory
	// Log receives connection and error logs (default: discarded).
	Log *slog.Logger
	// MaxConns caps the connections served at once (default 64); an
	// eighth of them (at least one) is kept for root.
	MaxConns int
	// MaxConnsPerUser caps the connections of one user other than root
	// (default DefaultMaxConnsPerUser).
	MaxConnsPerUser int
	// IdleTimeout closes a connection that sends no request for this long
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// RequestTimeout bounds a request line from its first byte to its line
	// end (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// EvictAfter is how long a connection must have been idle before it may
	// be closed to make room for a new one (default DefaultEvictAfter).
	EvictAfter time.Duration
	// WriteTimeout bounds each write of an answer (default 10s).
	WriteTimeout time.Duration
	// ActionTimeout bounds refresh, announce and ping (default 2m).
	ActionTimeout time.Duration
	// Now is the clock for "ago" columns (default time.Now).
	Now func() time.Time
}

func (s *Server) log() *slog.Logger { return defaults.Logger(s.Log) }

func (s *Server) now() time.Time { return defaults.Clock(s.Now)() }

// Serve accepts connections on ln and answers requests until ctx is done. It
// then closes ln and every connection, waits for all of its goroutines, and
// returns nil. It returns an error when accepting fails for good (ln is
// closed then too).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Inv == nil {
		ln.Close()
		return errors.New("control socket: server has no inventory")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.log()
	maxConns := defaults.Positive(s.MaxConns, DefaultMaxConns)

	table := newConnTable(maxConns, defaults.Positive(s.MaxConnsPerUser, DefaultMaxConnsPerUser),
		defaults.Positive(s.EvictAfter, DefaultEvictAfter))
	var wg sync.WaitGroup
	var stopMu sync.Mutex // orders admissions against the stop
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
		stopMu.Lock()
		defer stopMu.Unlock()
		table.closeAll()
	})

	var err error
	var delay time.Duration
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if !temporary(aerr) {
				err = fmt.Errorf("control socket: accept: %w", aerr)
				break
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			log.Warn("control socket: accept failed; retrying", "err", aerr, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		delay = 0
		cn := &conn{c: c, uid: peerUID(c)}
		stopMu.Lock()
		if ctx.Err() != nil {
			stopMu.Unlock()
			c.Close()
			break
		}
		refusal := table.admit(cn, time.Now())
		stopMu.Unlock()
		if refusal != "" {
			log.Warn("control socket: refusing a connection", "uid", cn.uid, "reason", refusal)
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(c, "ERR "+refusal+"\n")
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() {
				table.remove(cn)
				c.Close()
			}()
			s.serveConn(ctx, table, cn)
		})
	}
	cancel()
	wg.Wait()
	return err
}

// temporary reports whether an accept error may go away by itself (out of
// file descriptors or memory, a connection aborted before it was accepted).
func temporary(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// lineTooLongError is returned by readRequest for an over-long line.
type lineTooLongError struct{}

func (lineTooLongError) Error() string {
	return fmt.Sprintf("request line too long (more than %d bytes)", MaxLineBytes)
}

// readRequest reads one request line without its line end. At the end of the
// stream it may return a last unterminated line together with io.EOF.
func readRequest(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", lineTooLongError{}
	}
	if err != nil && len(b) == 0 {
		return "", err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) > MaxLineBytes {
		return "", lineTooLongError{}
	}
	return string(b), err
}

func (s *Server) serveConn(ctx context.Context, table *connTable, cn *conn) {
	c := cn.c
	log := s.log().With("uid", cn.uid)
	log.Debug("control socket: connection opened")
	defer log.Debug("control socket: connection closed")
	br := bufio.NewReaderSize(c, MaxLineBytes+2)
	w := &deadlineWriter{c: c, timeout: defaults.Positive(s.WriteTimeout, DefaultWriteTimeout)}
	idleTimeout := defaults.Positive(s.IdleTimeout, DefaultIdleTimeout)
	requestTimeout := defaults.Positive(s.RequestTimeout, DefaultRequestTimeout)
	for {
		// Wait for the first byte of the next request, then give the
		// whole line its own deadline.
		table.setIdle(cn, true, time.Now())
		if br.Buffered() == 0 {
			if err := c.SetReadDeadline(time.Now().Add(idleTimeout)); err != nil {
				return
			}
			if _, err := br.Peek(1); err != nil {
				if isTimeout(err) {
					log.Debug("control socket: idle timeout; closing connection", "idle", idleTimeout)
				}
				return
			}
		}
		table.setIdle(cn, false, time.Now())
		if err := c.SetReadDeadline(time.Now().Add(requestTimeout)); err != nil {
			return
		}
		line, rerr := readRequest(br)
		if isTimeout(rerr) {
			log.Warn("control socket: request line not complete in time; closing connection", "timeout", requestTimeout)
			_ = w.respond(nil, fmt.Sprintf("request line not complete within %s; closing connection", requestTimeout))
			return
		}
		if errors.Is(rerr, lineTooLongError{}) {
			log.Warn("control socket: request line too long; closing connection")
			_ = w.respond(nil, rerr.Error())
			return
		}
		if rerr != nil && line == "" {
			if !errors.Is(rerr, io.EOF) && !errors.Is(rerr, net.ErrClosed) {
				log.Debug("control socket: read failed", "err", rerr)
			}
			return
		}
		body, msg, quit, answer := s.handle(ctx, line)
		if answer {
			if err := w.respond(body, msg); err != nil {
				if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
					// The client hung up before its answer (a timeout of
					// its own, a ^C): nothing an administrator must act on.
					log.Debug("control socket: client gone before its answer", "err", err)
				} else {
					log.Warn("control socket: write failed; closing connection", "err", err)
				}
				return
			}
		}
		if quit || rerr != nil {
			return
		}
	}
}

// handle runs one request line. It returns the answer's lines, or an error
// message for ERR, whether to close the connection afterwards, and whether
// to answer at all (blank lines are not answered).
func (s *Server) handle(ctx context.Context, line string) (body []byte, errMsg string, quit, answer bool) {
	if !utf8.ValidString(line) {
		return nil, "request is not valid UTF-8", false, true
	}
	req, err := parseRequest(line)
	if err != nil {
		return nil, err.Error(), false, true
	}
	if req.cmd == "" {
		return nil, "", false, false
	}
	s.log().Debug("control socket: request", "command", req.cmd)
	cmd, _ := lookupCommand(req.cmd) // parseRequest knows it
	body, err = cmd.run(s, ctx, req)
	if err != nil {
		return nil, err.Error(), false, true
	}
	return body, "", req.cmd == "quit", true
}

// deadlineWriter writes answers in chunks, each with its own deadline, so a
// client that reads slowly is served and one that stops reading is dropped.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

const writeChunk = 64 << 10

// respond writes body and then OK, or, when errMsg is set, ERR errMsg.
func (w *deadlineWriter) respond(body []byte, errMsg string) error {
	var tail string
	if errMsg != "" {
		body, tail = nil, "ERR "+present.Escape(errMsg)+"\n"
	} else {
		body, tail = guardLines(body), "OK\n"
	}
	if len(body)+len(tail) <= writeChunk {
		return w.write(append(body, tail...))
	}
	for len(body) > 0 {
		n := min(len(body), writeChunk)
		if err := w.write(body[:n]); err != nil {
			return err
		}
		body = body[n:]
	}
	return w.write([]byte(tail))
}

// guardLines makes sure no line of an answer's body can be taken for its
// end: a line that is "OK" or "ERR", or starts with "ERR " (a peer named
// "ERR" in the first column of a table, say), gets its first letter escaped
// (\x4f, \x45), as Escape would show a hostile byte.
func guardLines(body []byte) []byte {
	var out []byte
	for rest, start := body, 0; len(rest) > 0; {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		// Compared as bytes: a string(line) would copy every line, and a
		// `list --json` answer is one line of megabytes.
		if bytes.Equal(line, []byte("OK")) || bytes.Equal(line, []byte("ERR")) || bytes.HasPrefix(line, []byte("ERR ")) {
			if out == nil {
				out = append(make([]byte, 0, len(body)+8), body[:start]...)
			}
			out = fmt.Appendf(out, `\x%02x`, line[0])
			out = append(out, line[1:]...)
			out = append(out, '\n')
		} else if out != nil {
			out = append(append(out, line...), '\n')
		}
		start += len(line) + 1
		rest = after
	}
	if out == nil {
		return body
	}
	return out
}

func (w *deadlineWriter) write(b []byte) error {
	if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	_, err := w.c.Write(b)
	return err
}
