package testclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed/testclock"
)

// TestClock: the time stands still until Add moves it, also while others
// read it at once.
func TestClock(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	c := testclock.New(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c.Now()
			}
		})
	}
	for range 100 {
		c.Add(time.Second)
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(100*time.Second); !got.Equal(want) {
		t.Errorf("Now after 100 × Add(1s) = %v, want %v", got, want)
	}
}
