package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// samples is a set of measured durations.
type samples struct {
	d        []time.Duration
	timeouts int // waits that gave up; not in d
}

func (s *samples) add(d time.Duration) { s.d = append(s.d, d) }

func (s *samples) n() int { return len(s.d) }

// record takes the outcome of a wait for a change made at t0: it adds the
// time until at when the wait succeeded, counts a timeout when it gave
// up, and returns ctx's error when the run is ending.
func (s *samples) record(ctx context.Context, t0, at time.Time, err error) error {
	switch {
	case err == nil:
		s.add(at.Sub(t0))
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		s.timeouts++
	}
	return nil
}

// pct returns the p-th percentile (0 < p ≤ 100) by the nearest-rank
// method: the smallest sample that at least p% of the samples do not
// exceed. With fewer than 100 samples, p99 is the largest one.
func (s *samples) pct(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	sorted := slices.Clone(s.d)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func (s *samples) max() time.Duration { return s.pct(100) }

// fmtDur shows a latency: milliseconds with one decimal below a second,
// seconds with two decimals below 10 s and one above.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// ratio shows how many times slower a is than b.
func ratio(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	r := float64(a) / float64(b)
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.1f×", r)
}
