package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/testbed"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 for every architecture it exports to user space.
const userHZ = 100

// cpuTime returns utime+stime of a process (all its threads, also the ones
// that have exited) from /proc/PID/stat, in 1/userHZ-second ticks.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// parseStatCPU reads fields 14 (utime) and 15 (stime) of a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may contain
// spaces and parentheses, so fields are counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat line without ')': %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat line too short: %q", b)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat field %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// machine describes the machine the run is on, for the table's head.
type machine struct {
	CPU     string
	CPUs    int // usable by this process
	Kernel  string
	LoadAvg string // 1, 5 and 15 minutes
}

func describeMachine() machine {
	m := machine{CPU: "unknown CPU", CPUs: runtime.NumCPU(), LoadAvg: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// load1 returns the 1-minute load average, or -1.
func load1() float64 {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// procUsage is what a daemon used over a measuring window.
type procUsage struct {
	window time.Duration // how long the window really lasted
	cpu    time.Duration // utime+stime over it
	rssMax int64         // the largest VmRSS seen, sampled once a second
}

// cpuPct is the CPU time as a percentage of one core over the window.
func (u procUsage) cpuPct() float64 { return 100 * u.cpu.Seconds() / u.window.Seconds() }

// usageRows are the daemon's CPU and memory rows of a case at scale (the
// scale and gossip cases share their targets).
func usageRows(u procUsage) []row {
	return []row{
		{metric: fmt.Sprintf("daemon CPU over %v", u.window.Round(time.Second)), value: fmt.Sprintf("%.2f %% of one core", u.cpuPct()),
			target: "≤ 5 %", met: metLE(u.cpuPct(), 5)},
		{metric: "daemon memory (VmRSS)", value: mb(u.rssMax), target: "≤ 64 MB", met: metLE(u.rssMax, 64e6)},
	}
}

// measure watches process pid for b.o.window, showing progress as phase.
func (b *bench) measure(ctx context.Context, phase string, pid int) (procUsage, error) {
	var u procUsage
	cpu0, err := cpuTime(pid)
	if err != nil {
		return u, err
	}
	t0 := time.Now()
	for time.Since(t0) < b.o.window {
		if r, err := testbed.RSS(pid); err == nil {
			u.rssMax = max(u.rssMax, r)
		}
		b.prog.set(phase, "window %.0f/%.0f s", time.Since(t0).Seconds(), b.o.window.Seconds())
		if err := sleepCtx(ctx, min(time.Second, b.o.window-time.Since(t0))); err != nil {
			return u, err
		}
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return u, err
	}
	u.window = time.Since(t0)
	if r, err := testbed.RSS(pid); err == nil {
		u.rssMax = max(u.rssMax, r)
	}
	u.cpu = cpu1 - cpu0
	return u, nil
}
