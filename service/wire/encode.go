package wire

import (
	"bytes"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/diskd/diskd/service/diskstate"
)

// Encode validates m and returns the datagrams that carry it, sealed with
// the first key of k, or unsealed if k is nil.
//
// Every datagram, header and sealing included, is at most budget bytes. A
// budget of 0 means DefaultBudget; a budget above MaxDatagram is lowered to
// MaxDatagram, since receivers drop anything larger.
//
// An announcement is split into as few parts as possible, in order, at most
// MaxDisksPerPart disks each; Encode sets Part and Parts and ignores the
// values in m. An empty disk list is one part with no disks. A disk that is
// invalid or does not fit a datagram even alone makes Encode fail with a
// *DiskError naming it, so the caller can leave it out and try again. Bye
// and ping are one datagram and must carry no disks.
//
// Encode is safe for concurrent use.
func Encode(m Message, budget int, k *Keyring) ([][]byte, error) {
	switch {
	case budget == 0:
		budget = DefaultBudget
	case budget < 0:
		return nil, fmt.Errorf("wire: encode: budget %d is negative", budget)
	case budget > MaxDatagram:
		budget = MaxDatagram
	}
	switch m.Kind {
	case KindAnnounce, KindBye, KindPing:
	default:
		return nil, fmt.Errorf("wire: encode: unknown kind %d", m.Kind)
	}
	if err := checkCommon(&m); err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", m.Kind, err.Err)
	}
	e := encoder{k: k, budget: budget, overhead: HeaderSize}
	e.header = [HeaderSize]byte{Magic[0], Magic[1], Magic[2], Magic[3], Version, 0}
	if k != nil {
		e.header[5] = FlagSealed
		e.overhead += SealOverhead
	}
	e.enc = msgpack.GetEncoder()
	defer msgpack.PutEncoder(e.enc)
	e.enc.Reset(&e.buf)
	e.buf.Grow(min(MaxDatagram, 256+len(m.Disks)*160))

	var dgrams [][]byte
	var err error
	if m.Kind == KindAnnounce {
		dgrams, err = e.announce(&m)
	} else {
		dgrams, err = e.other(&m)
	}
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", m.Kind, err)
	}
	return dgrams, nil
}

// encoder holds the state of one Encode call.
type encoder struct {
	k        *Keyring
	budget   int
	overhead int // header and sealing
	header   [HeaderSize]byte
	enc      *msgpack.Encoder // writes to buf
	buf      bytes.Buffer
	err      error // first error of enc
}

// The msgpack encoder only fails when its writer does, and a bytes.Buffer
// does not; still, the first error is kept and reported.

func (e *encoder) str(s string)   { write(e, e.enc.EncodeString, s) }
func (e *encoder) uint(v uint64)  { write(e, e.enc.EncodeUint, v) }
func (e *encoder) bool(v bool)    { write(e, e.enc.EncodeBool, v) }
func (e *encoder) mapLen(n int)   { write(e, e.enc.EncodeMapLen, n) }
func (e *encoder) arrayLen(n int) { write(e, e.enc.EncodeArrayLen, n) }

// write makes one msgpack write with enc unless an earlier one failed.
func write[T any](e *encoder, enc func(T) error, v T) {
	if e.err == nil {
		e.err = enc(v)
	}
}

// optional returns how many of the optional fields t and g m carries.
func optional(m *Message) int {
	n := 0
	if !m.SentAt.IsZero() {
		n++
	}
	if m.Gen != 0 {
		n++
	}
	return n
}

// common writes the map header and the fields every kind carries, and
// the optional sent time and generation when they are set.
func (e *encoder) common(m *Message, entries int) error {
	e.mapLen(entries + optional(m))
	e.str("k")
	e.uint(uint64(m.Kind))
	e.str("h")
	e.str(m.HostID)
	e.str("n")
	e.str(m.Hostname)
	e.str("b")
	e.str(m.BootID)
	e.str("s")
	e.uint(m.Seq)
	e.str("i")
	e.uint(uint64(m.Interval / time.Millisecond))
	if !m.SentAt.IsZero() {
		e.str("t")
		e.uint(uint64(m.SentAt.UnixMilli())) // checkSentAt: 0..MaxSentAtMillis
	}
	if m.Gen != 0 {
		e.str("g")
		e.uint(m.Gen)
	}
	return e.err
}

// other encodes bye and ping.
func (e *encoder) other(m *Message) ([][]byte, error) {
	if len(m.Disks) > 0 {
		return nil, fmt.Errorf("carries %d disks, want none", len(m.Disks))
	}
	if m.Gen != 0 {
		return nil, fmt.Errorf("carries generation %d, want none", m.Gen)
	}
	if err := e.common(m, 6); err != nil {
		return nil, err
	}
	if n := e.overhead + e.buf.Len(); n > e.budget {
		return nil, fmt.Errorf("needs %d bytes, budget %d", n, e.budget)
	}
	return [][]byte{e.datagram(e.buf.Bytes())}, nil
}

// announce encodes an announcement in parts.
func (e *encoder) announce(m *Message) ([][]byte, error) {
	if len(m.Disks) > MaxDisksTotal {
		return nil, fmt.Errorf("%d disks, max %d", len(m.Disks), MaxDisksTotal)
	}
	// Each disk's encoding, once; ends[i] is where disk i ends in disks.
	ends := make([]int, len(m.Disks))
	for i := range m.Disks {
		d := &m.Disks[i]
		if err := checkDisk(d); err != nil {
			return nil, &DiskError{Index: i, Device: d.Device, Err: err.Err}
		}
		if err := e.disk(d); err != nil {
			return nil, err
		}
		ends[i] = e.buf.Len()
	}
	disks := bytes.Clone(e.buf.Bytes())
	sizes := make([]int, len(ends))
	for i := range ends {
		sizes[i] = ends[i]
		if i > 0 {
			sizes[i] -= ends[i-1]
		}
	}

	e.buf.Reset()
	if err := e.common(m, 9); err != nil {
		return nil, err
	}
	prefix := bytes.Clone(e.buf.Bytes())
	fixed := e.overhead + len(prefix)

	if n := fixed + tailLen(0, 1, 0); n > e.budget {
		return nil, fmt.Errorf("needs %d bytes without disks, budget %d", n, e.budget)
	}
	// Plan with a one-byte parts count; if that yields more than 127 parts
	// the count takes two bytes, so plan again.
	cuts, bad := plan(sizes, fixed, e.budget, 1)
	if bad < 0 && len(cuts) > 127 {
		cuts, bad = plan(sizes, fixed, e.budget, 2)
	}
	if bad >= 0 {
		return nil, &DiskError{Index: bad, Device: m.Disks[bad].Device,
			Err: fmt.Errorf("%w (%d bytes encoded, budget %d)", ErrDiskTooLarge, sizes[bad], e.budget)}
	}
	if len(cuts) > MaxParts {
		return nil, fmt.Errorf("%d disks need more than %d datagrams of %d bytes", len(m.Disks), MaxParts, e.budget)
	}

	dgrams := make([][]byte, 0, len(cuts))
	start := 0
	for part, end := range cuts {
		e.buf.Reset()
		e.buf.Write(prefix)
		e.str("p")
		e.uint(uint64(part))
		e.str("c")
		e.uint(uint64(len(cuts)))
		e.str("d")
		e.arrayLen(end - start)
		if e.err != nil {
			return nil, e.err
		}
		from, to := 0, 0
		if start > 0 {
			from = ends[start-1]
		}
		if end > 0 {
			to = ends[end-1]
		}
		e.buf.Write(disks[from:to])
		d := e.datagram(e.buf.Bytes())
		if len(d) > e.budget { // plan and tailLen disagree with the encoder: a bug
			return nil, fmt.Errorf("internal error: part %d is %d bytes, budget %d", part, len(d), e.budget)
		}
		dgrams = append(dgrams, d)
		start = end
	}
	return dgrams, nil
}

// disk writes one disk map: the announced fields of diskstate's table, in
// table order, leaving out empty optional ones.
func (e *encoder) disk(d *diskstate.Disk) error {
	n := 0
	for i := range diskstate.NumFields() {
		if f := diskstate.FieldAt(i); f.Wire != "" && (f.Required || !f.Empty(d)) {
			n++
		}
	}
	e.mapLen(n)
	for i := range diskstate.NumFields() {
		f := diskstate.FieldAt(i)
		if f.Wire == "" || !f.Required && f.Empty(d) {
			continue
		}
		e.str(f.Wire)
		switch f.Kind {
		case diskstate.String:
			e.str(*f.Str(d))
		case diskstate.Strings:
			v := *f.Strs(d)
			e.arrayLen(len(v))
			for _, s := range v {
				e.str(s)
			}
		case diskstate.Uint:
			e.uint(*f.Uint(d))
		case diskstate.Bool:
			e.bool(*f.Bool(d))
		default:
			return fmt.Errorf("field %s cannot be announced", f.Key)
		}
	}
	return e.err
}

// datagram returns header || body, sealed if there is a keyring, in a new
// slice of exactly the right size.
func (e *encoder) datagram(body []byte) []byte {
	if e.k == nil {
		out := make([]byte, 0, HeaderSize+len(body))
		return append(append(out, e.header[:]...), body...)
	}
	out := make([]byte, 0, HeaderSize+SealOverhead+len(body))
	out = append(out, e.header[:]...)
	return e.k.seal(out, &e.header, body)
}

// plan splits disks of the given encoded sizes into as few consecutive parts
// as possible such that fixed + tail + disks <= budget for each part, where
// the parts count is encoded in partsLen bytes. It returns where each part
// ends, or the index of a disk that does not fit even alone (else -1).
//
// Greedy filling is optimal here: the size of a part only grows with its
// disks and its index, so no split can end its k-th part later than greedy
// does.
func plan(sizes []int, fixed, budget, partsLen int) (cuts []int, bad int) {
	part, count, sum := 0, 0, 0
	for i, sz := range sizes {
		if count > 0 && (count == MaxDisksPerPart || fixed+tailLen(part, partsLen, count+1)+sum+sz > budget) {
			cuts = append(cuts, i)
			part, count, sum = part+1, 0, 0
			if part >= MaxParts { // hopeless: stop planning, the caller reports it
				return append(cuts, len(sizes)), -1
			}
		}
		if fixed+tailLen(part, partsLen, 1)+sz > budget {
			return nil, i
		}
		count++
		sum += sz
	}
	return append(cuts, len(sizes)), -1
}

// tailLen is the size of the part, parts and disks entries of a part
// without the disks themselves: "p" part "c" parts "d" array-header.
func tailLen(part, partsLen, count int) int {
	return 2 + uintLen(uint64(part)) + 2 + partsLen + 2 + arrayHeaderLen(count)
}

// uintLen is the size of v in msgpack's shortest unsigned encoding.
func uintLen(v uint64) int {
	switch {
	case v <= mpPosFixIntMax:
		return 1
	case v <= 0xff:
		return 2
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	}
	return 9
}

// arrayHeaderLen is the size of an array header for n elements.
func arrayHeaderLen(n int) int {
	if n < 16 {
		return 1
	}
	return 3
}
