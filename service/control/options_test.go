package control_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
)

// TestOutputOptions: the lsblk options of list, find and info on the
// control socket, and their errors. The formats themselves are held to
// golden files in service/present.
func TestOutputOptions(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)
	for _, tc := range []struct {
		line  string
		first string // first line of the answer
		n     int    // lines, -1: any
		err   string // part of the ERR message
	}{
		{line: "list -o DEVICE -n --host beta", first: "/dev/sdc1", n: 2},
		{line: "list --output=DEVICE,LABEL --sort label", first: "DEVICE     LABEL", n: 5},
		{line: "list -o +PARTLABEL", first: "HOST   DEVICE     TYPE  LABEL", n: 5},
		{line: "list -O", first: "HOST-ID", n: 5},
		{line: "list -r -o DEVICE,LABEL --host alpha", first: "DEVICE LABEL", n: 3},
		{line: "list -P -o DEVICE --host beta", first: `DEVICE="/dev/sdc1"`, n: 2},
		{line: "find -b -o DEVICE,SIZE -n BACKUP-2019", first: "/dev/sda1  -", n: 1},
		{line: "info BACKUP-2019", first: "/dev/sda1 on alpha:", n: -1},
		{line: "info --json BACKUP-2019", first: `[{"host_id":`, n: 1},
		{line: "list --help", first: "usage: list [--json] [--all] [OPTIONS] [PATTERN]", n: -1},
		{line: "status -h", first: "usage: status [--json]", n: -1},
		{line: "info nothing-at-all", err: `no disk matches "nothing-at-all"`},
		{line: "list -o NAME", err: `unknown column "NAME"`},
		{line: "list -o", err: `option "-o" needs a value`},
		{line: "list --sort NOPE", err: `unknown sort column "NOPE"`},
		{line: "list -r -P", err: "exclude each other"},
		{line: "list -n=1", err: `option "-n" takes no value`},
		{line: "peers -o DEVICE", err: "usage: peers [--json]"},
		{line: "peers --output DEVICE", err: `unknown option "--output"`},
	} {
		t.Run(tc.line, func(t *testing.T) {
			lines, err := c.Do(context.Background(), tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q (answer %q)", err, tc.err, lines)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) == 0 || !strings.HasPrefix(lines[0], tc.first) || (tc.n >= 0 && len(lines) != tc.n) {
				t.Fatalf("answer %q, want %d lines starting with %q", lines, tc.n, tc.first)
			}
		})
	}
	lines, err := c.Do(context.Background(), "info BACKUP-2019")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(lines, func(l string) bool {
		k, v, _ := strings.Cut(l, ":")
		return k == "  label" && strings.TrimSpace(v) == "BACKUP-2019"
	}) {
		t.Errorf("info: no label line in %q", lines)
	}
}
