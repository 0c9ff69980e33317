package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ModuleRoot returns the directory of the main module's go.mod, as
// "go env GOMOD" run in the current directory finds it.
func ModuleRoot() (string, error) {
	out, err := output("go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(out)
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("testbed: not inside a Go module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// BuildDiskd builds ./cmd/diskd of the module that contains the current
// directory into dir and returns the binary's path. When the calling binary
// was built with -race, so is the daemon (its races then show in its log).
// Callers build once per test binary (in TestMain, or under a sync.Once).
func BuildDiskd(dir string) (string, error) { return buildDiskd(dir, raceEnabled) }

// BuildPlainDiskd is BuildDiskd without -race, for tests that measure the
// daemon's memory (the race detector's shadow memory would be measured
// too).
func BuildPlainDiskd(t testing.TB) string {
	t.Helper()
	bin, err := buildDiskd(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func buildDiskd(dir string, race bool) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "diskd")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/diskd")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbed: go %s (in %s): %v\n%s", strings.Join(args, " "), root, err, out)
	}
	return bin, nil
}

// Build is BuildDiskd into t.TempDir(); it fails the test on error.
func Build(t testing.TB) string {
	t.Helper()
	bin, err := BuildDiskd(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// ErrNoDiskd is what FindDiskd's error wraps when there is no diskd to find.
var ErrNoDiskd = errors.New("no diskd next to me or in PATH")

// FindDiskd resolves the daemon binary for a program that starts daemons
// (the bench, the demo): flagValue when it is set (then it must exist), else
// diskd next to the running program, else diskd in PATH. The path is
// absolute. A flagValue that cannot be used gives os.Stat's error; no diskd
// at all gives ErrNoDiskd.
func FindDiskd(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", err
		}
		return filepath.Abs(flagValue)
	}
	if exe, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(exe), "diskd")
		if st, err := os.Stat(cand); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	if p, err := exec.LookPath("diskd"); err == nil {
		return filepath.Abs(p)
	}
	return "", ErrNoDiskd
}
