package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/diskd/diskd/service/store"
)

// The daemon's use: open the state directory (exit 1 when another diskd
// holds it), hand the store what it learns, answer history and find from
// it, close on the way out.
func Example() {
	dir, err := os.MkdirTemp("", "diskd-state-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := store.Open(ctx, dir, store.Options{})
	if errors.Is(err, store.ErrLocked) {
		fmt.Println(err) // and exit with status 1
		return
	} else if err != nil {
		fmt.Println(err)
		return
	}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	usb := store.DiskInfo{HostID: "9cd3013e", Hostname: "beta", Device: "/dev/sdb1",
		Label: "BACKUP-2019", Type: "ext4", UUID: "5e3c88b0-9350-4b38-a025-c51e4c641d99"}
	_ = s.Seen(t0, usb)                                      // an announcement from beta
	_ = s.Gone(t0.Add(time.Hour), store.ReasonDetached, usb) // beta: unplugged
	usb.HostID, usb.Hostname, usb.Device = "fc54e00d", "alpha", "/dev/sdc1"
	_ = s.Seen(t0.Add(2*time.Hour), usb) // plugged into alpha
	_ = s.Heard(store.Peer{HostID: "9cd3013e", Hostname: "beta", Addr: "10.77.0.2:4277",
		LastHeard: t0.Add(2 * time.Hour), Mark: store.Mark{BootID: "b1", Seq: 42, SentAt: t0.Add(2 * time.Hour)}})
	_ = s.Close()

	// After a restart: the disk that was present is gone for "restart",
	// and its history and the peer's replay mark are still there.
	s, _ = store.Open(ctx, dir, store.Options{})
	defer s.Close()
	for _, d := range s.Find("backup") {
		fmt.Println(d.Label, d.Hostname, d.Device, d.Present, d.GoneReason)
	}
	for _, h := range s.History("backup-2019") {
		fmt.Println(h.Hostname, h.Device, h.From.Format("15:04"), h.Until.Format("15:04"), h.Reason)
	}
	for _, p := range s.Peers() {
		fmt.Println(p.Hostname, p.Mark.BootID, p.Mark.Seq)
	}
	// Output:
	// BACKUP-2019 alpha /dev/sdc1 false restart
	// alpha /dev/sdc1 11:00 11:00 restart
	// beta /dev/sdb1 09:00 09:00 detached
	// beta b1 42
}
