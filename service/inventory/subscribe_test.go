package inventory

import (
	"runtime"
	"testing"

	"github.com/diskd/diskd/service/diskstate"
)

// A subscription's buffer holds pointers: an idle subscription of the
// default size must not cost what a buffer of events by value did (2.4 MB),
// and every subscriber gets the same event.
func TestSubscriptionBufferIsSmallAndShared(t *testing.T) {
	inv := New(Options{HostID: "me", Hostname: "me"})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	a := inv.Subscribe(0)
	runtime.ReadMemStats(&after)
	defer a.Close()
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("Subscribe(0) allocated %d bytes, want at most 256 KiB (%d events by pointer)", n, DefaultSubscriptionBuffer)
	}
	b := inv.Subscribe(0)
	defer b.Close()
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sda1", UUID: "u1", Label: "L"}}, nil)
	ea, eb := <-a.C(), <-b.C()
	if ea != eb || ea.Kind != DiskAppeared || ea.Disk.Label != "L" {
		t.Errorf("subscribers got %p %+v and %p, want one shared DiskAppeared event of L", ea, ea, eb)
	}
}
