package control_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
	"github.com/diskd/diskd/service/testbed"
)

func TestIdleTimeout(t *testing.T) {
	ts := controltest.Start(t, &control.Server{IdleTimeout: time.Second})
	r := dialRaw(t, ts.Path)
	r.ok("status\n")
	start := time.Now()
	r.expectEOF() // no line: an unasked ERR would be taken for the next answer
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	// A client that keeps asking is not idle.
	c := dialClient(t, ts.Path)
	for range 20 {
		if _, err := c.Do(context.Background(), "status"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRequestTimeout(t *testing.T) {
	ts := controltest.Start(t, &control.Server{RequestTimeout: 300 * time.Millisecond})
	tests := []struct {
		name  string
		parts []string
	}{
		{"stalled", []string{"lis"}},
		{"trickle", []string{"l", "i", "s", "t", " ", "x", "x", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, ts.Path)
			for _, p := range tt.parts {
				if _, err := r.c.Write([]byte(p)); err != nil {
					break // dropped already
				}
				time.Sleep(100 * time.Millisecond)
			}
			l, err := r.readLine()
			if err != nil || l != "ERR request line not complete within 300ms; closing connection" {
				t.Fatalf("got %q, %v", l, err)
			}
			if l, err := r.readLine(); err == nil {
				t.Fatalf("got %q after the ERR, want the connection closed", l)
			}
		})
	}
	// A request sent at once is served.
	if !probeStatus(ts.Path) {
		t.Fatal("status not served")
	}
}

// TestEvictOldestIdle: when the server is full, the connection idle the
// longest makes room; one that is busy or idle only briefly does not.
func TestEvictOldestIdle(t *testing.T) {
	ts := controltest.Start(t, &control.Server{MaxConns: 2, EvictAfter: time.Second})
	old, young := dialRaw(t, ts.Path), dialRaw(t, ts.Path)
	old.send("status\n")
	old.answer()
	time.Sleep(1200 * time.Millisecond)
	young.send("status\n")
	young.answer()
	// young has been idle for less than EvictAfter, old for more.
	c := dialClient(t, ts.Path)
	if _, err := c.Do(context.Background(), "list"); err != nil {
		t.Fatalf("new client not served: %v", err)
	}
	old.expectEOF()
	young.ok("peers\n")
	// Now both are busy or young: a further one is refused.
	dialFull(t, ts.Path)
}

// Users for the abuse test (setpriv): the hog and a second, well-behaved
// user.
const (
	hogUID    = "65534"
	otherUser = "65533"
)

// TestOneUserCannotLockOut: one user opens 500 idle connections and keeps
// 10 slow writers (a byte every 100ms) going; meanwhile root and another
// user get every list answered, and afterwards the server's file
// descriptors return to what they were.
func TestOneUserCannotLockOut(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "setpriv")
	dir, err := os.MkdirTemp("", "diskd-control-abuse-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a directory only root may enter.
	bin := filepath.Join(dir, "control.test")
	testbed.CopyTestBinary(t, bin)

	path := filepath.Join(dir, "diskd.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	srv := &control.Server{Inv: controltest.Inventory(t), Actions: controltest.NewActions(),
		Now: controltest.Later, RequestTimeout: 2 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if !probeStatus(path) {
		t.Fatal("server not answering")
	}
	baseline := countFDs(t)

	helper := func(uid string, mode string, env ...string) *exec.Cmd {
		cmd := exec.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "--",
			bin, "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), append(env, "DISKD_CONTROL_HELPER="+mode, "DISKD_TEST_SOCKET="+path)...)
		return cmd
	}
	hog := helper(hogUID, "hog", "DISKD_HOG_SECONDS=7")
	hogOut := &controltest.LockedBuffer{}
	hog.Stdout, hog.Stderr = hogOut, hogOut
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	hogDone := make(chan error, 1)
	go func() { hogDone <- hog.Wait() }()
	controltest.WaitFor(t, "the hog to open its connections", func() bool {
		return strings.Contains(hogOut.String(), "opened")
	})

	// Root, in this process, and another user, in a process of its own.
	var wg sync.WaitGroup
	var rootOK, rootFail atomic.Int64
	wg.Go(func() {
		for range 30 {
			lines, err := testbed.Control(path, "list", 5*time.Second)
			if err != nil || len(lines) != 5 {
				rootFail.Add(1)
				t.Errorf("root list: %d lines, %v", len(lines), err)
			} else {
				rootOK.Add(1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	out, err := helper(otherUser, "lister", "DISKD_LISTER_TIMES=30").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lister: 30 of 30 answered") {
		t.Errorf("other user: %v\n%s", err, out)
	}
	wg.Wait()
	if rootOK.Load() != 30 {
		t.Errorf("root: %d of 30 lists answered", rootOK.Load())
	}

	if err := <-hogDone; err != nil {
		t.Fatalf("hog: %v\n%s", err, hogOut.String())
	}
	report := hogOut.String()
	t.Logf("hog: %s", strings.TrimSpace(report))
	var held, refused, slowDropped int
	if _, err := fmt.Sscanf(report[strings.Index(report, "held="):], "held=%d refused=%d slow_dropped=%d",
		&held, &refused, &slowDropped); err != nil {
		t.Fatalf("hog report %q: %v", report, err)
	}
	if held > control.DefaultMaxConnsPerUser {
		t.Errorf("the hog held %d connections, more than its %d", held, control.DefaultMaxConnsPerUser)
	}
	if refused < 500-control.DefaultMaxConnsPerUser {
		t.Errorf("only %d of the hog's connections were refused", refused)
	}
	if slowDropped == 0 {
		t.Error("no slow writer was dropped for an incomplete request line")
	}
	controltest.WaitFor(t, "the file descriptors to return to baseline", func() bool {
		return countFDs(t) <= baseline
	})
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// helperHog is the hostile user: 10 slow writers (one byte every 100ms,
// reconnecting when dropped) and then 500 idle connections, for
// DISKD_HOG_SECONDS; it then reports how many connections the server kept
// (held), refused, and how many slow writers it dropped with an ERR.
func helperHog() int {
	path := os.Getenv("DISKD_TEST_SOCKET")
	secs, _ := strconv.Atoi(os.Getenv("DISKD_HOG_SECONDS"))
	end := time.Now().Add(time.Duration(secs) * time.Second)
	var slowDropped atomic.Int64
	var wg, admitted sync.WaitGroup
	admitted.Add(10)
	for range 10 {
		wg.Go(func() {
			var once sync.Once
			defer once.Do(admitted.Done)
			for time.Now().Before(end) {
				c, err := net.Dial("unix", path)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				go func() {
					l, _ := bufio.NewReader(c).ReadString('\n')
					if strings.HasPrefix(l, "ERR request line not complete") {
						slowDropped.Add(1)
					}
				}()
				for n := 1; time.Now().Before(end); n++ {
					if _, err := c.Write([]byte("x")); err != nil {
						break
					}
					if n == 3 { // a refused connection fails sooner
						once.Do(admitted.Done)
					}
					time.Sleep(100 * time.Millisecond)
				}
				c.Close()
			}
		})
	}
	admitted.Wait() // the slow writers hold their slots first
	var conns []net.Conn
	for range 500 {
		c, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("opened")
	// A refused connection is closed by the server at once, after an ERR.
	time.Sleep(time.Until(end))
	held, refused := 0, 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		l, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(l, "ERR too many connections"):
			refused++
		case err != nil && os.IsTimeout(err):
			held++
		}
		c.Close()
	}
	wg.Wait()
	fmt.Printf("held=%d refused=%d slow_dropped=%d\n", held, refused, slowDropped.Load())
	return 0
}

// helperLister lists DISKD_LISTER_TIMES times, 100ms apart, and reports
// how many were answered.
func helperLister() int {
	n, _ := strconv.Atoi(os.Getenv("DISKD_LISTER_TIMES"))
	ok := 0
	for range n {
		lines, err := testbed.Control(os.Getenv("DISKD_TEST_SOCKET"), "list", 5*time.Second)
		if err == nil && len(lines) == 5 {
			ok++
		} else {
			fmt.Printf("list: %d lines, %v\n", len(lines), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("lister: %d of %d answered\n", ok, n)
	return 0
}
