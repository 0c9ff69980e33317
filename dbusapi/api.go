package dbusapi

import (
	"context"
	_ "embed"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// Names of the API.
const (
	BusName    = "org.diskd"
	ObjectPath = dbus.ObjectPath("/org/diskd/Finder")
	Interface  = "org.diskd.Finder"
)

// Signal names (members of Interface).
const (
	SignalDiskAppeared    = "DiskAppeared"
	SignalDiskDisappeared = "DiskDisappeared"
	SignalDiskChanged     = "DiskChanged"
	SignalPeerJoined      = "PeerJoined"
	SignalPeerLost        = "PeerLost"
)

// Error names of method replies.
const (
	ErrorInvalidArgument = "org.diskd.Error.InvalidArgument"
	ErrorNotSupported    = "org.diskd.Error.NotSupported"
	ErrorFailed          = "org.diskd.Error.Failed"
	ErrorBusy            = "org.diskd.Error.Busy"
	ErrorAccessDenied    = "org.freedesktop.DBus.Error.AccessDenied"
)

// Property names.
const (
	PropHostID    = "HostId"
	PropHostname  = "Hostname"
	PropVersion   = "Version"
	PropPeerCount = "PeerCount"
	PropDiskCount = "DiskCount"
	PropLastScan  = "LastScan"
	PropScanError = "ScanError"
)

//go:embed org.diskd.Finder.xml
var interfaceXML string

// InterfaceXML returns the introspection XML of org.diskd.Finder, the file
// that packages install as /usr/share/dbus-1/interfaces/org.diskd.Finder.xml.
func InterfaceXML() string { return interfaceXML }

// parseInterface returns the org.diskd.Finder interface described by the
// embedded XML.
func parseInterface() (introspect.Interface, error) {
	var n introspect.Node
	if err := xml.Unmarshal([]byte(interfaceXML), &n); err != nil {
		return introspect.Interface{}, fmt.Errorf("dbusapi: embedded %s.xml: %w", Interface, err)
	}
	for _, i := range n.Interfaces {
		if i.Name == Interface {
			return i, nil
		}
	}
	return introspect.Interface{}, fmt.Errorf("dbusapi: embedded XML does not define %s", Interface)
}

// introspection returns the answer to Introspect on ObjectPath: the
// interface of the XML file, Properties, Introspectable and Peer.
func introspection() (introspect.Introspectable, error) {
	iface, err := parseInterface()
	if err != nil {
		return "", err
	}
	n := &introspect.Node{
		Name:       string(ObjectPath),
		Interfaces: []introspect.Interface{iface, prop.IntrospectData},
	}
	return introspect.NewIntrospectable(n), nil
}

// CheckBus reports whether bus is a valid --bus value: system, session,
// none, or a D-Bus address (it contains a colon, as in unix:path=...).
func CheckBus(bus string) error {
	switch bus {
	case "system", "session", "none":
		return nil
	}
	if !strings.Contains(bus, ":") {
		return fmt.Errorf("%q is not system, session, none or a D-Bus address (unix:path=...)", bus)
	}
	return nil
}

// DescribeBus names a bus for people: "the system bus", "the session bus",
// "the bus at unix:path=...".
func DescribeBus(bus string) string {
	switch bus {
	case "system", "session":
		return "the " + bus + " bus"
	}
	return "the bus at " + bus
}

// Connect opens a private connection to bus as --bus names it (system,
// session or an address), authenticated and registered with Hello, for
// other services than org.diskd (diskctl's notifications). It is closed
// when ctx ends. The session bus is never autolaunched.
func Connect(ctx context.Context, bus string) (*dbus.Conn, error) {
	if err := CheckBus(bus); err != nil {
		return nil, err
	}
	return connect(ctx, bus)
}

// connect opens a private connection to bus (system, session or an address),
// authenticated and registered with Hello. The connection is closed when ctx
// ends. The session bus is never autolaunched.
func connect(ctx context.Context, bus string) (*dbus.Conn, error) {
	opt := dbus.WithContext(ctx)
	switch bus {
	case "system":
		return dbus.ConnectSystemBus(opt)
	case "session":
		conn, err := dbus.SessionBusPrivateNoAutoStartup(opt)
		if err != nil {
			return nil, err
		}
		if err := conn.Auth(nil); err != nil {
			conn.Close()
			return nil, err
		}
		if err := conn.Hello(); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	case "none", "":
		return nil, fmt.Errorf("no bus (--bus %q)", bus)
	}
	return dbus.Connect(bus, opt)
}
