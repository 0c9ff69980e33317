package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards what the daemon binary links: never the test helpers
// (simulated hosts, private buses, the control test server).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	if !deps["github.com/diskd/diskd/service/daemon"] {
		t.Error("diskd does not link service/daemon: the test is out of date")
	}
	for _, banned := range []string{
		"github.com/diskd/diskd/service/testbed",
		"github.com/diskd/diskd/service/control/controltest",
		"github.com/diskd/diskd/dbusapi/dbustest",
		"testing",
	} {
		if deps[banned] {
			t.Errorf("diskd links %s, a test helper", banned)
		}
	}
}
