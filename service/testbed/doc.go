// Package testbed builds simulated diskd hosts on one Linux machine, for
// integration tests and the demo (cmd/diskd-demo).
//
// A Lab is a set of hosts that share one Ethernet segment:
//
//   - a "hub" network namespace holds a bridge (mcast_snooping 0); every host
//     is a network namespace of its own, joined to the bridge by a veth pair
//     whose host end is named e0 and carries 10.77.0.N/24, with lo up and the
//     route 224.0.0.0/4 dev e0, so UDP multicast with TTL 1 goes from every
//     host to every other one and nowhere else;
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
// Every name a lab creates (namespaces, hub-side interfaces) starts with a
// short random prefix such as "dk3f9a", so two labs (two test binaries
// running in parallel) never collide. Lab.Close kills the daemons the lab
// started (by PID), unmounts what it mounted, detaches its loop devices
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
// dosfstools. It runs external tools with os/exec and adds no dependency.
// NewT is the entry point for tests: it skips without root (fails when
// CI=true), closes the lab in t.Cleanup and dumps daemon logs when the test
// failed. If the test binary itself dies (go test -timeout panics), cleanup
// cannot run; daemons still die with it (they are started with
// Pdeathsig=SIGKILL), but namespaces and loop devices named dkXXXX-* may be
// left and can be removed by hand (ip netns del, losetup -d).
package testbed
