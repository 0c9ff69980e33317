package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ctlConn is one connection to a daemon's control socket, kept open for
// many requests (the line protocol allows that), so that polling a daemon
// costs it no accept and no new goroutine.
type ctlConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialCtl(socket string, timeout time.Duration) (*ctlConn, error) {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &ctlConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (c *ctlConn) close() error { return c.c.Close() }

// do sends one request line and reads the answer up to its final OK. It
// returns the lines before OK (when keep is set; else nil) and their size
// in bytes. An ERR answer is an error.
func (c *ctlConn) do(cmd string, timeout time.Duration, keep bool) ([]byte, int, error) {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, fmt.Errorf("control socket: %w", err)
	}
	if _, err := c.c.Write([]byte(cmd + "\n")); err != nil {
		return nil, 0, fmt.Errorf("control socket: %q: %w", cmd, err)
	}
	var body []byte
	size := 0
	midLine := false // the last chunk ended inside a long line
	for {
		chunk, err := c.r.ReadSlice('\n')
		full := err == nil
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, 0, fmt.Errorf("control socket: %q: %w", cmd, err)
		}
		if full && !midLine && len(chunk) < 1024 {
			line := strings.TrimRight(string(chunk), "\r\n")
			switch {
			case line == "OK":
				return body, size, nil
			case line == "ERR" || strings.HasPrefix(line, "ERR "):
				return nil, 0, fmt.Errorf("control socket: %q: %s", cmd, line)
			}
		}
		midLine = !full
		size += len(chunk)
		if keep {
			body = append(body, chunk...)
		}
	}
}

// ctlOnce connects, sends one request and returns the answer.
func ctlOnce(socket, cmd string, timeout time.Duration) ([]byte, error) {
	c, err := dialCtl(socket, timeout)
	if err != nil {
		return nil, err
	}
	defer c.close()
	body, _, err := c.do(cmd, timeout, true)
	return body, err
}

// ctlJSON sends one request (a --json one) and decodes the answer into v.
func ctlJSON(socket, cmd string, v any) error {
	body, err := ctlOnce(socket, cmd, 10*time.Second)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(bytes.TrimSpace(body), v); err != nil {
		return fmt.Errorf("control socket: %q: %w", cmd, err)
	}
	return nil
}

// diskJSON is what the benchmark reads of a disk in `list --json`.
type diskJSON struct {
	HostID string `json:"host_id"`
	Label  string `json:"label"`
	Device string `json:"device"`
}

// statusJSON is what the benchmark reads of `status --json`.
type statusJSON struct {
	Version        string            `json:"version"`
	Peers          int               `json:"peers"`
	Disks          int               `json:"disks"`
	PacketsIn      uint64            `json:"packets_in"`
	PacketsDropped uint64            `json:"packets_dropped"`
	Drops          map[string]uint64 `json:"drops"`
}

func status(socket string) (statusJSON, error) {
	var st statusJSON
	err := ctlJSON(socket, "status --json", &st)
	return st, err
}

// listDisks returns the disks of `list --json PATTERN`.
func listDisks(socket, pattern string) ([]diskJSON, error) {
	var ds []diskJSON
	err := ctlJSON(socket, strings.TrimSpace("list --json "+pattern), &ds)
	return ds, err
}
