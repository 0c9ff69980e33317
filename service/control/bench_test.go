package control_test

// Benchmarks of the scale case on the control socket: `list --json`
// of 16,001 disks (1,000 peers of 16 disks and one local disk), over a real
// Unix socket, as a client sees it: request sent to OK read.

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/testbed"
)

// BenchmarkListJSON16000 is `list --json` of every disk at scale over the
// control socket (target: ≤ 50 ms).
func BenchmarkListJSON16000(b *testing.B) {
	inv, err := testbed.FakeInventory(1000, 16)
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&control.Server{Inv: inv}).Serve(ctx, ln) }()
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
