package schedule

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// count returns how many messages equal to want arrive within d.
func count(ch <-chan string, want string, d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case m := <-ch:
			if m == want {
				n++
			}
		case <-deadline:
			return n
		}
	}
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
	release := make(chan struct{})
	s := New(Options{Health: func() {
		if wedge.Load() {
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
	if n := count(ch, "WATCHDOG=1", 500*time.Millisecond); n < 5 {
		t.Fatalf("%d WATCHDOG=1 in 500ms while a job hangs, want at least 5", n)
	}
	// A wedged loop (its health check never returns) stops the pets.
	wedge.Store(true)
	count(ch, "WATCHDOG=1", 100*time.Millisecond) // pets already on their way
	if n := count(ch, "WATCHDOG=1", 400*time.Millisecond); n != 0 {
		t.Fatalf("%d WATCHDOG=1 while the loop is wedged, want none", n)
	}
	close(release)
	if n := count(ch, "WATCHDOG=1", 300*time.Millisecond); n == 0 {
		t.Fatal("no WATCHDOG=1 after the loop recovered")
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

func TestRunsAndRequests(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var periodic, ondemand atomic.Int32
	gate := make(chan struct{})
	s := New(Options{Watchdog: -1})
	s.Add(Job{Name: "periodic", Every: 20 * time.Millisecond, Immediate: true, Jitter: 0.5,
		Run: func(context.Context) error { periodic.Add(1); return nil }})
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
	start(t, s)

	time.Sleep(200 * time.Millisecond)
	if n := periodic.Load(); n < 4 || n > 20 {
		t.Errorf("periodic job ran %d times in 200ms at 20ms (jitter only shortens), want 4..20", n)
	}
	if ondemand.Load() != 0 {
		t.Fatal("a job without a period ran unasked")
	}
	// While run 1 is held, many requests coalesce into exactly one more run.
	od.Trigger(context.Background(), 0)
	for ondemand.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 10 {
		od.Trigger(context.Background(), 0)
	}
	close(gate)
	time.Sleep(100 * time.Millisecond)
	if n := ondemand.Load(); n != 2 {
		t.Fatalf("on-demand job ran %d times, want 2 (requests during a run coalesce)", n)
	}
	// RunNow waits for a run that starts after it and returns its error.
	if err := od.RunNow(context.Background()); err == nil || err.Error() != "third run fails" {
		t.Fatalf("RunNow: %v", err)
	}
	if err := od.RunNow(context.Background()); err != nil {
		t.Fatalf("RunNow: %v", err)
	}
	// A job's deadline ends it.
	t0 := time.Now()
	if err := timed.RunNow(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed job: %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("timed job took %v", d)
	}
	if st := s.Stats("ondemand"); st.Runs != 4 || st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A delayed trigger waits.
	before := ondemand.Load()
	od.Trigger(context.Background(), 150*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if ondemand.Load() != before {
		t.Fatal("delayed trigger ran early")
	}
	time.Sleep(300 * time.Millisecond)
	if ondemand.Load() != before+1 {
		t.Fatal("delayed trigger did not run")
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
	if !ended.Load() || time.Since(t0) > time.Second {
		t.Fatalf("stop did not cancel and wait for the running job (ended=%v)", ended.Load())
	}
}
