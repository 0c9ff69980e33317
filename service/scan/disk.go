package scan

import (
	"unicode/utf8"

	"github.com/diskd/diskd/service/diskstate"
)

// Bounds on what this package returns. Strings are cut, at a UTF-8
// character boundary, to the limits of diskstate's field table (the same
// ones the wire decoder enforces); extra mount points and devices are
// dropped.
const (
	MaxDisks = 4096 // devices accepted from one blkid run

	// maxOutput caps how much of blkid's standard output is read.
	maxOutput = 16 << 20
	// maxStderr caps how much of blkid's standard error is kept.
	maxStderr = 64 << 10
)

// clean returns s as valid UTF-8 of at most max bytes: every byte that is
// not part of a valid UTF-8 sequence, and every NUL, becomes U+FFFD, and the
// result is cut at a character boundary.
func clean(s string, max int) string {
	ok := len(s) <= max
	if ok {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 || s[i] >= utf8.RuneSelf {
				ok = false
				break
			}
		}
	}
	if ok {
		return s // plain ASCII without NUL: the common case
	}
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0 {
			r = utf8.RuneError
		}
		// An invalid byte decodes as (RuneError, 1): one U+FFFD per byte.
		if len(b)+utf8.RuneLen(r) > max {
			break
		}
		b = utf8.AppendRune(b, r)
		i += size
	}
	return string(b)
}

// sanitize bounds and repairs every string of d, to the limits of
// diskstate's field table.
func sanitize(d *diskstate.Disk) {
	for _, f := range diskstate.Fields() {
		if f.Kind == diskstate.String && f.Max > 0 {
			p := f.Str(d)
			*p = clean(*p, f.Max)
		}
	}
}

// isDisk reports whether d names a filesystem: devices with neither a type
// nor a UUID (empty, or a partition table only) are not disks.
func isDisk(d *diskstate.Disk) bool {
	return d.Device != "" && (d.Type != "" || d.UUID != "")
}
