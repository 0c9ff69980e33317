// Package controltest serves the control protocol to tests: a real
// control.Server on a Unix socket in a temporary directory, over a real
// inventory with a fixed set of disks and peers, with Actions that record
// what they were asked to do. The control package's own tests and the
// interactive client's tests in cmd/diskd use it.
//
// It is for tests only; nothing else imports it.
package controltest

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
)

// T0 is the fixed time of the test inventory.
func T0() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }

// Later is the server's clock: 2.1s after T0, so every "ago" is "2.1s ago".
func Later() time.Time { return T0().Add(2100 * time.Millisecond) }

// Actions records the actions the server calls.
type Actions struct {
	mu    sync.Mutex
	calls []string
	// Err is returned by Refresh, Announce and Ping when set; set it before
	// the server runs them.
	Err error
	// St is what Status returns.
	St diskstate.Status
}

// NewActions returns Actions whose Status is Status().
func NewActions() *Actions { return &Actions{St: Status()} }

func (a *Actions) record(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, name)
	return a.Err
}

// Refresh records "refresh".
func (a *Actions) Refresh(context.Context) error { return a.record("refresh") }

// Announce records "announce".
func (a *Actions) Announce(context.Context) error { return a.record("announce") }

// Ping records "ping".
func (a *Actions) Ping(context.Context) error { return a.record("ping") }

// Status returns St.
func (a *Actions) Status() diskstate.Status { return a.St }

// Calls returns the actions called so far, in order.
func (a *Actions) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// Status is the test daemon's status: version 1.2.3 on host alpha.
func Status() diskstate.Status {
	t0 := T0()
	return diskstate.Status{
		Version: "1.2.3", HostID: "hostid-local", Hostname: "alpha",
		Started: t0.Add(-time.Hour), Peers: 1, Disks: 4, LastScan: t0,
		PacketsIn: 10, PacketsOut: 5, PacketsDropped: 2,
		Drops: map[string]uint64{"replay": 1, "bad-magic": 1},
		Extra: []diskstate.KV{{Key: "key", Value: "val"}},
	}
}

// Inventory is a real inventory of host alpha with two local disks and a
// peer "beta" with two more.
func Inventory(t testing.TB) *inventory.Inventory {
	t.Helper()
	inv := inventory.New(inventory.Options{HostID: "hostid-local", Hostname: "alpha", Now: T0})
	inv.SetLocal([]diskstate.Disk{
		{Device: "/dev/sda1", Type: "ext4", Label: "BACKUP-2019", UUID: "1111-aaaa", PartUUID: "p-1",
			Mountpoints: []string{"/mnt/backup"}},
		{Device: "/dev/sdb1", Type: "vfat", UUID: "2222-BBBB"},
	}, nil)
	err := inv.Apply(inventory.Announcement{
		HostID: "hostid-beta", Hostname: "beta", BootID: "boot-1", Seq: 1, Interval: 10 * time.Second,
		Address: "192.0.2.7:4277", Authenticated: true, Via: "multicast",
		Disks: []diskstate.Disk{
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

// Server is a control.Server serving on a socket until the test ends.
type Server struct {
	Path    string               // the socket
	Inv     *inventory.Inventory // what it serves
	Actions *Actions             // nil when the test gave its own, or none
	Srv     *control.Server
	cancel  context.CancelFunc
	done    chan error
}

// Start serves srv, with Inv, Actions and Now filled in when nil, on a
// socket in a temporary directory until the test ends.
func Start(t testing.TB, srv *control.Server) *Server {
	t.Helper()
	return StartWith(t, srv, true)
}

// StartWith is Start; fillActions false leaves a nil srv.Actions nil.
func StartWith(t testing.TB, srv *control.Server, fillActions bool) *Server {
	t.Helper()
	ts := &Server{Path: filepath.Join(t.TempDir(), "diskd.sock"), Srv: srv, done: make(chan error, 1)}
	if srv.Inv == nil {
		srv.Inv = Inventory(t)
	}
	if srv.Actions == nil && fillActions {
		ts.Actions = NewActions()
		srv.Actions = ts.Actions
	}
	if srv.Now == nil {
		srv.Now = Later
	}
	ts.Inv = srv.Inv
	ln, err := net.Listen("unix", ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.Stop(t) })
	return ts
}

// Stop cancels Serve and waits for it to return; it may be called twice.
func (ts *Server) Stop(t testing.TB) {
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

// WaitFor polls cond until it holds, or fails the test after 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, func() (bool, string) { return cond(), "waiting for " + what })
}

// LockedBuffer is a bytes.Buffer that a writer (a child's stderr, a
// client's output) and the test may use at once.
type LockedBuffer = testbed.LockedBuffer
