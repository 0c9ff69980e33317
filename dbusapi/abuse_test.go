package dbusapi

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/testbed"
)

// maxDaemonRSS is what a daemon that knows 600 disks may take while it
// answers 200 List calls at once (it takes about 20 MB idle).
const maxDaemonRSS = 64 << 20

// TestManyListsStayBounded: a real diskd that knows 600 disks (announced
// by the load generator's fake peers over multicast) answers 200 List
// calls sent at once by an unprivileged user: every call gets the disks or
// org.diskd.Error.Busy, the daemon's RSS stays within maxDaemonRSS, and it
// keeps serving afterwards.
func TestManyListsStayBounded(t *testing.T) {
	requireRoot(t)
	dbustest.Require(t)
	lab := testbed.NewT(t)
	dir := testbed.OpenTempDir(t)
	// Without -race: its shadow memory would be measured too.
	diskd := goBuild(t, dir, "diskd", "./cmd/diskd")
	bench := goBuild(t, dir, "diskd-bench", "./cmd/diskd-bench")
	self := filepath.Join(dir, "dbusapi.test")
	testbed.CopyTestBinary(t, self)
	bus := dbustest.System(t, dbustest.File(t, "packaging/dbus/org.diskd.conf"))

	a := lab.AddHostT(t, "a")
	b := lab.AddHostT(t, "b")
	d, err := a.Start(diskd, "--bus", bus.Address, "--peer-timeout", "60s")
	if err != nil {
		t.Fatal(err)
	}
	gen := b.Command(bench, "loadgen", "--peers", "40", "--disks", "15", "--interval", "2s",
		"--interface", testbed.Interface)
	var genOut strings.Builder
	gen.Stdout, gen.Stderr = &genOut, &genOut
	gen.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	genDone := make(chan error, 1)
	go func() { genDone <- gen.Wait() }()
	t.Cleanup(func() {
		_ = gen.Process.Signal(syscall.SIGTERM) // by PID: the one this test started
		select {
		case <-genDone:
		case <-time.After(5 * time.Second):
			_ = gen.Process.Kill()
			<-genDone
		}
		if t.Failed() {
			t.Logf("load generator: %s", genOut.String())
		}
	})

	c := dial(t, bus.Address)
	eventually(t, 60*time.Second, "600 disks known", func() bool {
		st, err := c.Status(context.Background())
		return err == nil && st.Disks >= 600
	})
	before := rss(t, d.PID())

	// Sample the daemon's RSS while the calls run.
	stop := make(chan struct{})
	var peak int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			peak = max(peak, rss(t, d.PID()))
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	cmd := exec.Command("setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups", "--",
		self, "-test.run=^TestListHelper$")
	cmd.Env = append(os.Environ(), "DISKD_DBUS_HELPER=list", "DISKD_TEST_BUS="+bus.Address)
	out, err := cmd.CombinedOutput()
	close(stop)
	wg.Wait()
	t.Logf("daemon RSS: %d MB before, %d MB at most during 200 List calls; helper: %s",
		before>>20, peak>>20, strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var ok, busy, other int
	if _, err := fmt.Sscanf(string(out[strings.Index(string(out), "ok="):]), "ok=%d busy=%d other=%d", &ok, &busy, &other); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	if ok+busy != 200 || other != 0 || ok == 0 {
		t.Errorf("of 200 calls: %d answered, %d busy, %d failed otherwise", ok, busy, other)
	}
	if peak > maxDaemonRSS {
		t.Errorf("daemon RSS reached %d MB, more than %d MB", peak>>20, maxDaemonRSS>>20)
	}
	// It keeps serving, on D-Bus and on its control socket.
	disks, err := c.List(context.Background())
	if err != nil || len(disks) < 600 {
		t.Errorf("List afterwards: %d disks, %v", len(disks), err)
	}
	if _, err := d.Do("status"); err != nil {
		t.Errorf("control socket afterwards: %v", err)
	}
}

// TestListHelper is not a test: TestManyListsStayBounded runs the test
// binary again as another user with DISKD_DBUS_HELPER=list, and this is
// what it then does: 200 calls of List at once (20 on each of 10
// connections, under dbus-daemon's limit of pending replies per
// connection), then it prints how they ended.
func TestListHelper(t *testing.T) {
	if os.Getenv("DISKD_DBUS_HELPER") != "list" {
		return
	}
	addr := os.Getenv("DISKD_TEST_BUS")
	var mu sync.Mutex
	var ok, busy, other int
	var errs []string
	var wg sync.WaitGroup
	for range 10 {
		conn, err := dbus.Connect(addr)
		if err != nil {
			fmt.Println("connect:", err)
			os.Exit(1)
		}
		defer conn.Close()
		obj := conn.Object(BusName, ObjectPath)
		for range 20 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				var disks []map[string]dbus.Variant
				err := obj.CallWithContext(ctx, Interface+".List", 0).Store(&disks)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && len(disks) >= 600:
					ok++
				case isDBusError(err, ErrorBusy):
					busy++
				default:
					other++
					errs = append(errs, fmt.Sprintf("%d disks, %v", len(disks), err))
				}
			})
		}
	}
	wg.Wait()
	for _, e := range errs[:min(len(errs), 5)] {
		fmt.Println("call:", e)
	}
	fmt.Printf("ok=%d busy=%d other=%d\n", ok, busy, other)
	os.Exit(0)
}

// rss is the resident set size of process pid, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	v, err := testbed.RSS(pid)
	if err != nil {
		t.Errorf("reading the daemon's memory: %v", err)
	}
	return v
}

// goBuild builds pkg of the module (without -race) into dir/name.
func goBuild(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}
