package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/inventory"
)

// t0 is the fixed time of the test inventory; the server's clock is 2.1s
// later, so every "ago" is "2.1s ago".
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }
func laterNow() time.Time { return t0.Add(2100 * time.Millisecond) }

// fakeActions records the actions the server calls.
type fakeActions struct {
	mu     sync.Mutex
	calls  []string
	err    error // returned by Refresh, Announce and Ping when set
	status Status
}

func (a *fakeActions) record(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, name)
	return a.err
}

func (a *fakeActions) Refresh(context.Context) error  { return a.record("refresh") }
func (a *fakeActions) Announce(context.Context) error { return a.record("announce") }
func (a *fakeActions) Ping(context.Context) error     { return a.record("ping") }
func (a *fakeActions) Status() Status                 { return a.status }

func (a *fakeActions) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

func testStatus() Status {
	return Status{
		Version: "1.2.3", HostID: "hostid-local", Hostname: "alpha",
		Started: t0.Add(-time.Hour), Peers: 1, Disks: 4, LastScan: t0,
		PacketsIn: 10, PacketsOut: 5, PacketsDropped: 2,
		Drops: map[string]uint64{"replay": 1, "bad-magic": 1},
		Extra: []KV{{"key", "val"}},
	}
}

// testInventory is a real inventory with two local disks and a peer "beta"
// with two more.
func testInventory(t *testing.T) *inventory.Inventory {
	t.Helper()
	inv := inventory.New(inventory.Options{HostID: "hostid-local", Hostname: "alpha", Now: fixedNow})
	inv.SetLocal([]inventory.Disk{
		{Device: "/dev/sda1", Type: "ext4", Label: "BACKUP-2019", UUID: "1111-aaaa", PartUUID: "p-1",
			Mountpoints: []string{"/mnt/backup"}},
		{Device: "/dev/sdb1", Type: "vfat", UUID: "2222-BBBB"},
	}, nil)
	err := inv.Apply(inventory.Announcement{
		HostID: "hostid-beta", Hostname: "beta", BootID: "boot-1", Seq: 1, Interval: 10 * time.Second,
		Address: "192.0.2.7:4277", Authenticated: true,
		Disks: []inventory.Disk{
			{Device: "/dev/sdc1", Type: "ext4", Label: "BACKUP-2019-old", UUID: "3333-cccc",
				Mountpoints: []string{"/srv/b", "/srv/a"}},
			{Device: "/dev/sdd1", Type: "xfs", Label: "media", UUID: "4444-dddd", PartUUID: "part-backup"},
		},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return inv
}

type testServer struct {
	path    string
	inv     *inventory.Inventory
	actions *fakeActions
	srv     *Server
	cancel  context.CancelFunc
	done    chan error
}

// startServer serves srv (Inv, Actions and Now filled in when nil) on a
// socket in a temporary directory until the test ends.
func startServer(t *testing.T, srv *Server) *testServer {
	t.Helper()
	return startServerWith(t, srv, true)
}

func startServerWith(t *testing.T, srv *Server, fillActions bool) *testServer {
	t.Helper()
	ts := &testServer{path: filepath.Join(t.TempDir(), "diskd.sock"), srv: srv, done: make(chan error, 1)}
	if srv.Inv == nil {
		srv.Inv = testInventory(t)
	}
	if srv.Actions == nil && fillActions {
		ts.actions = &fakeActions{status: testStatus()}
		srv.Actions = ts.actions
	}
	if srv.Now == nil {
		srv.Now = laterNow
	}
	ts.inv = srv.Inv
	ln, err := net.Listen("unix", ts.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop cancels Serve and waits for it to return; it may be called twice.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok && err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(ts.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func dialClient(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path)
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

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
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

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
