package main

// Scale: one daemon hears many simulated peers (a load
// generator on a host of its own sends real datagrams); its CPU and memory
// over a window, and how long listing every disk takes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/testbed"
)

type scaleLab struct {
	lab    *testbed.Lab
	s, gen *testbed.Host
	bus    *dbustest.Bus
	d      *testbed.Daemon
}

type scaleResult struct {
	ran        bool
	peers      int // held at the end of the window
	disks      int
	usage      procUsage
	in         uint64 // datagrams received in the window
	dropped    uint64
	listTimes  samples
	listDisks  int
	listBytes  int
	busTimes   samples
	busDisks   int
	busErr     error
	busctl     samples // busctl call -q List
	busctlBase samples // busctl call -q of a bus method that returns at once
	busctlErr  error
	loadgenOut string
	// The store's cost: the file after the window, and the daemon's CPU
	// over a second window with --state-dir none (no file; the same
	// load).
	storeBytes int64
	storeErr   error
	noStore    procUsage
	noStoreErr error
}

func (b *bench) setupScale(ctx context.Context) (*scaleLab, error) {
	lab, err := b.newLab("scale")
	if err != nil {
		return nil, err
	}
	sl := &scaleLab{lab: lab}
	if sl.s, _, err = addHost(lab, "s", "S-ROOT"); err != nil {
		return nil, err
	}
	if sl.gen, _, err = addHost(lab, "gen"); err != nil {
		return nil, err
	}
	sl.bus = b.startBus(lab, sl.s)
	if sl.d, err = b.start(sl.s, sl.bus); err != nil {
		return nil, err
	}
	b.checkDBus(ctx, sl.bus)
	return sl, nil
}

// loadgenProc is a running load generator.
type loadgenProc struct {
	cmd   *exec.Cmd
	out   bytes.Buffer
	done  chan struct{}
	err   error
	grace time.Duration // from SIGTERM to SIGKILL
}

func startLoadgen(h *testbed.Host, c loadgenConfig) (*loadgenProc, error) {
	return startGenerator(h, 5*time.Second, loadgenArgs(c)...)
}

// startGenerator runs this program on h with args (a load generator's
// command and flags); stop gives it grace to exit.
func startGenerator(h *testbed.Host, grace time.Duration, args ...string) (*loadgenProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	p := &loadgenProc{done: make(chan struct{}), grace: grace}
	p.cmd = h.Command(exe, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the load generator by its PID (SIGTERM, SIGKILL after its
// grace) and returns what it printed.
func (p *loadgenProc) stop() (string, error) {
	testbed.Terminate(p.cmd.Process, p.done, p.grace)
	out := strings.TrimSpace(p.out.String())
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.ExitCode() == 0) {
		return out, fmt.Errorf("load generator: %w: %s", p.err, out)
	}
	return out, nil
}

func (b *bench) runScale(ctx context.Context, sl *scaleLab) (scaleResult, error) {
	var res scaleResult
	defer b.prog.set("scale", "")
	cfg := loadgenConfig{peers: b.o.peers, disks: b.o.disksPerPeer, interval: daemon.DefaultAnnounceInterval,
		group: daemon.DefaultGroup, iface: testbed.Interface}
	lg, err := startLoadgen(sl.gen, cfg)
	if err != nil {
		return res, err
	}
	var stopOnce sync.Once
	var genErr error
	stopGen := func() error {
		stopOnce.Do(func() { res.loadgenOut, genErr = lg.stop() })
		return genErr
	}
	b.onCleanup("load generator", stopGen)
	pid := sl.d.PID()

	// Every peer announces once per interval: all are known after one.
	deadline := time.Now().Add(cfg.interval + 20*time.Second)
	for {
		st, err := status(sl.s.Socket)
		if err == nil && st.Peers >= cfg.peers {
			break
		}
		if err == nil {
			b.prog.set("scale", "hearing %d/%d peers", st.Peers, cfg.peers)
		}
		select {
		case <-lg.done:
			return res, fmt.Errorf("load generator exited: %v: %s", lg.err, lg.out.String())
		default:
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("s heard %d of %d peers after %v (last error %v)", st.Peers, cfg.peers, cfg.interval+20*time.Second, err)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return res, err
		}
	}
	// Let the flood of "appeared" events (and their log lines) pass.
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return res, err
	}

	st0, err := status(sl.s.Socket)
	if err != nil {
		return res, err
	}
	if res.usage, err = b.measure(ctx, "scale", pid); err != nil {
		return res, err
	}
	st1, err := status(sl.s.Socket)
	if err != nil {
		return res, err
	}
	res.ran = true
	res.peers, res.disks = st1.Peers, st1.Disks
	res.in, res.dropped = st1.PacketsIn-st0.PacketsIn, st1.PacketsDropped-st0.PacketsDropped

	// list --json of everything, as a client does it: connect, ask, read
	// up to OK.
	for i := range b.o.listRuns {
		b.prog.set("scale", "list --json %d/%d", i+1, b.o.listRuns)
		t := time.Now()
		c, err := dialCtl(sl.s.Socket, 5*time.Second)
		if err != nil {
			return res, err
		}
		_, n, err := c.do("list --json", 30*time.Second, false)
		took := time.Since(t)
		c.close()
		if err != nil {
			return res, err
		}
		res.listTimes.add(took)
		res.listBytes = n
	}
	ds, err := listDisks(sl.s.Socket, "")
	if err != nil {
		return res, err
	}
	res.listDisks = len(ds)

	if ok, _ := b.dbus(); ok && sl.bus != nil {
		res.busErr = b.busList(ctx, sl.bus, &res)
	}
	b.prog.set("scale", "the store's file, then the daemon without it")
	if fi, err := os.Stat(filepath.Join(sl.s.StateDir, "diskd.db")); err != nil {
		res.storeErr = err
	} else {
		res.storeBytes = fi.Size()
	}
	res.noStoreErr = b.scaleWithoutStore(ctx, sl, cfg, lg, &res)
	if err := stopGen(); err != nil {
		b.prog.logf("%v", err)
	}
	return res, nil
}

// scaleWithoutStore restarts s's daemon with --state-dir none and measures
// its CPU once more under the same load.
func (b *bench) scaleWithoutStore(ctx context.Context, sl *scaleLab, cfg loadgenConfig, lg *loadgenProc, res *scaleResult) error {
	if err := sl.d.Stop(); err != nil {
		return err
	}
	d, err := b.start(sl.s, nil, "--state-dir", "none")
	if err != nil {
		return err
	}
	sl.d = d
	deadline := time.Now().Add(cfg.interval + 20*time.Second)
	for {
		st, err := status(sl.s.Socket)
		if err == nil && st.Peers >= cfg.peers {
			break
		}
		select {
		case <-lg.done:
			return fmt.Errorf("load generator exited: %v", lg.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("without the store, s heard %d of %d peers (last error %v)", st.Peers, cfg.peers, err)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	res.noStore, err = b.measure(ctx, "scale without the store", d.PID())
	return err
}

func (b *bench) busList(ctx context.Context, bus *dbustest.Bus, res *scaleResult) error {
	c, err := connectBus(bus.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range b.o.listRuns {
		b.prog.set("scale", "D-Bus ListTable %d/%d", i+1, b.o.listRuns)
		took, n, err := listOverBus(ctx, c)
		if err != nil {
			return err
		}
		res.busTimes.add(took)
		res.busDisks = n
	}
	if _, err := exec.LookPath("busctl"); err != nil {
		res.busctlErr = err
		return nil
	}
	for i := range b.o.listRuns {
		b.prog.set("scale", "busctl List %d/%d", i+1, b.o.listRuns)
		took, err := busctlCall(ctx, bus.Address, busName, busPath, busInterface, "List")
		if err != nil {
			res.busctlErr = err
			return nil
		}
		res.busctl.add(took)
		if took, err = busctlCall(ctx, bus.Address, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus", "GetId"); err == nil {
			res.busctlBase.add(took)
		}
	}
	return nil
}

// mb shows bytes in megabytes (10^6), the unit of the targets.
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func (b *bench) scaleRows(res scaleResult) {
	want := b.o.peers * b.o.disksPerPeer
	b.rep.section(3, fmt.Sprintf("Scale: one daemon hears %s peers × %d disks, each announcing every %v %s",
		thousands(int64(b.o.peers)), b.o.disksPerPeer, daemon.DefaultAnnounceInterval,
		b.rep.note("A load generator on a host of its own plays the peers: its own host id, boot id and "+
			"growing sequence number for each, announcements encoded by service/wire at the link's payload "+
			"budget (16 disks: 2 datagrams) and sent by service/multicast's socket, the sends spread evenly. "+
			"CPU: utime+stime of the daemon from /proc/PID/stat (10 ms ticks) over the window; memory: "+
			"VmRSS, the largest of one sample a second. list --json: connect, ask, read to OK; "+
			"D-Bus ListTable (as diskctl lists): call to decoded disks, godbus. %s", res.loadgenOut)))
	if !res.ran {
		b.rep.add(3, notMeasured("scale case"))
		return
	}
	b.rep.add(3,
		row{metric: "peers and disks held at the end of the window", value: fmt.Sprintf("%s peers, %s disks", thousands(int64(res.peers)), thousands(int64(res.disks))),
			target: fmt.Sprintf("%s peers, %s disks", thousands(int64(b.o.peers)), thousands(int64(want+1))), met: metLE(b.o.peers, res.peers)},
		row{metric: "datagrams received (dropped) during the window", value: fmt.Sprintf("%.1f/s (%d)", float64(res.in)/res.usage.window.Seconds(), res.dropped),
			met: metNone},
	)
	b.rep.add(3, usageRows(res.usage)...)
	cpuPct := res.usage.cpuPct()
	switch {
	case res.noStoreErr != nil:
		b.rep.add(3, row{metric: "daemon CPU, the store's share", value: "not measured: " + res.noStoreErr.Error(), target: "≤ 1 %", met: metNo})
	default:
		noPct := res.noStore.cpuPct()
		b.rep.add(3, row{metric: fmt.Sprintf("daemon CPU with the store (bbolt file) minus --state-dir none %s",
			b.rep.note("The same load, one window after the other: the daemon restarted with --state-dir none "+
				"(memory only, no file) measured %.2f %% of one core over %v.", noPct, res.noStore.window.Round(time.Second))),
			value: fmt.Sprintf("%+.2f %% of one core", cpuPct-noPct), target: "≤ 1 %", met: metLE(cpuPct-noPct, 1)})
	}
	if res.storeErr != nil {
		b.rep.add(3, row{metric: "store file", value: "not measured: " + res.storeErr.Error(), target: "≤ 32 MB", met: metNo})
	} else {
		b.rep.add(3, row{metric: fmt.Sprintf("store file (diskd.db) remembering %s disks", thousands(int64(res.disks))),
			value: mb(res.storeBytes), target: "≤ 32 MB", met: metLE(res.storeBytes, 32e6)})
	}
	lr := row{metric: fmt.Sprintf("list --json, %s disks (%.1f MB), control socket  p50 (n=%d)", thousands(int64(res.listDisks)),
		float64(res.listBytes)/1e6, res.listTimes.n()),
		value: fmtDur(res.listTimes.pct(50)), target: "≤ 50.0 ms", met: metLE(res.listTimes.pct(50), 50*time.Millisecond)}
	b.rep.add(3, lr, row{metric: "list --json  max", value: fmtDur(res.listTimes.max()), met: metNone})
	ok, why := b.dbus()
	switch {
	case !ok:
		b.rep.add(3, row{metric: "D-Bus ListTable, every disk", value: why, target: "≤ 100.0 ms", met: metPending})
	case res.busErr != nil:
		b.rep.add(3, row{metric: "D-Bus ListTable, every disk", value: "failed: " + res.busErr.Error(), target: "≤ 100.0 ms", met: metNo})
	default:
		b.rep.add(3,
			row{metric: fmt.Sprintf("D-Bus ListTable, %s disks, as diskctl  p50 (n=%d)", thousands(int64(res.busDisks)), res.busTimes.n()),
				value: fmtDur(res.busTimes.pct(50)), target: "≤ 100.0 ms", met: metLE(res.busTimes.pct(50), 100*time.Millisecond)},
			row{metric: "D-Bus ListTable, as diskctl  max", value: fmtDur(res.busTimes.max()), met: metNone})
		switch {
		case res.busctlErr != nil:
			b.rep.add(3, row{metric: "D-Bus List, busctl -q", value: "not measured: " + res.busctlErr.Error(), met: metNone})
		case res.busctl.n() > 0:
			b.rep.add(3, row{metric: fmt.Sprintf("D-Bus List, busctl call -q (sd-bus)  p50 (n=%d) %s", res.busctl.n(),
				b.rep.note("busctl call -q receives the reply without parsing its payload: the time is the daemon's "+
					"(and dbus-daemon's), not a Go client's decoding. It includes starting busctl: a call of "+
					"org.freedesktop.DBus.GetId the same way takes %s (p50).", fmtDur(res.busctlBase.pct(50)))),
				value: fmtDur(res.busctl.pct(50)), target: "≤ 100.0 ms", met: metLE(res.busctl.pct(50), 100*time.Millisecond)})
		}
	}
}
