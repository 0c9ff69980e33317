package scan

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/diskd/diskd/service/diskstate"
)

// tag indexes the blkid tags this package reads.
type tag int

const (
	tagType tag = iota
	tagUUID
	tagLabel
	tagPartUUID
	tagPartLabel
	tagVersion
	numTags
)

// name is the blkid name of the tag; the names are also the -s arguments
// given to blkid.
func (t tag) name() string {
	return [numTags]string{"TYPE", "UUID", "LABEL", "PARTUUID", "PARTLABEL", "VERSION"}[t]
}

// exportEscaped is the set of characters that blkid -o export prints with a
// backslash before them, unless they follow a '^' (util-linux 2.38
// misc-utils/blkid.c: print_value and safe_print).
const exportEscaped = " \\\"'$`<>"

// record is one device of blkid -o export output, before filtering.
type record struct {
	disk      diskstate.Disk
	seen      [numTags]bool
	ambiguous [numTags]bool   // the printed value contains '^' or "M-"
	printed   [numTags]string // the value as printed, kept when ambiguous
}

func (r *record) set(t tag, v string) {
	switch t {
	case tagType:
		r.disk.Type = v
	case tagUUID:
		r.disk.UUID = v
	case tagLabel:
		r.disk.Label = v
	case tagPartUUID:
		r.disk.PartUUID = v
	case tagPartLabel:
		r.disk.PartLabel = v
	case tagVersion:
		r.disk.FSVersion = v
	}
}

// ParseBlkid parses the output of
//
//	blkid -c /dev/null -o export [-s TAG...] [DEVICE...]
//
// (util-linux 2.38 and later) into disks sorted by device. It does no I/O;
// Mountpoints is left empty.
//
// Each device starts with a DEVNAME= line; TYPE, UUID, LABEL, PARTUUID,
// PARTLABEL and VERSION are read (blkid prints VERSION only when it probes
// with -p; see [Prober.Probe]), other tags (BLOCK_SIZE, SEC_TYPE, PTUUID, PTTYPE...) are
// ignored. Devices with neither TYPE nor UUID, such as empty devices or
// devices that hold only a partition table, are not disks and are left out.
// Values are decoded from blkid's escapes (backslash, ^-notation for control
// characters, M-notation for bytes of 128 and above); a literal '^' or "M-"
// in a label cannot be told from those notations and is decoded as the
// notation ([Prober.Probe] resolves such labels exactly). Results are valid
// UTF-8 and bounded (see [diskstate.MaxLabelLen] and its siblings).
//
// The parser is lenient with lines it does not understand (they are
// skipped, as are tags before the first DEVNAME, repeated tags and repeated
// devices) and strict about size: it returns an error when the output is
// larger than 16 MiB or lists more than [MaxDisks] devices.
func ParseBlkid(out []byte) ([]diskstate.Disk, error) {
	recs, err := parseExport(out)
	if err != nil {
		return nil, err
	}
	return finish(recs), nil
}

// parseExport splits blkid -o export output into records, in output order.
func parseExport(out []byte) ([]*record, error) {
	if len(out) > maxOutput {
		return nil, fmt.Errorf("blkid output is %d bytes, more than the %d accepted", len(out), maxOutput)
	}
	var (
		recs  []*record
		cur   *record
		seen  = make(map[string]bool)
		count int
	)
	for line := range bytes.SplitSeq(out, []byte("\n")) {
		key, val, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		if string(key) == "DEVNAME" {
			count++
			if count > MaxDisks {
				return nil, fmt.Errorf("blkid output lists more than %d devices", MaxDisks)
			}
			dev := clean(string(val), diskstate.MaxDeviceLen)
			if dev == "" || seen[dev] {
				cur = nil // nameless or repeated device: ignore its tags
				continue
			}
			seen[dev] = true
			cur = &record{disk: diskstate.Disk{Device: dev}}
			recs = append(recs, cur)
			continue
		}
		if cur == nil {
			continue
		}
		for t := range numTags {
			if string(key) != t.name() || cur.seen[t] {
				continue
			}
			cur.seen[t] = true
			v, amb := decodeExport(val)
			cur.set(t, v)
			if amb {
				cur.ambiguous[t] = true
				cur.printed[t] = string(val)
			}
			break
		}
	}
	return recs, nil
}

// finish sanitizes records, drops those that are not disks, dedupes and
// sorts them by device.
func finish(recs []*record) []diskstate.Disk {
	disks := make([]diskstate.Disk, 0, len(recs))
	for _, r := range recs {
		d := r.disk
		sanitize(&d)
		if isDisk(&d) {
			disks = append(disks, d)
		}
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Device < disks[j].Device })
	// Cleaning can make two device names equal; keep the first.
	out := disks[:0]
	for i, d := range disks {
		if i > 0 && d.Device == out[len(out)-1].Device {
			continue
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// decodeExport undoes blkid's safe_print encoding. It reports whether the
// value contained '^' or "M-", whose meaning cannot be known for certain.
//
// safe_print prints each byte c as: "M-" if c >= 128 (then c -= 128); then
// "^" if c < 32 or c == 127 (then c ^= 0x40), or else a backslash if c is
// in exportEscaped; then c. So "^\" is byte 0x1c, "M-^\" byte 0x9c.
func decodeExport(s []byte) (string, bool) {
	if !bytes.ContainsAny(s, `\^M`) {
		return string(s), false
	}
	var (
		b         = make([]byte, 0, len(s))
		ambiguous bool
	)
	for i := 0; i < len(s); i++ {
		var high byte
		if s[i] == 'M' && i+2 < len(s) && s[i+1] == '-' {
			high, ambiguous = 128, true
			i += 2
		}
		c := s[i]
		switch {
		case c == '^' && i+1 < len(s):
			ambiguous = true
			i++
			c = s[i] ^ 0x40
		case c == '\\' && i+1 < len(s):
			i++
			c = s[i]
		}
		b = append(b, c+high)
	}
	return string(b), ambiguous
}

// encodeExport is blkid's safe_print encoding for -o export; it is the
// inverse of decodeExport for the values blkid can print.
func encodeExport(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 128 {
			b.WriteString("M-")
			c -= 128
		}
		if c < 32 || c == 0x7f {
			b.WriteByte('^')
			c ^= 0x40
		} else if strings.IndexByte(exportEscaped, c) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// parseUdev reads the tags of one device from blkid -o udev output. LABEL,
// UUID and TYPE come from their lossless encoded forms (ID_FS_LABEL_ENC,
// ID_FS_UUID_ENC, ID_FS_TYPE); PARTUUID is printed raw, as libblkid
// formats it from binary. PARTLABEL and VERSION are not read: udev mode
// prints them with blanks replaced, so they resolve nothing. Only the first
// device of the output is read.
func parseUdev(out []byte) map[tag]string {
	vals := make(map[tag]string)
	for line := range bytes.SplitSeq(out, []byte("\n")) {
		if len(line) == 0 && len(vals) > 0 {
			break // end of the first device
		}
		key, val, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		var t tag
		switch string(key) {
		case "ID_FS_TYPE":
			t = tagType
		case "ID_FS_UUID_ENC":
			t = tagUUID
		case "ID_FS_LABEL_ENC":
			t = tagLabel
		case "ID_FS_PARTUUID":
			if _, dup := vals[tagPartUUID]; !dup {
				vals[tagPartUUID] = string(val)
			}
			continue
		default:
			continue
		}
		if _, dup := vals[t]; !dup {
			vals[t] = decodeUdev(val)
		}
	}
	return vals
}

// decodeUdev undoes libblkid's blkid_encode_string: \xNN is the byte NN
// (a backslash is always written as \x5c); everything else is literal.
func decodeUdev(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s)
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			hi, ok1 := unhex(s[i+2])
			lo, ok2 := unhex(s[i+3])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 3
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// resolve replaces the ambiguous values of r with the values of the udev
// output when they encode back to exactly what the export output printed;
// the others keep their best-guess decoding.
func (r *record) resolve(vals map[tag]string) {
	for t := range numTags {
		if !r.ambiguous[t] {
			continue
		}
		if v, ok := vals[t]; ok && encodeExport(v) == r.printed[t] {
			r.set(t, v)
			r.ambiguous[t] = false
		}
	}
}

// needsResolve reports whether any value of r is ambiguous.
func (r *record) needsResolve() bool {
	for _, a := range r.ambiguous {
		if a {
			return true
		}
	}
	return false
}
