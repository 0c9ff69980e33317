package scan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
)

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// becomeSubreaper makes this test process the reaper of orphaned
// descendants, so that a killed grandchild can be reaped and really
// disappears (PID 1 here may not reap). It is undone in t.Cleanup.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// readPids waits until file holds the given number of pids and returns them.
func readPids(t *testing.T, file string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		f := strings.Fields(string(b))
		if len(f) >= n && strings.HasSuffix(string(b), "\n") {
			var pids []int
			for _, s := range f[:n] {
				pid, err := strconv.Atoi(s)
				if err != nil || pid <= 1 {
					t.Fatalf("bad pid %q in %s", s, file)
				}
				pids = append(pids, pid)
			}
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %d pids, have %q", file, n, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether pid no longer exists, reaping it first if it is a
// zombie child of this process.
func gone(pid int) bool {
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// waitGone waits up to d for pid to disappear.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !gone(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// killLater kills pid (a process this test started) in t.Cleanup if it is
// still there, and reaps it.
func killLater(t *testing.T, pid int) {
	t.Cleanup(func() {
		if gone(pid) {
			return
		}
		_ = unix.Kill(pid, unix.SIGKILL)
		if !waitGone(pid, 2*time.Second) {
			t.Errorf("cleanup: pid %d survives SIGKILL", pid)
		}
	})
}

func TestProbeTimeoutKillsProcessGroup(t *testing.T) {
	becomeSubreaper(t)
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pids")
	// Sleeps forever, and so does a background child that inherits stdout.
	script := writeScript(t, dir, "blkid", `sleep 1000 &
echo "$$ $!" > `+pidfile+`
wait
`)
	// 2s leaves the script time to start and write its pids even on a
	// busy machine.
	p := &Prober{Path: script, Timeout: 2 * time.Second}
	start := time.Now()
	disks, err := p.Probe(context.Background())
	elapsed := time.Since(start)
	pids := readPids(t, pidfile, 2)
	for _, pid := range pids {
		killLater(t, pid)
	}
	if err == nil {
		t.Fatalf("no error, disks %v", disks)
	}
	if want := "blkid: timed out after 2s; killed it and its process group"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if elapsed > p.Timeout+time.Second {
		t.Errorf("Probe took %v, want at most %v", elapsed, p.Timeout+time.Second)
	}
	for _, pid := range pids {
		if !waitGone(pid, 2*time.Second) {
			t.Errorf("pid %d still exists after the timeout", pid)
		}
	}
	t.Logf("timed out after %v; script %d and child %d gone", elapsed.Round(time.Millisecond), pids[0], pids[1])
}

// A grandchild that leaves the process group (setsid) and keeps stdout
// open cannot make Probe hang: WaitDelay closes the pipe.
func TestProbeEscapedGrandchildCannotHang(t *testing.T) {
	testbed.RequireTools(t, "setsid")
	becomeSubreaper(t)
	for _, tt := range []struct {
		name    string
		tail    string // what the script does after spawning
		timeout time.Duration
		wantErr string
	}{
		{"script exits", "exit 0\n", 5 * time.Second, "kept its output open"},
		{"script hangs", "sleep 1000\n", 3 * time.Second, "timed out after 3s"}, // 3s: time to start the grandchild
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "pids")
			script := writeScript(t, dir, "blkid", `setsid sh -c 'echo $$ > `+pidfile+`; exec sleep 1000' &
while [ ! -s `+pidfile+` ]; do sleep 0.01; done
`+tt.tail)
			p := &Prober{Path: script, Timeout: tt.timeout}
			start := time.Now()
			_, err := p.Probe(context.Background())
			elapsed := time.Since(start)
			pid := readPids(t, pidfile, 1)[0]
			killLater(t, pid)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
			limit := waitDelay + time.Second
			if tt.name == "script hangs" {
				limit += tt.timeout
			}
			if elapsed > limit {
				t.Errorf("Probe took %v, want at most %v", elapsed, limit)
			}
		})
	}
}

func TestProbeErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		body string // script body; empty: path is used as is
		want string
	}{
		{name: "missing absolute", path: "/nope", want: `blkid: program "/nope" not found`},
		{name: "missing in PATH", path: "no-such-blkid-for-diskd", want: `blkid: program "no-such-blkid-for-diskd" not found`},
		{name: "not executable", path: filepath.Join(dir, "noexec"), want: `blkid: program "` + filepath.Join(dir, "noexec") + `" cannot be run: permission denied`},
		{name: "exit 4 with stderr", path: "fail4", body: "echo >&2\necho 'blkid: cannot open /dev/zzz: Permission denied' >&2\necho second line >&2\nexit 4\n",
			want: "blkid: exit status 4: blkid: cannot open /dev/zzz: Permission denied"},
		{name: "exit 1 silent", path: "fail1", body: "exit 1\n", want: "blkid: exit status 1: no message on standard error"},
		{name: "killed by a signal", path: "segv", body: "kill -SEGV $$\n", want: "blkid: signal: segmentation fault: no message on standard error"},
		{name: "output over 16 MiB", path: "flood", body: "head -c 17000000 /dev/zero\n", want: "blkid: output larger than 16 MiB, ignored"},
	}
	if err := os.WriteFile(filepath.Join(dir, "noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if tt.body != "" {
				path = writeScript(t, dir, tt.path, tt.body)
			}
			disks, err := (&Prober{Path: path}).Probe(context.Background())
			if err == nil {
				t.Fatalf("no error, disks %v", disks)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n %q\nwant\n %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has more than one line: %q", err)
			}
		})
	}
}

func TestProbeCancelled(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "blkid", "exec sleep 1000\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := (&Prober{Path: script}).Probe(ctx)
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "blkid: cancelled") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := (&Prober{Path: script}).Probe(ctx); err == nil || !strings.Contains(err.Error(), "not run") {
		t.Errorf("already cancelled: error %v", err)
	}
}

// TestProbeFakeOutput runs a fake blkid that prints canned output, checks
// the arguments it is given, and exercises the second (udev) run for an
// ambiguous label.
func TestProbeFakeOutput(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	script := writeScript(t, dir, "blkid", `echo "$*" >> `+argsFile+`
case "$4" in
export) printf '%s\n' 'DEVNAME=/dev/fake2' 'TYPE=ext4' 'LABEL=a^Ib\ M-Cx' 'UUID=u2' '' \
	'DEVNAME=/dev/fake1' 'TYPE=vfat' 'LABEL=StraM-CM-^_e' 'UUID=AB-CD' 'PARTUUID=pp-01' '' \
	'DEVNAME=/dev/fake3' 'PTTYPE=dos' ;;
udev) printf '%s\n' 'ID_FS_LABEL=a^Ib_M-Cx' 'ID_FS_LABEL_ENC=a\x5eIb\x20M-Cx' 'ID_FS_UUID=u2' 'ID_FS_UUID_ENC=u2' 'ID_FS_TYPE=ext4' ;;
*) exit 9 ;;
esac
`)
	disks, err := (&Prober{Path: script, Root: dir}).Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []diskstate.Disk{
		{Device: "/dev/fake1", Type: "vfat", Label: "Straße", UUID: "AB-CD", PartUUID: "pp-01"},
		{Device: "/dev/fake2", Type: "ext4", Label: "a^Ib M-Cx", UUID: "u2"},
	}
	if !reflect.DeepEqual(disks, want) {
		t.Errorf("got  %#v\nwant %#v", disks, want)
	}
	b, _ := os.ReadFile(argsFile)
	const tags = "-s TYPE -s UUID -s LABEL -s PARTUUID -s PARTLABEL -s VERSION"
	wantArgs := "-c /dev/null -o export " + tags + "\n" +
		"-c /dev/null -o udev " + tags + " -- /dev/fake2\n" +
		"-c /dev/null -o udev " + tags + " -- /dev/fake1\n" +
		"-p -o export -s VERSION -- /dev/fake1 /dev/fake2\n" // fails (exit 9): versions stay empty
	if string(b) != wantArgs {
		t.Errorf("blkid was run as\n%s\nwant\n%s", b, wantArgs)
	}
}

func TestProbeNothingFound(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "blkid", "exit 2\n")
	disks, err := (&Prober{Path: script, Root: dir}).Probe(context.Background())
	if err != nil || disks != nil {
		t.Errorf("exit 2 without output: disks %v, error %v; want none and no error", disks, err)
	}
}

// Globs that match no block device: blkid is not run at all.
func TestProbeGlobsMatchNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := writeScript(t, dir, "blkid", "touch "+marker+"\nexit 2\n")
	img := newImage(t, dir, "plain.img", 1<<20) // a regular file, not a block device
	for _, globs := range [][]string{
		{filepath.Join(dir, "nothing-here*")},
		{filepath.Join(dir, "*.img")},
		{img, filepath.Join(dir, "missing")},
	} {
		disks, err := (&Prober{Path: script, Globs: globs}).Probe(context.Background())
		if err != nil || disks != nil {
			t.Errorf("globs %q: disks %v, error %v", globs, disks, err)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("globs %q: blkid was run", globs)
		}
	}
	// The same script does leave its marker when it is run.
	if _, err := (&Prober{Path: script}).Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the script did not leave its marker: %v", err)
	}
}

func TestProbeBadGlob(t *testing.T) {
	_, err := (&Prober{Path: "/nope", Globs: []string{"/dev/["}}).Probe(context.Background())
	if err == nil || !strings.Contains(err.Error(), `bad device glob "/dev/["`) {
		t.Errorf("error %v", err)
	}
}

// TestProbeLoopDevice probes a real, mounted loop device (root).
func TestProbeLoopDevice(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "losetup", "mkfs.ext4", "blkid")
	dir := t.TempDir()
	img := newImage(t, dir, "disk.img", 16<<20)
	const uuid = "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	mustRun(t, "mkfs.ext4", "-q", "-F", "-U", uuid, "-L", "loop disk ü", img)
	dev := attachLoop(t, img)
	mnt1, mnt2 := filepath.Join(dir, "m1"), filepath.Join(dir, "m 2")
	for _, m := range []string{mnt1, mnt2} {
		if err := os.Mkdir(m, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mountAt(t, dev, mnt1, "ext4", 0, "")
	mountAt(t, mnt1, mnt2, "", unix.MS_BIND, "") // the same device, twice
	link := filepath.Join(dir, "by-label-link")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}

	var st unix.Statfs_t
	if err := unix.Statfs(mnt1, &st); err != nil {
		t.Fatal(err)
	}
	bs := uint64(st.Frsize)
	want := []diskstate.Disk{{Device: dev, UUID: uuid, Label: "loop disk ü", Type: "ext4", FSVersion: "1.0",
		Mountpoints: []string{mnt1, mnt2}, Size: 16 << 20, Rotational: readBool("/sys/class/block/" + filepath.Base(dev) + "/queue/rotational"),
		FSSize: st.Blocks * bs, FSAvail: st.Bavail * bs, FSUsed: (st.Blocks - st.Bfree) * bs}}
	sort.Strings(want[0].Mountpoints)
	for _, globs := range [][]string{{dev}, {link}, {dev, link, dev}} {
		start := time.Now()
		got, err := (&Prober{Globs: globs}).Probe(context.Background())
		if err != nil {
			t.Fatalf("globs %q: %v", globs, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("globs %q:\n got %#v\nwant %#v", globs, got, want)
		}
		t.Logf("globs %q: probe took %v", globs, time.Since(start).Round(time.Microsecond))
	}

	// After unmounting, the disk is there without mount points.
	for _, m := range []string{mnt2, mnt1} {
		if err := unix.Unmount(m, 0); err != nil {
			t.Fatalf("unmount %s: %v", m, err)
		}
	}
	got, err := (&Prober{Globs: []string{dev}}).Probe(context.Background())
	if err != nil || len(got) != 1 || got[0].Mountpoints != nil {
		t.Errorf("after unmount: %#v, %v", got, err)
	}
}

// TestProbeAllDevices lets blkid enumerate everything (root): a loop device
// attached by the test must be among the answers.
func TestProbeAllDevices(t *testing.T) {
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "losetup", "mkfs.ext4", "blkid")
	img := newImage(t, t.TempDir(), "all.img", 8<<20)
	const uuid = "9b1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	mustRun(t, "mkfs.ext4", "-q", "-F", "-U", uuid, img)
	dev := attachLoop(t, img)
	start := time.Now()
	disks, err := (&Prober{}).Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d disks in %v", len(disks), time.Since(start).Round(time.Microsecond))
	checkDisks(t, disks)
	for _, d := range disks {
		if d.Device == dev && d.UUID == uuid && d.Type == "ext4" {
			return
		}
	}
	t.Errorf("%s (UUID %s) not among %#v", dev, uuid, disks)
}

// TestProbeVersionsAskedOncePerFilesystem: blkid -p runs only for the
// filesystems (device, UUID, type) the last probe did not find, and a
// failed -p run leaves its disks to be asked about again.
func TestProbeVersionsAskedOncePerFilesystem(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	uuidFile := filepath.Join(dir, "uuid2")
	failFile := filepath.Join(dir, "fail-p")
	script := writeScript(t, dir, "blkid", `echo "$*" >> `+argsFile+`
case "$1" in
-p) [ -e `+failFile+` ] && exit 9
	printf '%s\n' 'DEVNAME=/dev/fake1' 'VERSION=1.0' '' 'DEVNAME=/dev/fake2' 'VERSION=FAT32' ;;
*) printf '%s\n' 'DEVNAME=/dev/fake1' 'TYPE=ext4' 'UUID=u1' '' \
	'DEVNAME=/dev/fake2' 'TYPE=vfat' "UUID=$(cat `+uuidFile+`)" ;;
esac
`)
	setUUID := func(u string) {
		if err := os.WriteFile(uuidFile, []byte(u), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setUUID("AB-CD")
	const export = "-c /dev/null -o export -s TYPE -s UUID -s LABEL -s PARTUUID -s PARTLABEL -s VERSION"
	p := &Prober{Path: script, Root: dir}
	for _, step := range []struct {
		name   string
		change func()
		runs   []string // blkid's arguments, a line a run
		want   [2]string
	}{
		{"first probe", func() {}, []string{export, "-p -o export -s VERSION -- /dev/fake1 /dev/fake2"}, [2]string{"1.0", "FAT32"}},
		{"same filesystems", func() {}, []string{export}, [2]string{"1.0", "FAT32"}},
		{"a new filesystem on fake2", func() { setUUID("EF-01") }, []string{export, "-p -o export -s VERSION -- /dev/fake2"}, [2]string{"1.0", "FAT32"}},
		{"-p fails", func() {
			setUUID("23-45")
			if err := os.WriteFile(failFile, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{export, "-p -o export -s VERSION -- /dev/fake2"}, [2]string{"1.0", ""}},
		{"-p works again", func() {
			if err := os.Remove(failFile); err != nil {
				t.Fatal(err)
			}
		}, []string{export, "-p -o export -s VERSION -- /dev/fake2"}, [2]string{"1.0", "FAT32"}},
		{"and is remembered", func() {}, []string{export}, [2]string{"1.0", "FAT32"}},
	} {
		step.change()
		if err := os.Remove(argsFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		disks, err := p.Probe(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if len(disks) != 2 || disks[0].FSVersion != step.want[0] || disks[1].FSVersion != step.want[1] {
			t.Errorf("%s: disks %+v, want versions %q", step.name, disks, step.want)
		}
		b, _ := os.ReadFile(argsFile)
		if got, want := strings.TrimSuffix(string(b), "\n"), strings.Join(step.runs, "\n"); got != want {
			t.Errorf("%s: blkid was run as\n%s\nwant\n%s", step.name, got, want)
		}
	}
}
