package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards what the two binaries link. The daemon never links the
// test helpers (simulated hosts, private buses, the control test server).
// diskctl talks D-Bus and prints through service/present, and must not pull
// in the daemon's parts (the readline client, socket activation, the
// scanner, the network side).
func TestDeps(t *testing.T) {
	for _, tc := range []struct {
		name, dir string
		need      []string
		needWhy   string // what a missing package means
		banned    []string
		bannedWhy string // what a banned package is
	}{{
		name:    "diskd",
		dir:     ".",
		need:    []string{"github.com/diskd/diskd/service/daemon"},
		needWhy: "the test is out of date",
		banned: []string{
			"github.com/diskd/diskd/service/testbed",
			"github.com/diskd/diskd/service/testbed/testclock",
			"github.com/diskd/diskd/service/control/controltest",
			"github.com/diskd/diskd/dbusapi/dbustest",
			"testing",
		},
		bannedWhy: "a test helper",
	}, {
		name: "diskctl",
		dir:  "../diskctl",
		need: []string{
			"github.com/diskd/diskd/dbusapi",
			"github.com/diskd/diskd/service/present",
			"github.com/godbus/dbus/v5",
		},
		needWhy: "the test's list of what it needs is out of date",
		banned: []string{
			"github.com/ergochat/readline",
			"github.com/coreos/go-systemd/v22/activation",
			"github.com/coreos/go-systemd/v22/daemon",
			"github.com/diskd/diskd/service/control",
			"github.com/diskd/diskd/service/daemon",
			"github.com/diskd/diskd/service/scan",
			"github.com/diskd/diskd/service/multicast",
			"github.com/diskd/diskd/service/wire",
			"github.com/vmihailenco/msgpack/v5",
		},
		bannedWhy: "which only the daemon needs",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", tc.dir).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tc.dir, err, out)
			}
			deps := map[string]bool{}
			for _, p := range strings.Fields(string(out)) {
				deps[p] = true
			}
			for _, want := range tc.need {
				if !deps[want] {
					t.Errorf("%s does not link %s: %s", tc.name, want, tc.needWhy)
				}
			}
			for _, banned := range tc.banned {
				if deps[banned] {
					t.Errorf("%s links %s, %s", tc.name, banned, tc.bannedWhy)
				}
			}
		})
	}
}
