package peer

import "net/netip"

// Transport moves diskd datagrams between this host and its peers: a UDP
// multicast socket (service/multicast), later a gossip mesh, an in-memory
// network in tests (service/peer/peertest). It knows nothing of what the
// bytes mean; the Service encodes, seals, splits and decodes them.
//
// A Service calls Send from several goroutines at once (the announcer, a
// ping, the goodbye) and Recv from one goroutine at a time; Name and Budget
// at any time.
type Transport interface {
	// Name is a short lower-case name of the kind of transport, such as
	// "multicast" or "gossip". It labels log lines and tells which
	// transport a peer was heard on.
	Name() string
	// Budget is the largest datagram, in bytes, that Send carries without
	// IP fragmentation. The Service cuts every message into datagrams of
	// at most Budget bytes.
	Budget() int
	// Send sends one datagram to every peer the transport reaches and
	// returns how many paths (interfaces, links) took it. It returns an
	// error only when none did. It does not keep b.
	Send(b []byte) (int, error)
	// Recv blocks until a datagram arrives, copies it into buf (a longer
	// one is cut to len(buf)) and returns its length and the address of
	// its sender. After Close it returns an error that wraps
	// net.ErrClosed; any other error is taken as passing.
	Recv(buf []byte) (n int, src netip.Addr, err error)
	// Close releases the transport; a Recv blocked in it returns. Calling
	// Close again does no harm (it may return an error).
	Close() error
}
