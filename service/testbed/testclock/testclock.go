// Package testclock is a settable clock for tests: a time that stands
// still until the test moves it, for code that takes a Now func. It is
// safe for concurrent use, so the code under test may read it from its
// own goroutines while the test moves it.
//
// It is not a fake of timers or tickers: code that sleeps or waits on
// time.After still waits in real time. It imports nothing of diskd, so
// that the tests of any package (inventory's own included) can use it.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that changes only when Add or Set moves it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; it has the signature of time.Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
