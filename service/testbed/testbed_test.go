package testbed_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

// startProc starts cmd and kills it (by PID) at the end of the test.
func startProc(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// leftovers lists what of the lab still exists on the machine.
func leftovers(t *testing.T, l *testbed.Lab) []string {
	t.Helper()
	var left []string
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, l.ID+"-") {
			left = append(left, "netns "+strings.TrimSpace(line))
		}
	}
	out, err = exec.Command("losetup", "-a").Output()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, l.Dir) {
			left = append(left, "loop "+strings.TrimSpace(line))
		}
	}
	// The root namespace never gets an interface or address of a lab.
	out, err = exec.Command("ip", "-o", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, l.ID) || strings.Contains(line, testbed.Subnet) {
			left = append(left, "root ns: "+strings.TrimSpace(line))
		}
	}
	if _, err := os.Stat(l.Dir); err == nil {
		left = append(left, "dir "+l.Dir)
	}
	return left
}

func TestMulticastBetweenHostsAndCleanup(t *testing.T) {
	l := testbed.NewT(t)
	h1 := l.AddHostT(t, "h1")
	h2 := l.AddHostT(t, "h2")
	if h1.NS != l.ID+"-h1" || h1.Addr != "10.77.0.1" || h2.Addr != "10.77.0.2" || len(h1.HostID) != 32 || h1.HostID == h2.HostID {
		t.Fatalf("unexpected host fields: %+v %+v", h1, h2)
	}
	h1.AddDiskT(t, testbed.DiskOpts{Label: "H1", FSType: "vfat"})
	d2 := h2.AddDiskT(t, testbed.DiskOpts{Label: "H2", FSType: "ext4"})
	if err := d2.Mount(""); err != nil {
		t.Fatal(err)
	}

	// The root namespace has nothing of the lab, even while it runs.
	for _, s := range leftovers(t, l) {
		if strings.HasPrefix(s, "root ns") {
			t.Errorf("lab touched the root namespace: %s", s)
		}
	}

	const group = "239.255.77.78:4999"
	recv := h2.Command("socat", "-u", "UDP4-RECV:4999,reuseaddr,ip-add-membership=239.255.77.78:"+h2.Addr, "STDOUT")
	stdout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startProc(t, recv)
	got := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			got <- s.Text()
		}
		close(got)
	}()

	deadline := time.Now().Add(10 * time.Second)
	for received := false; !received; {
		send := h1.Command("socat", "-u", "STDIN", "UDP4-DATAGRAM:"+group+",ip-multicast-ttl=1")
		send.Stdin = strings.NewReader("hello from h1\n")
		if out, err := send.CombinedOutput(); err != nil {
			t.Fatalf("sender: %v\n%s", err, out)
		}
		select {
		case line, ok := <-got:
			if !ok {
				t.Fatal("receiver exited")
			}
			if line != "hello from h1" {
				t.Fatalf("received %q", line)
			}
			received = true
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no multicast datagram from h1 reached h2 in 10s")
			}
		}
	}
	_ = recv.Process.Kill()
	_ = recv.Wait()

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Fatalf("left after Close:\n%s", strings.Join(left, "\n"))
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDisks(t *testing.T) {
	l := testbed.NewT(t)
	h := l.AddHostT(t, "h1")
	for _, o := range []testbed.DiskOpts{
		{Label: "EXT-ONE", FSType: "ext4"},
		{Label: "beta photos", FSType: "vfat"},
		{Label: "myswap", FSType: "swap", SizeMB: 8},
		{},
	} {
		d := h.AddDiskT(t, o)
		if !strings.HasPrefix(d.Path, "/dev/loop") {
			t.Fatalf("path %q", d.Path)
		}
		out, _ := exec.Command("blkid", "-p", "-o", "export", d.Path).Output()
		if o.FSType == "" {
			if strings.Contains(string(out), "TYPE=") {
				t.Errorf("blank disk has a type: %s", out)
			}
			continue
		}
		if !strings.Contains(string(out), "TYPE="+o.FSType) {
			t.Errorf("%s: blkid says %s, want TYPE=%s", d.Path, out, o.FSType)
		}
		label, _ := exec.Command("blkid", "-p", "-s", "LABEL", "-o", "value", d.Path).Output()
		if got := strings.TrimSpace(string(label)); got != o.Label {
			t.Errorf("%s: label %q, want %q", d.Path, got, o.Label)
		}
	}
	if _, err := h.AddDisk(testbed.DiskOpts{FSType: "zfs"}); err == nil {
		t.Error("AddDisk with FSType zfs did not fail")
	}
	d := h.Disks()[0]

	if err := d.Mount(""); err != nil {
		t.Fatal(err)
	}
	mp := d.Mountpoint()
	if !strings.HasPrefix(mp, l.Dir) {
		t.Fatalf("mountpoint %q", mp)
	}
	if out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", mp).Output(); err != nil || strings.TrimSpace(string(out)) != d.Path {
		t.Fatalf("findmnt %s: %q %v", mp, out, err)
	}
	if err := os.WriteFile(filepath.Join(mp, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The mount is visible inside the host's namespace too.
	if out, err := h.Command("cat", filepath.Join(mp, "hello")).CombinedOutput(); err != nil || string(out) != "hi" {
		t.Fatalf("inside the namespace: %q %v", out, err)
	}

	// Detach unmounts first; Attach brings the same image back on the same node.
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	if d.Attached() || d.Mountpoint() != "" {
		t.Fatal("still attached or mounted after Detach")
	}
	if out, _ := exec.Command("losetup", "-a").Output(); strings.Contains(string(out), d.Image) {
		t.Fatalf("image still attached: %s", out)
	}
	if err := d.Attach(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-n", "-O", "BACK-FILE", d.Path).Output()
	if err != nil || strings.TrimSpace(string(out)) != d.Image {
		t.Fatalf("after Attach, %s is backed by %q (%v), want %s", d.Path, out, err, d.Image)
	}
	if err := d.Mount(""); err != nil { // Close must unmount it
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Mountpoint(), "hello")); err != nil {
		t.Fatalf("file written before Detach: %v", err)
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Fatalf("left after Close:\n%s", strings.Join(left, "\n"))
	}
}

// fakeDaemon is a stand-in for diskd: socat serving the control protocol.
const fakeDaemon = `#!/bin/sh
sock=
for a in "$@"; do
	[ "$prev" = --socket ] && sock=$a
	prev=$a
done
echo "fake diskd $*"
exec socat UNIX-LISTEN:"$sock",fork,unlink-early EXEC:"$0.handler"
`

const fakeHandler = `#!/bin/sh
read -r line
case "$line" in
status) echo '{"version":"fake",'; echo '"disks":2}'; echo OK ;;
boom) echo partial; echo 'ERR it broke' ;;
*) echo "you said $line"; echo OK ;;
esac
`

func TestDaemonControl(t *testing.T) {
	l := testbed.NewT(t)
	testbed.RequireTools(t, "socat")
	bin := filepath.Join(t.TempDir(), "fakediskd")
	if err := os.WriteFile(bin, []byte(fakeDaemon), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+".handler", []byte(fakeHandler), 0o755); err != nil {
		t.Fatal(err)
	}
	h := l.AddHostT(t, "alpha")
	disk := h.AddDiskT(t, testbed.DiskOpts{Label: "A", FSType: "ext4"})
	d, err := h.Start(bin, "--peer-timeout", "3s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-d", "--host-id " + h.HostID, "--hostname alpha", "--socket " + h.Socket,
		"--interface e0", "--bus none", "--device " + disk.Path, "--peer-timeout 3s"} {
		if !strings.Contains(d.Log(), want) {
			t.Errorf("daemon args lack %q:\n%s", want, d.Log())
		}
	}
	if _, err := h.Start(bin); err == nil {
		t.Error("second Start on a host did not fail")
	}
	lines, err := d.Do("hello there")
	if err != nil || !slices.Equal(lines, []string{"you said hello there"}) {
		t.Errorf("Do: %q %v", lines, err)
	}
	lines, err = d.Do("boom")
	var ce *testbed.ControlError
	if !errors.As(err, &ce) || ce.Msg != "it broke" || !slices.Equal(lines, []string{"partial"}) {
		t.Errorf("Do boom: %q %v", lines, err)
	}
	var st struct {
		Version string
		Disks   int
	}
	if err := d.DoJSON("status", &st); err != nil || st.Version != "fake" || st.Disks != 2 {
		t.Errorf("DoJSON: %+v %v", st, err)
	}

	// The daemon runs inside the host's namespace.
	ns, err := os.Readlink("/proc/" + strconv.Itoa(d.PID()) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	if ns == self {
		t.Error("daemon runs in the root network namespace")
	}

	_ = d.Stop() // socat's exit status on SIGTERM is not 0; only that it ends matters
	if !d.Exited() {
		t.Fatal("not exited after Stop")
	}
	d2, err := h.Start(bin)
	if err != nil {
		t.Fatal(err)
	}
	pid := d2.PID()
	if err := d2.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("pid %d still there after Kill", pid)
	}

	// Close kills a running daemon.
	d3, err := h.Start(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !d3.Exited() {
		t.Error("daemon survived Close")
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Fatalf("left after Close:\n%s", strings.Join(left, "\n"))
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	l := testbed.NewT(t)
	h := l.AddHostT(t, "h1")
	_, err := h.Start("/bin/sh", "-c", "echo cannot start >&2; exit 3")
	// sh gets "-d --host-id ..." first and fails; its message is in the error.
	if err == nil || !strings.Contains(err.Error(), "exited at start") {
		t.Fatalf("Start of a failing program: %v", err)
	}
}

func TestSetupErrors(t *testing.T) {
	l := testbed.NewT(t)
	if _, err := l.AddHost("Bad_Name"); err == nil {
		t.Error("bad host name accepted")
	}
	if _, err := l.AddHost("h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddHost("h1"); err == nil {
		t.Error("duplicate host accepted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddHost("h2"); err == nil {
		t.Error("AddHost after Close succeeded")
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Fatalf("left after Close:\n%s", strings.Join(left, "\n"))
	}
}

func TestTwoLabsInParallel(t *testing.T) {
	a := testbed.NewT(t)
	b := testbed.NewT(t)
	if a.ID == b.ID {
		t.Fatalf("two labs share id %s", a.ID)
	}
	for _, l := range []*testbed.Lab{a, b} {
		if _, err := l.AddHost("h1"); err != nil {
			t.Fatal(err)
		}
	}
}
