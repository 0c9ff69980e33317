package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/testbed"
)

// TestListTableAndFallback: as a user who is not root, diskctl list gets
// what the control socket lists, through ListTable with the packaged
// policy, and through List with an older policy that does not let
// ListTable through.
func TestListTableAndFallback(t *testing.T) {
	requireRoot(t)
	testbed.RequireTools(t, "busctl")
	policy := dbustest.File(t, "packaging/dbus/org.diskd.conf")
	data, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for l := range strings.Lines(string(data)) {
		if !strings.Contains(l, `send_member="ListTable"`) {
			kept = append(kept, l)
		}
	}
	older := filepath.Join(t.TempDir(), "org.diskd.conf")
	if err := os.WriteFile(older, []byte(strings.Join(kept, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildDiskctl(t)
	tests := []struct {
		name       string
		policy     string
		tableWorks bool
	}{
		{"packaged policy", policy, true},
		{"policy without ListTable", older, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := dbustest.System(t, tt.policy)
			inv := network(t)
			d := startDaemon(t, bus.Address, inv)
			out, err := exec.Command("setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups",
				"busctl", "--address="+bus.Address, "call", "org.diskd", "/org/diskd/Finder",
				"org.diskd.Finder", "ListTable").CombinedOutput()
			if got := err == nil && strings.HasPrefix(string(out), `s "host_id\thostname\t`); got != tt.tableWorks {
				t.Fatalf("ListTable as nobody: %v, %s", err, out)
			}
			r := diskctl(t, bin, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, true, "list", "--json")
			if r.code != 0 || !sameJSON(t, r.stdout, controlDo(t, d.socket, "list --json"), false) {
				t.Errorf("list as nobody: %+v", r)
			}
		})
	}
}
