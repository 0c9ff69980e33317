package testbed

import (
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
func BuildDiskd(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "diskd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
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
