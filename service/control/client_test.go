package control_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
	"github.com/diskd/diskd/service/testbed"
)

func TestClient(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)
	ctx := context.Background()

	for _, tc := range []struct {
		name, line string
		wantErr    string
		remote     bool
	}{
		{"blank line is not sent", "   ", "", false},
		{"line break refused", "list\nstatus", "a request must be a single line", false},
		{"too long refused", strings.Repeat("a", control.MaxLineBytes+1), "request line too long (more than 4096 bytes)", false},
		{"remote error", "bogus", `unknown command "bogus"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := c.Do(ctx, tc.line)
			var re *control.RemoteError
			switch {
			case tc.wantErr == "" && (err != nil || lines != nil):
				t.Errorf("Do = %q, %v; want nothing", lines, err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr || errors.As(err, &re) != tc.remote):
				t.Errorf("Do = %v; want %q (remote %v)", err, tc.wantErr, tc.remote)
			}
		})
	}
	// The connection is still usable after all of that.
	if lines, err := c.Do(ctx, "peers"); err != nil || len(lines) != 2 {
		t.Fatalf("peers = %q, %v", lines, err)
	}

	// A context that is already done sends nothing and keeps the connection.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Do(done, "status"); !errors.Is(err, context.Canceled) {
		t.Errorf("Do(cancelled) = %v", err)
	}
	if _, err := c.Do(ctx, "status"); err != nil {
		t.Fatalf("status after a cancelled Do: %v", err)
	}

	// quit: OK, then the connection is gone.
	if lines, err := c.Do(ctx, "quit"); err != nil || lines != nil {
		t.Fatalf("quit = %q, %v", lines, err)
	}
	var re *control.RemoteError
	if _, err := c.Do(ctx, "status"); err == nil || errors.As(err, &re) {
		t.Errorf("Do after quit = %v, want a connection error", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestClientCancelMidRequest: ctx ends while the daemon is busy; the
// connection is abandoned, since the late answer would be taken for the
// next request's.
func TestClientCancelMidRequest(t *testing.T) {
	release := make(chan struct{})
	ts := controltest.Start(t, &control.Server{Actions: &blockingActions{Actions: controltest.NewActions(), release: release}})
	defer close(release)
	c := dialClient(t, ts.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, "refresh"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want the deadline", err)
	}
	if _, err := c.Do(context.Background(), "status"); err == nil || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("Do after a cancelled request = %v, want the connection abandoned", err)
	}
}

// blockingActions blocks Refresh until release is closed or ctx ends.
type blockingActions struct {
	*controltest.Actions
	release chan struct{}
}

func (a *blockingActions) Refresh(ctx context.Context) error {
	select {
	case <-a.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestServeStopsDuringAction: stopping the server cancels an action in
// progress instead of waiting for it.
func TestServeStopsDuringAction(t *testing.T) {
	ts := controltest.Start(t, &control.Server{Actions: &blockingActions{Actions: controltest.NewActions(),
		release: make(chan struct{})}})
	r := dialRaw(t, ts.Path)
	r.send("refresh\n")
	time.Sleep(50 * time.Millisecond) // let the server start the refresh
	start := time.Now()
	ts.Stop(t)
	// The action never ends by itself: only its cancellation lets Serve
	// return at all; the bound is for a clear failure before the test's.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Serve took %v to stop during an action", d)
	}
	// The refresh may or may not have been answered before the connection
	// was closed; either way the connection ends.
	if l, err := r.readLine(); err == nil {
		if l != "ERR refresh failed: context canceled" {
			t.Errorf("got %q", l)
		}
		r.expectEOF()
	}
}

// TestClientGoneBeforeAnswer: a client that hangs up before its answer is
// written (its own timeout, a ^C) is logged at debug level, not as a
// warning, and the server goes on serving.
func TestClientGoneBeforeAnswer(t *testing.T) {
	release := make(chan struct{})
	logged := &controltest.LockedBuffer{}
	ts := controltest.Start(t, &control.Server{
		Actions: &blockingActions{Actions: controltest.NewActions(), release: release},
		Log:     slog.New(slog.NewTextHandler(logged, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	r := dialRaw(t, ts.Path)
	r.send("refresh\n")
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(logged.String(), "refresh"), "the server has not logged the refresh:\n" + logged.String()
	})
	r.c.Close()
	close(release)
	testbed.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(logged.String(), "client gone before its answer"), "no debug line for the client gone:\n" + logged.String()
	})
	if strings.Contains(logged.String(), "level=WARN") {
		t.Errorf("a client that hung up was logged as a warning:\n%s", logged.String())
	}
	dialRaw(t, ts.Path).ok("status\n")
}
