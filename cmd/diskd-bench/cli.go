package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// options is the benchmark's command line.
type options struct {
	diskd string // the daemon binary
	repo  string // the module root: D-Bus config and policy come from it
	quick bool
	only  string // one case to run alone ("gossip" or "scale"); empty: every case

	cycles      int // attach/detach cycles with uevents
	pollDisks   int // disks toggled on the poll-only host
	pollPeriods int // scan periods the poll-only comparison runs for
	stopCycles  int
	killCycles  int

	peers        int
	disksPerPeer int
	gossipNodes  int           // members of the gossip mesh, the measured daemon included
	window       time.Duration // CPU and memory windows (scale, idle)
	listRuns     int

	// Daemon flags that --quick shortens; zero means the daemon's default.
	pollScan    time.Duration // --scan-interval of the poll-only host
	peerTimeout time.Duration // --peer-timeout of the observer in the kill case
}

func defaultOptions() options {
	return options{
		cycles: 20, pollDisks: 6, pollPeriods: 3, stopCycles: 10, killCycles: 2,
		peers: 1000, disksPerPeer: 16, gossipNodes: 200, window: 60 * time.Second, listRuns: 10,
	}
}

// quickOptions make a smoke run of about a minute: fewer cycles, 10 s
// windows, and shortened daemon intervals where a default would make one
// sample take a minute (the table says so).
func (o *options) applyQuick() {
	o.cycles, o.stopCycles, o.killCycles, o.listRuns = 5, 3, 1, 3
	o.pollDisks, o.pollPeriods = 4, 2
	o.window = 10 * time.Second
	o.pollScan = 10 * time.Second
	o.peerTimeout = 3 * time.Second
}

const usage = `usage: diskd-bench [--diskd PATH] [--quick] [flags]   (as root; make bench)
       diskd-bench --only gossip|scale|idle [flags]   one case alone (2 minutes at most)
       diskd-bench gobench [FILE]   table of "go test -bench" output (stdin without FILE)

Measures diskd on simulated hosts (network namespaces, loop devices) and
prints a table: metric, value, the poll-only comparison (--no-uevents),
target and whether it is met. Takes about 6 minutes; --quick about two.

flags:
`

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case loadgenCommand:
			return runLoadgen(args[1:])
		case gossipgenCommand:
			return runGossipgen(args[1:])
		case "gobench":
			return runGobench(args[1:], os.Stdin, os.Stdout, os.Stderr)
		}
	}
	o := defaultOptions()
	fs := flag.NewFlagSet("diskd-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.diskd, "diskd", "", "the diskd binary (default: diskd next to this program, else in PATH)")
	fs.StringVar(&o.repo, "repo", "", "the diskd source tree, for the D-Bus test config and policy (default: found from the working directory)")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run of about a minute (fewer cycles, 10s windows, shorter intervals)")
	fs.IntVar(&o.cycles, "cycles", o.cycles, "attach/detach cycles with uevents")
	fs.IntVar(&o.pollDisks, "poll-disks", o.pollDisks, "disks toggled at random moments on the poll-only host")
	fs.IntVar(&o.pollPeriods, "poll-periods", o.pollPeriods, "scan periods the poll-only comparison runs for (one sample per disk each)")
	fs.IntVar(&o.stopCycles, "stop-cycles", o.stopCycles, "clean stops of a peer")
	fs.IntVar(&o.killCycles, "kill-cycles", o.killCycles, "kills of a peer (each takes about a peer timeout)")
	fs.IntVar(&o.peers, "peers", o.peers, "simulated peers in the scale case")
	fs.IntVar(&o.gossipNodes, "gossip-nodes", o.gossipNodes, "members of the gossip mesh in the gossip case (0: skip it)")
	fs.IntVar(&o.disksPerPeer, "disks-per-peer", o.disksPerPeer, "disks of each simulated peer")
	fs.DurationVar(&o.window, "window", o.window, "length of the CPU and memory windows")
	fs.IntVar(&o.listRuns, "list-runs", o.listRuns, "timed runs of list --json and D-Bus List at scale")
	fs.StringVar(&o.only, "only", "", "run this case alone: gossip, scale or idle (to measure one change quickly)")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.SetOutput(os.Stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return 0
		}
		fmt.Fprintln(os.Stderr, "diskd-bench:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "diskd-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.quick {
		// --quick sets what was not given explicitly.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := o
		q.applyQuick()
		for name, pair := range map[string][2]*int{
			"cycles": {&o.cycles, &q.cycles}, "stop-cycles": {&o.stopCycles, &q.stopCycles},
			"kill-cycles": {&o.killCycles, &q.killCycles}, "list-runs": {&o.listRuns, &q.listRuns},
			"poll-disks": {&o.pollDisks, &q.pollDisks}, "poll-periods": {&o.pollPeriods, &q.pollPeriods},
		} {
			if !set[name] {
				*pair[0] = *pair[1]
			}
		}
		if !set["window"] {
			o.window = q.window
		}
		o.pollScan, o.peerTimeout = q.pollScan, q.peerTimeout
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "diskd-bench: run me as root (sudo make bench): I create network namespaces and loop devices")
		return 1
	}
	var err error
	if o.diskd, err = findDiskd(o.diskd); err != nil {
		fmt.Fprintln(os.Stderr, "diskd-bench:", err)
		return 1
	}
	if o.repo == "" {
		o.repo = findRepo()
	}

	// The context ends on SIGINT or SIGTERM. The handler stays installed
	// until everything is cleaned up, so a second ^C does not cut the
	// clean-up short.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := newBench(o, os.Stdout, os.Stderr)
	if err := b.run(ctx); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "diskd-bench: interrupted")
			return 130
		}
		fmt.Fprintln(os.Stderr, "diskd-bench:", err)
		return 1
	}
	return 0
}

func (o *options) check() error {
	for _, v := range []struct {
		name string
		n    int
		min  int
	}{
		{"cycles", o.cycles, 1}, {"poll-disks", o.pollDisks, 1}, {"poll-periods", o.pollPeriods, 1},
		{"stop-cycles", o.stopCycles, 1}, {"kill-cycles", o.killCycles, 0}, {"peers", o.peers, 1},
		{"disks-per-peer", o.disksPerPeer, 1}, {"list-runs", o.listRuns, 1},
	} {
		if v.n < v.min {
			return fmt.Errorf("--%s %d: want at least %d", v.name, v.n, v.min)
		}
	}
	if o.disksPerPeer > 64 {
		return errors.New("--disks-per-peer: at most 64")
	}
	if o.peers > 4000 {
		return errors.New("--peers: at most 4000 (the daemon holds at most 4096)")
	}
	if o.only != "" && o.only != "gossip" && o.only != "scale" && o.only != "idle" {
		return fmt.Errorf("--only %q: the cases that run alone are gossip, scale and idle", o.only)
	}
	if o.only == "gossip" && o.gossipNodes < 2 {
		return errors.New("--only gossip: --gossip-nodes must be at least 2")
	}
	if o.window < time.Second {
		return errors.New("--window: at least 1s")
	}
	return nil
}

// findDiskd resolves the daemon binary: the flag, else diskd next to this
// program, else diskd in PATH.
func findDiskd(flagValue string) (string, error) {
	p, err := testbed.FindDiskd(flagValue)
	switch {
	case errors.Is(err, testbed.ErrNoDiskd):
		return "", errors.New("no diskd next to me or in PATH; build it and pass --diskd (make bench does)")
	case err != nil:
		return "", fmt.Errorf("--diskd: %w", err)
	}
	return p, nil
}

// findRepo returns the nearest directory at or above the working directory
// that holds go.mod, or "".
func findRepo() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
