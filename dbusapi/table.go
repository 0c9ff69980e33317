package dbusapi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// The disk table of ListTable: one D-Bus string that godbus and
// dbus-daemon move as a single block of bytes, instead of the tens of
// thousands of variants of an aa{sv} (see org.diskd.Finder.xml).
//
//	line 1:     the keys, separated by tabs (the keys of a disk a{sv})
//	each line:  one disk, its values in the order of the keys
//
// Lines end with "\n" (also the last one). Values: strings as they are
// (made valid UTF-8 without NUL, as in the a{sv}), with "\\" written as
// `\\` and tab, newline and 0x1f as `\x09`, `\x0a`, `\x1f`; a list of
// strings as each item preceded by 0x1f (so "" is the empty list); a
// boolean as "true" or "false"; a time in RFC 3339 with its fraction, as in
// the a{sv}.
const (
	tableSep     = '\t'
	tableItemSep = '\x1f'
)

// DiskTable encodes disks as ListTable answers them.
func DiskTable(disks []diskstate.Disk) string {
	var b strings.Builder
	b.Grow(64 + len(disks)*256)
	for i := range diskstate.NumFields() {
		if i > 0 {
			b.WriteByte(tableSep)
		}
		b.WriteString(diskstate.FieldAt(i).Key)
	}
	b.WriteByte('\n')
	for k := range disks {
		d := &disks[k]
		for i := range diskstate.NumFields() {
			if i > 0 {
				b.WriteByte(tableSep)
			}
			f := diskstate.FieldAt(i)
			switch f.Kind {
			case diskstate.String:
				writeTableString(&b, *f.Str(d))
			case diskstate.Strings:
				for _, s := range *f.Strs(d) {
					b.WriteByte(tableItemSep)
					writeTableString(&b, s)
				}
			case diskstate.Bool:
				if *f.Bool(d) {
					b.WriteString("true")
				} else {
					b.WriteString("false")
				}
			case diskstate.Time:
				if t := *f.Time(d); !f.OmitZero || !t.IsZero() { // an omitted time is empty
					b.WriteString(t.Format(timeFormat))
				}
			case diskstate.Uint:
				b.WriteString(strconv.FormatUint(*f.Uint(d), 10))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func writeTableString(b *strings.Builder, s string) {
	s = wireString(s)
	if !strings.ContainsAny(s, "\\\t\n\x1f") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\t', '\n', tableItemSep:
			fmt.Fprintf(b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
}

// DiskTableDecode decodes a ListTable answer. Keys it does not know are
// ignored and missing keys leave the field zero (a list empty, not nil), as
// in DiskFromDict.
func DiskTableDecode(table string) ([]diskstate.Disk, error) {
	header, rest, ok := strings.Cut(table, "\n")
	if !ok {
		return nil, errors.New("disk table: no header line")
	}
	keys := strings.Split(header, string(tableSep))
	cols := make([]int, len(keys)) // field index of each column, -1 for unknown
	for c, k := range keys {
		cols[c] = -1
		for i := range diskstate.NumFields() {
			if diskstate.FieldAt(i).Key == k {
				cols[c] = i
			}
		}
	}
	out := make([]diskstate.Disk, 0, strings.Count(rest, "\n"))
	var tc timeCache
	for n := 1; rest != ""; n++ {
		var line string
		if line, rest, ok = strings.Cut(rest, "\n"); !ok {
			return nil, fmt.Errorf("disk table: line %d has no line end", n+1)
		}
		var d diskstate.Disk
		for i := range diskstate.NumFields() {
			if f := diskstate.FieldAt(i); f.Kind == diskstate.Strings {
				*f.Strs(&d) = []string{}
			}
		}
		c := 0
		for ; line != "" || c < len(keys); c++ {
			var v string
			v, line, _ = strings.Cut(line, string(tableSep))
			if c >= len(keys) {
				return nil, fmt.Errorf("disk table: line %d has more than %d values", n+1, len(keys))
			}
			if cols[c] < 0 {
				continue
			}
			if err := setTableValue(&d, diskstate.FieldAt(cols[c]), v, &tc); err != nil {
				return nil, fmt.Errorf("disk table: line %d: %w", n+1, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// timeCache remembers the last time parsed: the disks of a host share
// their last_seen.
type timeCache struct {
	s string
	t time.Time
}

func (c *timeCache) parse(key, s string) (time.Time, error) {
	if s == c.s && s != "" {
		return c.t, nil
	}
	t, err := parseTime(key, s)
	if err == nil {
		c.s, c.t = s, t
	}
	return t, err
}

func setTableValue(d *diskstate.Disk, f diskstate.Field, v string, tc *timeCache) error {
	var err error
	switch f.Kind {
	case diskstate.String:
		*f.Str(d), err = unescapeTable(v)
	case diskstate.Strings:
		if v == "" {
			return nil
		}
		if v[0] != tableItemSep {
			return fmt.Errorf("key %q: a list must start with 0x1f", f.Key)
		}
		items := strings.Split(v[1:], string(tableItemSep))
		for j, s := range items {
			if items[j], err = unescapeTable(s); err != nil {
				break
			}
		}
		*f.Strs(d) = items
	case diskstate.Bool:
		switch v {
		case "true":
			*f.Bool(d) = true
		case "false":
		default:
			err = fmt.Errorf("key %q: %q is not true or false", f.Key, v)
		}
	case diskstate.Time:
		*f.Time(d), err = tc.parse(f.Key, v)
	case diskstate.Uint:
		if *f.Uint(d), err = strconv.ParseUint(v, 10, 64); err != nil {
			err = fmt.Errorf("key %q: %q is not a size in bytes", f.Key, v)
		}
	}
	return err
}

func unescapeTable(s string) (string, error) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+3 < len(s) && s[i+1] == 'x' && (s[i+2:i+4] == "09" || s[i+2:i+4] == "0a" || s[i+2:i+4] == "1f"):
			b.WriteByte(map[string]byte{"09": '\t', "0a": '\n', "1f": tableItemSep}[s[i+2:i+4]])
			i += 3
		default:
			return "", fmt.Errorf("bad escape in %q", s)
		}
	}
	return b.String(), nil
}
