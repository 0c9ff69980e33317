package present

import (
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestAgo(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0.0s ago"},
		{2100 * time.Millisecond, "2.1s ago"},
		{42 * time.Second, "42s ago"},
		{3*time.Minute + 5*time.Second, "3m05s ago"},
		{2*time.Hour + 7*time.Minute, "2h07m ago"},
		{76 * time.Hour, "3d04h ago"},
	} {
		if got := Ago(tc.d); got != tc.want {
			t.Errorf("Ago(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestExportedFormatters(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  func() ([]byte, error)
		want string
	}{
		{"no disks", func() ([]byte, error) { return DisksJSON(nil) }, "[]\n"},
		{"no peers", func() ([]byte, error) { return PeersJSON(nil) }, "[]\n"},
		{"nil mountpoints", func() ([]byte, error) {
			return DisksJSON([]diskstate.Disk{{Device: "/dev/x", LastSeen: t0}})
		}, `[{"host_id":"","hostname":"","device":"/dev/x","uuid":"","partuuid":"","label":"","partlabel":"","type":"","fs_version":"",` +
			`"mountpoints":[],"size":0,"read_only":false,"removable":false,"rotational":false,"transport":"","model":"",` +
			`"vendor":"","serial":"","wwn":"","fs_size":0,"fs_avail":0,"fs_used":0,"local":false,"last_seen":"2024-05-01T12:00:00Z","present":false}]` + "\n"},
		{"empty disk table", func() ([]byte, error) { return DisksTable(nil), nil }, ""},
		{"empty peer table", func() ([]byte, error) { return PeersTable(nil, t0), nil }, ""},
		{"host id when no hostname", func() ([]byte, error) {
			return DisksTable([]diskstate.Disk{{HostID: "id", Device: "/dev/x"}}), nil
		}, "HOST  DEVICE  TYPE  LABEL  UUID  MOUNTED\nid    /dev/x  -     -      -     -\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.got()
			if err != nil || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
