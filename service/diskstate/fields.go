package diskstate

import (
	"slices"
	"time"
)

// Kind is the type of a field's value.
type Kind int

// The kinds of field.
const (
	String  Kind = iota + 1 // a string; Max bounds its bytes
	Strings                 // a list of strings; MaxItems bounds it, Max each item
	Bool                    // a bool; false when absent
	Time                    // a time; zero when unknown
)

// Field describes one attribute of a Disk. Exactly one of Str, Strs, Bool
// and Time is set, the one its Kind names; it returns a pointer into the
// disk, for reading and writing.
type Field struct {
	// Key is the key in --json output and in the D-Bus dictionaries.
	Key string
	// Kind is the type of the value.
	Kind Kind
	// Wire is the key in announcements; empty when the field is not
	// announced (it is the sender's, or this host's, not the disk's).
	Wire string
	// Required: an announced disk without it is malformed.
	Required bool
	// Max bounds a String (in bytes), or each item of Strings. The scanner
	// cuts what it finds to it and the wire decoder refuses more.
	Max int
	// MaxItems bounds a Strings field.
	MaxItems int
	// Column is the field's table header; empty when tables do not show it.
	Column string
	// Pattern: `list PATTERN` matches this field.
	Pattern bool
	// Term: `find TERM` matches this field.
	Term bool
	// OmitZero: JSON and the D-Bus dictionaries leave the field out when
	// it is zero (empty string, false, zero time).
	OmitZero bool
	// Show, when set, is what tables show for the field instead of its
	// value.
	Show func(*Disk) string

	Str  func(*Disk) *string
	Strs func(*Disk) *[]string
	Bool func(*Disk) *bool
	Time func(*Disk) *time.Time
}

// Equal reports whether a and b hold the same value of the field.
func (f *Field) Equal(a, b *Disk) bool {
	switch f.Kind {
	case String:
		return *f.Str(a) == *f.Str(b)
	case Strings:
		return slices.Equal(*f.Strs(a), *f.Strs(b))
	case Bool:
		return *f.Bool(a) == *f.Bool(b)
	case Time:
		return f.Time(a).Equal(*f.Time(b))
	}
	return false
}

// Size limits of the fields, in bytes. They hold for disks found locally
// and for disks announced by peers alike.
const (
	MaxIDLen         = 64   // host id
	MaxHostnameLen   = 253  // hostname
	MaxDeviceLen     = 255  // device path
	MaxUUIDLen       = 64   // filesystem and partition UUID
	MaxLabelLen      = 255  // filesystem label (btrfs' are the longest: 255)
	MaxTypeLen       = 32   // filesystem type as blkid names it
	MaxMountpointLen = 1024 // one mount point
	MaxMountpoints   = 32   // mount points of one disk
	MaxGoneReasonLen = 16   // why a remembered disk is gone
)

// fields is the table, in the order of Disk's fields (and so of the JSON
// keys). It is never modified; Fields hands out copies.
var fields = [...]Field{
	{Key: "host_id", Kind: String, Max: MaxIDLen, Pattern: true,
		Str: func(d *Disk) *string { return &d.HostID }},
	{Key: "hostname", Kind: String, Max: MaxHostnameLen, Column: "HOST", Pattern: true,
		Str: func(d *Disk) *string { return &d.Hostname }, Show: (*Disk).Host},
	{Key: "device", Kind: String, Wire: "d", Required: true, Max: MaxDeviceLen, Column: "DEVICE", Pattern: true,
		Str: func(d *Disk) *string { return &d.Device }},
	{Key: "uuid", Kind: String, Wire: "u", Max: MaxUUIDLen, Column: "UUID", Pattern: true, Term: true,
		Str: func(d *Disk) *string { return &d.UUID }},
	{Key: "partuuid", Kind: String, Wire: "p", Max: MaxUUIDLen, Column: "PARTUUID", Pattern: true, Term: true,
		Str: func(d *Disk) *string { return &d.PartUUID }},
	{Key: "label", Kind: String, Wire: "l", Max: MaxLabelLen, Column: "LABEL", Pattern: true, Term: true,
		Str: func(d *Disk) *string { return &d.Label }},
	{Key: "type", Kind: String, Wire: "t", Max: MaxTypeLen, Column: "TYPE",
		Str: func(d *Disk) *string { return &d.Type }},
	{Key: "mountpoints", Kind: Strings, Wire: "m", Max: MaxMountpointLen, MaxItems: MaxMountpoints, Column: "MOUNTED",
		Strs: func(d *Disk) *[]string { return &d.Mountpoints }},
	{Key: "local", Kind: Bool, Column: "LOCAL",
		Bool: func(d *Disk) *bool { return &d.Local }},
	{Key: "last_seen", Kind: Time, Column: "LAST-SEEN",
		Time: func(d *Disk) *time.Time { return &d.LastSeen }},
	{Key: "present", Kind: Bool,
		Bool: func(d *Disk) *bool { return &d.Present }},
	{Key: "gone_at", Kind: Time, OmitZero: true,
		Time: func(d *Disk) *time.Time { return &d.GoneAt }},
	{Key: "gone_reason", Kind: String, Max: MaxGoneReasonLen, OmitZero: true,
		Str: func(d *Disk) *string { return &d.GoneReason }},
	{Key: "returned", Kind: Bool, OmitZero: true,
		Bool: func(d *Disk) *bool { return &d.Returned }},
	{Key: "previous_hostname", Kind: String, Max: MaxHostnameLen, OmitZero: true,
		Str: func(d *Disk) *string { return &d.PreviousHostname }},
	{Key: "previous_device", Kind: String, Max: MaxDeviceLen, OmitZero: true,
		Str: func(d *Disk) *string { return &d.PreviousDevice }},
	{Key: "previous_last_seen", Kind: Time, OmitZero: true,
		Time: func(d *Disk) *time.Time { return &d.PreviousLastSeen }},
}

// IsZero reports whether the disk's value of the field is its zero value
// (what OmitZero leaves out).
func (f *Field) IsZero(d *Disk) bool {
	switch f.Kind {
	case String:
		return *f.Str(d) == ""
	case Strings:
		return len(*f.Strs(d)) == 0
	case Bool:
		return !*f.Bool(d)
	case Time:
		return f.Time(d).IsZero()
	}
	return true
}

// Fields returns the table of a disk's fields, in the order of Disk's
// fields and of the JSON keys. The slice is the caller's.
func Fields() []Field { return slices.Clone(fields[:]) }

// NumFields is the number of fields in the table.
func NumFields() int { return len(fields) }

// FieldAt returns the i-th field of the table (0 <= i < NumFields()), by
// value: hot paths (the wire codec) walk the table with it without
// allocating.
func FieldAt(i int) Field { return fields[i] }

// WireIndex returns the table index of the field announced under key, or
// -1 when no field is.
func WireIndex(key string) int {
	for i := range fields {
		if fields[i].Wire == key && key != "" {
			return i
		}
	}
	return -1
}

// FieldByKey returns the field with the given JSON key.
func FieldByKey(key string) (Field, bool) {
	for _, f := range fields {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}
