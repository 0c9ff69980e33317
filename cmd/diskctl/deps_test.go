package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards what diskctl links: it talks D-Bus and prints through
// service/present, and must not pull in the daemon's parts (the readline
// client, socket activation, the scanner, the network side).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	for _, want := range []string{
		"github.com/diskd/diskd/dbusapi",
		"github.com/diskd/diskd/service/present",
		"github.com/godbus/dbus/v5",
	} {
		if !deps[want] {
			t.Errorf("diskctl does not link %s: the test's list of what it needs is out of date", want)
		}
	}
	for _, banned := range []string{
		"github.com/ergochat/readline",
		"github.com/coreos/go-systemd/v22/activation",
		"github.com/coreos/go-systemd/v22/daemon",
		"github.com/diskd/diskd/service/control",
		"github.com/diskd/diskd/service/daemon",
		"github.com/diskd/diskd/service/scan",
		"github.com/diskd/diskd/service/multicast",
		"github.com/diskd/diskd/service/wire",
		"github.com/vmihailenco/msgpack/v5",
	} {
		if deps[banned] {
			t.Errorf("diskctl links %s, which only the daemon needs", banned)
		}
	}
}
