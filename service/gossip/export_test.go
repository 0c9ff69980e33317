package gossip

import (
	"encoding/binary"
	"net/netip"

	"github.com/hashicorp/memberlist"
)

// LoseLeave makes Close skip the leave's gossip and its best-effort
// packets, as a loaded network may lose them: only the direct messages
// over streams tell the members.
func LoseLeave(t *Transport) { t.loseLeave = true }

// Leaving hands t the message a member sends when it leaves, as if it had
// come from the mesh.
func Leaving(t *Transport, name string, seq uint64) {
	msg := append([]byte{msgLeaving, byte(len(name))}, name...)
	(*delegate)(t).NotifyMsg(binary.BigEndian.AppendUint64(msg, seq))
}

// Deliver hands t a raw message as if it had come from the mesh.
func Deliver(t *Transport, msg []byte) { (*delegate)(t).NotifyMsg(msg) }

// AddMember makes t believe that a member of this name lives at addr.
func AddMember(t *Transport, name string, addr netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[name] = &memberlist.Node{Name: name, Addr: addr.Addr().AsSlice(), Port: addr.Port()}
}

// MemberEvent hands t memberlist's news of a member: "join" or "leave"
// (left or found dead).
func MemberEvent(t *Transport, event, name string, addr netip.AddrPort) {
	n := &memberlist.Node{Name: name, Addr: addr.Addr().AsSlice(), Port: addr.Port()}
	switch event {
	case "join":
		(*events)(t).NotifyJoin(n)
	case "leave":
		(*events)(t).NotifyLeave(n)
	}
}
