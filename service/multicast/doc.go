// Package multicast is diskd's UDP multicast transport: a [Conn] joins the
// multicast groups (at most one IPv4 and one IPv6 group) on a set of
// interfaces, sends each datagram to every group through every interface of
// its family (on the link, or with a larger TTL across multicast routers)
// and hands back what peers send. Conn implements service/peer's Transport
// under the name "multicast".
//
// It is not the peer protocol: sequence numbers, splitting messages into
// datagrams, decoding, reassembly, the ping rules and the drop counters are
// service/peer's, which runs over this transport and any other. It knows
// nothing of the bytes it moves beyond their size: [Conn.Budget] is the
// largest payload that goes out unfragmented.
package multicast
