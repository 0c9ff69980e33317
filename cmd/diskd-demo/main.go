// Command diskd-demo shows diskd at work on one machine: three simulated
// hosts (alpha, beta, gamma: network namespaces on a private bridge), two
// loop-device disks each, a diskd daemon on each (each with a state
// directory of its own in the lab's temporary directory), then it unplugs
// gamma's USB disk to show that alpha remembers where it was, and then runs
// diskd's interactive client on alpha, attached to your terminal.
//
// Run it as root:
//
//	go build -o /tmp/diskd ./cmd/diskd && go run ./cmd/diskd-demo --diskd /tmp/diskd
//
// With --ipv6 the three hosts share an IPv6-only link instead (no IPv4
// address at all) and the daemons use the IPv6 group [ff15::d15c]:4277.
//
// It builds nothing itself. Without --diskd it uses the diskd next to its own
// executable, else the one in PATH. When the client exits (^D or quit), or
// on SIGINT or SIGTERM, it removes everything it made and exits with the
// client's status. The lab itself is service/testbed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/diskd/diskd/service/testbed"
)

type hostSpec struct {
	name  string
	disks []diskSpec
}

type diskSpec struct {
	opts  testbed.DiskOpts
	mount bool
}

// demoHosts is the demo's network. Only ext4 is mounted: it is the
// filesystem every kernel that runs diskd can mount.
func demoHosts() []hostSpec {
	return []hostSpec{
		{"alpha", []diskSpec{
			{testbed.DiskOpts{Label: "ALPHA-DATA", FSType: "ext4", SizeMB: 64}, true},
			{testbed.DiskOpts{Label: "alpha-swap", FSType: "swap", SizeMB: 16}, false},
		}},
		{"beta", []diskSpec{
			{testbed.DiskOpts{Label: "beta photos", FSType: "vfat", SizeMB: 64}, false},
			{testbed.DiskOpts{Label: "BETA-HOME", FSType: "ext4", SizeMB: 32}, false},
		}},
		{"gamma", []diskSpec{
			{testbed.DiskOpts{Label: "GAMMA-BACKUP", FSType: "ext4", SizeMB: 128}, true},
			{testbed.DiskOpts{Label: "GAMMA-USB", FSType: "vfat", SizeMB: 32}, false},
		}},
	}
}

func main() {
	os.Exit(run())
}

func run() int {
	diskdFlag := flag.String("diskd", "", "the diskd binary (default: diskd next to this program, else in PATH)")
	waitFlag := flag.Duration("wait", 30*time.Second, "how long to wait for alpha to see every disk")
	ipv6Flag := flag.Bool("ipv6", false, "put the hosts on an IPv6-only link (group "+ipv6Group+")")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: diskd-demo [--diskd PATH] [--wait D] [--ipv6]   (as root)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "diskd-demo: run me as root: I create network namespaces and loop devices")
		return 1
	}
	bin, err := findDiskd(*diskdFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-demo:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	lab, err := testbed.New("demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-demo:", err)
		return 1
	}
	defer func() {
		fmt.Println("diskd-demo: removing the daemons, disks and namespaces...")
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "diskd-demo: cleanup:", err)
		}
	}()

	alpha, err := setUp(ctx, lab, bin, *waitFlag, *ipv6Flag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "diskd-demo:", err)
		return 1
	}
	intro(lab)
	return client(ctx, alpha, bin)
}

// findDiskd resolves the daemon binary: the flag, else diskd next to this
// program, else diskd in PATH.
func findDiskd(flagValue string) (string, error) {
	p, err := testbed.FindDiskd(flagValue)
	if errors.Is(err, testbed.ErrNoDiskd) {
		return "", errors.New("no diskd binary next to me or in PATH; build one and pass it:\n" +
			"  go build -o /tmp/diskd ./cmd/diskd && go run ./cmd/diskd-demo --diskd /tmp/diskd")
	}
	return p, err
}

// ipv6Group is the IPv6 group of the --ipv6 demo, diskd's documented one.
const ipv6Group = "[ff15::d15c]:4277"

// setUp creates the hosts, disks and daemons and waits until alpha sees
// every disk. It returns alpha's host. With ipv6 the hosts are on an
// IPv6-only segment of the lab.
func setUp(ctx context.Context, lab *testbed.Lab, bin string, wait time.Duration, ipv6 bool) (*testbed.Host, error) {
	fmt.Printf("diskd-demo: lab %s in %s\n", lab.ID, lab.Dir)
	seg := lab.DefaultSegment()
	daemonFlags := []string{"--announce-interval", "2s"}
	if ipv6 {
		var err error
		if seg, err = lab.AddSegment("v6", testbed.IPv6); err != nil {
			return nil, err
		}
		daemonFlags = append(daemonFlags, "--group", ipv6Group)
		fmt.Printf("diskd-demo: an IPv6-only link (%s), group %s\n", seg.Prefix6(), ipv6Group)
	}
	var made []*testbed.Host
	total := 0
	for _, hs := range demoHosts() {
		if ctx.Err() != nil {
			return nil, errors.New("interrupted")
		}
		h, err := seg.AddHost(hs.name)
		if err != nil {
			return nil, err
		}
		var desc []string
		for _, ds := range hs.disks {
			d, err := h.AddDisk(ds.opts)
			if err != nil {
				return nil, err
			}
			total++
			s := fmt.Sprintf("%s %q (%s)", d.Path, ds.opts.Label, ds.opts.FSType)
			if ds.mount {
				if err := d.Mount(""); err != nil {
					return nil, err
				}
				s += " on " + d.Mountpoint()
			}
			desc = append(desc, s)
		}
		if _, err := h.Start(bin, daemonFlags...); err != nil {
			return nil, err
		}
		addr := h.Addr
		if ipv6 {
			addr = h.Addr6
		}
		fmt.Printf("  %-6s %-10s %s\n", h.Name, addr, strings.Join(desc, ", "))
		made = append(made, h)
	}
	alpha := made[0]

	fmt.Printf("diskd-demo: waiting for alpha to see all %d disks ", total)
	deadline := time.Now().Add(wait)
	last := -1
	for {
		var disks []map[string]any
		err := alpha.Daemon().DoJSON("list --json", &disks)
		if err == nil && len(disks) != last {
			last = len(disks)
			fmt.Printf("%d ", last)
		}
		if err == nil && len(disks) >= total {
			fmt.Println("- all there.")
			return alpha, unplug(ctx, alpha, made[len(made)-1])
		}
		if time.Now().After(deadline) {
			fmt.Println()
			for _, h := range made {
				if d := h.Daemon(); d != nil {
					fmt.Fprintf(os.Stderr, "---- log of %s ----\n%s\n", h.Name, d.Log())
				}
			}
			return nil, fmt.Errorf("alpha saw %d of %d disks after %v (last error: %v)", last, total, wait, err)
		}
		select {
		case <-ctx.Done():
			fmt.Println()
			return nil, errors.New("interrupted")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unplug detaches gamma's USB disk (its last one) and waits until alpha
// answers `find` for it from memory: where it was last seen.
func unplug(ctx context.Context, alpha, gamma *testbed.Host) error {
	disks := gamma.Disks()
	usb := disks[len(disks)-1]
	if err := usb.Detach(); err != nil {
		return err
	}
	fmt.Printf("diskd-demo: unplugged gamma's GAMMA-USB (%s); alpha remembers it:\n", usb.Path)
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines, err := alpha.Daemon().Do("find GAMMA-USB")
		if err == nil && len(lines) == 1 && strings.Contains(lines[0], "is not attached anywhere now") {
			fmt.Printf("  => find GAMMA-USB\n  %s\n", lines[0])
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("alpha did not remember GAMMA-USB within 10s (last answer %q, %v)", lines, err)
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func intro(lab *testbed.Lab) {
	fmt.Printf(`
Three hosts share a private network segment; each diskd announces its disks
by multicast every 2s and knows everyone else's. You are now in diskd's
interactive client, talking to alpha's daemon. Try:

  list                 every disk on the network (host, device, type, label, uuid, mount)
  find GAMMA-BACKUP    where is that disk?    (also: find beta, find ALPHA)
  find GAMMA-USB       unplugged: where it was last seen, and when
  history GAMMA-USB    every place and time it was seen
  list --all           every disk, also those no longer attached (LAST-SEEN)
  peers                the hosts alpha hears from
  status               alpha's own state and counters
  help                 all commands

^D or quit leaves; the demo then removes every host, disk and daemon.
Daemon logs meanwhile: %s/*.log

`, lab.Dir)
}

// client runs diskd's interactive client on the terminal and returns its
// exit status. A signal to the demo ends the client too.
func client(ctx context.Context, h *testbed.Host, bin string) int {
	restore := saveTerminal(os.Stdin)
	defer restore()

	cmd := h.Command(bin, "--socket", h.Socket)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "diskd-demo:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
	}
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "diskd-demo:", err)
	return 1
}

// saveTerminal records the terminal settings of f, if it is a terminal,
// and returns a function that puts them back (a client killed in raw mode
// would leave the terminal unusable).
func saveTerminal(f *os.File) func() {
	var t syscall.Termios
	fd := f.Fd()
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return func() {}
	}
	return func() {
		syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&t)))
	}
}
