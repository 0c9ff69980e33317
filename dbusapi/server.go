package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/diskd/diskd/service/defaults"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
)

// Defaults for Options.
const (
	defaultRetryMin = time.Second
	defaultRetryMax = 30 * time.Second
)

// Options configure Serve. Inv is required unless Bus is "none" or "".
type Options struct {
	// Bus is system, session, none (or "") or a D-Bus address.
	Bus string
	// Inv is the inventory that List, Find, Peers, the signals and the
	// properties come from.
	Inv *inventory.Inventory
	// Actions runs Refresh, Announce and Ping; when nil they answer
	// org.diskd.Error.NotSupported.
	Actions diskstate.Actions
	// Memory answers History, ListAll and Find when no attached disk
	// matches; when nil, History answers org.diskd.Error.NotSupported and
	// ListAll and Find know the attached disks only.
	Memory diskstate.Memory
	// Version is the Version property.
	Version string
	// Log receives the state changes and failures (default: discarded).
	Log *slog.Logger
	// ActionTimeout bounds Refresh, Announce and Ping (default 2 minutes).
	ActionTimeout time.Duration

	// For tests: the reconnect backoff.
	retryMin, retryMax time.Duration
}

// Serve exports org.diskd.Finder on o.Bus and keeps it there until ctx
// ends; see the package documentation for what it does when the bus is
// missing or the name is taken. It returns nil at once for Bus "none" or "",
// an error at once when the options are unusable, and otherwise nil when ctx
// ends, after every method call in progress has returned.
func Serve(ctx context.Context, o Options) error {
	if o.Bus == "" || o.Bus == "none" {
		return nil
	}
	if err := CheckBus(o.Bus); err != nil {
		return fmt.Errorf("D-Bus: %w", err)
	}
	if o.Inv == nil {
		return errors.New("D-Bus: Serve needs an inventory")
	}
	o.Log = defaults.Logger(o.Log)
	o.ActionTimeout = defaults.Positive(o.ActionTimeout, diskstate.DefaultActionTimeout)
	o.retryMin = defaults.Positive(o.retryMin, defaultRetryMin)
	o.retryMax = max(defaults.Positive(o.retryMax, defaultRetryMax), o.retryMin)
	intro, err := introspection()
	if err != nil {
		return err
	}
	s := &server{o: o, intro: intro, uid: os.Getuid(), where: DescribeBus(o.Bus)}
	s.run(ctx)
	return nil
}

type server struct {
	o     Options
	intro introspect.Introspectable
	uid   int // the daemon's own uid, allowed to call the actions
	where string
}

// The states that run logs when they change.
const (
	stateUp          = "up"
	stateUnavailable = "unavailable"
	stateDenied      = "denied"
	stateTaken       = "taken"
	stateLost        = "lost"
)

// stateError ends a session and says in which state that leaves Serve.
type stateError struct {
	state string
	err   error
}

func (e *stateError) Error() string { return e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

// run runs sessions until ctx ends, with a backoff between them.
func (s *server) run(ctx context.Context) {
	log := s.o.Log
	delay := s.o.retryMin
	state := ""
	for {
		err := s.session(ctx, func() {
			delay = s.o.retryMin
			if state != stateUp {
				log.Info("D-Bus: serving "+Interface, "bus", s.where, "name", BusName, "object", string(ObjectPath))
				state = stateUp
			}
		})
		if ctx.Err() != nil {
			return
		}
		var se *stateError
		if !errors.As(err, &se) {
			se = &stateError{state: stateLost, err: err}
		}
		if se.state != state {
			state = se.state
			log.Warn(s.problem(se.state), "err", se.err, "retry_in", delay.String())
		} else {
			log.Debug("D-Bus: retrying", "bus", s.where, "err", se.err, "retry_in", delay.String())
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		delay = min(delay*2, s.o.retryMax)
	}
}

// problem is the warning for a state: what happened and what to do.
func (s *server) problem(state string) string {
	switch state {
	case stateUnavailable:
		return fmt.Sprintf("D-Bus: cannot connect to %s; %s is not exported until it can (diskd keeps running, retrying in the background)",
			s.where, BusName)
	case stateDenied:
		return fmt.Sprintf("D-Bus: %s does not let this user own %s: install the policy file /usr/share/dbus-1/system.d/org.diskd.conf, which lets root and the user diskd own it (retrying in the background)",
			s.where, BusName)
	case stateTaken:
		return fmt.Sprintf("D-Bus: %s is owned by another process on %s (another diskd?); waiting for it to go away",
			BusName, s.where)
	}
	return fmt.Sprintf("D-Bus: lost the connection to %s; reconnecting", s.where)
}

// session connects, exports the object, takes the name and forwards events
// until ctx ends (nil) or the connection is lost (a *stateError). up is
// called once the name is ours.
func (s *server) session(ctx context.Context, up func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := connect(sctx, s.o.Bus)
	if err != nil {
		return &stateError{stateUnavailable, err}
	}
	defer conn.Close()

	// Subscribe first: no event between taking the name and forwarding
	// may be lost (a caller that saw the name must see what follows).
	sub := s.o.Inv.Subscribe(0)
	defer sub.Close()

	f := &finder{s: s, conn: conn, ctx: sctx, replies: newReplies(s.o.Inv)}
	// Deferred calls run last-in first-out: cancel the calls in progress,
	// wait for them, then close the connection.
	defer f.close()
	defer cancel()
	if err := f.export(); err != nil {
		return &stateError{stateLost, err}
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	switch {
	case err != nil && isDBusError(err, ErrorAccessDenied):
		return &stateError{stateDenied, err}
	case err != nil:
		return &stateError{stateLost, fmt.Errorf("requesting the name %s: %w", BusName, err)}
	case reply != dbus.RequestNameReplyPrimaryOwner:
		return &stateError{stateTaken, fmt.Errorf("requesting the name %s: %s", BusName, reply)}
	}

	f.syncProps()
	up()

	var dropped uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Context().Done():
			return &stateError{stateLost, errors.New("connection closed")}
		case <-sub.Scans(): // LastScan and ScanError; the counts move with events
			f.syncProps()
		case e := <-sub.C():
			// Before the signal: a client that saw it and calls List
			// gets the change.
			f.replies.invalidate()
			if err := f.emit(*e); err != nil {
				var fe dbus.FormatError
				if !errors.As(err, &fe) {
					return &stateError{stateLost, fmt.Errorf("emitting a signal: %w", err)}
				}
				s.o.Log.Warn("D-Bus: signal not sent", "event", e.Kind.String(), "err", err)
			}
			if len(sub.C()) == 0 { // the end of a burst
				f.syncProps()
			}
			if n := sub.Dropped(); n != dropped {
				f.replies.invalidate()
				s.o.Log.Warn("D-Bus: events were dropped; signals for them were not sent (clients should List again)",
					"dropped_total", n)
				dropped = n
			}
		}
	}
}

func isDBusError(err error, name string) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *dbus.Error
	return errors.As(err, &dp) && dp.Name == name
}

// finder is the exported object of one session. Its exported methods with a
// *dbus.Error result are the D-Bus methods (godbus calls each in a goroutine
// of its own).
type finder struct {
	s     *server
	conn  *dbus.Conn
	ctx   context.Context // ends with the session
	props *prop.Properties

	replies *replies // the answers of List, ListTable, Find and Peers

	// calls is read-locked by every method call in progress; close takes
	// it for writing, so it waits for them and refuses later ones.
	calls  sync.RWMutex
	closed bool

	syncMu sync.Mutex // serializes syncProps
}

func (f *finder) export() error {
	props, err := prop.Export(f.conn, ObjectPath, prop.Map{Interface: f.s.propMap()})
	if err != nil {
		return fmt.Errorf("exporting properties: %w", err)
	}
	f.props = props
	if err := f.conn.Export(f, ObjectPath, Interface); err != nil {
		return fmt.Errorf("exporting %s: %w", Interface, err)
	}
	if err := f.conn.Export(f.s.intro, ObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("exporting introspection: %w", err)
	}
	return nil
}

// propMap returns the properties with their current values. The changing
// ones are registered with EmitFalse and syncProps sends PropertiesChanged
// itself: one signal for all that changed, and no panic from prop's SetMust
// when the connection is gone.
func (s *server) propMap() map[string]*prop.Prop {
	inv := s.o.Inv
	peers, disks := inv.Counts()
	sc := inv.Scan()
	return map[string]*prop.Prop{
		PropHostID:    {Value: wireString(inv.HostID()), Emit: prop.EmitConst},
		PropHostname:  {Value: wireString(inv.Hostname()), Emit: prop.EmitConst},
		PropVersion:   {Value: wireString(s.o.Version), Emit: prop.EmitConst},
		PropPeerCount: {Value: uint32(peers), Emit: prop.EmitFalse},
		PropDiskCount: {Value: uint32(disks), Emit: prop.EmitFalse},
		PropLastScan:  {Value: unixSeconds(sc.At), Emit: prop.EmitFalse},
		PropScanError: {Value: errText(sc.Err), Emit: prop.EmitFalse},
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return wireString(err.Error())
}

// syncProps sets the changing properties from the inventory and sends one
// PropertiesChanged with those whose value moved.
func (f *finder) syncProps() {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	inv := f.s.o.Inv
	peers, disks := inv.Counts()
	sc := inv.Scan()
	changed := map[string]dbus.Variant{}
	set := func(name string, v any) {
		if f.props.GetMust(Interface, name) != v {
			f.props.SetMust(Interface, name, v) // EmitFalse: cannot fail
			changed[name] = dbus.MakeVariant(v)
		}
	}
	set(PropPeerCount, uint32(peers))
	set(PropDiskCount, uint32(disks))
	set(PropLastScan, unixSeconds(sc.At))
	set(PropScanError, errText(sc.Err))
	if len(changed) == 0 {
		return
	}
	err := f.conn.Emit(ObjectPath, "org.freedesktop.DBus.Properties.PropertiesChanged",
		Interface, changed, []string{})
	if err != nil && f.ctx.Err() == nil {
		f.s.o.Log.Debug("D-Bus: PropertiesChanged not sent", "err", err)
	}
}

// emit sends the signal for one inventory event.
func (f *finder) emit(e inventory.Event) error {
	member := func(m string) string { return Interface + "." + m }
	switch e.Kind {
	case inventory.DiskAppeared:
		return f.conn.Emit(ObjectPath, member(SignalDiskAppeared), DiskDict(e.Disk))
	case inventory.DiskDisappeared:
		return f.conn.Emit(ObjectPath, member(SignalDiskDisappeared), DiskDict(e.Disk))
	case inventory.DiskChanged:
		return f.conn.Emit(ObjectPath, member(SignalDiskChanged), DiskDict(e.Disk))
	case inventory.PeerJoined:
		return f.conn.Emit(ObjectPath, member(SignalPeerJoined), wireString(e.Peer.HostID), wireString(e.Peer.Hostname))
	case inventory.PeerLost:
		return f.conn.Emit(ObjectPath, member(SignalPeerLost), wireString(e.Peer.HostID), wireString(e.Peer.Hostname),
			wireString(e.Reason))
	}
	return nil
}

// enter registers a method call; it reports false once the session is
// closing, and the call must then answer at once.
func (f *finder) enter() bool {
	f.calls.RLock()
	if f.closed {
		f.calls.RUnlock()
		return false
	}
	return true
}

func (f *finder) leave() { f.calls.RUnlock() }

// close waits for the method calls in progress and refuses later ones.
func (f *finder) close() {
	f.calls.Lock()
	f.closed = true
	f.calls.Unlock()
}

func errClosing() *dbus.Error {
	return dbus.NewError(ErrorFailed, []any{"diskd is shutting down"})
}

func disksReply(disks []diskstate.Disk) []map[string]dbus.Variant {
	out := make([]map[string]dbus.Variant, len(disks))
	for i, d := range disks {
		out[i] = DiskDict(d)
	}
	return out
}

// List returns every known disk.
func (f *finder) List() ([]map[string]dbus.Variant, *dbus.Error) {
	return fromSnapshot(f, (*snapshot).listDicts)
}

// ListTable returns every known disk as one string (see DiskTable).
func (f *finder) ListTable() (string, *dbus.Error) {
	return fromSnapshot(f, (*snapshot).listTable)
}

// fromSnapshot answers a method with what read takes from the current
// snapshot of the inventory; while diskd shuts down, or when no snapshot
// can be had, the answer is the zero value and the error.
func fromSnapshot[T any](f *finder, read func(*snapshot) T) (T, *dbus.Error) {
	var out T
	if !f.enter() {
		return out, errClosing()
	}
	defer f.leave()
	derr := f.replies.with(f.ctx, func(s *snapshot) { out = read(s) })
	return out, derr
}

// Find returns the disks that term selects (see inventory.Find).
func (f *finder) Find(term string) ([]map[string]dbus.Variant, *dbus.Error) {
	if !f.enter() {
		return nil, errClosing()
	}
	defer f.leave()
	if term == "" {
		return nil, dbus.NewError(ErrorInvalidArgument, []any{"Find needs a search term (a uuid, partuuid or label)"})
	}
	var out []map[string]dbus.Variant
	derr := f.replies.with(f.ctx, func(s *snapshot) { out = s.find(term) })
	if derr == nil && len(out) == 0 && f.s.o.Memory != nil {
		out = disksReply(absent(f.s.o.Memory.Find(term)))
	}
	return out, derr
}

// ListAll returns every known disk and then every remembered one that is
// not attached now (present false).
func (f *finder) ListAll() ([]map[string]dbus.Variant, *dbus.Error) {
	if !f.enter() {
		return nil, errClosing()
	}
	defer f.leave()
	var out []map[string]dbus.Variant
	derr := f.replies.with(f.ctx, func(s *snapshot) { out = slices.Clone(s.listDicts()) })
	if derr == nil && f.s.o.Memory != nil {
		out = append(out, disksReply(absent(f.s.o.Memory.Disks()))...)
	}
	return out, derr
}

// History returns every sighting of the disks that term selects, newest
// first.
func (f *finder) History(term string) ([]map[string]dbus.Variant, *dbus.Error) {
	if !f.enter() {
		return nil, errClosing()
	}
	defer f.leave()
	if term == "" {
		return nil, dbus.NewError(ErrorInvalidArgument, []any{"History needs a search term (a uuid, partuuid, label, device or host)"})
	}
	if f.s.o.Memory == nil {
		return nil, dbus.NewError(ErrorNotSupported, []any{"this diskd keeps no memory of disks"})
	}
	hs := f.s.o.Memory.History(term)
	out := make([]map[string]dbus.Variant, len(hs))
	for i, h := range hs {
		out[i] = SightingDict(h)
	}
	return out, nil
}

// absent keeps the remembered disks that are not present now.
func absent(ds []diskstate.Disk) []diskstate.Disk {
	return slices.DeleteFunc(ds, func(d diskstate.Disk) bool { return d.Present })
}

// Peers returns the known peers.
func (f *finder) Peers() ([]map[string]dbus.Variant, *dbus.Error) {
	return fromSnapshot(f, func(s *snapshot) []map[string]dbus.Variant { return s.peerDicts(f.s.o.Inv) })
}

// Refresh rescans the local disks.
func (f *finder) Refresh(sender dbus.Sender) *dbus.Error {
	return f.action(sender, diskstate.ActionRefresh)
}

// Announce multicasts the local disk list.
func (f *finder) Announce(sender dbus.Sender) *dbus.Error {
	return f.action(sender, diskstate.ActionAnnounce)
}

// Ping asks every peer to re-announce.
func (f *finder) Ping(sender dbus.Sender) *dbus.Error { return f.action(sender, diskstate.ActionPing) }

func (f *finder) action(sender dbus.Sender, name diskstate.Action) *dbus.Error {
	if !f.enter() {
		return errClosing()
	}
	defer f.leave()
	ctx, cancel := context.WithTimeout(f.ctx, f.s.o.ActionTimeout)
	defer cancel()
	if derr := f.authorize(ctx, sender, string(name)); derr != nil {
		return derr
	}
	a := f.s.o.Actions
	if a == nil {
		return dbus.NewError(ErrorNotSupported, []any{string(name) + " is not available in this daemon"})
	}
	err := name.Run(ctx, a, f.s.o.ActionTimeout)
	f.replies.invalidate() // its events may still be on their way
	if name == diskstate.ActionRefresh {
		f.syncProps()
	}
	if err != nil {
		f.s.o.Log.Warn("D-Bus: action failed", "action", name, "sender", string(sender), "err", err)
		return dbus.NewError(ErrorFailed, []any{wireString(fmt.Sprintf("%s failed: %v", name, err))})
	}
	return nil
}

// authorize lets root and the daemon's own user run an action. The bus
// policy says the same for the system bus; this holds on any bus.
func (f *finder) authorize(ctx context.Context, sender dbus.Sender, name string) *dbus.Error {
	var uid uint32
	err := f.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		return dbus.NewError(ErrorAccessDenied, []any{fmt.Sprintf("%s: cannot tell who is calling (%v)", name, err)})
	}
	if uid == 0 || int(uid) == f.s.uid {
		return nil
	}
	who := "root"
	if f.s.uid != 0 {
		who = fmt.Sprintf("root and uid %d (the daemon's user)", f.s.uid)
	}
	return dbus.NewError(ErrorAccessDenied, []any{fmt.Sprintf("%s is allowed only for %s; the caller is uid %d", name, who, uid)})
}
