package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// maxResponseLine caps one line of an answer that the client accepts.
const maxResponseLine = 64 << 20

// RemoteError is an `ERR <message>` answer: the daemon refused or failed the
// request. The connection stays usable, except after "too many connections"
// or "request line too long", which the server sends before it closes it.
type RemoteError struct {
	Msg string
}

func (e *RemoteError) Error() string { return e.Msg }

// Client is a connection to the control socket. Its methods are safe for
// concurrent use; requests are sent one at a time.
type Client struct {
	conn net.Conn

	// The reader goroutine hands over answer lines on lines; when the
	// connection ends it sets readErr and closes done.
	lines   chan string
	done    chan struct{}
	readErr error

	mu     sync.Mutex // serializes Do
	broken error      // set when the connection is out of step

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// Dial connects to the control socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c := &Client{conn: conn, lines: make(chan string), done: make(chan struct{}),
		closing: make(chan struct{})}
	c.wg.Go(c.readLoop)
	return c, nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		line, err := readResponseLine(br)
		if err != nil {
			c.readErr = err
			return
		}
		select {
		case c.lines <- line:
		case <-c.closing:
			c.readErr = net.ErrClosed
			return
		}
	}
}

func readResponseLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if err == nil && buf == nil {
			buf = chunk // the common case: the line fits the buffer
			break
		}
		buf = append(buf, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) > maxResponseLine {
				return "", fmt.Errorf("answer line longer than %d bytes", maxResponseLine)
			}
			continue
		}
		if errors.Is(err, io.EOF) && len(buf) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return string(buf), nil
}

// Lost is closed when the connection has ended.
func (c *Client) Lost() <-chan struct{} { return c.done }

// LostErr explains why the connection ended; call it after Lost is closed.
func (c *Client) LostErr() error {
	if errors.Is(c.readErr, io.EOF) {
		return fmt.Errorf("the daemon closed the connection: %w", c.readErr)
	}
	return fmt.Errorf("connection to the daemon lost: %w", c.readErr)
}

// CheckRequestLine refuses what the server would not take as one request:
// a line break, or more than MaxLineBytes.
func CheckRequestLine(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return errors.New("a request must be a single line")
	}
	if len(line) > MaxLineBytes {
		return lineTooLongError{}
	}
	return nil
}

// Do sends one request line and returns the answer's lines without the final
// OK. An ERR answer is returned as *RemoteError; any other error means the
// connection is unusable (closed, lost, or out of step after ctx was done in
// the middle of a request). A blank line is not sent: Do returns nil, nil.
func (c *Client) Do(ctx context.Context, line string) ([]string, error) {
	if err := CheckRequestLine(line); err != nil {
		return nil, err
	}
	if strings.TrimSpace(line) == "" {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("request not sent: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	select {
	case <-c.done:
		return nil, c.LostErr()
	default:
	}

	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetWriteDeadline(time.Unix(1, 0)) })
	_, err := io.WriteString(c.conn, line+"\n")
	if !stop() {
		if ctx.Err() != nil {
			return nil, c.abandon(ctx)
		}
	}
	if err != nil {
		c.broken = fmt.Errorf("send request: %w", err)
		// The server may have said why before it closed the connection
		// (ERR too many connections): prefer its word to EPIPE.
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case l := <-c.lines:
			if re := remoteError(l); re != nil {
				return nil, re
			}
		case <-c.done:
		case <-t.C:
		}
		return nil, c.broken
	}

	var out []string
	for {
		select {
		case l := <-c.lines:
			if l == "OK" {
				return out, nil
			}
			if re := remoteError(l); re != nil {
				return nil, re
			}
			out = append(out, l)
		case <-c.done:
			return nil, c.LostErr()
		case <-ctx.Done():
			return nil, c.abandon(ctx)
		}
	}
}

// remoteError returns the RemoteError for an ERR line, nil for other lines.
func remoteError(line string) *RemoteError {
	msg, ok := strings.CutPrefix(line, "ERR")
	if !ok || (msg != "" && msg[0] != ' ') {
		return nil
	}
	return &RemoteError{Msg: strings.TrimPrefix(msg, " ")}
}

// abandon gives up the connection after ctx ended in the middle of a
// request: its answer may still come and would be taken for the next one's.
func (c *Client) abandon(ctx context.Context) error {
	c.broken = fmt.Errorf("connection abandoned after a cancelled request: %w", ctx.Err())
	c.conn.Close()
	return fmt.Errorf("request cancelled: %w", ctx.Err())
}

// Close closes the connection and waits for the client's reader to stop.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.closeErr = c.conn.Close()
		c.wg.Wait()
	})
	return c.closeErr
}
