package wire

import (
	"fmt"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// Decode parses and validates one datagram. With k != nil it accepts only
// sealed datagrams that one of k's keys opens; with k == nil it accepts only
// unsealed ones. Every error is a *DropError. Decode never panics, and what
// it allocates is bounded by the size of b, whatever lengths the datagram
// declares. The returned strings do not share memory with b.
//
// Decode is safe for concurrent use.
func Decode(b []byte, k *Keyring) (Message, error) {
	h, err := DecodeHead(b, k)
	if err != nil {
		return Message{}, err
	}
	return h.Message()
}

// Head is a datagram that DecodeHead has opened and checked, all but its
// disks: an announcement's disk array is kept as bytes until Message
// decodes and checks it (when it is the last value of the message, as
// Encode writes it, DecodeHead takes the rest of the body as it is;
// otherwise it checks its msgpack framing and count). A receiver that already holds those exact bytes from the same sender
// and generation can skip decoding them again.
type Head struct {
	m   Message // Disks nil
	raw string  // the undecoded disk array of an announcement
}

// Header returns the message without its disks.
func (h *Head) Header() Message { return h.m }

// RawDisks returns the msgpack encoding of an announcement's disk array
// as received ("" for bye and ping).
func (h *Head) RawDisks() string { return h.raw }

// Message decodes and checks the disks and returns the whole message, as
// Decode does. Every error is a *DropError.
func (h *Head) Message() (Message, error) {
	m := h.m
	if m.Kind != KindAnnounce {
		return m, nil
	}
	r := reader{s: h.raw}
	disks, err := r.disks()
	if err != nil {
		return Message{}, within("disks", err)
	}
	if r.off != len(r.s) {
		return Message{}, dropf(ReasonMalformed, "%d bytes after the message", len(r.s)-r.off)
	}
	m.Disks = disks
	return m, nil
}

// DecodeHead is Decode up to the contents of an announcement's disks:
// everything else is opened, parsed and checked as Decode does, and every
// error is a *DropError. Head.Message finishes the work.
func DecodeHead(b []byte, k *Keyring) (Head, error) {
	if len(b) > MaxDatagram {
		return Head{}, dropf(ReasonLong, "datagram is %d bytes, max %d", len(b), MaxDatagram)
	}
	if len(b) < HeaderSize {
		return Head{}, dropf(ReasonShort, "datagram is %d bytes, shorter than the %d-byte header", len(b), HeaderSize)
	}
	if string(b[:4]) != Magic {
		return Head{}, dropf(ReasonMagic, "magic %q, want %q", b[:4], Magic)
	}
	if b[4] != Version {
		return Head{}, dropf(ReasonVersion, "version %d, want %d", b[4], Version)
	}
	flags := b[5]
	if flags&^FlagSealed != 0 {
		return Head{}, dropf(ReasonFlags, "unknown flags %#02x", flags&^FlagSealed)
	}
	body := b[HeaderSize:]
	sealed := flags&FlagSealed != 0
	switch {
	case sealed && k == nil:
		return Head{}, dropf(ReasonSealed, "sealed, but no key file is configured")
	case !sealed && k != nil:
		return Head{}, dropf(ReasonUnsealed, "not sealed, but a key file is configured")
	case sealed:
		if len(body) < SealOverhead {
			return Head{}, dropf(ReasonShort, "sealed body is %d bytes, shorter than nonce and tag (%d)", len(body), SealOverhead)
		}
		plain, ok := k.open(b[:HeaderSize], body)
		if !ok {
			return Head{}, dropf(ReasonAuth, "no key opens it (wrong key or tampered)")
		}
		body = plain
	}
	// One copy: every decoded string is a substring of it.
	r := reader{s: string(body)}
	m, err := r.message()
	if err != nil {
		return Head{}, err
	}
	return m, nil
}

// Presence bits of message and disk fields.
const (
	hasKind = 1 << iota
	hasHost
	hasHostname
	hasBoot
	hasSeq
	hasInterval
	hasPart
	hasParts
	hasDisks
	hasSentAt
	hasGen
)

// message parses the body: one map and nothing after it.
// The disks are checked for framing only; Head.Message decodes them.
func (r *reader) message() (Head, *DropError) {
	var h Head
	m := &h.m
	n, err := r.mapLen()
	if err != nil {
		return h, within("message", err)
	}
	var seen uint
	var kind, part, parts, interval, sentAt uint64
	for i := 0; i < n; i++ {
		key, err := r.key()
		if err != nil {
			return h, within("message key", err)
		}
		var bit uint
		switch key {
		case "k":
			bit = hasKind
			kind, err = r.uint()
		case "h":
			bit = hasHost
			m.HostID, err = r.str(MaxIDLen)
		case "n":
			bit = hasHostname
			m.Hostname, err = r.str(MaxHostnameLen)
		case "b":
			bit = hasBoot
			m.BootID, err = r.str(MaxIDLen)
		case "s":
			bit = hasSeq
			m.Seq, err = r.uint()
		case "i":
			bit = hasInterval
			interval, err = r.uint()
		case "p":
			bit = hasPart
			part, err = r.uint()
		case "c":
			bit = hasParts
			parts, err = r.uint()
		case "t":
			bit = hasSentAt
			sentAt, err = r.uint()
		case "g":
			bit = hasGen
			m.Gen, err = r.uint()
		case "d":
			bit = hasDisks
			if i == n-1 {
				// The last value, as Encode writes it: the rest of the
				// body, checked when Message decodes it (a receiver that
				// knows these bytes need not walk them at all).
				h.raw, r.off = r.s[r.off:], len(r.s)
			} else {
				h.raw, err = r.rawDisks()
			}
		default:
			err = r.skip()
		}
		if err != nil {
			return h, within(fieldName(key), err)
		}
		if seen&bit != 0 {
			return h, dropf(ReasonMalformed, "key %s given twice", quote(key))
		}
		seen |= bit
	}
	if r.off != len(r.s) {
		return h, dropf(ReasonMalformed, "%d bytes after the message", len(r.s)-r.off)
	}
	if seen&hasKind == 0 {
		return h, dropf(ReasonMalformed, "no kind")
	}
	switch kind {
	case uint64(KindAnnounce), uint64(KindBye), uint64(KindPing):
		m.Kind = Kind(kind)
	default:
		return h, dropf(ReasonKind, "unknown kind %d", kind)
	}
	const common = hasHost | hasHostname | hasBoot | hasSeq | hasInterval
	const announce = hasPart | hasParts | hasDisks
	const announceOnly = announce | hasGen
	if missing := common &^ seen; missing != 0 {
		return h, dropf(ReasonMalformed, "%s without %s", m.Kind, fieldName(bitKey(missing)))
	}
	if m.Kind == KindAnnounce {
		if missing := announce &^ seen; missing != 0 {
			return h, dropf(ReasonMalformed, "announce without %s", fieldName(bitKey(missing)))
		}
	} else if extra := announceOnly & seen; extra != 0 {
		return h, dropf(ReasonMalformed, "%s with %s", m.Kind, fieldName(bitKey(extra)))
	}
	if interval > uint64(MaxInterval/time.Millisecond) {
		return h, dropf(ReasonLimit, "interval %dms outside %v..%v", interval, MinInterval, MaxInterval)
	}
	m.Interval = time.Duration(interval) * time.Millisecond
	if seen&hasSentAt != 0 {
		if sentAt > MaxSentAtMillis {
			return h, dropf(ReasonLimit, "sent time %dms outside 0..%d", sentAt, uint64(MaxSentAtMillis))
		}
		m.SentAt = time.UnixMilli(int64(sentAt))
	}
	if err := checkCommon(m); err != nil {
		return h, err
	}
	if m.Kind == KindAnnounce {
		if parts < 1 || parts > MaxParts {
			return h, dropf(ReasonLimit, "parts %d outside 1..%d", parts, MaxParts)
		}
		if part >= parts {
			return h, dropf(ReasonLimit, "part %d outside 0..%d", part, parts-1)
		}
		m.Part, m.Parts = int(part), int(parts)
	}
	return h, nil
}

// bitKey returns the key of the lowest presence bit set in bits.
func bitKey(bits uint) string {
	keys := "khnbsipcdtg"
	for i := range len(keys) {
		if bits&(1<<i) != 0 {
			return keys[i : i+1]
		}
	}
	return "?"
}

// fieldName names a message key for error messages.
func fieldName(key string) string {
	switch key {
	case "k":
		return "kind"
	case "h":
		return "host id"
	case "n":
		return "hostname"
	case "b":
		return "boot id"
	case "s":
		return "seq"
	case "i":
		return "interval"
	case "p":
		return "part"
	case "c":
		return "parts"
	case "d":
		return "disks"
	case "t":
		return "sent time"
	case "g":
		return "generation"
	}
	return "key " + quote(key)
}

// rawDisks checks the framing of an announcement's disk array (an array
// of at most MaxDisksPerPart values, each complete) and returns its bytes.
func (r *reader) rawDisks() (string, *DropError) {
	start := r.off
	n, err := r.arrayLen()
	if err != nil {
		return "", err
	}
	if n > MaxDisksPerPart {
		return "", dropf(ReasonLimit, "%d disks, max %d", n, MaxDisksPerPart)
	}
	for range n {
		if err := r.skip(); err != nil {
			// Report what Decode of the disks themselves finds wrong
			// (a limit, say), as specific as a full decode would be.
			r.off = start
			if _, derr := r.disks(); derr != nil {
				return "", derr
			}
			return "", err
		}
	}
	return r.s[start:r.off], nil
}

// disks parses the disk array of an announcement.
func (r *reader) disks() ([]diskstate.Disk, *DropError) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	if n > MaxDisksPerPart {
		return nil, dropf(ReasonLimit, "%d disks, max %d", n, MaxDisksPerPart)
	}
	// A disk map with a device, {"d":""}, takes at least 4 bytes; anything
	// shorter is malformed anyway. Check before allocating.
	if n > uint64(r.remaining()/4) {
		return nil, dropf(ReasonMalformed, "%d disks declared, %d bytes left", n, r.remaining())
	}
	if n == 0 {
		return nil, nil
	}
	disks := make([]diskstate.Disk, n)
	for i := range disks {
		if err := r.disk(&disks[i]); err != nil {
			return nil, within(fmt.Sprintf("disk %d", i), err)
		}
	}
	return disks, nil
}

// disk parses one disk map. Its keys are the Wire keys of diskstate's field
// table; a key it does not know is skipped (a newer sender may announce
// more), and each field's value is bounded by the table's limits.
func (r *reader) disk(d *diskstate.Disk) *DropError {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var seen uint64 // bit i: table field i was given
	for i := 0; i < n; i++ {
		key, err := r.key()
		if err != nil {
			return within("key", err)
		}
		idx := diskstate.WireIndex(key)
		if idx < 0 {
			if err := r.skip(); err != nil {
				return within("key "+quote(key), err)
			}
			continue
		}
		f := diskstate.FieldAt(idx)
		switch f.Kind {
		case diskstate.String:
			*f.Str(d), err = r.str(f.Max)
		case diskstate.Strings:
			*f.Strs(d), err = r.strs(f.MaxItems, f.Max)
		case diskstate.Uint:
			*f.Uint(d), err = r.uint()
		case diskstate.Bool:
			*f.Bool(d), err = r.bool()
		default:
			err = dropf(ReasonMalformed, "%s cannot be announced", f.Key)
		}
		if err != nil {
			return within(f.Key, err)
		}
		if seen&(1<<idx) != 0 {
			return dropf(ReasonMalformed, "%s given twice", f.Key)
		}
		seen |= 1 << idx
	}
	for i := range diskstate.NumFields() {
		if f := diskstate.FieldAt(i); f.Required && seen&(1<<i) == 0 {
			return dropf(ReasonMalformed, "no %s", f.Key)
		}
	}
	if err := checkDisk(d); err != nil {
		return within("device "+quote(d.Device), err)
	}
	return nil
}

// strs parses an array of at most maxItems strings of at most max bytes.
func (r *reader) strs(maxItems, max int) ([]string, *DropError) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	if n > uint64(maxItems) {
		return nil, dropf(ReasonLimit, "%d entries, max %d", n, maxItems)
	}
	if n > uint64(r.remaining()) {
		return nil, dropf(ReasonMalformed, "%d entries declared, %d bytes left", n, r.remaining())
	}
	if n == 0 {
		return nil, nil
	}
	mps := make([]string, n)
	for i := range mps {
		if mps[i], err = r.str(max); err != nil {
			return nil, within(fmt.Sprintf("entry %d", i), err)
		}
	}
	return mps, nil
}
