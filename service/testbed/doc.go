// Package testbed builds simulated diskd hosts on one Linux machine, for
// integration tests and the demo (cmd/diskd-demo).
//
// A Lab is a set of hosts on one Ethernet segment, or on several joined by
// routers:
//
//   - a "hub" network namespace holds a bridge (mcast_snooping 0); every host
//     is a network namespace of its own, joined to the bridge by a veth pair
//     whose host end is named e0 and carries 10.77.0.N/24, with lo up and the
//     route 224.0.0.0/4 dev e0, so UDP multicast with TTL 1 goes from every
//     host to every other one and nowhere else;
//   - more segments (Lab.AddSegment) are more bridges in the hub: segment K
//     is the subnets 10.77.K.0/24 and fd77:0:0:K::/64. A segment, and each
//     host on it (HostOptions), speaks IPv4, IPv6 or both (Family): an
//     IPv6 host has fd77:0:0:K::N/64 without duplicate address detection
//     (its link-local address too, so nothing waits) and the route
//     ff00::/8 dev e0; an IPv4-only host has IPv6 turned off on e0; an
//     IPv6-only host has no IPv4 address;
//   - a router (Lab.AddRouter) is a namespace with an interface rK on each
//     of its segments (10.77.K.254, fd77:0:0:K::fe) and forwarding on, so
//     it routes unicast; the first router on a segment is the default route
//     of the segment's hosts. RouterOptions.Groups start smcrouted
//     (package smcroute), which forwards those IPv4 and IPv6 groups from
//     every segment of the router to all its others, so that a datagram
//     sent with TTL (hop limit) 2 crosses one router and one with TTL 1
//     does not; RouterOptions.DropMulticast adds nftables rules that drop
//     every forwarded multicast datagram (unicast still passes).
//     Router.MulticastStats reads the kernel's per-interface multicast
//     counters;
//   - Host.InNetns runs a function on a thread inside the host's network
//     namespace, so that a test opens sockets on the host's link
//     in-process; Host.Listen counts what arrives on a group by source,
//     Host.Send multicasts datagrams with a given TTL;
//   - disks are sparse image files in the lab's temporary directory, attached
//     as loop devices (losetup) and formatted with mkfs (ext4, vfat, swap, or
//     left blank); Disk.Mount mounts them below the lab's MountDir, a shared
//     bind mount, so that running daemons see mounts and unmounts at once
//     even where the machine's / is not shared;
//   - daemons are diskd processes started with "ip netns exec", one per host,
//     each with its own --host-id, --hostname, --socket, --interface e0,
//     --bus none and a --device flag for every disk of the host. A tiny
//     control-socket client (Daemon.Do) talks to them.
//
// Three segments behind a router that forwards unicast and drops multicast
// (errors ignored here), and two segments whose router forwards diskd's
// IPv4 and IPv6 groups:
//
//	a, _ := lab.AddSegment("a", testbed.IPv4)
//	b, _ := lab.AddSegment("b", testbed.IPv4)
//	c, _ := lab.AddSegment("c", testbed.IPv4)
//	lab.AddRouter("r", []*testbed.Segment{a, b, c}, testbed.RouterOptions{DropMulticast: true})
//	alpha, _ := a.AddHost("alpha")
//
//	near, _ := lab.AddSegment("near", testbed.DualStack)
//	far, _ := lab.AddSegment("far", testbed.DualStack)
//	lab.AddRouter("r2", []*testbed.Segment{near, far}, testbed.RouterOptions{
//		Groups: []netip.Addr{netip.MustParseAddr("239.255.77.77"), netip.MustParseAddr("ff15::d15c")}})
//
// Every name a lab creates (namespaces, hub-side interfaces) starts with a
// short random prefix such as "dk3f9a", so two labs (two test binaries
// running in parallel) never collide. Hosts and routers share one name
// space in a lab. Lab.Close kills the daemons the lab started (by PID),
// stops the routers' smcrouted (by PID), closes listeners, unmounts what it mounted, detaches its loop devices
// (only while they are still backed by the lab's own images), deletes its
// namespaces (which removes the bridge and the veth pairs) and removes its
// directory. Close is idempotent and also correct after a partial setup.
//
// What testbed is not: the daemon never imports it, and it never touches the
// machine's own interfaces, addresses or routes: the root network namespace
// gets no bridge, no veth end and no address, and every address and route
// is added inside a namespace the lab created. Loop devices are the one
// machine-wide resource; the lab keeps a record of each one it attaches.
//
// It needs root, iproute2 (ip), util-linux (losetup, mount), e2fsprogs and
// dosfstools; routers need smcroute (smcrouted, smcroutectl) for
// multicast and nftables (nft) for DropMulticast. It runs external tools
// with os/exec and uses no module beyond those diskd already depends on
// (golang.org/x/sys/unix, for setns).
// NewT is the entry point for tests: it skips without root (fails when
// CI=true), closes the lab in t.Cleanup and dumps daemon logs when the test
// failed. If the test binary itself dies (go test -timeout panics), cleanup
// cannot run; daemons still die with it (they are started with
// Pdeathsig=SIGKILL), but namespaces and loop devices named dkXXXX-* may be
// left and can be removed by hand (ip netns del, losetup -d).
package testbed
