package main

// Latency: how long a disk attached or detached on host B
// takes to show on host A, with kernel uevents (the default) and poll-only
// (--no-uevents, the old program's way); how long a peer that stops or is
// killed takes to disappear.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/testbed"
)

// How often an observer asks A's control socket. Each answer is timed when
// it arrives, so a latency is at most this much too long, never too short.
const (
	ctlPollEvents = 2 * time.Millisecond
	ctlPollPoll   = 10 * time.Millisecond
	// eventTimeout bounds one wait with uevents; a wait that gives up is
	// counted as a timeout and the cycle waits on for the change.
	eventTimeout = 10 * time.Second
)

// latencies are one mode's attach and detach samples.
type latencies struct {
	attachCtl, attachSig, detachCtl, detachSig samples
}

type eventsResult struct {
	latencies
	stopped, restarted, killed samples
	killTarget                 time.Duration
}

type pollResult struct {
	latencies
	scan    time.Duration // the poll-only host's scan interval
	disks   int
	periods int
	took    time.Duration
	err     error
}

// eventsLab is A and B with the default flags: B has a disk that the
// cycles attach and detach, A watches.
type eventsLab struct {
	lab   *testbed.Lab
	a, b  *testbed.Host
	hot   *testbed.Disk
	bus   *dbustest.Bus
	peerT time.Duration // A's peer timeout for B
}

func (b *bench) setupEvents(ctx context.Context) (*eventsLab, error) {
	lab, err := b.newLab("events")
	if err != nil {
		return nil, err
	}
	el := &eventsLab{lab: lab, peerT: 3 * daemon.DefaultAnnounceInterval}
	if el.a, _, err = addHost(lab, "a", "A-ROOT"); err != nil {
		return nil, err
	}
	var disks []*testbed.Disk
	if el.b, disks, err = addHost(lab, "b", "B-ROOT", "B-HOT"); err != nil {
		return nil, err
	}
	el.hot = disks[1]
	if err := el.hot.Detach(); err != nil { // the cycles start with an attach
		return nil, err
	}
	el.bus = b.startBus(lab, el.a)
	var aFlags []string
	if b.o.peerTimeout > 0 {
		el.peerT = b.o.peerTimeout
		aFlags = append(aFlags, "--peer-timeout", b.o.peerTimeout.String())
	}
	if _, err := b.start(el.a, el.bus, aFlags...); err != nil {
		return nil, err
	}
	b.checkDBus(ctx, el.bus)
	if _, err := b.start(el.b, nil); err != nil {
		return nil, err
	}
	if err := waitSees(ctx, el.a.Socket, el.b.HostID, []string{"B-ROOT"}, 15*time.Second); err != nil {
		return nil, fmt.Errorf("a does not see b: %w", err)
	}
	return el, nil
}

// signals starts a D-Bus observer on bus for host's disks, or returns nil
// when D-Bus is not measured.
func (b *bench) signals(bus *dbustest.Bus, hostID string) *sigWatcher {
	if ok, _ := b.dbus(); !ok || bus == nil {
		return nil
	}
	w, err := watchSignals(bus.Address, hostID)
	if err != nil {
		b.prog.logf("D-Bus observer: %v", err)
		return nil
	}
	return w
}

// observe waits for the change of label to present made at t0 on the
// control socket and, when there is one, on the bus, and records the
// latencies. A wait that times out is counted, then waited out up to
// resync so that the next action starts from a known state.
func (b *bench) observe(ctx context.Context, w *ctlWatcher, sw *sigWatcher, l *latencies, label string,
	present bool, t0 time.Time, timeout, resync time.Duration) error {
	ctl, sig := &l.attachCtl, &l.attachSig
	if !present {
		ctl, sig = &l.detachCtl, &l.detachSig
	}
	at, err := w.wait(ctx, label, present, t0, timeout)
	if err := ctl.record(ctx, t0, at, err); err != nil {
		return err
	}
	if err != nil { // timed out (and counted): wait it out
		b.prog.logf("%v; waiting up to %v more", err, resync)
		if _, err := w.wait(ctx, label, present, t0, timeout+resync); err != nil {
			return err
		}
	}
	if sw == nil {
		return nil
	}
	at, err = sw.wait(ctx, label, present, t0, timeout)
	return sig.record(ctx, t0, at, err)
}

// watchB starts watching A's view of B's disk label, until ctx ends or
// stop is called, and waits until A lists it as present (or not) within
// timeout.
func (b *bench) watchB(ctx context.Context, el *eventsLab, label string, present bool,
	timeout time.Duration) (w *ctlWatcher, stop func(), err error) {
	w = newCtlWatcher(el.a.Socket, label, el.b.HostID, []string{label}, ctlPollEvents)
	wctx, cancel := context.WithCancel(ctx)
	go w.run(wctx)
	if _, err := w.wait(ctx, label, present, time.Time{}, timeout); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("observer: %w", err)
	}
	return w, cancel, nil
}

// downCycle takes B down with down (a clean stop or a kill), times until A
// no longer lists B-ROOT (into gone; a wait past timeout counts as a
// timeout there), then starts B again and times until A lists it (into
// restarted).
func (b *bench) downCycle(ctx context.Context, el *eventsLab, w *ctlWatcher, down func() error,
	timeout time.Duration, gone, restarted *samples) error {
	t0 := time.Now()
	if err := down(); err != nil {
		return err
	}
	at, err := w.wait(ctx, "B-ROOT", false, t0, timeout)
	if err := gone.record(ctx, t0, at, err); err != nil {
		return err
	}
	return b.restartB(ctx, el, w, restarted)
}

// eventCycles attaches and detaches B's disk b.o.cycles times, each after
// a random pause of 100-300 ms, and times A's view of it.
func (b *bench) eventCycles(ctx context.Context, el *eventsLab, res *eventsResult) error {
	w, stop, err := b.watchB(ctx, el, "B-HOT", false, 5*time.Second)
	if err != nil {
		return err
	}
	defer stop()
	sw := b.signals(el.bus, el.b.HostID)
	if sw != nil {
		defer sw.close()
	}
	defer b.prog.set("events", "")
	for i := 1; i <= b.o.cycles; i++ {
		b.prog.set("events", "attach/detach %d/%d", i, b.o.cycles)
		for _, attach := range []bool{true, false} {
			if err := sleepCtx(ctx, jitter(100*time.Millisecond, 300*time.Millisecond)); err != nil {
				return err
			}
			t0 := time.Now()
			var err error
			if attach {
				err = el.hot.Attach()
			} else {
				err = el.hot.Detach()
			}
			if err != nil {
				return err
			}
			if err := b.observe(ctx, w, sw, &res.latencies, "B-HOT", attach, t0, eventTimeout,
				daemon.DefaultScanInterval+10*time.Second); err != nil {
				return err
			}
		}
	}
	return nil
}

// stopCycles stops B cleanly (SIGTERM) b.o.stopCycles times and times
// until its disk is gone from A's view; after each it starts B again and
// times until A sees it.
func (b *bench) stopCycles(ctx context.Context, el *eventsLab, res *eventsResult) error {
	w, stopWatch, err := b.watchB(ctx, el, "B-ROOT", true, 10*time.Second)
	if err != nil {
		return err
	}
	defer stopWatch()
	defer b.prog.set("peers", "")
	stop := func() error {
		if err := el.b.Daemon().Stop(); err != nil {
			return fmt.Errorf("stopping b: %w", err)
		}
		return nil
	}
	for i := 1; i <= b.o.stopCycles; i++ {
		b.prog.set("peers", "clean stop %d/%d", i, b.o.stopCycles)
		if err := sleepCtx(ctx, jitter(200*time.Millisecond, 500*time.Millisecond)); err != nil {
			return err
		}
		if err := b.downCycle(ctx, el, w, stop, 10*time.Second, &res.stopped, &res.restarted); err != nil {
			return err
		}
	}
	return nil
}

// restartB starts B again and times until A lists its disk.
func (b *bench) restartB(ctx context.Context, el *eventsLab, w *ctlWatcher, s *samples) error {
	t1 := time.Now()
	if _, err := b.start(el.b, nil); err != nil {
		return fmt.Errorf("restarting b: %w", err)
	}
	at, err := w.wait(ctx, "B-ROOT", true, t1, 15*time.Second)
	if err != nil {
		return fmt.Errorf("after restarting b: %w", err)
	}
	s.add(at.Sub(t1))
	return nil
}

// killCycles kills B (SIGKILL: no goodbye) b.o.killCycles times and times
// until A drops its disk, which takes A's peer timeout for B.
func (b *bench) killCycles(ctx context.Context, el *eventsLab, res *eventsResult) error {
	res.killTarget = el.peerT + time.Second
	if b.o.killCycles == 0 {
		return nil
	}
	w, stopWatch, err := b.watchB(ctx, el, "B-ROOT", true, 15*time.Second)
	if err != nil {
		return err
	}
	defer stopWatch()
	defer b.prog.set("peers", "")
	kill := func() error {
		if err := el.b.Daemon().Kill(); err != nil {
			return fmt.Errorf("killing b: %w", err)
		}
		return nil
	}
	var restarted samples
	for i := 1; i <= b.o.killCycles; i++ {
		b.prog.set("peers", "kill %d/%d (gone after the %v peer timeout)", i, b.o.killCycles, el.peerT)
		if err := sleepCtx(ctx, jitter(200*time.Millisecond, 2*time.Second)); err != nil {
			return err
		}
		if err := b.downCycle(ctx, el, w, kill, el.peerT+15*time.Second, &res.killed, &restarted); err != nil {
			return err
		}
	}
	return nil
}

// pollLab is PA and PB, both with --no-uevents: PB has pollDisks disks
// that are attached and detached at random moments, PA watches.
type pollLab struct {
	lab    *testbed.Lab
	pa, pb *testbed.Host
	hot    []*testbed.Disk
	labels []string
	bus    *dbustest.Bus
	scan   time.Duration
}

func (b *bench) setupPoll(ctx context.Context) (*pollLab, error) {
	lab, err := b.newLab("poll")
	if err != nil {
		return nil, err
	}
	pl := &pollLab{lab: lab, scan: daemon.DefaultScanInterval}
	if pl.pa, _, err = addHost(lab, "pa", "PA-ROOT"); err != nil {
		return nil, err
	}
	labels := []string{"PB-ROOT"}
	for i := 1; i <= b.o.pollDisks; i++ {
		pl.labels = append(pl.labels, "PB-HOT-"+strconv.Itoa(i))
		labels = append(labels, "PB-HOT-"+strconv.Itoa(i))
	}
	var disks []*testbed.Disk
	if pl.pb, disks, err = addHost(lab, "pb", labels...); err != nil {
		return nil, err
	}
	pl.hot = disks[1:]
	// Half start detached, so that there are as many attaches as detaches.
	for _, d := range pl.hot[len(pl.hot)/2:] {
		if err := d.Detach(); err != nil {
			return nil, err
		}
	}
	pl.bus = b.startBus(lab, pl.pa)
	if _, err := b.start(pl.pa, pl.bus, "--no-uevents"); err != nil {
		return nil, err
	}
	b.checkDBus(ctx, pl.bus)
	pbFlags := []string{"--no-uevents"}
	if b.o.pollScan > 0 {
		pl.scan = b.o.pollScan
		pbFlags = append(pbFlags, "--scan-interval", b.o.pollScan.String())
	}
	if _, err := b.start(pl.pb, nil, pbFlags...); err != nil {
		return nil, err
	}
	want := append([]string{"PB-ROOT"}, pl.labels[:len(pl.hot)/2]...)
	if err := waitSees(ctx, pl.pa.Socket, pl.pb.HostID, want, 15*time.Second); err != nil {
		return nil, fmt.Errorf("pa does not see pb: %w", err)
	}
	return pl, nil
}

// runPoll toggles each of PB's disks once per scan period for
// b.o.pollPeriods periods, each time at a random moment of the period
// (after a pause drawn uniformly from [0, scan interval) since the last
// change was seen), so that a sample is the wait for the next rescan from
// a uniformly random moment: what a disk plugged in at any time waits.
func (b *bench) runPoll(ctx context.Context, pl *pollLab) (res pollResult) {
	res = pollResult{scan: pl.scan, disks: len(pl.hot), periods: b.o.pollPeriods}
	start := time.Now()
	defer func() { res.took = time.Since(start) }()
	w := newCtlWatcher(pl.pa.Socket, "PB-HOT", pl.pb.HostID, pl.labels, ctlPollPoll)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.run(wctx)
	sw := b.signals(pl.bus, pl.pb.HostID)
	if sw != nil {
		defer sw.close()
	}
	var mu sync.Mutex // guards res
	var wg sync.WaitGroup
	done := 0
	total := len(pl.hot) * b.o.pollPeriods
	b.prog.set("poll-only", "0/%d changes (one per disk per %v scan period)", total, pl.scan)
	errs := make([]error, len(pl.hot))
	for i, d := range pl.hot {
		wg.Go(func() {
			label := pl.labels[i]
			attached := i < len(pl.hot)/2
			if _, err := w.wait(ctx, label, attached, time.Time{}, 15*time.Second); err != nil {
				errs[i] = err
				return
			}
			for range b.o.pollPeriods {
				if err := sleepCtx(ctx, rand.N(pl.scan)); err != nil {
					errs[i] = err
					return
				}
				t0 := time.Now()
				var err error
				if attached {
					err = d.Detach()
				} else {
					err = d.Attach()
				}
				if err != nil {
					errs[i] = err
					return
				}
				attached = !attached
				var l latencies
				if err := b.observe(ctx, w, sw, &l, label, attached, t0, 2*pl.scan+15*time.Second, pl.scan); err != nil {
					errs[i] = err
					return
				}
				mu.Lock()
				res.merge(&l)
				done++
				b.prog.set("poll-only", "%d/%d changes (one per disk per %v scan period)", done, total, pl.scan)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.prog.set("poll-only", "")
	for _, err := range errs {
		if err != nil {
			res.err = err
			break
		}
	}
	return res
}

func (l *latencies) merge(o *latencies) {
	for _, p := range []struct{ dst, src *samples }{
		{&l.attachCtl, &o.attachCtl}, {&l.attachSig, &o.attachSig},
		{&l.detachCtl, &o.detachCtl}, {&l.detachSig, &o.detachSig},
	} {
		p.dst.d = append(p.dst.d, p.src.d...)
		p.dst.timeouts += p.src.timeouts
	}
}

// latencyRows fills sections 1 and 2.
func (b *bench) latencyRows(ev *eventsResult, poll *pollResult) {
	dbusOK, dbusWhy := b.dbus()
	measNote := b.rep.note("Latency from just before losetup runs on B (its ~5 ms included) until an answer "+
		"of A's control socket lists the disk (or no longer does): one connection asks `list --json` "+
		"every %v (poll-only: %v), and a sample is taken when the answer arrives, so it is never "+
		"shorter than what a client sees. D-Bus: until the signal reaches a client of A's bus (godbus). "+
		"Percentiles by nearest rank: with fewer than 100 samples p99 is the largest.",
		ctlPollEvents, ctlPollPoll)

	pollNote := b.rep.note("--no-uevents: the daemon finds changes only by its periodic rescan (--scan-interval, "+
		"%v here), as the old program did; it still announces a change at once when a rescan finds one. "+
		"Waiting for 20 cycles of that would take about 20 minutes, so the comparison is bounded: %d disks "+
		"on the poll-only host, each attached or detached %d times, each time at a random moment of the "+
		"scan period (so a sample is the wait for the next rescan from a random moment), running beside "+
		"the other phases for %v. Ratio: --no-uevents / default.",
		poll.scan, poll.disks, poll.periods, poll.took.Round(time.Second))
	b.rep.section(1, fmt.Sprintf("Disk attached/detached on B until A's view changes: %d cycles, default intervals %s %s",
		b.o.cycles, measNote, pollNote))
	type pair struct {
		name   string
		ev, pl *samples
		sig    bool
	}
	for _, p := range []pair{
		{name: "attach → in A's list (control socket)", ev: &ev.attachCtl, pl: &poll.attachCtl},
		{name: "attach → DiskAppeared on A's bus", ev: &ev.attachSig, pl: &poll.attachSig, sig: true},
		{name: "detach → gone from A's list", ev: &ev.detachCtl, pl: &poll.detachCtl},
		{name: "detach → DiskDisappeared on A's bus", ev: &ev.detachSig, pl: &poll.detachSig, sig: true},
	} {
		if p.sig && !dbusOK {
			b.rep.add(1, row{metric: p.name, value: dbusWhy, poll: "", target: "p50 ≤ 50 ms, p99 ≤ 150 ms", met: metPending})
			continue
		}
		n := fmt.Sprintf(" (n=%d", p.ev.n())
		if p.ev.timeouts > 0 {
			n += fmt.Sprintf(", %d timed out after %v", p.ev.timeouts, eventTimeout)
		}
		pn := fmt.Sprintf(" (n=%d)", p.pl.n())
		for _, q := range []struct {
			label  string
			pct    float64
			target time.Duration
		}{{"p50", 50, 50 * time.Millisecond}, {"p99", 99, 150 * time.Millisecond}, {"max", 100, 0}} {
			r := row{metric: p.name + "  " + q.label}
			if q.label == "p50" {
				r.metric += n + ")"
			}
			if p.ev.n() > 0 {
				r.value = fmtDur(p.ev.pct(q.pct))
			} else {
				r.value = "no samples"
			}
			if p.pl.n() > 0 {
				r.poll = fmtDur(p.pl.pct(q.pct))
				if q.label == "p50" {
					r.poll += pn
				}
				r.ratio = ratio(p.pl.pct(q.pct), p.ev.pct(q.pct))
			}
			switch {
			case q.target == 0:
				r.met = metNone
			case p.ev.n() == 0:
				r.target, r.met = "≤ "+fmtDur(q.target), metNo
			default:
				r.target = "≤ " + fmtDur(q.target)
				r.met = metLE(p.ev.pct(q.pct), q.target)
				if p.ev.timeouts > 0 && q.label != "p50" {
					r.met = metNo
				}
			}
			b.rep.add(1, r)
		}
	}

	b.rep.section(2, "A peer leaves: until its disks are gone from A's view (control socket)")
	stopRow := row{metric: fmt.Sprintf("clean stop (SIGTERM, goodbye)  p50 (n=%d)", ev.stopped.n())}
	stopMax := row{metric: "clean stop  max", target: "≤ 100.0 ms"}
	if ev.stopped.n() > 0 {
		stopRow.value = fmtDur(ev.stopped.pct(50))
		stopRow.met = metNone
		stopMax.value = fmtDur(ev.stopped.max())
		stopMax.met = metLE(ev.stopped.max(), 100*time.Millisecond)
	} else {
		stopRow.value, stopMax.value, stopMax.met = "no samples", "no samples", metNo
	}
	if ev.stopped.timeouts > 0 {
		stopMax.value += fmt.Sprintf(" (%d timed out)", ev.stopped.timeouts)
		stopMax.met = metNo
	}
	b.rep.add(2, stopRow, stopMax)
	killRow := row{metric: fmt.Sprintf("killed (SIGKILL, no goodbye)  max (n=%d)", ev.killed.n()),
		target: "≤ " + fmtDur(ev.killTarget) + " (peer timeout + 1 s)"}
	switch {
	case b.o.killCycles == 0:
		killRow.value, killRow.met = "not run (--kill-cycles 0)", metNone
	case ev.killed.n() == 0:
		killRow.value, killRow.met = "no samples", metNo
	default:
		killRow.value = fmtDur(ev.killed.max())
		if ev.killed.n() > 1 {
			killRow.value += " (min " + fmtDur(ev.killed.pct(0.0001)) + ")"
		}
		killRow.met = metLE(ev.killed.max(), ev.killTarget)
	}
	if ev.killed.timeouts > 0 {
		killRow.value += fmt.Sprintf(" (%d timed out)", ev.killed.timeouts)
		killRow.met = metNo
	}
	b.rep.add(2, killRow)
	if ev.restarted.n() > 0 {
		b.rep.add(2, row{metric: fmt.Sprintf("(re)started peer → its disks in A's list  p50 (n=%d)", ev.restarted.n()),
			value: fmtDur(ev.restarted.pct(50)), target: "", met: metNone})
	}
}
