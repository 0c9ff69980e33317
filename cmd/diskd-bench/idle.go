package main

// Idle: a daemon with one peer and nothing changing: its
// memory, its CPU and how often it runs blkid over a window.

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/testbed"
)

type idleLab struct {
	lab     *testbed.Lab
	i, p    *testbed.Host
	d       *testbed.Daemon
	counter string // one line per blkid run of i's daemon
}

type idleResult struct {
	ran   bool
	usage procUsage
	blkid int
	// blkid runs while network namespaces came and went (mount table
	// changes that are no disk's), after the window.
	churn    int
	churnN   int
	churnErr error
}

// churnRounds is how many times the idle case adds and deletes a network
// namespace of its own after the window.
const churnRounds = 5

// blkidWrapper is the --blkid program of the idle daemon: it counts its
// runs in a file, then runs the real blkid.
const blkidWrapper = `#!/bin/sh
echo run >> '%s'
exec '%s' "$@"
`

func (b *bench) setupIdle(ctx context.Context) (*idleLab, error) {
	lab, err := b.newLab("idle")
	if err != nil {
		return nil, err
	}
	il := &idleLab{lab: lab, counter: filepath.Join(lab.Dir, "blkid-runs")}
	if il.i, _, err = addHost(lab, "i", "I-ROOT"); err != nil {
		return nil, err
	}
	if il.p, _, err = addHost(lab, "p", "P-ROOT"); err != nil {
		return nil, err
	}
	real, err := exec.LookPath("blkid")
	if err != nil {
		return nil, fmt.Errorf("blkid: %w", err)
	}
	wrapper := filepath.Join(lab.Dir, "blkid-counting")
	if err := os.WriteFile(wrapper, fmt.Appendf(nil, blkidWrapper, il.counter, real), 0o755); err != nil {
		return nil, fmt.Errorf("blkid wrapper: %w", err)
	}
	bus := b.startBus(lab, il.i)
	if il.d, err = b.start(il.i, bus, "--blkid", wrapper); err != nil {
		return nil, err
	}
	b.checkDBus(ctx, bus)
	if _, err := b.start(il.p, nil); err != nil {
		return nil, err
	}
	if err := waitSees(ctx, il.i.Socket, il.p.HostID, []string{"P-ROOT"}, 15*time.Second); err != nil {
		return nil, fmt.Errorf("i does not see p: %w", err)
	}
	return il, nil
}

// blkidRuns counts the lines of the counter file.
func blkidRuns(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("blkid counter: %w", err)
	}
	return bytes.Count(b, []byte("\n")), nil
}

func (b *bench) runIdle(ctx context.Context, il *idleLab) (idleResult, error) {
	var res idleResult
	defer b.prog.set("idle", "")
	pid := il.d.PID()
	if err := waitSees(ctx, il.i.Socket, il.p.HostID, []string{"P-ROOT"}, 15*time.Second); err != nil {
		return res, fmt.Errorf("i does not see p: %w", err)
	}
	runs0, err := blkidRuns(il.counter)
	if err != nil {
		return res, err
	}
	if res.usage, err = b.measure(ctx, "idle", pid); err != nil {
		return res, err
	}
	runs1, err := blkidRuns(il.counter)
	if err != nil {
		return res, err
	}
	res.ran = true
	res.blkid = runs1 - runs0
	res.churn, res.churnErr = b.mountChurn(ctx, il)
	res.churnN = churnRounds
	return res, nil
}

// mountChurn adds and deletes a network namespace of its own churnRounds
// times (each is a bind mount below /run/netns, which reaches every mount
// namespace on the machine, the daemon's too) and returns how many times
// the idle daemon ran blkid meanwhile.
func (b *bench) mountChurn(ctx context.Context, il *idleLab) (int, error) {
	b.prog.set("idle", "mount table changes that are no disk's")
	before, err := blkidRuns(il.counter)
	if err != nil {
		return 0, err
	}
	name := il.lab.ID + "-churn"
	b.onCleanup("namespace "+name, func() error {
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			return nil
		}
		return exec.Command("ip", "netns", "del", name).Run()
	})
	for range churnRounds {
		for _, op := range []string{"add", "del"} {
			if out, err := exec.Command("ip", "netns", op, name).CombinedOutput(); err != nil {
				return 0, fmt.Errorf("ip netns %s %s: %w: %s", op, name, err, bytes.TrimSpace(out))
			}
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return 0, err
			}
		}
	}
	if err := sleepCtx(ctx, 500*time.Millisecond); err != nil { // a triggered scan would be done
		return 0, err
	}
	after, err := blkidRuns(il.counter)
	if err != nil {
		return 0, err
	}
	return after - before, nil
}

func (b *bench) idleRows(res idleResult) {
	b.rep.section(4, "Idle: one daemon, one peer, nothing changes "+b.rep.note(
		"The idle daemon's --blkid is a wrapper script that appends a line to a file for each run, then "+
			"execs the real blkid. With the default --scan-interval of %v, a window of W seconds holds at "+
			"most ⌈W/%v⌉ safety rescans. CPU in 10 ms ticks (utime+stime).",
		daemon.DefaultScanInterval, daemon.DefaultScanInterval))
	if !res.ran {
		b.rep.add(4, notMeasured("idle case"))
		return
	}
	u := res.usage
	win := u.window.Round(time.Second)
	cpuPct := u.cpuPct()
	// The window overshoots its length by the time it takes to read /proc:
	// round that off, or 60.001 s would allow two rescans every 60 s.
	safety := int(math.Ceil(u.window.Round(100*time.Millisecond).Seconds() / daemon.DefaultScanInterval.Seconds()))
	b.rep.add(4,
		row{metric: "daemon memory (VmRSS)", value: mb(u.rssMax), target: "≤ 16 MB", met: metLE(u.rssMax, 16e6)},
		row{metric: fmt.Sprintf("daemon CPU over %v", win), value: fmt.Sprintf("%.3f %% (%v)", cpuPct, u.cpu),
			target: "≤ 0.1 %", met: metLE(cpuPct, 0.1)},
		row{metric: fmt.Sprintf("blkid runs in %v", win), value: fmt.Sprint(res.blkid),
			target: fmt.Sprintf("≤ %d (safety rescans)", safety), met: metLE(res.blkid, safety)},
	)
	churn := row{metric: fmt.Sprintf("blkid runs while %d network namespaces come and go %s", res.churnN,
		b.rep.note("After the window, the benchmark adds and deletes a network namespace of its own %d times: "+
			"each is a mount below /run/netns that reaches the daemon's mount table, as containers and "+
			"other namespaces do on a real machine, and changes no disk's mount points.", res.churnN)),
		target: "0", met: metLE(res.churn, 0)}
	if res.churnErr != nil {
		churn.value, churn.met = "not measured: "+res.churnErr.Error(), metNone
	} else {
		churn.value = fmt.Sprint(res.churn)
	}
	b.rep.add(4, churn)
}
