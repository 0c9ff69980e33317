package main

// "diskd-bench gobench [FILE]" turns the output of `go test -bench` (as
// make bench runs it: -benchmem -cpu 1) into a table with their
// targets. It exits non-zero only when the output holds no benchmark or a
// FAIL, that is when the benchmarks could not run.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// gobenchTarget is a target on one metric of one benchmark: at least
// min, or at most max when max is set.
type gobenchTarget struct {
	bench    string // name without the -N suffix
	unit     string
	min, max float64
	text     string
}

func (t gobenchTarget) met(v float64) bool {
	if t.max > 0 {
		return v <= t.max
	}
	return v >= t.min
}

func gobenchTargets() []gobenchTarget {
	return []gobenchTarget{
		{bench: "BenchmarkHandleAnnounce16", unit: "announcements/s", min: 200000, text: "≥ 200,000/s on one core"},
		// The same targets as the system benchmark's, in process.
		{bench: "BenchmarkListJSON16000", unit: "ns/op", max: 50e6, text: "≤ 50 ms (as list --json)"},
		{bench: "BenchmarkList16000", unit: "ns/op", max: 100e6, text: "≤ 100 ms (as D-Bus List)"},
	}
}

// benchLine is one parsed result line.
type benchLine struct {
	pkg     string
	name    string
	metrics map[string]float64
	units   []string // in order of appearance
}

func parseGobench(r io.Reader) (lines []benchLine, cpu string, failed bool, err error) {
	sc := bufio.NewScanner(r)
	pkg := ""
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "pkg: "):
			pkg = strings.TrimPrefix(l, "pkg: ")
		case strings.HasPrefix(l, "cpu: ") && cpu == "":
			cpu = strings.TrimPrefix(l, "cpu: ")
		case strings.HasPrefix(l, "FAIL"), strings.HasPrefix(l, "--- FAIL"):
			failed = true
		case strings.HasPrefix(l, "Benchmark"):
			f := strings.Fields(l)
			if len(f) < 4 || len(f)%2 != 0 {
				continue // a benchmark's own log line
			}
			if _, err := strconv.Atoi(f[1]); err != nil {
				continue
			}
			bl := benchLine{pkg: pkg, name: f[0], metrics: map[string]float64{}}
			if i := strings.LastIndexByte(bl.name, '-'); i > 0 {
				if _, err := strconv.Atoi(bl.name[i+1:]); err == nil {
					bl.name = bl.name[:i]
				}
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					continue
				}
				bl.metrics[f[i+1]] = v
				bl.units = append(bl.units, f[i+1])
			}
			lines = append(lines, bl)
		}
	}
	return lines, cpu, failed, sc.Err()
}

func runGobench(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	in := stdin
	switch len(args) {
	case 0:
	case 1:
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintln(stderr, "diskd-bench gobench:", err)
			return 1
		}
		defer f.Close()
		in = f
	default:
		fmt.Fprintln(stderr, "usage: diskd-bench gobench [FILE]")
		return 2
	}
	lines, cpu, failed, err := parseGobench(in)
	if err != nil {
		fmt.Fprintln(stderr, "diskd-bench gobench:", err)
		return 1
	}
	rep := newReport()
	rep.noPoll = true
	rep.headf("Go benchmarks (go test -bench -benchmem -cpu 1: one core, garbage collection included)  CPU: %s", cpu)
	// After the five sections of the simulated hosts' table.
	rep.section(6, "In process: datagrams, receive path into 1,000 peers (decode, reassemble, apply), 16,001-disk lists")
	for _, bl := range lines {
		r := row{metric: shortPkg(bl.pkg) + "." + strings.TrimPrefix(bl.name, "Benchmark"), met: metNone}
		var parts []string
		for _, u := range []string{"ns/op", "announcements/s", "B/op", "allocs/op"} {
			if v, ok := bl.metrics[u]; ok {
				parts = append(parts, fmtMetric(v, u))
			}
		}
		r.value = strings.Join(parts, ", ")
		for _, t := range gobenchTargets() {
			if v, ok := bl.metrics[t.unit]; ok && t.bench == bl.name {
				r.target, r.met = t.text, metNo
				if t.met(v) {
					r.met = metYes
				}
			}
		}
		rep.add(6, r)
	}
	fmt.Fprintln(stdout)
	rep.write(stdout)
	switch {
	case failed:
		fmt.Fprintln(stderr, "diskd-bench gobench: the Go benchmarks failed (see above)")
		return 1
	case len(lines) == 0:
		fmt.Fprintln(stderr, "diskd-bench gobench: no benchmark results in the input")
		return 1
	}
	return 0
}

func shortPkg(pkg string) string {
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		return pkg[i+1:]
	}
	return pkg
}

func fmtMetric(v float64, unit string) string {
	switch unit {
	case "ns/op":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.1f ms/op", v/1e6)
		case v >= 10000:
			return fmt.Sprintf("%.1f µs/op", v/1000)
		}
		return fmt.Sprintf("%.0f ns/op", v)
	case "announcements/s":
		return fmt.Sprintf("%s announcements/s", thousands(int64(v)))
	}
	return fmt.Sprintf("%s %s", thousands(int64(v)), unit)
}

// thousands writes n with commas: 200,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
