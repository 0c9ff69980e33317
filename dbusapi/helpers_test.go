package dbusapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
)

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct{ testbed.LockedBuffer }

// count returns how many lines contain s.
func (l *logBuffer) count(s string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// fakeActions counts the calls and fails them with err when set.
type fakeActions struct {
	refresh, announce, ping atomic.Int32
	err                     error
}

func (a *fakeActions) Refresh(context.Context) error  { a.refresh.Add(1); return a.err }
func (a *fakeActions) Announce(context.Context) error { a.announce.Add(1); return a.err }
func (a *fakeActions) Ping(context.Context) error     { a.ping.Add(1); return a.err }
func (a *fakeActions) Status() diskstate.Status       { return diskstate.Status{} }

func newInv(id, name string) *inventory.Inventory {
	return inventory.New(inventory.Options{HostID: id, Hostname: name})
}

// serve runs Serve until the end of the test, fast retries, and returns
// its log. The test fails if Serve does not return after its context ends.
func serve(t *testing.T, o Options) *logBuffer {
	t.Helper()
	logs := &logBuffer{}
	o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.retryMin == 0 {
		o.retryMin, o.retryMax = 20*time.Millisecond, 100*time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, o) }()
	// Cleanups run last-in first-out: the log is shown after Serve ended.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Serve's log:\n%s", logs)
		}
	})
	t.Cleanup(func() {
		cancel()
		if err := testbed.Await(t, done, 10*time.Second, "return of Serve after its context ended"); err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return logs
}

// dial connects a client for the rest of the test.
func dial(t testing.TB, address string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond every 10ms for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, timeout, func() (bool, string) { return cond(), what })
}

// waitServing waits until diskd answers on the client's bus with hostID.
func waitServing(t *testing.T, c *Client, hostID string) {
	t.Helper()
	var last error
	eventually(t, 10*time.Second, "org.diskd serving", func() bool {
		st, err := c.Status(context.Background())
		last = err
		return err == nil && st.HostID == hostID
	})
	_ = last
}

// signals is a watch with its channel, for the rest of the test.
type signals struct {
	t  *testing.T
	w  *Watch
	ch chan *dbus.Signal
	// props collects PropertiesChanged payloads.
	props chan map[string]dbus.Variant
}

func watch(t *testing.T, c *Client) *signals {
	t.Helper()
	s := &signals{t: t, ch: make(chan *dbus.Signal, 1024), props: make(chan map[string]dbus.Variant, 1024)}
	if err := c.Conn().AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(ObjectPath),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(context.Background(), s.ch)
	if err != nil {
		t.Fatal(err)
	}
	s.w = w
	return s
}

// next returns the next Finder event, recording PropertiesChanged on the way.
func (s *signals) next(timeout time.Duration) (Event, *dbus.Signal) {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case sig, ok := <-s.ch:
			if !ok {
				s.t.Fatal("signal channel closed")
			}
			if changed, ok := s.propsChanged(sig); ok {
				s.props <- changed
				continue
			}
			e, ok, err := s.w.Parse(sig)
			if err != nil {
				s.t.Fatal(err)
			}
			if ok && e.Signal != SignalNameOwnerChanged {
				return e, sig
			}
		case <-deadline:
			s.t.Fatalf("no signal within %v", timeout)
		}
	}
}

// propsChanged returns the properties a PropertiesChanged signal sets; ok
// is false for any other signal.
func (s *signals) propsChanged(sig *dbus.Signal) (changed map[string]dbus.Variant, ok bool) {
	s.t.Helper()
	if sig.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" {
		return nil, false
	}
	var iface string
	var inval []string
	if err := dbus.Store(sig.Body, &iface, &changed, &inval); err != nil {
		s.t.Fatal(err)
	}
	return changed, true
}

// waitProp waits for a PropertiesChanged that sets name to want.
func (s *signals) waitProp(name string, want any, timeout time.Duration) {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.props:
			if v, ok := m[name]; ok && v.Value() == want {
				return
			}
		case sig, ok := <-s.ch:
			if !ok {
				s.t.Fatal("signal channel closed")
			}
			if changed, ok := s.propsChanged(sig); ok {
				if v, ok := changed[name]; ok && v.Value() == want {
					return
				}
			}
		case <-deadline:
			s.t.Fatalf("no PropertiesChanged with %s = %v within %v", name, want, timeout)
		}
	}
}

func callErrName(err error) string {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Name
	}
	return ""
}
