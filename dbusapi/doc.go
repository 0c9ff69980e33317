// Package dbusapi is diskd's D-Bus interface, org.diskd.Finder: the server
// side that the daemon runs (Serve: export the object, answer its methods,
// turn the inventory's change events into signals and keep its properties
// current) and the client side that diskctl uses (Dial, Client, the decoding
// of disks, peers and signals).
//
// It is not the owner of any state: it reads the inventory and calls the
// actions (refresh, announce, ping) that the daemon gives it. It does not
// format anything for people; diskctl does, with the control package's
// formatting and escaping.
//
// # The interface
//
// Bus name org.diskd, object /org/diskd/Finder, interface org.diskd.Finder.
// The interface is defined once, in org.diskd.Finder.xml next to this file
// (embedded, served by Introspect, and installed by packages as
// /usr/share/dbus-1/interfaces/org.diskd.Finder.xml); that file documents
// the methods, signals, properties, dictionary keys and error names.
// Properties are served by org.freedesktop.DBus.Properties (godbus's prop
// package) and every change of PeerCount, DiskCount, LastScan or ScanError is
// sent as one PropertiesChanged signal carrying the new values.
//
// # Decisions
//
//   - The bus is chosen like the daemon's --bus flag: "system" (honouring
//     DBUS_SYSTEM_BUS_ADDRESS), "session" (DBUS_SESSION_BUS_ADDRESS or
//     $XDG_RUNTIME_DIR/bus; never autolaunched), "none" (or "": Serve returns
//     at once), or a D-Bus address such as unix:path=/run/x.sock.
//   - Serve never gives up while its context lives: a missing bus, a name
//     owned by someone else or a policy that forbids owning it is logged once
//     as a warning that says what to do, and retried with a backoff of 1s
//     doubling to 30s; it logs again only when the state changes (connected,
//     bus unavailable, name taken, not allowed, connection lost). The daemon
//     meanwhile serves its control socket and the network as usual.
//   - The name is requested with DoNotQueue and without AllowReplacement: a
//     second diskd on the same bus does not steal it, it waits.
//   - Refresh, Announce and Ping are checked in the daemon too, not only by
//     the bus policy: the caller's uid (GetConnectionUnixUser) must be 0 or
//     the daemon's own uid, else org.freedesktop.DBus.Error.AccessDenied. This
//     protects session buses and private ADDRESS buses, which load no policy.
//     They run with a deadline (Options.ActionTimeout, 2 minutes by default)
//     and are cancelled when Serve stops.
//   - LastScan and ScanError are read again when the inventory's Scans
//     signal says a scan was recorded (a scan that changed nothing has no
//     event); counts are updated after every burst of events. Nothing is
//     polled, so an idle daemon's bus connection sleeps.
//   - A subscriber that falls so far behind that the inventory drops events
//     for it (4096 pending) loses signals; Serve logs that once per burst.
//     Clients that must not miss anything call List again.
//   - Method errors are org.diskd.Error.InvalidArgument (Find with an empty
//     term), org.diskd.Error.NotSupported (no actions in this daemon),
//     org.diskd.Error.Failed (the action failed; the message says why) and
//     org.diskd.Error.Busy (a query waited 10s for its answer).
//   - Memory stays bounded however many calls are in flight, whoever sends
//     them: the answers of List, ListTable, Find and Peers are built once per
//     inventory change (events drop the cached answer before their signal
//     goes out, so a client that saw a signal lists the change; an answer is
//     also rebuilt when it is older than a second, since a peer heard again
//     moves last_seen without an event) and every call gets the same
//     immutable value. godbus encodes replies one at a time (under its
//     connection's send lock), so a call in flight costs its message being
//     encoded, not a reply of its own. Calls wait for each other while an
//     answer is built, up to 10s, then get org.diskd.Error.Busy.
//   - ListTable is List as one string (DiskTable, DiskTableDecode; the
//     format is in the XML file): an aa{sv} of 16,000 disks is 160,000
//     variants that godbus marshals by reflection (twice: its unix
//     transport encodes each message once to count file descriptors) and a
//     6.5 MB message; the table is one 3 MB string that both sides copy as
//     a block. Client.List, which diskctl uses, calls ListTable and falls
//     back to List when the daemon does not know it (UnknownMethod) or an
//     older policy file refuses it (AccessDenied).
package dbusapi
