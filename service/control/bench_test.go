package control

// Benchmarks of issue 7's scale case on the control socket: `list --json`
// of 16,001 disks (1,000 peers of 16 disks and one local disk), over a real
// Unix socket, as a client sees it: request sent to OK read.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/inventory"
)

// scaleInventory holds peers peers of disks disks each, like the daemon of
// the scale case, and one local disk.
func scaleInventory(b *testing.B, peers, disks int) *inventory.Inventory {
	b.Helper()
	inv := inventory.New(inventory.Options{HostID: "bench-local", Hostname: "s"})
	inv.SetLocal([]inventory.Disk{{Device: "/dev/loop0", UUID: "0b7e2a1c-1b2c-4d5e-8f90-123456789abc",
		Label: "S-ROOT", Type: "ext4"}}, nil)
	for p := range peers {
		a := inventory.Announcement{
			HostID: fmt.Sprintf("%032x", 0xbe7c4000+p), Hostname: fmt.Sprintf("load-%04d", p),
			BootID: fmt.Sprintf("%032x", p), Seq: 1, Interval: 10 * time.Second, Address: "10.77.0.2",
		}
		for i := range disks {
			d := inventory.Disk{
				Device:   fmt.Sprintf("/dev/sd%c%d", 'a'+i/4, i%4+1),
				UUID:     fmt.Sprintf("%08x-%04x-4d5e-8f90-%012x", p, i, p*7919+i),
				PartUUID: fmt.Sprintf("%08x-%04x-4c0d-9e0f-%012x", p, i, i*31),
				Label:    fmt.Sprintf("L%04d-DATA-%02d", p, i),
				Type:     "ext4",
			}
			if i%2 == 0 {
				d.Mountpoints = []string{fmt.Sprintf("/srv/data/%02d", i)}
			}
			a.Disks = append(a.Disks, d)
		}
		if err := inv.Apply(a); err != nil {
			b.Fatal(err)
		}
	}
	return inv
}

// BenchmarkListJSON16000 is `list --json` of every disk at scale over the
// control socket (target of issue 7: ≤ 50 ms).
func BenchmarkListJSON16000(b *testing.B) {
	inv := scaleInventory(b, 1000, 16)
	sock := filepath.Join(b.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Inv: inv}).Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReaderSize(c, 1<<20)
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		if _, err := c.Write([]byte("list --json\n")); err != nil {
			b.Fatal(err)
		}
		size = 0
		for {
			line, err := r.ReadSlice('\n')
			size += len(line)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			if string(line) == "OK\n" {
				break
			}
			if strings.HasPrefix(string(line), "ERR") {
				b.Fatal(string(line))
			}
		}
	}
	b.ReportMetric(float64(size)/1e6, "MB/answer")
}
