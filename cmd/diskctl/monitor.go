package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/present"
)

// settle is how long monitor --notify keeps quiet after diskd (re)appears
// on the bus: diskd then learns every peer's disks at once, which is not
// news to anybody.
const settle = 10 * time.Second

// notifyTimeout bounds one Notify call.
const notifyTimeout = 5 * time.Second

func runMonitor(ctx context.Context, e *env) int {
	var n *notifier
	if e.notify {
		conn, err := dbusapi.Connect(ctx, "session")
		if err != nil {
			fmt.Fprintf(e.stderr, "diskctl: monitor --notify: cannot reach the session bus for notifications: %s "+
				"(run it inside your desktop session, e.g. as the user unit diskd-notify.service)\n", present.Escape(err.Error()))
			return exitFailed
		}
		defer conn.Close()
		n = &notifier{conn: conn}
	}

	ch := make(chan *dbus.Signal, 4096)
	w, err := e.client.Watch(ctx, ch)
	if err != nil {
		return e.fail(err)
	}
	if !w.Running() {
		fmt.Fprintf(e.stderr, "diskctl: diskd is not running on %s (%s); waiting for it (start it with: %s)\n",
			dbusapi.DescribeBus(e.bus), dbusapi.BusName, startHint(e.bus))
	}
	// known is the last version of every disk, for saying what a
	// DiskChanged changed: loaded when diskd is (or comes back) on the bus,
	// then kept by the events.
	known := map[diskKey]diskstate.Disk{}
	load := func() {
		disks, err := e.client.List(ctx)
		if err != nil {
			return // the lines say less, nothing worse
		}
		clear(known)
		for _, d := range disks {
			known[keyOf(&d)] = d
		}
	}
	if w.Running() {
		load()
	}
	var quietUntil time.Time
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case sig, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return exitOK
				}
				fmt.Fprintf(e.stderr, "diskctl: lost the connection to %s\n", dbusapi.DescribeBus(e.bus))
				return exitUnreachable
			}
			ev, ok, err := w.Parse(sig)
			if err != nil {
				fmt.Fprintf(e.stderr, "diskctl: ignoring a malformed signal: %s\n", present.Escape(err.Error()))
				continue
			}
			if !ok {
				continue
			}
			if ev.Signal == dbusapi.SignalNameOwnerChanged {
				if ev.Owner == "" {
					fmt.Fprintf(e.stderr, "diskctl: diskd left %s; waiting for it\n", dbusapi.DescribeBus(e.bus))
				} else {
					fmt.Fprintf(e.stderr, "diskctl: diskd is running on %s\n", dbusapi.DescribeBus(e.bus))
					quietUntil = time.Now().Add(settle)
					load()
				}
				continue
			}
			var prev *diskstate.Disk
			switch ev.Signal {
			case dbusapi.SignalDiskAppeared, dbusapi.SignalDiskChanged:
				if old, ok := known[keyOf(&ev.Disk)]; ok {
					prev = &old
				}
				known[keyOf(&ev.Disk)] = ev.Disk
			case dbusapi.SignalDiskDisappeared:
				delete(known, keyOf(&ev.Disk))
			}
			line, err := formatEvent(ev, e.json, time.Now(), prev)
			if err != nil {
				return e.fail(err)
			}
			if code := e.write(line); code != exitOK {
				return code
			}
			if n != nil && ev.Signal == dbusapi.SignalDiskAppeared && !ev.Disk.Local && time.Now().After(quietUntil) {
				if err := n.notify(ctx, ev.Disk, authenticated(ctx, e.client, ev.Disk.HostID)); err != nil && ctx.Err() == nil {
					fmt.Fprintf(e.stderr, "diskctl: notification not shown: %s\n", present.Escape(err.Error()))
				}
			}
		}
	}
}

// notifier sends desktop notifications (org.freedesktop.Notifications).
type notifier struct {
	conn *dbus.Conn
}

// notify shows that a disk appeared on another host. The summary is plain
// text by the specification (servers escape it themselves); the body may be
// read as markup, so it is escaped for that too.
func (n *notifier) notify(ctx context.Context, d diskstate.Disk, authenticated bool) error {
	summary, body := notification(d, authenticated, time.Now())
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	hints := map[string]dbus.Variant{
		"category": dbus.MakeVariant("device.added"),
		"urgency":  dbus.MakeVariant(byte(1)),
	}
	obj := n.conn.Object("org.freedesktop.Notifications", "/org/freedesktop/Notifications")
	var id uint32
	return obj.CallWithContext(ctx, "org.freedesktop.Notifications.Notify", 0,
		"diskd", uint32(0), "drive-harddisk", summary, body, []string{}, hints, int32(-1)).Store(&id)
}

// authenticated reports whether the host's datagrams were sealed with a key
// of diskd's keyring; when that cannot be learnt, it reports false.
func authenticated(ctx context.Context, c *dbusapi.Client, hostID string) bool {
	peers, err := c.Peers(ctx)
	if err != nil {
		return false
	}
	for _, p := range peers {
		if p.HostID == hostID {
			return p.Authenticated
		}
	}
	return false
}

// notification returns the summary (the label, else the UUID, else the
// device) and the body (host, device, type) of a disk's notification. A
// disk that diskd remembered as gone says so in the summary: "BACKUP-2019
// is back, on gamma (was last on beta, 3 days ago)". A disk from a host
// whose datagrams were not sealed with a key says so: on such a network
// anyone could have announced it.
func notification(d diskstate.Disk, authenticated bool, now time.Time) (summary, body string) {
	summary = d.Label
	if summary == "" {
		summary = d.UUID
	}
	if summary == "" {
		summary = d.Device
	}
	host := d.Hostname
	if host == "" {
		host = d.HostID
	}
	if d.Returned {
		summary = fmt.Sprintf("%s is back, on %s (was last on %s, %s)", summary, host, d.PreviousHostname,
			present.Since(now.Sub(d.PreviousLastSeen)))
	}
	body = fmt.Sprintf("on %s: %s (%s)", markup(present.Text(host)), markup(present.Text(d.Device)), markup(present.Text(d.Type)))
	if !authenticated {
		body += " — unauthenticated: no key, anyone on the network could have sent this"
	}
	return present.Escape(summary), body
}

// markup escapes what notification servers may read as markup.
func markup(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
