package testbed

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// SkipOrFail skips the test, except when the environment variable CI is
// "true": there it fails, so that CI never passes by skipping a test whose
// environment is missing.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so this test must run, but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips the test unless it runs as root (fails under CI=true).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (euid is %d)", os.Geteuid())
	}
}

// RequireTools skips the test when one of the programs is not installed
// (fails under CI=true, where .ci/run must have installed it).
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			SkipOrFail(t, "needs %s: %v", n, err)
		}
	}
}

// NewT creates a lab for a test: it requires root and the tools a lab uses
// (RequireRoot, RequireTools), closes the lab in
// t.Cleanup, and when the test failed it first logs every host's daemon
// log. A daemon built with -race that reported a data race fails the test.
func NewT(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip", "losetup", "mount", "mkfs.ext4")
	l, err := New(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing lab %s: %v", l.ID, err)
		}
	})
	// Cleanups run last-in first-out: this runs before Close removes the logs.
	t.Cleanup(func() {
		for _, h := range l.Hosts() {
			b, err := os.ReadFile(h.LogPath)
			if err != nil {
				continue
			}
			if strings.Contains(string(b), "WARNING: DATA RACE") {
				t.Errorf("daemon on %s reported a data race", h.Name)
			}
			if t.Failed() {
				t.Logf("---- log of %s (%s, host id %s) ----\n%s", h.Name, h.NS, h.HostID, b)
			}
		}
		if t.Failed() {
			for _, r := range l.Routers() {
				if b, err := os.ReadFile(r.LogPath); err == nil {
					t.Logf("---- log of router %s (%s) ----\n%s", r.Name, r.NS, b)
				}
			}
		}
	})
	return l
}

// AddHostT is AddHost for a test: it fails the test when the host cannot
// be made.
func (l *Lab) AddHostT(t testing.TB, name string) *Host {
	t.Helper()
	return l.AddHostWithT(t, name, HostOptions{})
}

// AddHostWithT is AddHostWith for a test: it fails the test when the host
// cannot be made.
func (l *Lab) AddHostWithT(t testing.TB, name string, o HostOptions) *Host {
	t.Helper()
	h, err := l.AddHostWith(name, o)
	return orFatal(t, h, err)
}

// AddHostT is Segment.AddHost for a test: it fails the test when the host
// cannot be made.
func (s *Segment) AddHostT(t testing.TB, name string) *Host {
	t.Helper()
	return s.lab.AddHostWithT(t, name, HostOptions{Segment: s})
}

// AddSegmentT is AddSegment for a test: it fails the test when the
// segment cannot be made.
func (l *Lab) AddSegmentT(t testing.TB, name string, fam Family) *Segment {
	t.Helper()
	s, err := l.AddSegment(name, fam)
	return orFatal(t, s, err)
}

// AddDiskT is AddDisk for a test: it fails the test when the disk cannot
// be made.
func (h *Host) AddDiskT(t testing.TB, opts DiskOpts) *Disk {
	t.Helper()
	d, err := h.AddDisk(opts)
	return orFatal(t, d, err)
}

// orFatal returns v, or fails the test when err is not nil.
func orFatal[T any](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Poll calls cond every 10ms until it returns true or timeout passes. It
// returns whether cond held and the description cond returned last.
func Poll(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return true, desc
		}
		if time.Now().After(deadline) {
			return false, desc
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Eventually fails the test unless cond returns true within timeout,
// polling every 10ms; the failure message has cond's last description.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if ok, desc := Poll(timeout, cond); !ok {
		t.Fatalf("not true within %v: %s", timeout, desc)
	}
}

// Await returns the next value ch delivers, failing the test (Fatalf)
// when none comes within timeout. what names the awaited event in the
// message, as in "Serve's return".
func Await[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("no %s within %v", what, timeout)
		var zero T
		return zero
	}
}

// OpenTempDir returns t.TempDir() made searchable by every user, with its
// parent (both are the test's own), for tests that run programs as another
// user.
func OpenTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// CopyTestBinary copies the running test binary to dst, executable by
// everyone, for tests that run it again as another user.
func CopyTestBinary(t testing.TB, dst string) {
	t.Helper()
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Completions runs cmd, a shell completing line, within 30s, and returns
// the candidates it printed one a line (fish's descriptions after a tab cut
// off), sorted and without repeats. It fails the test when the shell fails,
// times out or writes to stderr. shell and line name the run in messages.
func Completions(t testing.TB, shell, line string, cmd *exec.Cmd) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	run.Env = cmd.Env
	var stdout, stderr strings.Builder
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("%s completing %q: %v, stderr %q", shell, line, err, stderr.String())
	}
	var out []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		l, _, _ = strings.Cut(l, "\t") // fish: candidate<TAB>description
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// FileMode returns the mode of path itself (not of a link's target).
func FileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// LockedBuffer is a bytes.Buffer that a writer (a child's stderr, a
// client's output) and the test may use at once.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
