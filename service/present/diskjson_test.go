package present

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// referenceDisksJSON is DisksJSON as it was written first, with
// encoding/json: DisksJSON must give the same bytes.
func referenceDisksJSON(disks []diskstate.Disk) ([]byte, error) {
	out := make([]diskstate.Disk, len(disks))
	for i, d := range disks {
		if d.Mountpoints == nil {
			d.Mountpoints = []string{}
		}
		out[i] = d
	}
	return JSONLine(out)
}

func checkSameJSON(t *testing.T, disks []diskstate.Disk) {
	t.Helper()
	want, werr := referenceDisksJSON(disks)
	got, gerr := DisksJSON(disks)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("error %v, encoding/json's %v", gerr, werr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("DisksJSON differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestDisksJSONIsEncodingJSON(t *testing.T) {
	seen := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	odd := []string{
		"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rcr", "\b\f\x00\x01\x1f\x7f",
		"<html> & 'x'", "ünïcödé ✓", "\u2028\u2029", "bad \xff\xfe utf8", "\xe2\x80", "bidi \u202e evil",
		"esc \x1b[31m", "emoji 😀",
	}
	var disks []diskstate.Disk
	for i, s := range odd {
		disks = append(disks, diskstate.Disk{
			HostID: "h" + s, Hostname: s, Device: "/dev/" + s, UUID: s, PartUUID: s, Label: s, Type: s,
			Mountpoints: []string{s, "/mnt/" + s}, Local: i%2 == 0, LastSeen: seen.Add(time.Duration(i) * 1234567 * time.Nanosecond),
		})
	}
	checkSameJSON(t, nil)
	checkSameJSON(t, []diskstate.Disk{})
	checkSameJSON(t, disks)
	for _, ts := range []time.Time{
		{}, seen, seen.In(time.FixedZone("x", 5*3600+30*60)), seen.In(time.FixedZone("y", -(3*3600 + 7))),
		seen.In(time.FixedZone("z", 23*3600+59*60)), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(), time.Now().Round(0),
	} {
		checkSameJSON(t, []diskstate.Disk{{Device: "/dev/x", LastSeen: ts}})
	}
	checkSameJSON(t, []diskstate.Disk{{Device: "/dev/x", Mountpoints: []string{}}})
}

func TestDisksJSONRandomStrings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", "/", " ", `"`, `\`, "\n", "\x00", "\x7f", "\x80", "\xff", "é", "\u2028", "<", "&", "😀"}
	str := func() string {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		return string(b)
	}
	for range 2000 {
		d := diskstate.Disk{HostID: str(), Hostname: str(), Device: str(), UUID: str(), PartUUID: str(),
			Label: str(), Type: str(), Local: rng.IntN(2) == 0, LastSeen: time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9))}
		for range rng.IntN(3) {
			d.Mountpoints = append(d.Mountpoints, str())
		}
		// Every other field of the table too, whatever its kind.
		for _, f := range diskstate.Fields() {
			switch f.Kind {
			case diskstate.String:
				*f.Str(&d) = str()
			case diskstate.Uint:
				*f.Uint(&d) = rng.Uint64() >> rng.IntN(64)
			case diskstate.Bool:
				*f.Bool(&d) = rng.IntN(2) == 0
			}
		}
		checkSameJSON(t, []diskstate.Disk{d})
	}
}
