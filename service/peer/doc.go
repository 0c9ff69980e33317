// Package peer is diskd's peer protocol: it tells peers this host's disk
// list (announcements, goodbyes, re-announce requests) and feeds what peers
// send into the inventory, over one or more transports at once.
//
// It owns everything between the inventory and the bytes: the host's
// identity on the wire and its one sequence counter, encoding a message and
// cutting it into datagrams that fit each transport's budget, decoding what
// arrives and putting parts back together (with one wire.Assembler per
// transport, since each transport cuts at its own budget), the rules for
// answering pings, the counters of datagrams in, out and dropped (with the
// reasons) and the rate-limited log of drops.
//
// It is not a socket: it opens nothing and knows no addresses, groups,
// interfaces or members; a [Transport] moves the bytes. It is not the format
// (service/wire encodes, decodes, seals and reassembles) and not the state
// (service/inventory decides what changed, refuses replays and caps peers).
//
// # Several transports
//
// A Service runs over every transport given to [New] at once, with one
// identity and one sequence counter: [Service.Announce], [Service.Bye] and
// [Service.Ping] send each message on every transport (the same sequence
// number on each), and [Service.Receive] runs one receive loop per
// transport until its context ends. A peer heard on two transports sends
// each message on both; the inventory applies the first copy and refuses
// the second as a replay (counted as a "replay" drop).
//
// # Pings
//
// An answer to a ping comes after a random delay of up to PingReplyDelay, at
// most once per PingPerRequester per requesting host and daemon instance and
// at most PingRateLimit answers a second in all, so that a rogue host cannot
// turn pings into a flood.
//
// # Sequence numbers
//
// Sequence numbers start at the wall clock in microseconds when the daemon
// starts and grow by one per message, so a restarted daemon moves forward
// and its peers' replay check (strictly increasing per host) accepts it at
// once. Messages are numbered and sent one at a time, so they leave in the
// order of their numbers.
//
// # Loss
//
// Every message carries the sender's clock (SentAt), and every
// announcement its list's generation, which changes only when the list
// does. A receiver groups an announcement's parts by generation, so the
// parts of an unchanged list combine across rounds and a part lost in one
// is made up by the next; the first four announcements of a changed list
// are sent twice, so that the change arrives within a few intervals even
// on a lossy link. Every datagram that passes decoding, authentication,
// the clock-skew window and the replay rule keeps its peer alive, whatever
// it carries: a peer is lost only when nothing valid was heard from it for
// its timeout. A part that repeats the bytes of the last generation
// applied (by a keyed hash) only does that, without its disks being
// decoded again.
//
// # Replays
//
// With a keyring, a sealed message whose send time is further than
// MaxClockSkew from the receiver's clock is dropped as "stale": a captured
// datagram can be replayed only within that window of its capture, and
// only to a receiver without a mark for its sender (the inventory's replay
// rule refuses it otherwise; see inventory.Mark).
//
// # Adding a transport
//
// A transport is a type with the five methods of [Transport], in a package
// of its own (service/multicast's Conn is one: its socket, plus a Name
// method). To add one: write that type, give it its flags, open it where the
// daemon opens the multicast socket and pass it to [New] with the others.
// Nothing in this package, nor in the inventory, the control socket or
// D-Bus, changes: the Service knows a transport only through the interface,
// and the transport's Name reaches the receive path with every datagram.
// service/peer/peertest is an in-memory transport for tests, with hooks to
// drop, duplicate and delay datagrams.
package peer
