package scan

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseBlkid feeds arbitrary bytes to the blkid parsers. The seed
// corpus in testdata/fuzz/FuzzParseBlkid holds real blkid 2.38 output
// captured from the images of real_test.go and hand-written edge cases.
func FuzzParseBlkid(f *testing.F) {
	f.Add([]byte("DEVNAME=/dev/x\nTYPE=ext4\nLABEL=a\\ b^JM-CM-^_\n"))
	f.Add([]byte("ID_FS_LABEL_ENC=a\\x20b\\xff\nID_FS_TYPE=ext4\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		disks, err := ParseBlkid(data)
		if err != nil {
			if disks != nil {
				t.Fatal("disks and an error")
			}
			return
		}
		checkDisks(t, disks)
		if len(disks) > strings.Count(string(data), "DEVNAME=") {
			t.Fatalf("%d disks from %d DEVNAME lines", len(disks), strings.Count(string(data), "DEVNAME="))
		}
		// The udev parser and the resolution step must hold too.
		vals := parseUdev(data)
		recs, err := parseExport(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			r.resolve(vals)
		}
		checkDisks(t, finish(recs))
		for tg, v := range vals {
			if tg < 0 || tg >= numTags || len(v) > len(data) {
				t.Fatalf("udev value %d %q", tg, v)
			}
		}
	})
}

// FuzzParseUevent feeds arbitrary bytes to the uevent parser.
func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("change@/devices/virtual/block/loop3\x00ACTION=change\x00DEVPATH=/devices/virtual/block/loop3\x00SUBSYSTEM=block\x00DEVNAME=loop3\x00DEVTYPE=disk\x00SEQNUM=1\x00"))
	f.Add([]byte("add@/devices/x/sda1\x00ACTION=add\x00DEVPATH=/devices/x/sda1\x00SUBSYSTEM=block\x00DEVNAME=sda1\x00DEVTYPE=partition\x00"))
	f.Add([]byte("libudev\x00\xfe\xed\xca\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, ok := parseUevent(data)
		if !ok {
			if ev != (Uevent{}) {
				t.Fatalf("rejected but not empty: %+v", ev)
			}
			return
		}
		for _, s := range []string{ev.Action, ev.DevName, ev.Subsystem, ev.DevType, ev.DevPath} {
			if !utf8.ValidString(s) || len(s) > maxUeventValue || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("bad string %q in %+v", s, ev)
			}
		}
		if !knownAction(ev.Action) || !strings.HasPrefix(ev.DevPath, "/") {
			t.Fatalf("accepted %+v", ev)
		}
		if ev.DevName != "" && (!strings.HasPrefix(ev.DevName, "/dev/") || strings.Contains(ev.DevName, "/../")) {
			t.Fatalf("DevName %q", ev.DevName)
		}
	})
}

// FuzzParseUdevData feeds arbitrary bytes to the udev database parser:
// every property comes from one E: line and is no longer than the input.
func FuzzParseUdevData(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		env := parseUdevData(bytes.NewReader(data))
		for k, v := range env {
			if k == "" || strings.Contains(k, "\n") || strings.Contains(v, "\n") || len(k)+len(v) > len(data) {
				t.Fatalf("property %q=%q from %q", k, v, data)
			}
			if !bytes.Contains(data, []byte("E:"+k+"="+v)) {
				t.Fatalf("property %q=%q is not a line of the input", k, v)
			}
		}
		_ = env.enc("ID_MODEL_ENC")
	})
}
