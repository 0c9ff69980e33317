package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/service/diskstate"
)

// DefaultCallTimeout bounds a query (List, Find, Peers, properties) of a
// Client. Refresh, Announce and Ping wait longer: the daemon's own deadline
// (diskstate.DefaultActionTimeout) plus a margin, so that its answer comes first.
const DefaultCallTimeout = 30 * time.Second

// Client talks to org.diskd on one bus. It is what diskctl uses. Its methods
// are safe for concurrent use.
type Client struct {
	// Bus is the bus as given to Dial.
	Bus string
	// Timeout bounds each query (default DefaultCallTimeout).
	Timeout time.Duration

	conn *dbus.Conn
	obj  dbus.BusObject
}

// BusError means the bus itself could not be reached (or was lost).
type BusError struct {
	Bus string
	Err error
}

func (e *BusError) Error() string {
	return fmt.Sprintf("cannot reach %s: %v", DescribeBus(e.Bus), e.Err)
}

func (e *BusError) Unwrap() error { return e.Err }

// NotRunningError means that nobody serves org.diskd on the bus (and bus
// activation, where installed, did not start it), or that it did not answer.
type NotRunningError struct {
	Bus     string
	NoReply bool // the name is owned but the call got no answer in time
	Err     error
}

func (e *NotRunningError) Error() string {
	if e.NoReply {
		return fmt.Sprintf("diskd did not answer on %s (%s): %v", DescribeBus(e.Bus), BusName, e.Err)
	}
	return fmt.Sprintf("diskd is not running on %s (%s)", DescribeBus(e.Bus), BusName)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// CallError is an error answer of the daemon (or of the bus on its behalf,
// such as AccessDenied from the policy).
type CallError struct {
	Method  string // the org.diskd.Finder member called, or "properties"
	Name    string // the D-Bus error name
	Message string // its message; untrusted, escape it for people
}

func (e *CallError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: %s", e.Method, e.Name)
	}
	return fmt.Sprintf("%s: %s (%s)", e.Method, e.Message, e.Name)
}

// Dial connects to bus: system, session or a D-Bus address. The connection
// is closed when ctx ends or by Close. A bus that cannot be reached is a
// *BusError.
func Dial(ctx context.Context, bus string) (*Client, error) {
	if bus == "" || bus == "none" {
		return nil, fmt.Errorf("no bus to talk to (--bus %q)", bus)
	}
	if err := CheckBus(bus); err != nil {
		return nil, err
	}
	conn, err := connect(ctx, bus)
	if err != nil {
		return nil, &BusError{Bus: bus, Err: err}
	}
	return &Client{Bus: bus, conn: conn, obj: conn.Object(BusName, ObjectPath)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection (for signals of other services).
func (c *Client) Conn() *dbus.Conn { return c.conn }

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultCallTimeout
}

// call calls a method of the Finder and sorts its failure into BusError,
// NotRunningError, CallError or the caller's own context error.
func (c *Client) call(ctx context.Context, timeout time.Duration, method string, args ...any) *dbus.Call {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := c.obj.CallWithContext(cctx, method, 0, args...)
	if call.Err != nil {
		call.Err = c.classify(ctx, memberOf(method), call.Err)
	}
	return call
}

func memberOf(method string) string {
	return method[strings.LastIndexByte(method, '.')+1:]
}

func (c *Client) classify(ctx context.Context, method string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &NotRunningError{Bus: c.Bus, NoReply: true, Err: err}
	}
	var de dbus.Error
	if !errors.As(err, &de) {
		var dp *dbus.Error
		if !errors.As(err, &dp) {
			return &BusError{Bus: c.Bus, Err: err}
		}
		de = *dp
	}
	msg := ""
	if len(de.Body) > 0 {
		msg, _ = de.Body[0].(string)
	}
	switch {
	case de.Name == "org.freedesktop.DBus.Error.ServiceUnknown",
		de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner",
		strings.HasPrefix(de.Name, "org.freedesktop.DBus.Error.Spawn."),
		strings.HasPrefix(de.Name, "org.freedesktop.systemd1."):
		return &NotRunningError{Bus: c.Bus, Err: err}
	case de.Name == "org.freedesktop.DBus.Error.NoReply",
		de.Name == "org.freedesktop.DBus.Error.Timeout",
		de.Name == "org.freedesktop.DBus.Error.TimedOut":
		return &NotRunningError{Bus: c.Bus, NoReply: true, Err: err}
	case de.Name == "org.freedesktop.DBus.Error.Disconnected":
		return &BusError{Bus: c.Bus, Err: err}
	}
	return &CallError{Method: method, Name: de.Name, Message: msg}
}

func (c *Client) disks(ctx context.Context, method string, args ...any) ([]diskstate.Disk, error) {
	return callDicts(ctx, c, DiskFromDict, method, args...)
}

// callDicts calls method, which answers aa{sv}, and converts each
// dictionary with from; one it refuses makes the whole answer bad.
func callDicts[T any](ctx context.Context, c *Client, from func(map[string]dbus.Variant) (T, error), method string, args ...any) ([]T, error) {
	var dicts []map[string]dbus.Variant
	if err := c.call(ctx, c.timeout(), Interface+"."+method, args...).Store(&dicts); err != nil {
		return nil, c.storeErr(method, err)
	}
	out := make([]T, 0, len(dicts))
	for _, m := range dicts {
		v, err := from(m)
		if err != nil {
			return nil, fmt.Errorf("%s: bad answer from diskd: %w", method, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// storeErr passes classified errors through and explains a reply of the
// wrong shape.
func (c *Client) storeErr(method string, err error) error {
	var (
		be *BusError
		ne *NotRunningError
		ce *CallError
	)
	if errors.As(err, &be) || errors.As(err, &ne) || errors.As(err, &ce) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: bad answer from diskd (is %s another program?): %w", method, BusName, err)
}

// List returns every known disk. It calls ListTable, the fast form, and
// falls back to List for a daemon that does not have it (or a bus policy
// that does not let it through).
func (c *Client) List(ctx context.Context) ([]diskstate.Disk, error) {
	var table string
	err := c.call(ctx, c.timeout(), Interface+".ListTable").Store(&table)
	var ce *CallError
	if errors.As(err, &ce) && (ce.Name == "org.freedesktop.DBus.Error.UnknownMethod" || ce.Name == ErrorAccessDenied) {
		return c.disks(ctx, "List")
	}
	if err != nil {
		return nil, c.storeErr("ListTable", err)
	}
	disks, err := DiskTableDecode(table)
	if err != nil {
		return nil, fmt.Errorf("ListTable: bad answer from diskd: %w", err)
	}
	return disks, nil
}

// Find returns the disks whose uuid, partuuid or label is term (else starts
// with it, else contains it); none is an empty slice, not an error.
func (c *Client) Find(ctx context.Context, term string) ([]diskstate.Disk, error) {
	return c.disks(ctx, "Find", term)
}

// ListAll returns every known disk, then every remembered one that is not
// attached now (Present false).
func (c *Client) ListAll(ctx context.Context) ([]diskstate.Disk, error) {
	return c.disks(ctx, "ListAll")
}

// History returns every sighting of the disks that term selects, newest
// first.
func (c *Client) History(ctx context.Context, term string) ([]diskstate.Sighting, error) {
	return callDicts(ctx, c, SightingFromDict, "History", term)
}

// Peers returns the other hosts heard on the network.
func (c *Client) Peers(ctx context.Context) ([]diskstate.Peer, error) {
	return callDicts(ctx, c, PeerFromDict, "Peers")
}

// Status reads the properties.
func (c *Client) Status(ctx context.Context) (diskstate.Status, error) {
	var m map[string]dbus.Variant
	err := c.call(ctx, c.timeout(), "org.freedesktop.DBus.Properties.GetAll", Interface).Store(&m)
	if err != nil {
		return diskstate.Status{}, c.storeErr("GetAll", err)
	}
	st, err := StatusFromProps(m)
	if err != nil {
		return st, fmt.Errorf("bad answer from diskd: %w", err)
	}
	return st, nil
}

func (c *Client) action(ctx context.Context, method string) error {
	call := c.call(ctx, diskstate.DefaultActionTimeout+10*time.Second, Interface+"."+method)
	if call.Err != nil {
		return c.storeErr(method, call.Err)
	}
	return nil
}

// Run asks the daemon to run an action (Refresh, Announce or Ping) and
// waits until it has.
func (c *Client) Run(ctx context.Context, a diskstate.Action) error {
	if a == "" {
		return errors.New("no action named")
	}
	return c.action(ctx, strings.ToUpper(string(a[:1]))+string(a[1:]))
}

// Event is one decoded signal of a Watch.
type Event struct {
	// Signal is the Finder signal's member (SignalDiskAppeared, ...), or
	// "NameOwnerChanged" when diskd left the bus or arrived on it.
	Signal string
	// Disk is set for the three disk signals.
	Disk diskstate.Disk
	// HostID and Hostname are set for PeerJoined and PeerLost, Reason for
	// PeerLost.
	HostID, Hostname, Reason string
	// Owner is, for NameOwnerChanged, the new owner of org.diskd ("" when
	// diskd left).
	Owner string
}

// SignalNameOwnerChanged is Event.Signal when diskd left or joined the bus.
const SignalNameOwnerChanged = "NameOwnerChanged"

// Watch receives the Finder's signals. Create it with Client.Watch.
type Watch struct {
	c     *Client
	owner string // unique name of the current owner of org.diskd
}

// Watch subscribes to the signals of org.diskd.Finder and to owner changes
// of org.diskd and registers ch, which then receives every signal of the
// connection (and is closed when the connection closes). Pass each one to
// Watch.Parse. ch should be buffered generously (godbus delivers out of
// order when it is full). It works whether or not diskd is running.
func (c *Client) Watch(ctx context.Context, ch chan<- *dbus.Signal) (*Watch, error) {
	cctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	c.conn.Signal(ch)
	rules := [][]dbus.MatchOption{
		{dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(ObjectPath), dbus.WithMatchInterface(Interface)},
		{dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"),
			dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, BusName)},
	}
	for _, r := range rules {
		if err := c.conn.AddMatchSignalContext(cctx, r...); err != nil {
			c.conn.RemoveSignal(ch)
			return nil, c.classify(ctx, "AddMatch", err)
		}
	}
	w := &Watch{c: c}
	var owner string
	err := c.conn.BusObject().CallWithContext(cctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
	if err == nil {
		w.owner = owner
	} else if !isDBusError(err, "org.freedesktop.DBus.Error.NameHasNoOwner") {
		c.conn.RemoveSignal(ch)
		return nil, c.classify(ctx, "GetNameOwner", err)
	}
	return w, nil
}

// Running reports whether diskd was on the bus at the last news: when the
// watch began, or at the last NameOwnerChanged that Parse saw.
func (w *Watch) Running() bool { return w.owner != "" }

// Parse decodes a signal. It reports false for signals that are not for
// the watch, among them Finder signals that do not come from the current
// owner of org.diskd (anyone may send a signal straight to a connection).
// A Finder signal of the wrong shape is an error.
func (w *Watch) Parse(s *dbus.Signal) (Event, bool, error) {
	if s.Name == "org.freedesktop.DBus.NameOwnerChanged" {
		if s.Sender != "org.freedesktop.DBus" || len(s.Body) != 3 {
			return Event{}, false, nil
		}
		name, _ := s.Body[0].(string)
		owner, ok := s.Body[2].(string)
		if name != BusName || !ok {
			return Event{}, false, nil
		}
		w.owner = owner
		return Event{Signal: SignalNameOwnerChanged, Owner: owner}, true, nil
	}
	member, ok := strings.CutPrefix(s.Name, Interface+".")
	if !ok || s.Path != ObjectPath || w.owner == "" || s.Sender != w.owner {
		return Event{}, false, nil
	}
	e := Event{Signal: member}
	switch member {
	case SignalDiskAppeared, SignalDiskDisappeared, SignalDiskChanged:
		var m map[string]dbus.Variant
		if err := dbus.Store(s.Body, &m); err != nil {
			return e, false, fmt.Errorf("%s: %w", member, err)
		}
		d, err := DiskFromDict(m)
		if err != nil {
			return e, false, fmt.Errorf("%s: %w", member, err)
		}
		e.Disk = d
	case SignalPeerJoined:
		if err := dbus.Store(s.Body, &e.HostID, &e.Hostname); err != nil {
			return e, false, fmt.Errorf("%s: %w", member, err)
		}
	case SignalPeerLost:
		if err := dbus.Store(s.Body, &e.HostID, &e.Hostname, &e.Reason); err != nil {
			return e, false, fmt.Errorf("%s: %w", member, err)
		}
	default:
		return e, false, nil
	}
	return e, true, nil
}
