package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/dbusapi/dbustest"
)

// The D-Bus names of org.diskd.Finder. The benchmark talks to the daemon
// with godbus as diskctl does, decoding ListTable's answer with dbusapi.
const (
	busName       = "org.diskd"
	busPath       = dbus.ObjectPath("/org/diskd/Finder")
	busInterface  = "org.diskd.Finder"
	sigAppeared   = busInterface + ".DiskAppeared"
	sigDisappeard = busInterface + ".DiskDisappeared"
)

// busFiles are what a private system bus needs from the source tree: the
// test configuration (Debian's system bus policy) and diskd's own policy,
// which lets root own org.diskd.
type busFiles struct {
	conf   string // dbusapi/testdata/dbus-system-test.conf
	policy string // packaging/dbus/org.diskd.conf
}

// findBusFiles reports why D-Bus cannot be measured, if it cannot.
func findBusFiles(repo string) (busFiles, error) {
	if err := dbustest.Installed(); err != nil {
		return busFiles{}, err
	}
	if repo == "" {
		return busFiles{}, errors.New("no source tree found (run me in it, or pass --repo)")
	}
	f := busFiles{
		conf:   filepath.Join(repo, filepath.FromSlash(dbustest.SystemConfig)),
		policy: filepath.Join(repo, "packaging", "dbus", "org.diskd.conf"),
	}
	for _, p := range []string{f.conf, f.policy} {
		if _, err := os.Stat(p); err != nil {
			return busFiles{}, fmt.Errorf("D-Bus files missing: %w", err)
		}
	}
	return f, nil
}

// startBus starts a private system bus (dbustest.StartSystem) whose
// socket, configuration and policy directory are in dir, with diskd's
// policy. dbus-daemon forks; the caller must Kill it (by PID).
func startBus(f busFiles, dir string) (*dbustest.Bus, error) {
	return dbustest.StartSystem(f.conf, dir, f.policy)
}

// connectBus connects to a bus as a client.
func connectBus(address string) (*dbus.Conn, error) {
	c, err := dbus.Connect(address)
	if err != nil {
		return nil, fmt.Errorf("D-Bus %s: %w", address, err)
	}
	return c, nil
}

// nameOwned waits up to timeout for org.diskd to have an owner on the bus.
func nameOwned(ctx context.Context, address string, timeout time.Duration) (bool, error) {
	c, err := connectBus(address)
	if err != nil {
		return false, err
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		var has bool
		if err := c.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&has); err != nil {
			return false, fmt.Errorf("NameHasOwner: %w", err)
		}
		if has {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sigWatcher is an observer on a bus: it records when DiskAppeared and
// DiskDisappeared of one host's disks arrive, by label.
type sigWatcher struct {
	*sightings
	conn   *dbus.Conn
	hostID string
}

func watchSignals(address, hostID string) (*sigWatcher, error) {
	c, err := connectBus(address)
	if err != nil {
		return nil, err
	}
	if err := c.AddMatchSignal(dbus.WithMatchInterface(busInterface), dbus.WithMatchObjectPath(busPath)); err != nil {
		c.Close()
		return nil, fmt.Errorf("D-Bus AddMatch: %w", err)
	}
	w := &sigWatcher{sightings: newSightings(), conn: c, hostID: hostID}
	ch := make(chan *dbus.Signal, 4096)
	c.Signal(ch)
	go func() {
		for s := range ch { // closed when the connection is
			at := time.Now()
			if s.Name != sigAppeared && s.Name != sigDisappeard || len(s.Body) == 0 {
				continue
			}
			d, ok := s.Body[0].(map[string]dbus.Variant)
			if !ok {
				continue
			}
			host, _ := d["host_id"].Value().(string)
			label, _ := d["label"].Value().(string)
			if host == w.hostID {
				w.set(label, s.Name == sigAppeared, at)
			}
		}
	}()
	return w, nil
}

func (w *sigWatcher) close() error { return w.conn.Close() }

// listOverBus lists every disk once as diskctl does (ListTable, decoded
// into disks) and returns how long that took, from the call sent to the
// disks decoded, and how many disks it returned.
func listOverBus(ctx context.Context, c *dbus.Conn) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	var table string
	if err := c.Object(busName, busPath).CallWithContext(ctx, busInterface+".ListTable", 0).Store(&table); err != nil {
		return 0, 0, fmt.Errorf("D-Bus ListTable: %w", err)
	}
	disks, err := dbusapi.DiskTableDecode(table)
	took := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("D-Bus ListTable: %w", err)
	}
	return took, len(disks), nil
}

// busctlCall times one `busctl call -q` (sd-bus: the reply is received
// but its payload not parsed) of method on dest, path, iface.
func busctlCall(ctx context.Context, address, dest string, path dbus.ObjectPath, iface, method string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "busctl", "--address="+address, "--timeout=30", "call", "-q",
		dest, string(path), iface, method)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("busctl %s: %w: %s", method, err, bytes.TrimSpace(out))
	}
	return took, nil
}
