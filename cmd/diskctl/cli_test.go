package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/present"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		want    options
		wantErr string
	}{
		{args: nil, want: options{bus: "system"}},
		{args: []string{"list"}, want: options{bus: "system", command: "list", args: []string{}}},
		{args: []string{"--json", "list", "BACK*"}, want: options{bus: "system", json: true, command: "list", args: []string{"BACK*"}}},
		{args: []string{"find", "My", "Passport", "--json"}, want: options{bus: "system", json: true, command: "find", args: []string{"My", "Passport"}}},
		{args: []string{"--bus", "session", "peers"}, want: options{bus: "session", command: "peers", args: []string{}}},
		{args: []string{"--bus=unix:path=/x", "status"}, want: options{bus: "unix:path=/x", command: "status", args: []string{}}},
		{args: []string{"find", "--", "--json"}, want: options{bus: "system", command: "find", args: []string{"--json"}}},
		{args: []string{"monitor", "--notify"}, want: options{bus: "system", notify: true, command: "monitor", args: []string{}}},
		{args: []string{"list", "-h"}, want: options{bus: "system", help: true, command: "list", args: []string{}}},
		{args: []string{"--bus"}, wantErr: "option --bus needs a value"},
		{args: []string{"--bus", "none", "list"}, wantErr: `option --bus: "none" is not`},
		{args: []string{"--bus", "nonsense"}, wantErr: `option --bus: "nonsense" is not`},
		{args: []string{"--jsno"}, wantErr: "unknown option --jsno"},
		{args: []string{"--json=yes"}, wantErr: "option --json takes no value"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parseArgs(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.args == nil {
				got.args = []string{}
			}
			if tc.want.args == nil {
				tc.want.args = []string{}
			}
			if got.bus != tc.want.bus || got.json != tc.want.json || got.notify != tc.want.notify ||
				got.help != tc.want.help || got.command != tc.want.command || !slices.Equal(got.args, tc.want.args) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRunWithoutBus covers what diskctl answers before it needs a bus.
func TestRunWithoutBus(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string
		stderrLine string // the whole (single) stderr line
	}{
		{args: []string{"--help"}, code: 0, stdout: "  monitor [--notify]                print changes as they happen"},
		{args: []string{"--help"}, code: 0, stdout: "  history TERM                      every place and time a matching disk was seen"},
		{args: []string{"history", "--help"}, code: 0, stdout: "Usage: diskctl [--bus BUS] [--json] history TERM"},
		{args: []string{"history"}, code: 2, stderrLine: "diskctl: history needs TERM (see diskctl --help)"},
		{args: []string{"find", "--all", "x"}, code: 2, stderrLine: "diskctl: option --all is for list, not find (see diskctl --help)"},
		{args: []string{"help"}, code: 0, stdout: "Exit status: 0 ok, 1 find found nothing"},
		{args: []string{"help", "find"}, code: 0, stdout: "Usage: diskctl [--bus BUS] [--json] find [OPTIONS] TERM"},
		{args: []string{"list", "--help"}, code: 0, stdout: "  -P, --pairs         KEY=\"value\" pairs"},
		{args: []string{"peers", "-n"}, code: 2, stderrLine: "diskctl: option -n is for list, find and info, not peers (see diskctl --help)"},
		{args: []string{"list", "-o", "NAME"}, code: 2, stderrLine: "diskctl: option -o: unknown column \"NAME\"; columns are " + strings.Join(present.AllColumns(), ",") + " (see diskctl --help)"},
		{args: []string{"list", "--sort"}, code: 2, stderrLine: "diskctl: option --sort needs a value: see diskctl list --help (see diskctl --help)"},
		{args: []string{"list", "-r", "-P"}, code: 2, stderrLine: "diskctl: -r (raw) and -P (pairs) exclude each other (see diskctl --help)"},
		{args: []string{"info"}, code: 2, stderrLine: "diskctl: info needs TERM (see diskctl --help)"},
		{args: []string{"list", "--help"}, code: 0, stdout: "PATTERN with * ? or [ is a shell glob"},
		{args: []string{"--version"}, code: 0, stdout: "diskctl " + version},
		{args: nil, code: 2, stderrLine: "diskctl: no command given (see diskctl --help)"},
		{args: []string{"frob"}, code: 2, stderrLine: `diskctl: unknown command "frob" (see diskctl --help)`},
		{args: []string{"frob\x1b[2J"}, code: 2, stderrLine: `diskctl: unknown command "frob\\x1b[2J" (see diskctl --help)`},
		{args: []string{"find"}, code: 2, stderrLine: "diskctl: find needs TERM (see diskctl --help)"},
		{args: []string{"find", " "}, code: 2, stderrLine: "diskctl: find needs TERM (see diskctl --help)"},
		{args: []string{"status", "x"}, code: 2, stderrLine: `diskctl: status takes no arguments (got "x") (see diskctl --help)`},
		{args: []string{"list", "--notify"}, code: 2, stderrLine: "diskctl: option --notify is for monitor, not list (see diskctl --help)"},
		{args: []string{"--bus", "system:"}, code: 2, stderrLine: "diskctl: no command given (see diskctl --help)"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tc.stdout)
			}
			if tc.stderrLine != "" && stderr.String() != tc.stderrLine+"\n" {
				t.Errorf("stderr %q, want the line %q", stderr.String(), tc.stderrLine)
			}
		})
	}
}

var notifyNow = time.Date(2026, 12, 1, 14, 2, 0, 0, time.UTC)

func TestNotificationText(t *testing.T) {
	tests := []struct {
		name        string
		disk        diskstate.Disk
		summary     string
		bodyHas     []string
		bodyHasNone []string
		unsealed    bool
	}{
		{name: "label", disk: diskstate.Disk{Hostname: "beta", Device: "/dev/sdb1", Type: "ext4", Label: "BACKUP-2019", UUID: "u"},
			summary: "BACKUP-2019", bodyHas: []string{"beta", "/dev/sdb1", "ext4"}, bodyHasNone: []string{"unauthenticated"}},
		{name: "unauthenticated peer", disk: diskstate.Disk{Hostname: "beta", Device: "/dev/sdb1", Type: "ext4", Label: "X"},
			unsealed: true, summary: "X", bodyHas: []string{"beta", "unauthenticated: no key"}},
		{name: "uuid when no label", disk: diskstate.Disk{Hostname: "beta", Device: "/dev/sdb1", UUID: "1234-ABCD"},
			summary: "1234-ABCD", bodyHas: []string{"(-)"}},
		{name: "hostile strings", disk: diskstate.Disk{Hostname: "<i>h</i>&", Device: "/dev/\x1b[31mx", Type: "a\nb",
			Label: "<b>L&amp;\u202e"},
			summary:     `<b>L&amp;\u202e`,
			bodyHas:     []string{"&lt;i&gt;h&lt;/i&gt;&amp;", `/dev/\x1b[31mx`, `a\nb`},
			bodyHasNone: []string{"<", ">", "\x1b", "\n"}},
		{name: "returned", disk: diskstate.Disk{Hostname: "gamma", Device: "/dev/sdc1", Type: "ext4", Label: "BACKUP-2019",
			Returned: true, PreviousHostname: "beta", PreviousDevice: "/dev/sdb1", PreviousLastSeen: notifyNow.Add(-3*24*time.Hour - time.Hour)},
			summary: "BACKUP-2019 is back, on gamma (was last on beta, 3 days ago)", bodyHas: []string{"gamma", "/dev/sdc1"}},
		{name: "returned from a hostile host", disk: diskstate.Disk{Hostname: "gamma", Device: "/dev/sdc1", Label: "B",
			Returned: true, PreviousHostname: "be\x1b[2Jta", PreviousLastSeen: notifyNow.Add(-90 * time.Second)},
			summary: `B is back, on gamma (was last on be\x1b[2Jta, 1 minute ago)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			summary, body := notification(tc.disk, !tc.unsealed, notifyNow)
			if summary != tc.summary {
				t.Errorf("summary %q, want %q", summary, tc.summary)
			}
			for _, s := range tc.bodyHas {
				if !strings.Contains(body, s) {
					t.Errorf("body %q lacks %q", body, s)
				}
			}
			for _, s := range tc.bodyHasNone {
				if strings.Contains(body, s) {
					t.Errorf("body %q contains %q", body, s)
				}
			}
		})
	}
}

func mustDiskJSON(d diskstate.Disk) string {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestFormatEvent(t *testing.T) {
	now := time.Date(2024, 1, 2, 15, 4, 5, 0, time.Local)
	disk := diskstate.Disk{HostID: "h2", Hostname: "beta", Device: "/dev/sdb1", UUID: "1234", Label: "BACK UP\x1b",
		Type: "ext4", Mountpoints: []string{"/mnt/a", "/mnt/b"}}
	tests := []struct {
		name string
		ev   dbusapi.Event
		json bool
		want string
		prev *diskstate.Disk
	}{
		{"changed", dbusapi.Event{Signal: dbusapi.SignalDiskChanged, Disk: disk}, false,
			"15:04:05 DiskChanged      beta  /dev/sdb1  ext4  BACK UP\\x1b  1234  /mnt/a,/mnt/b  " +
				"(label: OLD → BACK UP\\x1b, mountpoints: - → /mnt/a,/mnt/b, fs_avail: 40G → -)\n",
			&diskstate.Disk{HostID: "h2", Hostname: "beta", Device: "/dev/sdb1", UUID: "1234", Label: "OLD", Type: "ext4", FSAvail: 40 << 30}},
		{"changed json", dbusapi.Event{Signal: dbusapi.SignalDiskChanged, Disk: diskstate.Disk{Device: "/dev/x", Label: "B"}}, true,
			`{"signal":"DiskChanged","disk":` + mustDiskJSON(diskstate.Disk{Device: "/dev/x", Label: "B"}) +
				`,"changes":[{"key":"label","old":"A","new":"B"}]}` + "\n",
			&diskstate.Disk{Device: "/dev/x", Label: "A"}},
		{"disk", dbusapi.Event{Signal: dbusapi.SignalDiskAppeared, Disk: disk}, false,
			"15:04:05 DiskAppeared     beta  /dev/sdb1  ext4  BACK UP\\x1b  1234  /mnt/a,/mnt/b\n", nil},
		{"peer lost", dbusapi.Event{Signal: dbusapi.SignalPeerLost, HostID: "h2", Hostname: "beta", Reason: "timeout"}, false,
			"15:04:05 PeerLost         beta  host-id=h2  reason=timeout\n", nil},
		{"peer joined json", dbusapi.Event{Signal: dbusapi.SignalPeerJoined, HostID: "h2", Hostname: "beta"}, true,
			`{"signal":"PeerJoined","host_id":"h2","hostname":"beta"}` + "\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := formatEvent(tc.ev, tc.json, now, tc.prev)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %q\nwant %q", b, tc.want)
			}
		})
	}
	// A disk event in JSON carries the disk with the control socket's keys.
	b, err := formatEvent(dbusapi.Event{Signal: dbusapi.SignalDiskChanged, Disk: disk}, true, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Signal string
		Disk   diskstate.Disk
	}
	if err := json.Unmarshal(b, &got); err != nil || got.Signal != "DiskChanged" || got.Disk.Label != disk.Label {
		t.Errorf("JSON %s: %+v, %v", b, got, err)
	}
}
