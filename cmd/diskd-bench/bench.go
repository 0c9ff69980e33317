package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/testbed"
)

// bench is one run of the benchmark: its options, the table it fills, the
// progress line, and what must be undone at the end.
type bench struct {
	o    options
	out  io.Writer
	rep  *report
	prog *progress

	bus    busFiles
	busErr error // why D-Bus cannot be measured at all

	mu        sync.Mutex
	cleanups  []cleanup
	dbusKnown bool
	dbusWired bool
	failures  []string
}

type cleanup struct {
	what string
	fn   func() error
}

func newBench(o options, out, errw io.Writer) *bench {
	b := &bench{o: o, out: out, rep: newReport(), prog: newProgress(errw)}
	b.bus, b.busErr = findBusFiles(o.repo)
	return b
}

// onCleanup registers fn to run at the end (last registered, first run).
func (b *bench) onCleanup(what string, fn func() error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, cleanup{what, fn})
}

func (b *bench) cleanUp() {
	b.mu.Lock()
	cs := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		b.prog.set("clean-up", "%s", cs[i].what)
		if err := cs[i].fn(); err != nil {
			b.prog.logf("clean-up: %s: %v", cs[i].what, err)
		}
	}
	b.prog.set("clean-up", "")
}

// fail records that part of the benchmark could not measure; the run goes
// on with the rest and exits non-zero at the end.
func (b *bench) fail(what string, err error) {
	b.mu.Lock()
	b.failures = append(b.failures, what+": "+err.Error())
	b.mu.Unlock()
	b.prog.logf("%s: %v", what, err)
}

// run runs every phase, prints the table and removes everything it made.
func (b *bench) run(ctx context.Context) error {
	m := describeMachine()
	start := time.Now()
	loadStart := m.LoadAvg
	b.rep.headf("diskd-bench  %s  (%s)", start.UTC().Format("2006-01-02 15:04 MST"), quickText(b.o.quick))
	b.rep.headf("CPU: %s, %d cores (logical CPUs)   %s   %s", m.CPU, m.CPUs, m.Kernel, runtime.Version())
	b.rep.headf("diskd: %s (%s)", diskdVersion(b.o.diskd), b.o.diskd)
	if l := load1(); l >= 1 {
		b.prog.logf("the machine is busy (load average %s): numbers will be noisy", m.LoadAvg)
	}

	pctx, stopProgress := context.WithCancel(context.Background())
	progDone := make(chan struct{})
	go func() { b.prog.run(pctx); close(progDone) }()
	defer func() {
		b.cleanUp()
		stopProgress()
		<-progDone
	}()

	if b.o.only != "" {
		if err := b.caseAlone(ctx, b.o.only); err != nil {
			return err
		}
		return b.finish(start, loadStart)
	}

	// The poll-only comparison needs several scan periods of wall time, so
	// it starts first and runs beside the other phases.
	var wg sync.WaitGroup
	var poll pollResult
	pl, err := setUp(ctx, b, "poll-only", b.setupPoll)
	if err != nil {
		return err
	}
	wg.Go(func() { poll = b.runPoll(ctx, pl) })

	il, err := setUp(ctx, b, "idle", b.setupIdle)
	if err != nil {
		return err
	}
	el, err := setUp(ctx, b, "event", b.setupEvents)
	if err != nil {
		return err
	}
	sl, err := setUp(ctx, b, "scale", b.setupScale)
	if err != nil {
		return err
	}

	var ev eventsResult
	if err := b.eventCycles(ctx, el, &ev); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.fail("attach/detach cycles", err)
	}
	if err := b.stopCycles(ctx, el, &ev); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.fail("stop cycles", err)
	}
	// Kills take a peer timeout each: beside the scale phase.
	var killErr error
	var kwg sync.WaitGroup
	kwg.Go(func() { killErr = b.killCycles(ctx, el, &ev) })

	sc, err := b.scaleCase(ctx, sl)
	if err != nil {
		return err
	}
	kwg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if killErr != nil {
		b.fail("kill cycles", killErr)
	}

	var gs gossipResult
	if b.o.gossipNodes > 1 {
		if gs, err = b.gossipCase(ctx); err != nil {
			return err
		}
	}

	id, idErr := b.runIdle(ctx, il)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if idErr != nil {
		b.fail("idle", idErr)
	}
	b.prog.set("done", "waiting for the poll-only comparison to finish its last period")
	wg.Wait()
	b.prog.set("done", "")
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if poll.err != nil {
		b.fail("poll-only comparison", poll.err)
	}

	b.latencyRows(&ev, &poll)
	b.scaleRows(sc)
	b.idleRows(id)
	if b.o.gossipNodes > 1 {
		b.gossipRows(gs)
	}
	return b.finish(start, loadStart)
}

// gossipCase runs the gossip case. A failure to measure is recorded (the
// run goes on); only the end of ctx is returned.
func (b *bench) gossipCase(ctx context.Context) (gossipResult, error) {
	gs, err := b.runGossipScale(ctx)
	if ctx.Err() != nil {
		return gs, ctx.Err()
	}
	if err != nil {
		b.fail("gossip", err)
	}
	return gs, nil
}

// scaleCase runs the scale case on sl. A failure to measure is recorded
// (the run goes on); only the end of ctx is returned.
func (b *bench) scaleCase(ctx context.Context, sl *scaleLab) (scaleResult, error) {
	sc, err := b.runScale(ctx, sl)
	if ctx.Err() != nil {
		return sc, ctx.Err()
	}
	if err != nil {
		b.fail("scale", err)
	}
	return sc, nil
}

// setUp makes the hosts of one case with fn, showing it in the progress
// line meanwhile.
func setUp[L any](ctx context.Context, b *bench, what string, fn func(context.Context) (L, error)) (L, error) {
	b.prog.set("setup", "%s hosts", what)
	defer b.prog.set("setup", "")
	l, err := fn(ctx)
	if err != nil {
		return l, fmt.Errorf("%s hosts: %w", what, err)
	}
	return l, nil
}

// caseAlone runs one case by itself (--only NAME) and adds its rows.
func (b *bench) caseAlone(ctx context.Context, name string) error {
	switch name {
	case "gossip":
		gs, err := b.gossipCase(ctx)
		if err != nil {
			return err
		}
		b.gossipRows(gs)
	case "scale":
		sl, err := setUp(ctx, b, "scale", b.setupScale)
		if err != nil {
			return err
		}
		sc, err := b.scaleCase(ctx, sl)
		if err != nil {
			return err
		}
		b.scaleRows(sc)
	case "idle":
		il, err := setUp(ctx, b, "idle", b.setupIdle)
		if err != nil {
			return err
		}
		id, err := b.runIdle(ctx, il)
		if err != nil {
			return err
		}
		b.idleRows(id)
	default:
		return fmt.Errorf("no case %q", name) // options.check refuses it first
	}
	return nil
}

// finish prints the table with the machine's load since start, and
// reports the parts that could not measure.
func (b *bench) finish(start time.Time, loadStart string) error {
	b.rep.headf("load average (1, 5, 15 min): %s at start, %s at the end; %s in all",
		loadStart, loadAvg(), time.Since(start).Round(time.Second))
	b.prog.clear()
	b.rep.write(b.out)
	if len(b.failures) > 0 {
		return fmt.Errorf("parts of the benchmark could not measure:\n  %s", strings.Join(b.failures, "\n  "))
	}
	return nil
}

func quickText(quick bool) string {
	if quick {
		return "QUICK smoke run: shortened cycles, windows and intervals; not comparable with the targets"
	}
	return "full run, default intervals"
}

func diskdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "version unknown"
	}
	return strings.TrimSpace(string(out))
}

// newLab creates a lab whose Close runs at clean-up.
func (b *bench) newLab(name string) (*testbed.Lab, error) {
	lab, err := testbed.New("bench-" + name)
	if err != nil {
		return nil, err
	}
	b.onCleanup("lab "+name+" ("+lab.ID+")", lab.Close)
	return lab, nil
}

// addHost adds a host with ext4 disks of the given labels.
func addHost(lab *testbed.Lab, name string, labels ...string) (*testbed.Host, []*testbed.Disk, error) {
	h, err := lab.AddHost(name)
	if err != nil {
		return nil, nil, err
	}
	var disks []*testbed.Disk
	for _, l := range labels {
		d, err := h.AddDisk(testbed.DiskOpts{Label: l, FSType: "ext4"})
		if err != nil {
			return nil, nil, err
		}
		disks = append(disks, d)
	}
	return h, disks, nil
}

// startBus starts a private bus for host h when D-Bus can be measured (and
// is not known to be missing from the daemon); nil otherwise.
func (b *bench) startBus(lab *testbed.Lab, h *testbed.Host) *dbustest.Bus {
	if b.busErr != nil {
		return nil
	}
	b.mu.Lock()
	skip := b.dbusKnown && !b.dbusWired
	b.mu.Unlock()
	if skip {
		return nil
	}
	bus, err := startBus(b.bus, filepath.Join(lab.Dir, h.Name+"-bus"))
	if err != nil {
		b.mu.Lock()
		b.busErr = err
		b.mu.Unlock()
		b.prog.logf("D-Bus rows will not be measured: %v", err)
		return nil
	}
	b.onCleanup("bus of "+h.Name, bus.Kill)
	return bus
}

// unitEnv is the environment the shipped unit (systemd/diskd.service)
// gives the daemon: the benchmark measures the daemon as it runs there.
var unitEnv = []string{"GOMEMLIMIT=256MiB"}

// start starts diskd on h with the extra flags, on bus if there is one,
// with the unit's environment (env execs the daemon: its PID stays the
// daemon's).
func (b *bench) start(h *testbed.Host, bus *dbustest.Bus, extra ...string) (*testbed.Daemon, error) {
	if bus != nil {
		// testbed passes --bus none first; the last --bus wins.
		extra = append(extra, "--bus", bus.Address)
	}
	return h.StartWrapped(append([]string{"env"}, unitEnv...), b.o.diskd, extra...)
}

// checkDBus decides, with the first daemon started on a bus, whether the
// daemon exports org.diskd at all (D-Bus is being wired into it: until
// then the D-Bus rows are pending).
func (b *bench) checkDBus(ctx context.Context, bus *dbustest.Bus) {
	if bus == nil {
		return
	}
	b.mu.Lock()
	known := b.dbusKnown
	b.mu.Unlock()
	if known {
		return
	}
	owned, err := nameOwned(ctx, bus.Address, 5*time.Second)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dbusKnown, b.dbusWired = true, owned && err == nil
	if err != nil {
		b.busErr = err
	}
}

// dbus reports whether the D-Bus rows can be measured, and if not, what
// to show instead of a value.
func (b *bench) dbus() (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.dbusWired:
		return true, ""
	case b.busErr != nil && !b.dbusKnown:
		return false, "not measured: " + b.busErr.Error()
	default:
		return false, "pending (D-Bus not wired)"
	}
}

// waitSees waits until the daemon on socket lists every label of host
// hostID.
func waitSees(ctx context.Context, socket, hostID string, labels []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ds, err := listDisks(socket, "")
		if err == nil {
			have := map[string]bool{}
			for _, d := range ds {
				if d.HostID == hostID {
					have[d.Label] = true
				}
			}
			missing := 0
			for _, l := range labels {
				if !have[l] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			err = fmt.Errorf("%d of %s missing", missing, strings.Join(labels, ", "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not seen within %v: %w", timeout, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// jitter returns a random duration in [lo, hi).
func jitter(lo, hi time.Duration) time.Duration {
	return lo + rand.N(hi-lo)
}
