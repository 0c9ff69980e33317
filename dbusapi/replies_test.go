package dbusapi

import (
	"context"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// TestRepliesShared: calls share one reply until the inventory changes
// (invalidate) or the reply is older than its maximum age.
func TestRepliesShared(t *testing.T) {
	inv := newInv("h", "alpha")
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/a", UUID: "1"}}, nil)
	r := newReplies(inv)
	r.maxAge = time.Hour
	get := func() *snapshot {
		t.Helper()
		var s *snapshot
		if derr := r.with(context.Background(), func(sn *snapshot) { s = sn }); derr != nil {
			t.Fatal(derr)
		}
		return s
	}
	first := get()
	if d := first.listDicts(); len(d) != 1 {
		t.Fatalf("List gives %d disks", len(d))
	}
	if get() != first || &get().listDicts()[0] != &first.listDicts()[0] {
		t.Fatal("a second call built its own reply")
	}
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/a", UUID: "1"}, {Device: "/dev/b", UUID: "2"}}, nil)
	if get() != first {
		t.Fatal("rebuilt without an invalidate or the maximum age")
	}
	r.invalidate()
	if s := get(); s == first || len(s.listDicts()) != 2 || len(s.find("2")) != 1 {
		t.Fatal("not rebuilt after invalidate")
	}
	r.maxAge = time.Nanosecond
	s := get()
	time.Sleep(time.Millisecond)
	if get() == s {
		t.Fatal("not rebuilt after the maximum age")
	}
}

// TestRepliesBusy: a call that cannot get its reply in time is answered
// org.diskd.Error.Busy, and one whose session ends is told so.
func TestRepliesBusy(t *testing.T) {
	r := newReplies(newInv("h", "alpha"))
	r.wait = 50 * time.Millisecond
	r.build <- struct{}{} // someone else is building
	start := time.Now()
	derr := r.with(context.Background(), func(*snapshot) { t.Error("ran without the semaphore") })
	if derr == nil || derr.Name != ErrorBusy {
		t.Fatalf("got %v, want %s", derr, ErrorBusy)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("gave up after %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.wait = time.Hour
	if derr := r.with(ctx, func(*snapshot) {}); derr == nil || derr.Name != ErrorFailed {
		t.Fatalf("after the session ended: %v", derr)
	}
	<-r.build
	if derr := r.with(context.Background(), func(*snapshot) {}); derr != nil {
		t.Fatal(derr)
	}
}
