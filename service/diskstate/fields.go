package diskstate

import (
	"slices"
	"strings"
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
	Uint                    // an unsigned integer (a size in bytes); zero when unknown
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
	// Search: `list PATTERN` and `find TERM` match this (String) field.
	Search bool
	// Bytes: the Uint is a size in bytes, shown in human units unless
	// asked for bytes.
	Bytes bool
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
	Uint func(*Disk) *uint64
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
	case Uint:
		return *f.Uint(a) == *f.Uint(b)
	}
	return false
}

// ChangedFields returns the keys of the announced fields, and of the
// hostname, in which a and b differ, in the table's order: what a
// DiskChanged event changed. It walks the table, so it is for the rare
// change, not for every announcement (see [Disk.SameAnnounced]).
func ChangedFields(a, b *Disk) []string {
	var keys []string
	if a.Hostname != b.Hostname {
		keys = append(keys, "hostname")
	}
	for i := range fields {
		if f := &fields[i]; f.Wire != "" && !f.Equal(a, b) {
			keys = append(keys, f.Key)
		}
	}
	return keys
}

// Empty reports whether d has no value for f: an empty string or list,
// false, zero (what OmitZero leaves out).
func (f *Field) Empty(d *Disk) bool {
	switch f.Kind {
	case String:
		return *f.Str(d) == ""
	case Strings:
		return len(*f.Strs(d)) == 0
	case Bool:
		return !*f.Bool(d)
	case Time:
		return f.Time(d).IsZero()
	case Uint:
		return *f.Uint(d) == 0
	}
	return true
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
	MaxVersionLen    = 32   // filesystem version as blkid prints it
	MaxPartLabelLen  = 144  // GPT partition name: 36 UTF-16 units, up to 4 bytes each in UTF-8
	MaxTransportLen  = 16   // transport: usb, sata, nvme, ...
	MaxModelLen      = 64   // model as udev or sysfs gives it
	MaxVendorLen     = 64   // vendor
	MaxSerialLen     = 128  // serial number
	MaxWWNLen        = 64   // world wide name
	MaxGoneReasonLen = 16   // why a remembered disk is gone
)

// fields is the table, in the order of Disk's fields (and so of the JSON
// keys). It is never modified; Fields hands out copies.
var fields = [...]Field{
	{Key: "host_id", Kind: String, Max: MaxIDLen, Column: "HOST-ID", Search: true,
		Str: func(d *Disk) *string { return &d.HostID }},
	{Key: "hostname", Kind: String, Max: MaxHostnameLen, Column: "HOST", Search: true,
		Str: func(d *Disk) *string { return &d.Hostname }, Show: (*Disk).Host},
	{Key: "device", Kind: String, Wire: "d", Required: true, Max: MaxDeviceLen, Column: "DEVICE", Search: true,
		Str: func(d *Disk) *string { return &d.Device }},
	{Key: "uuid", Kind: String, Wire: "u", Max: MaxUUIDLen, Column: "UUID", Search: true,
		Str: func(d *Disk) *string { return &d.UUID }},
	{Key: "partuuid", Kind: String, Wire: "p", Max: MaxUUIDLen, Column: "PARTUUID", Search: true,
		Str: func(d *Disk) *string { return &d.PartUUID }},
	{Key: "label", Kind: String, Wire: "l", Max: MaxLabelLen, Column: "LABEL", Search: true,
		Str: func(d *Disk) *string { return &d.Label }},
	{Key: "partlabel", Kind: String, Wire: "P", Max: MaxPartLabelLen, Column: "PARTLABEL", Search: true,
		Str: func(d *Disk) *string { return &d.PartLabel }},
	{Key: "type", Kind: String, Wire: "t", Max: MaxTypeLen, Column: "TYPE",
		Str: func(d *Disk) *string { return &d.Type }},
	{Key: "fs_version", Kind: String, Wire: "v", Max: MaxVersionLen, Column: "FSVER",
		Str: func(d *Disk) *string { return &d.FSVersion }},
	{Key: "mountpoints", Kind: Strings, Wire: "m", Max: MaxMountpointLen, MaxItems: MaxMountpoints, Column: "MOUNTED",
		Strs: func(d *Disk) *[]string { return &d.Mountpoints }},
	{Key: "size", Kind: Uint, Wire: "z", Bytes: true, Column: "SIZE",
		Uint: func(d *Disk) *uint64 { return &d.Size }},
	{Key: "read_only", Kind: Bool, Wire: "o", Column: "RO",
		Bool: func(d *Disk) *bool { return &d.ReadOnly }},
	{Key: "removable", Kind: Bool, Wire: "e", Column: "RM",
		Bool: func(d *Disk) *bool { return &d.Removable }},
	{Key: "rotational", Kind: Bool, Wire: "r", Column: "ROTA",
		Bool: func(d *Disk) *bool { return &d.Rotational }},
	{Key: "transport", Kind: String, Wire: "x", Max: MaxTransportLen, Column: "TRAN",
		Str: func(d *Disk) *string { return &d.Transport }},
	{Key: "model", Kind: String, Wire: "M", Max: MaxModelLen, Column: "MODEL", Search: true,
		Str: func(d *Disk) *string { return &d.Model }},
	{Key: "vendor", Kind: String, Wire: "V", Max: MaxVendorLen, Column: "VENDOR",
		Str: func(d *Disk) *string { return &d.Vendor }},
	{Key: "serial", Kind: String, Wire: "S", Max: MaxSerialLen, Column: "SERIAL", Search: true,
		Str: func(d *Disk) *string { return &d.Serial }},
	{Key: "wwn", Kind: String, Wire: "w", Max: MaxWWNLen, Column: "WWN", Search: true,
		Str: func(d *Disk) *string { return &d.WWN }},
	{Key: "fs_size", Kind: Uint, Wire: "F", Bytes: true, Column: "FSSIZE",
		Uint: func(d *Disk) *uint64 { return &d.FSSize }},
	{Key: "fs_avail", Kind: Uint, Wire: "A", Bytes: true, Column: "FSAVAIL",
		Uint: func(d *Disk) *uint64 { return &d.FSAvail }},
	{Key: "fs_used", Kind: Uint, Wire: "U", Bytes: true, Column: "FSUSED",
		Uint: func(d *Disk) *uint64 { return &d.FSUsed }},
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

// SearchedNames names the fields marked Search, for help texts, most
// often searched first.
const SearchedNames = "uuid, partuuid, label, partlabel, serial, wwn, model, device, hostname or host id"

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

// FieldByColumn returns the field whose table column is name, ignoring
// case.
func FieldByColumn(name string) (Field, bool) {
	for _, f := range fields {
		if f.Column != "" && strings.EqualFold(f.Column, name) {
			return f, true
		}
	}
	return Field{}, false
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
