// Package gossip is diskd's transport for networks that do not carry
// multicast (clouds, VPNs, routers that do not forward it): a mesh of
// unicast UDP and TCP built on hashicorp/memberlist, joined through a list
// of seed hosts.
//
// It is a peer.Transport: the peer protocol (service/peer) hands it diskd's
// own datagrams, sealed and numbered as on multicast, and reads the
// datagrams of peers from it, so the inventory's rules (strictly
// increasing sequence numbers per host, the caps) hold on this path too. It
// moves them three ways:
//
//   - push/pull state: the datagrams of a node's latest announcement are
//     its memberlist LocalState, exchanged on every join and every
//     PushPullInterval; besides, every member sends its state directly to
//     each member it learns of, and a node that joins asks every member
//     for theirs, so a new node knows every disk list, and is known,
//     within a round trip;
//   - broadcasts: an announcement whose disk list changed (or one asked for
//     after a node came back) is queued in a TransmitLimitedQueue, and
//     every node that hears a datagram it had not heard before queues it
//     again, so a change reaches every node within a few gossip rounds.
//     An announcement that repeats the last one is not broadcast: it only
//     refreshes the state;
//   - liveness: memberlist's failure detection and leave replace diskd's
//     timeout and goodbye. A member found dead is dropped from the
//     inventory with reason "timeout", one that left with "bye"; pings and
//     goodbyes handed to Send are not sent on this path. A node that stops
//     cleanly first tells every member directly that it leaves: a
//     best-effort packet, then the same message over a stream (TCP), at
//     most 500 ms in all, before memberlist's leave, whose gossip a loaded
//     network may lose (members would then wait for failure detection, 5
//     to 7 s). A member drops the node at once on the first copy; what
//     memberlist reports of it later (its join, when that came late; its
//     leave; its death, when the leave's gossip was lost) is not reported
//     again, and a newer announcement from it is a new life. A host heard
//     only through others' relays that memberlist here does not count as
//     a live member for 20 probe intervals (found dead before this node
//     joined, or no member at all) is dropped with reason "timeout" too,
//     since no event of memberlist's would ever drop it;
//
// A node that was lost and comes back (after a partition, or a false
// suspicion on a loaded network) is asked with direct messages for its
// state and to announce afresh, since the inventory refuses the sequence
// number of the state it had, every few seconds until a fresh one arrives;
// lost members are retried in the background so that partitions heal even
// after memberlist stops gossiping to the dead.
//
// Security: with keys, memberlist encrypts and authenticates every packet
// and stream with AES-256-GCM (its Keyring: the first key seals, all are
// tried to open, so keys rotate like diskd's key file), and every packet
// carries the label "diskd", so that another memberlist cluster's traffic
// (serf, consul) is refused. Without keys, Open refuses unless Insecure is
// set. The number of members is capped, and node names must be valid host
// ids.
//
// memberlist does not tell a delegate which member sent a message, so the
// message that a member leaves cannot be checked against its sender: it
// names the member and carries the sequence number of that member's latest
// announcement. It is trusted as the rest of the mesh's traffic is: with
// keys only their holders can send it (and a key holder can already seal
// any host's announcements); without keys (Insecure) anyone on the network
// can, as they can send anything else. What it adds is refused replay: a
// message recorded when a host stopped (memberlist's encryption does not
// stop replays) is refused once the host has announced again, since its
// sequence number is then older than the one this node has heard. A forged
// one drops a live host for about ten probe intervals: a member that said
// it leaves but that memberlist still finds alive after that is asked for
// a fresh announcement, which brings it back.
//
// It is not the peer protocol (no sequence numbers, no encoding: it only
// decodes datagrams to tell announcements from the rest and to avoid
// relaying a datagram twice) and not the inventory.
package gossip
