package schedule

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// notifySocket is a real NOTIFY_SOCKET: a unixgram socket whose messages
// arrive on a channel, as systemd would read them.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			for line := range strings.SplitSeq(string(buf[:n]), "\n") {
				ch <- line
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return ch
}

// countTo counts messages equal to want until there are n of them or d
// has passed, and returns the count.
func countTo(ch <-chan string, want string, n int, d time.Duration) int {
	got := 0
	deadline := time.After(d)
	for got < n {
		select {
		case m := <-ch:
			if m == want {
				got++
			}
		case <-deadline:
			return got
		}
	}
	return got
}

// count returns how many messages equal to want arrive within d.
func count(ch <-chan string, want string, d time.Duration) int {
	return countTo(ch, want, math.MaxInt, d)
}

func waitFor(t *testing.T, ch <-chan string, prefix string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-ch:
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q notification within 5s", prefix)
			return ""
		}
	}
}

func start(t *testing.T, s *Scheduler) (cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Started()
	var stopped bool
	cancel = func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(cancel)
	return cancel
}

func TestWatchdogFromLoopNotFromJobs(t *testing.T) {
	ch := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // pet every 50ms
	t.Setenv("WATCHDOG_PID", "")
	var wedge atomic.Bool
	wedged := make(chan struct{}, 1)
	release := make(chan struct{})
	s := New(Options{Health: func() {
		if wedge.Load() {
			select {
			case wedged <- struct{}{}:
			default:
			}
			<-release
		}
	}})
	// A job that hangs until its deadline, like a blkid that never answers.
	hung := s.Add(Job{Name: "hung", Timeout: time.Hour, Run: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	start(t, s)
	hung.Trigger(context.Background(), 0)
	if n := countTo(ch, "WATCHDOG=1", 5, 10*time.Second); n < 5 {
		t.Fatalf("%d WATCHDOG=1 in 10s while a job hangs, want at least 5 (one every 50ms)", n)
	}
	// A wedged loop (its health check never returns) stops the pets. Once
	// the check is stuck, every earlier pet has been sent; a marker sent
	// now arrives after them, so what comes after the marker is new.
	wedge.Store(true)
	select {
	case <-wedged:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not call its health check within 10s")
	}
	c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("MARKER=1")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := countTo(ch, "MARKER=1", 1, 10*time.Second); n != 1 {
		t.Fatal("the marker did not come back within 10s")
	}
	if n := count(ch, "WATCHDOG=1", 400*time.Millisecond); n != 0 {
		t.Fatalf("%d WATCHDOG=1 while the loop is wedged, want none", n)
	}
	close(release)
	if n := countTo(ch, "WATCHDOG=1", 1, 10*time.Second); n == 0 {
		t.Fatal("no WATCHDOG=1 within 10s after the loop recovered")
	}
}

func TestStatusAndStopping(t *testing.T) {
	ch := notifySocket(t)
	var disks atomic.Int32
	s := New(Options{Watchdog: -1, StatusEvery: 20 * time.Millisecond,
		Status: func() string { return "disks: " + string(rune('0'+disks.Load())) }})
	stop := start(t, s)
	if got := waitFor(t, ch, "STATUS="); got != "STATUS=disks: 0" {
		t.Fatalf("got %q", got)
	}
	if n := count(ch, "STATUS=disks: 0", 100*time.Millisecond); n != 0 {
		t.Fatalf("an unchanged status was sent again %d times", n)
	}
	disks.Store(3)
	if got := waitFor(t, ch, "STATUS="); got != "STATUS=disks: 3" {
		t.Fatalf("got %q", got)
	}
	stop()
	waitFor(t, ch, "STOPPING=1")
}

// waitUntil polls cond for up to 10 s: long enough for a loaded machine,
// where the test's own sleeps may stretch far beyond what they ask for.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, func() (bool, string) { return cond(), what })
}

// TestRunsAndRequests checks only what load cannot change: runs are
// never closer than the period allows, requests coalesce, a delayed
// request never runs early; how soon things happen is bounded only
// generously.
func TestRunsAndRequests(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var mu sync.Mutex
	var periodicAt []time.Time
	var ondemand atomic.Int32
	gate := make(chan struct{})
	delayedAt := make(chan time.Time, 1)
	s := New(Options{Watchdog: -1})
	s.Add(Job{Name: "periodic", Every: 20 * time.Millisecond, Immediate: true, Jitter: 0.5,
		Run: func(context.Context) error {
			mu.Lock()
			periodicAt = append(periodicAt, time.Now())
			mu.Unlock()
			return nil
		}})
	od := s.Add(Job{Name: "ondemand", Run: func(ctx context.Context) error {
		n := ondemand.Add(1)
		if n == 1 {
			<-gate
		}
		if n == 3 {
			return errors.New("third run fails")
		}
		return nil
	}})
	timed := s.Add(Job{Name: "timed", Timeout: 50 * time.Millisecond, Run: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	delayed := s.Add(Job{Name: "delayed", Run: func(context.Context) error {
		select {
		case delayedAt <- time.Now():
		default:
		}
		return nil
	}})
	start(t, s)

	// The periodic job repeats, never sooner than its period shortened by
	// the jitter (at most half of 20 ms).
	waitUntil(t, "the periodic job's fifth run", func() bool { mu.Lock(); defer mu.Unlock(); return len(periodicAt) >= 5 })
	mu.Lock()
	runs := slices.Clone(periodicAt)
	mu.Unlock()
	for i := 1; i < len(runs); i++ {
		if gap := runs[i].Sub(runs[i-1]); gap < 9*time.Millisecond {
			t.Errorf("periodic runs %d and %d only %v apart, want at least 10ms (20ms less at most half)", i-1, i, gap)
		}
	}
	if ondemand.Load() != 0 {
		t.Fatal("a job without a period ran unasked")
	}
	// While run 1 is held, many requests coalesce into exactly one more
	// run: after run 2 has started, RunNow's run is run 3, the failing
	// one, and not a fourth left over from the requests.
	od.Trigger(context.Background(), 0)
	waitUntil(t, "the on-demand job's first run", func() bool { return ondemand.Load() == 1 })
	for range 10 {
		od.Trigger(context.Background(), 0)
	}
	close(gate)
	waitUntil(t, "the on-demand job's second run", func() bool { return ondemand.Load() >= 2 })
	// RunNow waits for a run that starts after it and returns its error.
	if err := od.RunNow(context.Background()); err == nil || err.Error() != "third run fails" {
		t.Fatalf("RunNow: %v (on-demand runs: %d; want the third, as requests during a run coalesce)", err, ondemand.Load())
	}
	if err := od.RunNow(context.Background()); err != nil {
		t.Fatalf("RunNow: %v", err)
	}
	// A job's deadline ends it: a job that only ends when cancelled
	// returns, with the deadline's error.
	if err := timed.RunNow(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed job: %v", err)
	}
	if st := s.Stats("ondemand"); st.Runs != 4 || st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A delayed trigger waits at least its delay.
	asked := time.Now()
	delayed.Trigger(context.Background(), 150*time.Millisecond)
	select {
	case ran := <-delayedAt:
		if d := ran.Sub(asked); d < 150*time.Millisecond {
			t.Errorf("a trigger delayed by 150ms ran after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delayed trigger did not run within 10s")
	}
}

func TestStopCancelsRunningJobs(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	s := New(Options{Watchdog: -1})
	var ended atomic.Bool
	j := s.Add(Job{Name: "long", Run: func(ctx context.Context) error {
		<-ctx.Done()
		ended.Store(true)
		return nil
	}})
	stop := start(t, s)
	j.Trigger(context.Background(), 0)
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	stop()
	if !ended.Load() || time.Since(t0) > 10*time.Second {
		t.Fatalf("stop did not cancel and wait for the running job (ended=%v)", ended.Load())
	}
}
