package testbed

import (
	"os"
	"os/exec"
	"strings"
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
