package scan

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/testbed"
)

// imageCase is a filesystem image made for real by a mkfs program.
type imageCase struct {
	name string
	mkfs []string        // command; the image path is appended
	want *diskstate.Disk // nil: not a disk (Device is filled in by the test)
	// exactOnlyWithProbe: ParseBlkid alone cannot decode the label
	// exactly (it contains a literal '^' or "M-"); Probe can.
	exactOnlyWithProbe bool
	// randomUUID: compare the UUID with blkid -s UUID -o value.
	randomUUID bool
}

func imageCases() []imageCase {
	return []imageCase{
		{name: "spaces", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "0c1e3a77-2a3b-4c5d-8e9f-0a1b2c3d4e5f", "-L", "my backup disk"},
			want: &diskstate.Disk{Type: "ext4", Label: "my backup disk", UUID: "0c1e3a77-2a3b-4c5d-8e9f-0a1b2c3d4e5f"}},
		{name: "shellchars", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "11111111-2222-4333-8444-555555555555", "-L", "a \"\\$'`<>z"},
			want: &diskstate.Disk{Type: "ext4", Label: "a \"\\$'`<>z", UUID: "11111111-2222-4333-8444-555555555555"}},
		{name: "vfat", mkfs: []string{"mkfs.vfat", "-n", "MY VFAT", "-i", "1234ABCD"},
			want: &diskstate.Disk{Type: "vfat", Label: "MY VFAT", UUID: "1234-ABCD"}},
		{name: "swap", mkfs: []string{"mkswap", "-L", "sw ap", "-U", "22222222-3333-4444-8555-666666666666"},
			want: &diskstate.Disk{Type: "swap", Label: "sw ap", UUID: "22222222-3333-4444-8555-666666666666"}},
		{name: "german", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "33333333-4444-4555-8666-777777777777", "-L", "Straße-ü"},
			want: &diskstate.Disk{Type: "ext4", Label: "Straße-ü", UUID: "33333333-4444-4555-8666-777777777777"}},
		{name: "japanese", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "44444444-5555-4666-8777-888888888888", "-L", "日本"},
			want: &diskstate.Disk{Type: "ext4", Label: "日本", UUID: "44444444-5555-4666-8777-888888888888"}},
		{name: "badutf8", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "55555555-6666-4777-8888-999999999999", "-L", "x\xff\xfey"},
			want: &diskstate.Disk{Type: "ext4", Label: "x\uFFFD\uFFFDy", UUID: "55555555-6666-4777-8888-999999999999"}},
		{name: "controls", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "66666666-7777-4888-8999-aaaaaaaaaaaa", "-L", "nl\nx=y\tz"},
			want: &diskstate.Disk{Type: "ext4", Label: "nl\nx=y\tz", UUID: "66666666-7777-4888-8999-aaaaaaaaaaaa"}},
		{name: "caret-backslash", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "88888888-9999-4aaa-8bbb-cccccccccccc", "-L", "x\x1c \x1c\\\\"},
			want: &diskstate.Disk{Type: "ext4", Label: "x\x1c \x1c\\\\", UUID: "88888888-9999-4aaa-8bbb-cccccccccccc"}},
		{name: "notation", mkfs: []string{"mkfs.ext4", "-q", "-F", "-U", "77777777-8888-4999-8aaa-bbbbbbbbbbbb", "-L", "a^Ib M-Cx"},
			want:               &diskstate.Disk{Type: "ext4", Label: "a^Ib M-Cx", UUID: "77777777-8888-4999-8aaa-bbbbbbbbbbbb"},
			exactOnlyWithProbe: true},
		{name: "nolabel", mkfs: []string{"mkfs.ext4", "-q", "-F"},
			want: &diskstate.Disk{Type: "ext4"}, randomUUID: true},
		{name: "zeros"},
		{name: "gpt-only", mkfs: []string{"sh", "-c", `echo 'label: gpt' | sfdisk -q "$0"`}},
	}
}

// makeImages creates every image of cases in a temp dir; it returns their
// paths and the disks expected from them (sorted by device).
func makeImages(t *testing.T, cases []imageCase) (paths []string, want []diskstate.Disk) {
	t.Helper()
	testbed.RequireTools(t, "blkid", "mkfs.ext4", "mkfs.vfat", "mkswap", "sfdisk")
	dir := t.TempDir()
	for _, c := range cases {
		img := newImage(t, dir, c.name+".img", 8<<20)
		if c.mkfs != nil {
			mustRun(t, c.mkfs[0], append(c.mkfs[1:], img)...)
		}
		paths = append(paths, img)
		if c.want == nil {
			continue
		}
		d := *c.want
		d.Device = img
		if c.randomUUID {
			d.UUID = strings.TrimSpace(mustRun(t, "blkid", "-c", "/dev/null", "-s", "UUID", "-o", "value", img))
			if d.UUID == "" {
				t.Fatalf("%s: blkid prints no UUID", c.name)
			}
		}
		want = append(want, d)
	}
	// ParseBlkid sorts by device.
	sort.Slice(want, func(i, j int) bool { return want[i].Device < want[j].Device })
	return paths, want
}

// TestParseBlkidRealImages parses what the real blkid prints for real
// filesystems, both with the tag selection Probe uses and without it.
func TestParseBlkidRealImages(t *testing.T) {
	cases := imageCases()
	paths, want := makeImages(t, cases)
	for _, variant := range []struct {
		name string
		args []string
	}{
		{"probe-args", blkidArgs("export", paths)},
		{"all-tags", append([]string{"-c", "/dev/null", "-o", "export", "--"}, paths...)},
	} {
		t.Run(variant.name, func(t *testing.T) {
			out, err := exec.Command("blkid", variant.args...).Output()
			if err != nil {
				t.Fatalf("blkid %q: %v", variant.args, err)
			}
			got, err := ParseBlkid(out)
			if err != nil {
				t.Fatalf("ParseBlkid: %v\n%s", err, out)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d disks, want %d:\n got %+v\nwant %+v\noutput:\n%s", len(got), len(want), got, want, out)
			}
			for i, c := range want {
				g := got[i]
				if strings.HasSuffix(c.Device, "/notation.img") && c.Label != g.Label {
					// ParseBlkid's best guess for "a^Ib M-Cx" (^I is
					// a tab, M-C a byte 0xC3 that is not UTF-8).
					if g.Label != "a\tb \uFFFDx" {
						t.Errorf("notation: best guess label %q", g.Label)
					}
					g.Label = c.Label
				}
				if !reflect.DeepEqual(g, c) {
					t.Errorf("disk %d:\n got %#v\nwant %#v", i, g, c)
				}
			}
		})
	}
}

// TestProbeRealImages runs the whole probe (export, then udev for the
// ambiguous label, then -p for the versions) on the images, twice: every
// label comes out exact, and the second probe finds the same versions
// without running blkid -p again. blkid is the real one, behind a wrapper
// that records each run.
func TestProbeRealImages(t *testing.T) {
	paths, want := makeImages(t, imageCases())
	real, err := exec.LookPath("blkid")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	wrapper := writeScript(t, dir, "blkid", `echo "$1" >> `+runs+`
exec `+real+` "$@"
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// blkid -p reports each filesystem's version (mkfs of this Debian).
	versions := map[string]string{"ext4": "1.0", "swap": "1", "vfat": "FAT12"}
	for i := range want {
		want[i].FSVersion = versions[want[i].Type]
	}
	p := &Prober{Path: wrapper}
	for i, wantP := range []int{1, 0} {
		if err := os.Remove(runs); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		got, err := p.probe(ctx, paths)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("probe %d:\n got %#v\nwant %#v", i+1, got, want)
		}
		b, err := os.ReadFile(runs)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "-p\n"); n != wantP {
			t.Errorf("probe %d ran blkid -p %d times, want %d (runs by first argument: %q)", i+1, n, wantP, b)
		}
	}
}
