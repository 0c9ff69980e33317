package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed"
)

func TestHumanOutput(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)
	listAll := []string{
		"HOST   DEVICE     TYPE  LABEL            UUID       MOUNTED",
		"alpha  /dev/sda1  ext4  BACKUP-2019      1111-aaaa  /mnt/backup",
		"alpha  /dev/sdb1  vfat  -                2222-BBBB  -",
		"beta   /dev/sdc1  ext4  BACKUP-2019-old  3333-cccc  /srv/a,/srv/b",
		"beta   /dev/sdd1  xfs   media            4444-dddd  -",
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"list", listAll},
		{"LIST", listAll},
		{"  list  ", listAll},
		{"list beta", []string{
			"HOST  DEVICE     TYPE  LABEL            UUID       MOUNTED",
			"beta  /dev/sdc1  ext4  BACKUP-2019-old  3333-cccc  /srv/a,/srv/b",
			"beta  /dev/sdd1  xfs   media            4444-dddd  -",
		}},
		{"find BACKUP-2019", []string{
			"HOST   DEVICE     TYPE  LABEL        UUID       MOUNTED",
			"alpha  /dev/sda1  ext4  BACKUP-2019  1111-aaaa  /mnt/backup",
		}},
		{"list nothing-matches", nil},
		{"find nothing-matches", nil},
		{"peers", []string{
			"HOSTNAME  HOST-ID      ADDRESS         DISKS  LAST-HEARD  TIMEOUT  AUTH  VIA",
			"beta      hostid-beta  192.0.2.7:4277  2      2.1s ago    30s      yes   multicast",
		}},
		{"status", []string{
			"version: 1.2.3",
			"host: alpha",
			"host id: hostid-local",
			"started: 2024-05-01T11:00:00Z (1h00m ago)",
			"peers: 1",
			"disks: 4",
			"last scan: 2024-05-01T12:00:00Z (2.1s ago)",
			"scan error: none",
			"packets in: 10",
			"packets out: 5",
			"packets dropped: 2",
			"drops by reason: bad-magic=1 replay=1",
			"key: val",
		}},
		{"refresh", nil},
		{"announce", nil},
		{"ping", nil},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := c.Do(context.Background(), tc.line)
			if err != nil {
				t.Fatalf("Do(%q): %v", tc.line, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Do(%q) =\n%s\nwant\n%s", tc.line, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	if got, want := ts.Actions.Calls(), []string{"refresh", "announce", "ping"}; !slices.Equal(got, want) {
		t.Errorf("actions called: %v, want %v", got, want)
	}
}

func TestHelp(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	got, err := dialClient(t, ts.Path).Do(context.Background(), "help")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(control.Commands()) {
		t.Fatalf("help has %d lines, want %d:\n%s", len(got), len(control.Commands()), strings.Join(got, "\n"))
	}
	for i, name := range []string{"help", "list [--json] [--all] [OPTIONS] [PATTERN]", "find [--json] [OPTIONS] TERM", "info [--json] [-b] [--host NAME] TERM", "history [--json] TERM", "peers [--json]",
		"status [--json]", "refresh", "announce", "ping", "quit"} {
		if !strings.HasPrefix(got[i], name+" ") {
			t.Errorf("help line %d = %q, want it to start with %q", i, got[i], name)
		}
	}
}

// TestHelpCommand: `help COMMAND` answers with that command's usage and
// help, whatever the case of the name.
func TestHelpCommand(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)
	for _, cmd := range control.Commands() {
		for _, line := range []string{"help " + cmd.Name, "HELP " + strings.ToUpper(cmd.Name), "help   " + cmd.Name + "  "} {
			got, err := c.Do(context.Background(), line)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			// Then, for commands with options, the options.
			if want := []string{"usage: " + cmd.Usage, cmd.Help}; len(got) < 2 || !slices.Equal(got[:2], want) {
				t.Errorf("%q = %q, want it to start with %q", line, got, want)
			}
		}
	}
	got, err := c.Do(context.Background(), "help list")
	if err != nil {
		t.Fatal(err)
	}
	if want := "usage: list [--json] [--all] [OPTIONS] [PATTERN]"; got[0] != want {
		t.Errorf("help list starts with %q, want %q", got[0], want)
	}
}

// TestUnknownCommandSuggestion: an unknown command close to a command (a
// typo, the start of a name, another program's word for it) names that
// command; one far from every command does not.
func TestUnknownCommandSuggestion(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)
	for _, tc := range []struct{ word, want string }{
		{"lsit", "list"},
		{"LSIT", "list"},
		{"lis", "list"},
		{"lst", "list"},
		{"ls", "list"},
		{"fnd", "find"},
		{"fnid", "find"},
		{"fing", "find"}, // as close to ping: the first in help wins
		{"peer", "peers"},
		{"pees", "peers"},
		{"stauts", "status"},
		{"sttaus", "status"},
		{"stat", "status"},
		{"statsu", "status"},
		{"refesh", "refresh"},
		{"rfrsh", "refresh"}, // two edits from a long name
		{"ref", "refresh"},
		{"anounce", "announce"},
		{"annnounce", "announce"},
		{"pign", "ping"},
		{"hlep", "help"},
		{"?", "help"},
		{"qiut", "quit"},
		{"exit", "quit"},
		{"Exit", "quit"},
		// Far from every command: no suggestion.
		{"bogus", ""},
		{"p", ""},
		{"pe", ""},
		{"sts", ""},
		{"lsitx", ""},
		{"fxxd", ""}, // two edits from find, a short name
		{"refreshments", ""},
		{strings.Repeat("list", 100), ""},
		{"日本語", ""},
	} {
		t.Run(tc.word, func(t *testing.T) {
			_, err := c.Do(context.Background(), tc.word)
			var re *control.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("%q: %v, want an ERR answer", tc.word, err)
			}
			want := fmt.Sprintf("unknown command %q", tc.word)
			if tc.want != "" {
				want += fmt.Sprintf("; did you mean %q?", tc.want)
			}
			if re.Msg != want {
				t.Errorf("%q: ERR %s, want ERR %s", tc.word, re.Msg, want)
			}
		})
	}
}

// jsonDisks runs a --json disk query and returns the parsed answer.
func jsonDisks(t *testing.T, c *control.Client, line string) []diskstate.Disk {
	t.Helper()
	got, err := c.Do(context.Background(), line)
	if err != nil {
		t.Fatalf("Do(%q): %v", line, err)
	}
	if len(got) != 1 {
		t.Fatalf("Do(%q): %d lines, want one JSON line", line, len(got))
	}
	var disks []diskstate.Disk
	if err := json.Unmarshal([]byte(got[0]), &disks); err != nil {
		t.Fatalf("Do(%q): %v in %s", line, err, got[0])
	}
	if disks == nil {
		t.Fatalf("Do(%q) = %s, want an array", line, got[0])
	}
	return disks
}

func devices(disks []diskstate.Disk) []string {
	var out []string
	for _, d := range disks {
		out = append(out, d.Device)
	}
	return out
}

func TestListAndFindJSON(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)

	// The whole list, parsed back, is exactly the inventory.
	all := jsonDisks(t, c, "list --json")
	want := ts.Inv.Disks()
	if len(all) != len(want) {
		t.Fatalf("list --json: %d disks, want %d", len(all), len(want))
	}
	for i := range all {
		if !all[i].LastSeen.Equal(want[i].LastSeen) {
			t.Errorf("disk %d last_seen %v, want %v", i, all[i].LastSeen, want[i].LastSeen)
		}
		all[i].LastSeen, want[i].LastSeen = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("list --json =\n%+v\nwant\n%+v", all, want)
	}
	raw, err := c.Do(context.Background(), "list --json /dev/sdb1")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"host_id":"hostid-local"`, `"hostname":"alpha"`, `"device":"/dev/sdb1"`,
		`"uuid":"2222-BBBB"`, `"partuuid":""`, `"label":""`, `"type":"vfat"`, `"mountpoints":[]`,
		`"local":true`, `"last_seen":"2024-05-01T12:00:00Z"`} {
		if !strings.Contains(raw[0], key) {
			t.Errorf("list --json /dev/sdb1 = %s, want it to contain %s", raw[0], key)
		}
	}

	for _, tc := range []struct {
		line string
		want []string
	}{
		{"list --json", []string{"/dev/sda1", "/dev/sdb1", "/dev/sdc1", "/dev/sdd1"}},
		{"list --json beta", []string{"/dev/sdc1", "/dev/sdd1"}},
		{"list beta --json", []string{"/dev/sdc1", "/dev/sdd1"}},
		{"list --json HOSTID-BETA", []string{"/dev/sdc1", "/dev/sdd1"}},
		{"list --json *-2019*", []string{"/dev/sda1", "/dev/sdc1"}},
		{"list --json /dev/sd[bd]1", []string{"/dev/sdb1", "/dev/sdd1"}},
		{"list --json /dev/sdb", []string{"/dev/sdb1"}},
		{"list --json 2222-bbbb", []string{"/dev/sdb1"}},
		{"list --json part-backup", []string{"/dev/sdd1"}},
		{"list --json zzz", nil},
		// find: exact (any case), else prefix, else substring.
		{"find --json BACKUP-2019", []string{"/dev/sda1"}},
		{"find --json backup-2019", []string{"/dev/sda1"}},
		{"find --json 3333-cccc", []string{"/dev/sdc1"}},
		{"find --json BACKUP", []string{"/dev/sda1", "/dev/sdc1"}},
		{"find --json part-b", []string{"/dev/sdd1"}},
		{"find --json ckup", []string{"/dev/sda1", "/dev/sdc1", "/dev/sdd1"}},
		{"find --json -2019-", []string{"/dev/sdc1"}},
		{"find BACKUP-2019-OLD --json", []string{"/dev/sdc1"}},
		{"find --json nothing", nil},
		{"find --json /dev/sda1", []string{"/dev/sda1"}}, // find matches what list matches: devices too
		{"find --json --host beta /dev/sd", []string{"/dev/sdc1", "/dev/sdd1"}},
		{"list --json --host=HOSTID-BETA", []string{"/dev/sdc1", "/dev/sdd1"}},
		{"list --host alpha --json", []string{"/dev/sda1", "/dev/sdb1"}},
		{"list --json -- -2019-", []string{"/dev/sdc1"}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			if got := devices(jsonDisks(t, c, tc.line)); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.line, got, tc.want)
			}
		})
	}
}

func TestPeersAndStatusJSON(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	c := dialClient(t, ts.Path)
	for _, tc := range []struct {
		line string
		want any
	}{
		{"peers --json", []any{map[string]any{
			"host_id": "hostid-beta", "hostname": "beta", "address": "192.0.2.7:4277", "boot_id": "boot-1",
			"disks": 2.0, "last_heard": "2024-05-01T12:00:00Z", "interval_seconds": 10.0,
			"timeout_seconds": 30.0, "authenticated": true, "via": "multicast",
		}}},
		{"status --json", map[string]any{
			"version": "1.2.3", "hostname": "alpha", "host_id": "hostid-local",
			"started": "2024-05-01T11:00:00Z", "peers": 1.0, "disks": 4.0,
			"last_scan": "2024-05-01T12:00:00Z", "scan_error": "",
			"packets_in": 10.0, "packets_out": 5.0, "packets_dropped": 2.0,
			"drops": map[string]any{"bad-magic": 1.0, "replay": 1.0}, "extra": map[string]any{"key": "val"},
		}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := c.Do(context.Background(), tc.line)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d lines, want 1: %q", len(got), got)
			}
			var v any
			if err := json.Unmarshal([]byte(got[0]), &v); err != nil {
				t.Fatalf("%v in %s", err, got[0])
			}
			if !reflect.DeepEqual(v, tc.want) {
				t.Errorf("%s =\n%#v\nwant\n%#v", tc.line, v, tc.want)
			}
		})
	}
}

func TestNoActions(t *testing.T) {
	inv := controltest.Inventory(t)
	inv.SetLocal(nil, errors.New("blkid: exit status 2"))
	ts := controltest.StartWith(t, &control.Server{Inv: inv}, false)
	c := dialClient(t, ts.Path)
	for _, cmd := range []string{"refresh", "announce", "ping"} {
		_, err := c.Do(context.Background(), cmd)
		var re *control.RemoteError
		if !errors.As(err, &re) || re.Msg != cmd+" is not available in this daemon" {
			t.Errorf("%s: %v, want a RemoteError", cmd, err)
		}
	}
	got, err := c.Do(context.Background(), "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"version: -", "host: alpha", "peers: 1", "disks: 4",
		"last scan: 2024-05-01T12:00:00Z (2.1s ago)", "scan error: blkid: exit status 2"} {
		if !slices.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

func TestActionError(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	ts.Actions.Err = errors.New("blkid: boom\nsecond line \x1b[31m")
	c := dialClient(t, ts.Path)
	for _, cmd := range []string{"refresh", "announce", "ping"} {
		_, err := c.Do(context.Background(), cmd)
		var re *control.RemoteError
		if want := cmd + ` failed: blkid: boom\nsecond line \x1b[31m`; !errors.As(err, &re) || re.Msg != want {
			t.Errorf("%s: %v, want control.RemoteError %q", cmd, err, want)
		}
	}
}

// TestProtocol checks the exact bytes of the line protocol, and that the
// connection stays usable after each error unless it must be closed.
func TestProtocol(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	long := "find " + strings.Repeat("x", control.MaxLineBytes-len("find "))
	for _, tc := range []struct {
		name   string
		send   string
		lines  int    // answer lines before the final one
		final  string // OK or the ERR line
		closed bool   // the server closes the connection after answering
	}{
		{"unknown command", "bogus\n", 0, `ERR unknown command "bogus"`, false},
		{"unknown command escaped", "bo\x1b[2Jgus\\ x\n", 0, `ERR unknown command "bo\x1b[2Jgus\\"`, false},
		{"find without term", "find\n", 0, "ERR usage: find [--json] [OPTIONS] TERM", false},
		{"find with only --json", "find --json\n", 0, "ERR usage: find [--json] [OPTIONS] TERM", false},
		{"peers with argument", "peers beta\n", 0, "ERR usage: peers [--json]", false},
		{"status with argument", "status now\n", 0, "ERR usage: status [--json]", false},
		{"refresh with argument", "refresh all\n", 0, "ERR usage: refresh", false},
		{"option not taken", "refresh --json\n", 0, `ERR usage: refresh (unknown option "--json")`, false},
		{"unknown option", "list --yaml\n", 0, `ERR usage: list [--json] [--all] [OPTIONS] [PATTERN] (unknown option "--yaml")`, false},
		{"double dash", "list -- --json\n", 0, "OK", false},
		{"help", "help\n", len(control.Commands()), "OK", false},
		{"CRLF", "status\r\n", 13, "OK", false},
		{"CRLF after error", "bogus\r\n", 0, `ERR unknown command "bogus"`, false},
		{"invalid UTF-8", "list \xff\xfe\n", 0, "ERR request is not valid UTF-8", false},
		{"NUL in request", "li\x00st\n", 0, `ERR unknown command "li\x00st"; did you mean "list"?`, false},
		{"unknown command close to one", "lsit\n", 0, `ERR unknown command "lsit"; did you mean "list"?`, false},
		{"help command", "help peers\n", 5, "OK", false},
		{"help unknown command", "help lsit\n", 0, `ERR unknown command "lsit"; did you mean "list"?`, false},
		{"help far unknown command", "help bogus\n", 0, `ERR unknown command "bogus"`, false},
		{"help two words", "help list find\n", 0, "ERR usage: help [COMMAND]", false},
		{"help --json", "help --json\n", 0, `ERR usage: help [COMMAND] (unknown option "--json")`, false},
		{"longest line", long + "\n", 0, "OK", false},
		{"longest line with CRLF", long + "\r\n", 0, "OK", false},
		{"line too long", long + "x\n", 0, fmt.Sprintf("ERR request line too long (more than %d bytes)", control.MaxLineBytes), true},
		{"line far too long", strings.Repeat("y", 100000) + "\n", 0, fmt.Sprintf("ERR request line too long (more than %d bytes)", control.MaxLineBytes), true},
		{"quit", "quit\n", 0, "OK", true},
		{"QUIT with CRLF", "QUIT\r\n", 0, "OK", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, ts.Path)
			if tc.closed {
				r.sendRefused(tc.send)
			} else {
				r.send(tc.send)
			}
			lines, final := r.answer()
			if len(lines) != tc.lines || final != tc.final {
				t.Fatalf("answer %q then %q, want %d lines then %q", lines, final, tc.lines, tc.final)
			}
			if tc.closed {
				r.expectEOF()
				return
			}
			r.send("status\n")
			if lines, final := r.answer(); final != "OK" || len(lines) == 0 || lines[0] != "version: 1.2.3" {
				t.Fatalf("connection not usable afterwards: %q then %q", lines, final)
			}
		})
	}
}

func TestBlankLinesAndPipelining(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	r := dialRaw(t, ts.Path)
	// Blank lines get no answer; pipelined requests are answered in order.
	r.send("\n   \n\t\r\nhelp\nbogus\n\nstatus\n")
	if lines, final := r.answer(); final != "OK" || len(lines) != len(control.Commands()) || !strings.HasPrefix(lines[0], "help ") {
		t.Fatalf("first answer %q then %q, want help", lines, final)
	}
	if lines, final := r.answer(); final != `ERR unknown command "bogus"` || len(lines) != 0 {
		t.Fatalf("second answer %q then %q", lines, final)
	}
	if lines, final := r.answer(); final != "OK" || lines[0] != "version: 1.2.3" {
		t.Fatalf("third answer %q then %q", lines, final)
	}
	// A last line without newline is answered when the client half-closes.
	r.send("peers")
	if err := r.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if lines, final := r.answer(); final != "OK" || len(lines) != 2 {
		t.Fatalf("unterminated last line: %q then %q", lines, final)
	}
	r.expectEOF()
}

func TestHostileStrings(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "hostid-local", Hostname: "alpha", Now: controltest.T0})
	evilLabel := "evil\x1b[2J\x1b]52;c;aGVsbG8=\x07\u202e"
	evilMount := "/mnt/a\nb\\c"
	inv.SetLocal([]diskstate.Disk{{Device: "/dev/sde1", Type: "ext4", Label: evilLabel, UUID: "5555",
		Mountpoints: []string{evilMount}}}, nil)
	if err := inv.Apply(inventory.Announcement{HostID: "h\x1b", Hostname: "ERR", BootID: "b", Seq: 1,
		Interval: time.Second, Address: "192.0.2.9:1\r", Disks: []diskstate.Disk{{Device: "/dev/x\xff", UUID: "6"}}}); err != nil {
		t.Fatal(err)
	}
	ts := controltest.Start(t, &control.Server{Inv: inv})
	c := dialClient(t, ts.Path)

	lines, err := c.Do(context.Background(), "list")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`HOST    DEVICE      TYPE  LABEL                                    UUID  MOUNTED`,
		`\x45RR  /dev/x\xff  -     -                                        6     -`,
		`alpha   /dev/sde1   ext4  evil\x1b[2J\x1b]52;c;aGVsbG8=\x07\u202e  5555  /mnt/a\nb\\c`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("list =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	peers, err := c.Do(context.Background(), "peers")
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 || peers[1] != `\x45RR    h\x1b    192.0.2.9:1\r  1      2.1s ago    3s       no    -` {
		t.Errorf("peers = %q", peers)
	}
	for _, l := range append(lines, peers...) {
		for _, r := range l {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
				t.Errorf("raw %U in human output line %q", r, l)
			}
		}
	}
	// --json carries the exact bytes.
	disks := jsonDisks(t, c, "find --json 5555")
	if len(disks) != 1 || disks[0].Label != evilLabel || !slices.Equal(disks[0].Mountpoints, []string{evilMount}) {
		t.Errorf("find --json = %+v, want label %q and mount %q", disks, evilLabel, evilMount)
	}
	raw, err := c.Do(context.Background(), "list --json")
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 || strings.ContainsAny(raw[0], "\x1b\n\r\x07") {
		t.Errorf("list --json is not one clean line: %q", raw)
	}
}

func TestMaxConns(t *testing.T) {
	ts := controltest.Start(t, &control.Server{MaxConns: 2})
	a, b := dialRaw(t, ts.Path), dialRaw(t, ts.Path)
	for _, r := range []*rawConn{a, b} {
		r.ok("status\n")
	}
	over := dialFull(t, ts.Path)
	over.expectEOF()
	// The client API reports it as an ERR answer.
	c := dialClient(t, ts.Path)
	var re *control.RemoteError
	if _, err := c.Do(context.Background(), "status"); !errors.As(err, &re) || re.Msg != "too many connections" {
		t.Fatalf("Do over the limit: %v", err)
	}
	// Once one leaves, a new one is served.
	a.c.Close()
	controltest.WaitFor(t, "a free connection slot", func() bool { return probeStatus(ts.Path) })
	b.ok("peers\n")
}

func TestConcurrentClients(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Meanwhile the inventory changes.
	wg.Go(func() {
		for seq := uint64(2); ctx.Err() == nil; seq++ {
			ds := []diskstate.Disk{{Device: fmt.Sprintf("/dev/vd%d", seq%7), UUID: "u", Label: "L"}}
			_ = ts.Inv.Apply(inventory.Announcement{HostID: "hostid-gamma", Hostname: "gamma", BootID: "b",
				Seq: seq, Interval: time.Second, Disks: ds})
			ts.Inv.SetLocal(ds, nil)
			time.Sleep(time.Millisecond)
		}
	})
	cmds := []string{"list", "list --json", "find --json L", "peers", "peers --json", "status", "status --json",
		"help", "refresh", "bogus", "list /dev/vd"}
	errs := make(chan error, 40)
	var clients sync.WaitGroup
	for i := range 40 {
		clients.Go(func() {
			c, err := control.Dial(context.Background(), ts.Path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range 30 {
				cmd := cmds[rng.IntN(len(cmds))]
				lines, err := c.Do(context.Background(), cmd)
				var re *control.RemoteError
				switch {
				case cmd == "bogus" && errors.As(err, &re):
				case err != nil:
					errs <- fmt.Errorf("client %d: %s: %w", i, cmd, err)
					return
				case strings.HasSuffix(cmd, "--json") && len(lines) != 1:
					errs <- fmt.Errorf("client %d: %s: %d lines", i, cmd, len(lines))
					return
				}
			}
		})
	}
	clients.Wait()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	path := t.TempDir() + "/diskd.sock"
	ln, _, err := control.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &control.Server{Inv: controltest.Inventory(t), Actions: controltest.NewActions()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	idle := dialRaw(t, path)
	c := dialClient(t, path)
	if _, err := c.Do(context.Background(), "status"); err != nil {
		t.Fatal(err)
	}
	partial := dialRaw(t, path)
	partial.send("lis") // in the middle of a request line
	cancel()
	if err := testbed.Await(t, done, 10*time.Second, "return of Serve"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	idle.expectEOF()
	partial.expectEOF()
	var re *control.RemoteError
	if _, err := c.Do(context.Background(), "status"); err == nil || errors.As(err, &re) {
		t.Fatalf("Do after stop: %v, want a connection error", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
}

func TestServeListenerClosed(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- (&control.Server{Inv: controltest.Inventory(t)}).Serve(context.Background(), ln) }()
	ln.Close()
	if err := testbed.Await(t, done, 10*time.Second, "return of Serve"); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve = %v, want an accept error", err)
	}
}

// TestWriteTimeout: a client that sends requests and never reads is
// disconnected, and its slot is freed.
func TestWriteTimeout(t *testing.T) {
	inv := inventory.New(inventory.Options{HostID: "h", Hostname: "alpha"})
	var disks []diskstate.Disk
	for i := range 3000 {
		disks = append(disks, diskstate.Disk{Device: fmt.Sprintf("/dev/disk%d", i), UUID: fmt.Sprint(i),
			Label: strings.Repeat("L", 200)})
	}
	inv.SetLocal(disks, nil)
	ts := controltest.Start(t, &control.Server{Inv: inv, MaxConns: 1, WriteTimeout: 200 * time.Millisecond})
	stuck := dialRaw(t, ts.Path)
	stuck.send("list --json\nlist --json\nlist --json\n")
	start := time.Now()
	controltest.WaitFor(t, "the stuck client to be dropped", func() bool { return probeStatus(ts.Path) })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to drop a client that does not read", d)
	}
}
