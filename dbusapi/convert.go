package dbusapi

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/service/diskstate"
)

// timeFormat is how times travel in the dictionaries: RFC 3339 with the
// fraction that the time has, exactly as encoding/json writes a time.Time,
// so that a client can reproduce the control socket's JSON.
const timeFormat = time.RFC3339Nano

// wireString makes s a valid D-Bus string, which must be UTF-8 without NUL
// (godbus refuses to send anything else): each byte that is not part of
// valid UTF-8 becomes U+FFFD, as encoding/json does it, so List gives what
// the control socket's JSON gives; a NUL becomes U+FFFD too.
func wireString(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0 || (r == utf8.RuneError && size == 1) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
		i += size
	}
	return b.String()
}

// DiskDict returns a disk as the a{sv} of the API: one entry per field of
// diskstate's table, under its Key. Strings pass through wireString; times
// travel as strings in timeFormat; sizes as t (uint64), flags as b.
func DiskDict(d diskstate.Disk) map[string]dbus.Variant {
	m := make(map[string]dbus.Variant, diskstate.NumFields())
	for i := range diskstate.NumFields() {
		f := diskstate.FieldAt(i)
		if f.OmitZero && f.Empty(&d) {
			continue
		}
		switch f.Kind {
		case diskstate.String:
			m[f.Key] = dbus.MakeVariant(wireString(*f.Str(&d)))
		case diskstate.Strings:
			v := *f.Strs(&d)
			out := make([]string, len(v))
			for j, s := range v {
				out[j] = wireString(s)
			}
			m[f.Key] = dbus.MakeVariant(out)
		case diskstate.Bool:
			m[f.Key] = dbus.MakeVariant(*f.Bool(&d))
		case diskstate.Time:
			m[f.Key] = dbus.MakeVariant(f.Time(&d).Format(timeFormat))
		case diskstate.Uint:
			m[f.Key] = dbus.MakeVariant(*f.Uint(&d)) // t
		}
	}
	return m
}

// DiskFromDict decodes a disk a{sv}. Keys it does not know are ignored (a
// newer daemon may send more); missing keys leave the field zero (a list
// empty, not nil); a key of the wrong type is an error.
func DiskFromDict(m map[string]dbus.Variant) (diskstate.Disk, error) {
	var d diskstate.Disk
	for i := range diskstate.NumFields() {
		f := diskstate.FieldAt(i)
		var err error
		switch f.Kind {
		case diskstate.String:
			err = field(m, f.Key, f.Str(&d))
		case diskstate.Strings:
			err = field(m, f.Key, f.Strs(&d))
			if p := f.Strs(&d); *p == nil {
				*p = []string{}
			}
		case diskstate.Bool:
			err = field(m, f.Key, f.Bool(&d))
		case diskstate.Uint:
			err = field(m, f.Key, f.Uint(&d))
		case diskstate.Time:
			var s string
			if _, ok := m[f.Key]; !ok && f.OmitZero {
				break
			}
			if err = field(m, f.Key, &s); err == nil {
				*f.Time(&d), err = parseTime(f.Key, s)
			}
		}
		if err != nil {
			return d, fmt.Errorf("disk: %w", err)
		}
	}
	return d, nil
}

// SightingDict returns a sighting as the a{sv} of History: the keys of the
// control socket's `history --json`, times as strings in timeFormat (until
// is the last-seen time so far, and reason empty, while it lasts).
func SightingDict(h diskstate.Sighting) map[string]dbus.Variant {
	return map[string]dbus.Variant{
		"host_id": dbus.MakeVariant(wireString(h.HostID)), "hostname": dbus.MakeVariant(wireString(h.Hostname)),
		"device": dbus.MakeVariant(wireString(h.Device)), "uuid": dbus.MakeVariant(wireString(h.UUID)),
		"partuuid": dbus.MakeVariant(wireString(h.PartUUID)), "label": dbus.MakeVariant(wireString(h.Label)),
		"type": dbus.MakeVariant(wireString(h.Type)), "from": dbus.MakeVariant(h.From.Format(timeFormat)),
		"until": dbus.MakeVariant(h.Until.Format(timeFormat)), "reason": dbus.MakeVariant(wireString(h.Reason)),
	}
}

// SightingFromDict decodes a sighting a{sv}; like DiskFromDict it ignores
// unknown keys and leaves missing ones zero.
func SightingFromDict(m map[string]dbus.Variant) (diskstate.Sighting, error) {
	var h diskstate.Sighting
	var from, until string
	err := firstErr(field(m, "host_id", &h.HostID), field(m, "hostname", &h.Hostname), field(m, "device", &h.Device),
		field(m, "uuid", &h.UUID), field(m, "partuuid", &h.PartUUID), field(m, "label", &h.Label),
		field(m, "type", &h.Type), field(m, "reason", &h.Reason), field(m, "from", &from), field(m, "until", &until))
	if err == nil {
		h.From, err = parseTime("from", from)
	}
	if err == nil {
		h.Until, err = parseTime("until", until)
	}
	if err != nil {
		return h, fmt.Errorf("sighting: %w", err)
	}
	return h, nil
}

// PeerDict returns a peer as the a{sv} of the API: the keys of the control
// socket's `peers --json`.
func PeerDict(p diskstate.Peer) map[string]dbus.Variant {
	return map[string]dbus.Variant{
		"host_id":          dbus.MakeVariant(wireString(p.HostID)),
		"hostname":         dbus.MakeVariant(wireString(p.Hostname)),
		"address":          dbus.MakeVariant(wireString(p.Address)),
		"boot_id":          dbus.MakeVariant(wireString(p.BootID)),
		"disks":            dbus.MakeVariant(uint32(max(p.Disks, 0))),
		"last_heard":       dbus.MakeVariant(p.LastHeard.Format(timeFormat)),
		"interval_seconds": dbus.MakeVariant(p.Interval.Seconds()),
		"timeout_seconds":  dbus.MakeVariant(p.Timeout.Seconds()),
		"authenticated":    dbus.MakeVariant(p.Authenticated),
		"via":              dbus.MakeVariant(wireString(p.Via)),
	}
}

// PeerFromDict decodes a peer a{sv}, with the rules of DiskFromDict.
func PeerFromDict(m map[string]dbus.Variant) (diskstate.Peer, error) {
	var p diskstate.Peer
	var disks uint32
	var heard string
	var interval, timeout float64
	err := firstErr(
		field(m, "host_id", &p.HostID),
		field(m, "hostname", &p.Hostname),
		field(m, "address", &p.Address),
		field(m, "boot_id", &p.BootID),
		field(m, "disks", &disks),
		field(m, "last_heard", &heard),
		field(m, "interval_seconds", &interval),
		field(m, "timeout_seconds", &timeout),
		field(m, "authenticated", &p.Authenticated),
		field(m, "via", &p.Via),
	)
	if err != nil {
		return p, fmt.Errorf("peer: %w", err)
	}
	p.Disks = int(disks)
	p.Interval, p.Timeout = seconds(interval), seconds(timeout)
	if p.LastHeard, err = parseTime("last_heard", heard); err != nil {
		return p, fmt.Errorf("peer: %w", err)
	}
	return p, nil
}

// StatusFromProps decodes the result of Properties.GetAll on Interface:
// the summary of a status (version, host, host id, counts, last scan and
// scan error).
func StatusFromProps(m map[string]dbus.Variant) (diskstate.Status, error) {
	var st diskstate.Status
	var peers, disks uint32
	var last int64
	err := firstErr(
		field(m, PropHostID, &st.HostID),
		field(m, PropHostname, &st.Hostname),
		field(m, PropVersion, &st.Version),
		field(m, PropPeerCount, &peers),
		field(m, PropDiskCount, &disks),
		field(m, PropLastScan, &last),
		field(m, PropScanError, &st.ScanError),
	)
	if err != nil {
		return st, fmt.Errorf("properties: %w", err)
	}
	st.Peers, st.Disks = int(peers), int(disks)
	if last > 0 {
		st.LastScan = time.Unix(last, 0)
	}
	return st, nil
}

// field stores m[key] into dst when the key is there.
func field[T any](m map[string]dbus.Variant, key string, dst *T) error {
	v, ok := m[key]
	if !ok {
		return nil
	}
	x, ok := v.Value().(T)
	if !ok {
		return fmt.Errorf("key %q has D-Bus type %s, want %s", key, v.Signature(), dbus.SignatureOf(*dst))
	}
	*dst = x
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func parseTime(key, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("key %q: %w", key, err)
	}
	return t, nil
}

// seconds turns a float number of seconds back into a Duration; values
// outside a Duration's range (or NaN) are clamped so nothing overflows.
func seconds(f float64) time.Duration {
	ns := math.Round(f * float64(time.Second))
	switch {
	case math.IsNaN(ns) || ns <= 0:
		return 0
	case ns >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// unixSeconds is a time as LastScan carries it: 0 for the zero time.
func unixSeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
