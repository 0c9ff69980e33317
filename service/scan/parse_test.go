package scan

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/diskd/diskd/service/diskstate"
)

func TestParseBlkidTable(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes
	tests := []struct {
		name    string
		in      string
		want    []diskstate.Disk
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "blank lines only", in: "\n\n\n", want: nil},
		{
			name: "one disk",
			in:   "DEVNAME=/dev/sda1\nLABEL=root\nUUID=abc\nBLOCK_SIZE=4096\nTYPE=ext4\nPARTUUID=1234-01\n",
			want: []diskstate.Disk{{Device: "/dev/sda1", Label: "root", UUID: "abc", Type: "ext4", PartUUID: "1234-01"}},
		},
		{
			name: "sorted by device, blank separators, no final newline",
			in:   "DEVNAME=/dev/sdb\nTYPE=xfs\n\nDEVNAME=/dev/sda\nTYPE=vfat\nUUID=12AB-34CD",
			want: []diskstate.Disk{{Device: "/dev/sda", Type: "vfat", UUID: "12AB-34CD"}, {Device: "/dev/sdb", Type: "xfs"}},
		},
		{
			name: "backslash escapes",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=a\\ b\\\"c\\\\d\\$e\\'f\\`g\\<h\\>i\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "a b\"c\\d$e'f`g<h>i"}},
		},
		{
			name: "M-notation UTF-8",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=StraM-CM-^_e-M-CM-\\<\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "Straße-ü"}},
		},
		{
			name: "M-^\\ is 0x9c, with no backslash escape after a caret",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=M-fM-^WM-%M-fM-^\\M-,\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "日本"}},
		},
		{
			name: "caret notation",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=nl^Jx=y^Iz^?\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "nl\nx=y\tz\x7f"}},
		},
		{
			name: "invalid UTF-8 becomes U+FFFD per byte",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=xM-^?M-~y\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "x\uFFFD\uFFFDy"}},
		},
		{
			name: "raw invalid bytes and NUL",
			in:   "DEVNAME=/dev/\xffx\nTYPE=ext\x004\nLABEL=\xc3\n",
			want: []diskstate.Disk{{Device: "/dev/\uFFFDx", Type: "ext\uFFFD4", Label: "\uFFFD"}},
		},
		{
			name: "^@ decodes to NUL, which becomes U+FFFD",
			in:   "DEVNAME=/dev/x\nUUID=u\nLABEL=a^@b\n",
			want: []diskstate.Disk{{Device: "/dev/x", UUID: "u", Label: "a\uFFFDb"}},
		},
		{
			name: "no filesystem: partition table only, or nothing",
			in:   "DEVNAME=/dev/sdc\nPTUUID=0d4dd3e7\nPTTYPE=gpt\n\nDEVNAME=/dev/sdd\n\nDEVNAME=/dev/sde1\nPARTUUID=aa-01\nLABEL=orphan\n",
			want: nil,
		},
		{
			name: "type without UUID and UUID without type are disks",
			in:   "DEVNAME=/dev/a\nTYPE=squashfs\n\nDEVNAME=/dev/b\nUUID=u-1\n",
			want: []diskstate.Disk{{Device: "/dev/a", Type: "squashfs"}, {Device: "/dev/b", UUID: "u-1"}},
		},
		{
			name: "malformed lines are skipped",
			in:   "garbage\nTYPE=before-any-devname\n=\n=x\nDEVNAME=\nTYPE=nameless\nDEVNAME=/dev/x\nno equals sign\nlabel=lowercase-key\nTYPE=ext4\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4"}},
		},
		{
			name: "repeated tag keeps the first, repeated device keeps the first",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nTYPE=xfs\nLABEL=one\nLABEL=two\n\nDEVNAME=/dev/x\nTYPE=btrfs\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "one"}},
		},
		{
			name: "dangling escapes at the end of a value",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=a\\\nUUID=b^\nPARTUUID=M-\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: "a\\", UUID: "b^", PartUUID: "M-"}},
		},
		{
			name: "over-long label cut at a character boundary",
			in:   "DEVNAME=/dev/x\nTYPE=ext4\nLABEL=" + long + "\n",
			want: []diskstate.Disk{{Device: "/dev/x", Type: "ext4", Label: strings.Repeat("é", 127)}},
		},
		{
			name: "over-long other fields are bounded",
			in:   "DEVNAME=/dev/" + strings.Repeat("d", 5000) + "\nTYPE=" + strings.Repeat("t", 100) + "\nUUID=" + strings.Repeat("u", 200) + "\n",
			want: []diskstate.Disk{{Device: ("/dev/" + strings.Repeat("d", 5000))[:diskstate.MaxDeviceLen], Type: strings.Repeat("t", diskstate.MaxTypeLen), UUID: strings.Repeat("u", diskstate.MaxUUIDLen)}},
		},
		{
			name: "CRLF stays part of the value",
			in:   "DEVNAME=/dev/x\r\nTYPE=ext4\r\n",
			want: []diskstate.Disk{{Device: "/dev/x\r", Type: "ext4\r"}},
		},
		{
			name:    "too many devices",
			in:      strings.Repeat("DEVNAME=/dev/x\nTYPE=ext4\n", MaxDisks+1),
			wantErr: "more than 4096 devices",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBlkid([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
			checkDisks(t, got)
		})
	}
}

func TestParseBlkidTooLarge(t *testing.T) {
	if _, err := ParseBlkid(make([]byte, maxOutput+1)); err == nil {
		t.Fatal("no error for output over 16 MiB")
	}
}

// checkDisks asserts the invariants of every result.
func checkDisks(t *testing.T, disks []diskstate.Disk) {
	t.Helper()
	if len(disks) > MaxDisks {
		t.Errorf("%d disks", len(disks))
	}
	for i, d := range disks {
		for _, f := range []struct {
			name, v string
			max     int
		}{
			{"Device", d.Device, diskstate.MaxDeviceLen}, {"UUID", d.UUID, diskstate.MaxUUIDLen}, {"PartUUID", d.PartUUID, diskstate.MaxUUIDLen},
			{"Label", d.Label, diskstate.MaxLabelLen}, {"Type", d.Type, diskstate.MaxTypeLen},
		} {
			if !utf8.ValidString(f.v) || len(f.v) > f.max || strings.IndexByte(f.v, 0) >= 0 {
				t.Errorf("disk %d %s = %q: invalid, NUL or longer than %d", i, f.name, f.v, f.max)
			}
		}
		if d.Device == "" || (d.Type == "" && d.UUID == "") {
			t.Errorf("disk %d is not a disk: %#v", i, d)
		}
		if i > 0 && disks[i-1].Device >= d.Device {
			t.Errorf("disks not sorted or not unique at %d: %q, %q", i, disks[i-1].Device, d.Device)
		}
	}
}

// TestExportRoundTrip checks that decodeExport inverts blkid's encoding for
// every value without a literal '^' or "M" (nor 0xde and 0xcd, which blkid
// prints as "M-^" and "M-M"), and that only the notations make a value
// ambiguous.
func TestExportRoundTrip(t *testing.T) {
	var all []byte
	for b := 1; b < 256; b++ {
		switch b {
		case '^', 'M', 0xde, 0xcd:
			continue
		}
		all = append(all, byte(b))
	}
	for _, s := range []string{"", "plain", "my backup disk", "a \"\\$'`<>z", "Straße-ü", "日本", "x\xff\xfey", "nl\nx=y\tz", "\x1c \x1c\\", string(all)} {
		enc := encodeExport(s)
		dec, amb := decodeExport([]byte(enc))
		if dec != s {
			t.Errorf("decode(encode(%q)) = %q (encoded %q)", s, dec, enc)
		}
		wantAmb := strings.Contains(enc, "^") || strings.Contains(enc, "M-")
		if amb != wantAmb {
			t.Errorf("%q: ambiguous = %v, want %v", s, amb, wantAmb)
		}
	}
	// With them, the result is flagged ambiguous.
	for _, s := range []string{"a^b", "M-x", "\xde", "\xcd-"} {
		if _, amb := decodeExport([]byte(encodeExport(s))); !amb {
			t.Errorf("%q: not flagged ambiguous", s)
		}
	}
}

func TestParseUdev(t *testing.T) {
	out := "ID_FS_LABEL=a^Ib_M-Cx\nID_FS_LABEL_ENC=a\\x5eIb\\x20M-Cx\\xE6\\x9c\\xzz\\x4\n" +
		"ID_FS_UUID=u\nID_FS_UUID_ENC=u\\x2d1\nID_FS_TYPE=ext4\nID_FS_PARTUUID=p-01\nID_FS_LABEL_ENC=again\n\nID_FS_TYPE=second-device\n"
	got := parseUdev([]byte(out))
	want := map[tag]string{tagLabel: "a^Ib M-Cx\xe6\x9c\\xzz\\x4", tagUUID: "u-1", tagType: "ext4", tagPartUUID: "p-01"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestResolve(t *testing.T) {
	recs, err := parseExport([]byte("DEVNAME=/dev/x\nTYPE=ext4\nLABEL=a^Ib\\ M-Cx\nUUID=M-Ax\n"))
	if err != nil || len(recs) != 1 {
		t.Fatal(recs, err)
	}
	r := recs[0]
	if !r.needsResolve() {
		t.Fatal("not ambiguous")
	}
	// The label agrees with the export output; the UUID (a garbled udev
	// value, as blkid prints when its buffer overflows) does not.
	r.resolve(map[tag]string{tagLabel: "a^Ib M-Cx", tagUUID: "garbage"})
	if r.disk.Label != "a^Ib M-Cx" {
		t.Errorf("label %q", r.disk.Label)
	}
	if r.disk.UUID != "\xc1x" {
		t.Errorf("uuid %q: the best guess should stay", r.disk.UUID)
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"abc", 10, "abc"},
		{"abcdef", 3, "abc"},
		{"ééé", 5, "éé"},
		{"日本", 4, "日"},
		{"a\xffb", 10, "a\uFFFDb"},
		{"a\xffb", 3, "a"},
		{"\x00", 10, "\uFFFD"},
		{"\xe6\x9c", 10, "\uFFFD\uFFFD"},
		{"", 0, ""},
	}
	for _, tt := range tests {
		if got := clean(tt.in, tt.max); got != tt.want {
			t.Errorf("clean(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		globs []string
		dev   string
		want  bool
	}{
		{nil, "/dev/sda1", true},
		{[]string{}, "/dev/anything", true},
		{[]string{"/dev/loop*"}, "/dev/loop3", true},
		{[]string{"/dev/loop*"}, "/dev/sda", false},
		{[]string{"/dev/sd?1", "/dev/loop[0-3]"}, "/dev/loop2", true},
		{[]string{"/dev/sd?1", "/dev/loop[0-3]"}, "/dev/loop4", false},
		{[]string{"/dev/*"}, "/dev/mapper/x", false}, // * does not cross /
		{[]string{"/dev/[", "/dev/sda"}, "/dev/sda", true},
		{[]string{"/dev/["}, "/dev/[", false}, // malformed glob matches nothing
	}
	for _, tt := range tests {
		if got := Matches(tt.globs, tt.dev); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.globs, tt.dev, got, tt.want)
		}
	}
}

func TestBlkidArgs(t *testing.T) {
	got := strings.Join(blkidArgs("export", []string{"/dev/a", "-weird"}), " ")
	want := "-c /dev/null -o export -s TYPE -s UUID -s LABEL -s PARTUUID -s PARTLABEL -s VERSION -- /dev/a -weird"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := strings.Join(blkidArgs("udev", nil), " "); got != "-c /dev/null -o udev -s TYPE -s UUID -s LABEL -s PARTUUID -s PARTLABEL -s VERSION" {
		t.Errorf("got %q", got)
	}
}
