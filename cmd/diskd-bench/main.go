// Command diskd-bench measures diskd on simulated hosts, side by side with
// the poll-only behaviour of the program it replaces (--no-uevents), and
// prints a table of metric, value, target and whether it is met.
// `make bench` builds it and runs it as root, then the Go benchmarks.
//
//	diskd-bench [--diskd PATH] [--quick] [flags]   the benchmark (root)
//	diskd-bench --only gossip|scale|idle [flags]    one case alone (root)
//	diskd-bench gobench [FILE]                      table of `go test -bench` output
//
// The hosts, disks and daemons are service/testbed's: network namespaces on
// a private bridge, loop devices with real filesystems, the real diskd
// binary. It measures how fast a disk attached on one host shows up on
// another (and goes away when detached) on the control socket and as a
// D-Bus signal, how fast a stopped or killed peer's disks go away, what
// one daemon costs when it hears 1,000 peers of 16 disks each (a load
// generator sends real datagrams, encoded by service/wire, from a host of
// its own), what one daemon costs in a gossip mesh of 200 members (run
// by a second load generator), and what an idle daemon costs. Every
// daemon runs with the shipped unit's environment (GOMEMLIMIT). A
// benchmark reports and compares; a missed target is shown, never an exit
// status. It exits non-zero only when it cannot measure (not root, no
// diskd, a host that does not come up).
//
// Everything it makes (namespaces, loop devices, daemons, buses, the load
// generator) is removed at the end, on ^C and on failure; processes are
// ended by their PID.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
