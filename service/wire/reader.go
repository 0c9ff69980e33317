package wire

import "math"

// msgpack type codes (https://github.com/msgpack/msgpack/blob/master/spec.md).
const (
	mpPosFixIntMax = 0x7f
	mpFixMap       = 0x80 // 0x80..0x8f
	mpFixArray     = 0x90 // 0x90..0x9f
	mpFixStr       = 0xa0 // 0xa0..0xbf
	mpNil          = 0xc0
	mpNeverUsed    = 0xc1
	mpFalse        = 0xc2
	mpTrue         = 0xc3
	mpBin8         = 0xc4
	mpBin16        = 0xc5
	mpBin32        = 0xc6
	mpExt8         = 0xc7
	mpExt16        = 0xc8
	mpExt32        = 0xc9
	mpFloat32      = 0xca
	mpFloat64      = 0xcb
	mpUint8        = 0xcc
	mpUint16       = 0xcd
	mpUint32       = 0xce
	mpUint64       = 0xcf
	mpInt8         = 0xd0
	mpInt16        = 0xd1
	mpInt32        = 0xd2
	mpInt64        = 0xd3
	mpFixExt1      = 0xd4
	mpFixExt2      = 0xd5
	mpFixExt4      = 0xd6
	mpFixExt8      = 0xd7
	mpFixExt16     = 0xd8
	mpStr8         = 0xd9
	mpStr16        = 0xda
	mpStr32        = 0xdb
	mpArray16      = 0xdc
	mpArray32      = 0xdd
	mpMap16        = 0xde
	mpMap32        = 0xdf
	mpNegFixIntMin = 0xe0
)

// reader reads the msgpack subset diskd uses from a string. Each method
// checks a declared length against the bytes left (and the caller checks it
// against its limit) before using it, and strings are substrings of s, so
// nothing is ever allocated on the strength of a declared length.
//
// It exists because msgpack.Decoder allocates up to 1 MiB for a string or
// skipped value whose declared length exceeds the data, before noticing the
// data is short.
type reader struct {
	s   string
	off int
}

func (r *reader) remaining() int { return len(r.s) - r.off }

func (r *reader) truncated() *DropError {
	return dropf(ReasonMalformed, "truncated at byte %d", r.off)
}

func (r *reader) byte() (byte, *DropError) {
	if r.off >= len(r.s) {
		return 0, r.truncated()
	}
	c := r.s[r.off]
	r.off++
	return c, nil
}

// be reads an n-byte big-endian unsigned integer, n <= 8.
func (r *reader) be(n int) (uint64, *DropError) {
	if r.remaining() < n {
		return 0, r.truncated()
	}
	var v uint64
	for i := r.off; i < r.off+n; i++ {
		v = v<<8 | uint64(r.s[i])
	}
	r.off += n
	return v, nil
}

// advance skips n declared bytes.
func (r *reader) advance(n uint64) *DropError {
	if n > uint64(r.remaining()) {
		return dropf(ReasonMalformed, "%d bytes declared at byte %d, %d left", n, r.off, r.remaining())
	}
	r.off += int(n)
	return nil
}

// uint reads a non-negative integer in any msgpack integer encoding.
func (r *reader) uint() (uint64, *DropError) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= mpPosFixIntMax:
		return uint64(c), nil
	case c == mpUint8:
		return r.be(1)
	case c == mpUint16:
		return r.be(2)
	case c == mpUint32:
		return r.be(4)
	case c == mpUint64:
		return r.be(8)
	case c >= mpInt8 && c <= mpInt64:
		size := 1 << (c - mpInt8)
		v, err := r.be(size)
		if err != nil {
			return 0, err
		}
		if v>>(size*8-1) != 0 {
			return 0, dropf(ReasonMalformed, "negative integer at byte %d", r.off-size-1)
		}
		return v, nil
	}
	return 0, dropf(ReasonMalformed, "msgpack code %#02x at byte %d, want an unsigned integer", c, r.off-1)
}

// bool reads a msgpack bool (true or false; not nil, not an integer).
func (r *reader) bool() (bool, *DropError) {
	c, err := r.byte()
	if err != nil {
		return false, err
	}
	switch c {
	case mpTrue:
		return true, nil
	case mpFalse:
		return false, nil
	}
	return false, dropf(ReasonMalformed, "msgpack code %#02x at byte %d, want a bool", c, r.off-1)
}

// str reads a msgpack str of at most limit bytes. It is the hot path of
// Decode, so the common short forms are read inline.
func (r *reader) str(limit int) (string, *DropError) {
	off := r.off
	if off >= len(r.s) {
		return "", r.truncated()
	}
	c := r.s[off]
	var n int
	switch {
	case c >= mpFixStr && c <= mpFixStr|0x1f:
		n, off = int(c&0x1f), off+1
	case c == mpStr8 && off+1 < len(r.s):
		n, off = int(r.s[off+1]), off+2
	default:
		return r.strSlow(limit)
	}
	if n > limit {
		return "", dropf(ReasonLimit, "%d bytes, max %d", n, limit)
	}
	if n > len(r.s)-off {
		return "", dropf(ReasonMalformed, "%d bytes declared at byte %d, %d left", n, off, len(r.s)-off)
	}
	r.off = off + n
	return r.s[off:r.off], nil
}

// strSlow reads str16, str32, or fails.
func (r *reader) strSlow(limit int) (string, *DropError) {
	c, err := r.byte()
	if err != nil {
		return "", err
	}
	var n uint64
	switch c {
	case mpStr8:
		n, err = r.be(1)
	case mpStr16:
		n, err = r.be(2)
	case mpStr32:
		n, err = r.be(4)
	default:
		return "", dropf(ReasonMalformed, "msgpack code %#02x at byte %d, want a string", c, r.off-1)
	}
	if err != nil {
		return "", err
	}
	if n > uint64(limit) {
		return "", dropf(ReasonLimit, "%d bytes, max %d", n, limit)
	}
	start := r.off
	if err := r.advance(n); err != nil {
		return "", err
	}
	return r.s[start:r.off], nil
}

// key reads a map key, which must be a string.
func (r *reader) key() (string, *DropError) {
	return r.str(math.MaxInt)
}

// arrayLen reads an array header. Callers compare the length with their
// limit and with remaining() before allocating.
func (r *reader) arrayLen() (uint64, *DropError) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= mpFixArray && c <= mpFixArray|0x0f:
		return uint64(c & 0x0f), nil
	case c == mpArray16:
		return r.be(2)
	case c == mpArray32:
		return r.be(4)
	}
	return 0, dropf(ReasonMalformed, "msgpack code %#02x at byte %d, want an array", c, r.off-1)
}

// mapLen reads a map header whose entries fit the bytes left.
func (r *reader) mapLen() (int, *DropError) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= mpFixMap && c <= mpFixMap|0x0f:
		n = uint64(c & 0x0f)
	case c == mpMap16:
		n, err = r.be(2)
	case c == mpMap32:
		n, err = r.be(4)
	default:
		return 0, dropf(ReasonMalformed, "msgpack code %#02x at byte %d, want a map", c, r.off-1)
	}
	if err != nil {
		return 0, err
	}
	// Every key and every value takes at least one byte.
	if n > uint64(r.remaining()/2) {
		return 0, dropf(ReasonMalformed, "map of %d entries declared at byte %d, %d bytes left", n, r.off, r.remaining())
	}
	return int(n), nil
}

// skip skips one value of any msgpack type (for unknown keys). It works
// iteratively, so nesting costs no stack, and it rejects declared lengths
// and counts that the bytes left cannot hold.
func (r *reader) skip() *DropError {
	for pending := uint64(1); pending > 0; pending-- {
		c, err := r.byte()
		if err != nil {
			return err
		}
		var lenSize int // bytes of the length field that follows c
		var fixed int   // bytes of payload besides a declared length
		var items uint64
		switch {
		case c <= mpPosFixIntMax, c >= mpNegFixIntMin, c == mpNil, c == mpFalse, c == mpTrue:
		case c >= mpFixMap && c <= mpFixMap|0x0f:
			items = 2 * uint64(c&0x0f)
		case c >= mpFixArray && c <= mpFixArray|0x0f:
			items = uint64(c & 0x0f)
		case c >= mpFixStr && c <= mpFixStr|0x1f:
			fixed = int(c & 0x1f)
		case c == mpUint8, c == mpInt8:
			fixed = 1
		case c == mpUint16, c == mpInt16:
			fixed = 2
		case c == mpUint32, c == mpInt32, c == mpFloat32:
			fixed = 4
		case c == mpUint64, c == mpInt64, c == mpFloat64:
			fixed = 8
		case c >= mpFixExt1 && c <= mpFixExt16: // type byte and 1, 2, 4, 8 or 16 bytes
			fixed = 1 + 1<<(c-mpFixExt1)
		case c == mpBin8, c == mpStr8:
			lenSize = 1
		case c == mpBin16, c == mpStr16:
			lenSize = 2
		case c == mpBin32, c == mpStr32:
			lenSize = 4
		case c == mpExt8:
			lenSize, fixed = 1, 1
		case c == mpExt16:
			lenSize, fixed = 2, 1
		case c == mpExt32:
			lenSize, fixed = 4, 1
		case c == mpArray16, c == mpMap16:
			lenSize = -2
		case c == mpArray32, c == mpMap32:
			lenSize = -4
		default: // mpNeverUsed
			return dropf(ReasonMalformed, "msgpack code %#02x at byte %d", c, r.off-1)
		}
		var n uint64
		if lenSize > 0 {
			if n, err = r.be(lenSize); err != nil {
				return err
			}
		} else if lenSize < 0 {
			if items, err = r.be(-lenSize); err != nil {
				return err
			}
			if c == mpMap16 || c == mpMap32 {
				items *= 2
			}
		}
		if err := r.advance(n + uint64(fixed)); err != nil {
			return err
		}
		// The values still to skip take at least one byte each.
		if pending-1+items > uint64(r.remaining()) {
			return dropf(ReasonMalformed, "%d values declared at byte %d, %d bytes left", items, r.off, r.remaining())
		}
		pending += items
	}
	return nil
}
