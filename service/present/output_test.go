package present

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestHumanSize(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		want string
	}{
		{1, "1B"}, {1023, "1023B"}, {1024, "1K"}, {1536, "1.5K"}, {1100, "1.1K"}, {1075, "1K"},
		{1048575, "1024K"}, {16 << 20, "16M"}, {20 << 20, "20M"}, {1996488704, "1.9G"},
		{500107862016, "465.8G"}, {2000398934016, "1.8T"}, {1 << 60, "1E"}, {^uint64(0), "16E"},
	} {
		if got := HumanSize(c.n); got != c.want {
			t.Errorf("HumanSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

// goldenDisks are two hosts' disks, one of them with hostile strings.
func goldenDisks() []diskstate.Disk {
	seen := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	return []diskstate.Disk{
		{HostID: "a1", Hostname: "alpha", Device: "/dev/sdb1", UUID: "c0d8fed4-8054-4dd0-a702-2c1d0620355c",
			PartUUID: "c9711740-c06d-f047-a682-395d6f90f39a", Label: "backup", PartLabel: "ux-partlabel", Type: "ext4",
			FSVersion: "1.0", Mountpoints: []string{"/mnt/backup"}, Size: 2000398934016, Removable: true, Rotational: true,
			Transport: "usb", Model: "Expansion HDD", Vendor: "Seagate", Serial: "NAAB1234", WWN: "0x5000c500a1b2c3d4",
			FSSize: 1967397240832, FSAvail: 1031597690880, FSUsed: 835797901312, Local: true, LastSeen: seen},
		{HostID: "a1", Hostname: "alpha", Device: "/dev/sdc1", UUID: "B685-06D2", Label: "STICK", Type: "vfat",
			FSVersion: "FAT32", Size: 16 << 20, ReadOnly: true, Removable: true, Transport: "usb", Local: true, LastSeen: seen},
		{HostID: "b2", Hostname: "beta", Device: "/dev/sdd1", UUID: "u-evil",
			Label: "a \"q\" $(rm -rf /) `x` \\ \x1b[31mred\n=x", PartLabel: "OK", Type: "ext4",
			Model: "tab\there", Serial: "ERR fake", Size: 1536, Mountpoints: []string{"/mnt/a\nb c"}, LastSeen: seen},
	}
}

func TestOutputGolden(t *testing.T) {
	disks := goldenDisks()
	for _, c := range []struct {
		name string
		o    Output
	}{
		{"default", Output{}},
		{"columns", Output{Columns: []string{"DEVICE", "SIZE", "MODEL", "SERIAL", "FSAVAIL"}}},
		{"all", Output{Columns: AllColumns()}},
		{"noheadings", Output{NoHeadings: true}},
		{"bytes", Output{Columns: []string{"DEVICE", "SIZE", "FSSIZE", "FSAVAIL", "FSUSED"}, Bytes: true}},
		{"raw", Output{Raw: true, Columns: []string{"DEVICE", "LABEL", "PARTLABEL", "SIZE", "RO"}}},
		{"raw-noheadings", Output{Raw: true, NoHeadings: true, Columns: []string{"PARTLABEL"}}},
		{"pairs", Output{Pairs: true, Columns: []string{"HOST-ID", "DEVICE", "LABEL", "MODEL", "SIZE"}}},
		{"sort-size", Output{Sort: "size", Columns: []string{"DEVICE", "SIZE"}}},
		{"sort-label", Output{Sort: "LABEL", Columns: []string{"DEVICE", "LABEL"}, Raw: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.o.Check(); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".txt", DisksOutput(disks, c.o))
		})
	}
	t.Run("info", func(t *testing.T) {
		var b []byte
		for i := range disks {
			b = append(b, DiskInfo(&disks[i], false)...)
		}
		golden(t, "info.txt", b)
		golden(t, "info-bytes.txt", DiskInfo(&disks[0], true))
	})
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestPairsEscaping: every -P line of hostile strings, evaluated by a
// shell, assigns the escaped text and runs nothing: no quote, dollar,
// backquote, backslash-quote or control character survives inside the
// quotes.
func TestPairsEscaping(t *testing.T) {
	out := string(DisksOutput(goldenDisks(), Output{Pairs: true, Columns: AllColumns()}))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
	}
	for _, l := range lines {
		for _, kv := range strings.SplitAfter(l, `" `) {
			k, v, ok := strings.Cut(kv, `="`)
			if !ok || strings.ContainsAny(k, " \"$`\\") {
				t.Fatalf("bad pair %q in %q", kv, l)
			}
			v = strings.TrimSuffix(strings.TrimSuffix(v, " "), `"`)
			if strings.ContainsAny(v, "\"$`\n\r\t\x1b") {
				t.Errorf("value %q of %s keeps a character a shell or terminal acts on", v, k)
			}
		}
	}
	if !strings.Contains(out, `LABEL="a \x22q\x22 \x24(rm -rf /) \x60x\x60 \x5c \x1b[31mred\n=x"`) {
		t.Errorf("hostile label not escaped as expected:\n%s", out)
	}
}

func TestParseColumns(t *testing.T) {
	for _, c := range []struct {
		spec, want, err string
	}{
		{"DEVICE,label", "DEVICE,LABEL", ""},
		{"+SIZE,MODEL", "HOST,DEVICE,TYPE,LABEL,UUID,MOUNTED,SIZE,MODEL", ""},
		{"+LABEL", "HOST,DEVICE,TYPE,LABEL,UUID,MOUNTED", ""},
		{"NAME", "", `unknown column "NAME"`},
		{"", "", "no column given"},
	} {
		got, err := ParseColumns(c.spec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.spec, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != c.want {
			t.Errorf("%q = %v, %v; want %s", c.spec, got, err, c.want)
		}
	}
	if err := (Output{Raw: true, Pairs: true}).Check(); err == nil {
		t.Error("-r with -P accepted")
	}
	if err := (Output{Sort: "NOPE"}).Check(); err == nil {
		t.Error("unknown sort column accepted")
	}
}

func TestDiskChanges(t *testing.T) {
	old := goldenDisks()[0]
	cur := old
	cur.Mountpoints = nil
	cur.Label = "new\x1blabel"
	cur.FSAvail = 12 << 30
	cur.LastSeen = old.LastSeen.Add(time.Minute)
	got := ChangesText(DiskChanges(&old, &cur))
	want := `label: backup → new\x1blabel, mountpoints: /mnt/backup → -, fs_avail: 960.8G → 12G`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if c := DiskChanges(&old, &old); len(c) != 0 {
		t.Errorf("no change: %v", c)
	}
}
