package wire

import (
	"errors"
	"strconv"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// Header and sealing constants.
const (
	// Magic is the first four bytes of every diskd datagram.
	Magic = "DSKD"
	// Version is the only datagram version this package reads and writes.
	Version = 1
	// FlagSealed marks a datagram whose body is AES-256-GCM sealed.
	FlagSealed = 1 << 0
	// HeaderSize is the size of magic, version and flags.
	HeaderSize = 6
	// NonceSize is the size of the random nonce in front of a sealed body.
	NonceSize = 12
	// TagSize is the size of the GCM authentication tag.
	TagSize = 16
	// SealOverhead is what sealing adds to a datagram.
	SealOverhead = NonceSize + TagSize
	// KeySize is the size of an AES-256 key.
	KeySize = 32
)

// Size limits.
const (
	// MaxDatagram is the largest datagram Decode accepts and Encode writes.
	MaxDatagram = 9000
	// DefaultBudget is the datagram size Encode aims for when the caller
	// knows no better: it fits the IPv6 minimum MTU without fragmentation.
	DefaultBudget = 1200
	// MaxParts is the most parts one announcement may be split into.
	MaxParts = 255
	// MaxDisksPerPart is the most disks one datagram may carry.
	MaxDisksPerPart = 64
	// MaxDisksTotal is the most disks one announcement may carry.
	MaxDisksTotal = 2048
)

// String limits, in bytes.
const (
	// MaxIDLen bounds HostID and BootID.
	MaxIDLen = diskstate.MaxIDLen
	// MaxHostnameLen bounds Hostname.
	MaxHostnameLen = diskstate.MaxHostnameLen
)

// Interval limits.
const (
	// MinInterval is the shortest announce interval a message may carry.
	MinInterval = 100 * time.Millisecond
	// MaxInterval is the longest announce interval a message may carry.
	MaxInterval = time.Hour
	// MaxSentAtMillis bounds SentAt on the wire, in milliseconds since the
	// Unix epoch (2^53: beyond the year 285,000).
	MaxSentAtMillis = 1 << 53
)

// Kind says what a message is for.
type Kind uint8

// Message kinds.
const (
	// KindAnnounce carries (one part of) the sender's full disk list.
	KindAnnounce Kind = 1
	// KindBye is sent when a daemon stops cleanly.
	KindBye Kind = 2
	// KindPing asks every peer to announce.
	KindPing Kind = 3
)

// String returns "announce", "bye", "ping" or "kind(N)".
func (k Kind) String() string {
	switch k {
	case KindAnnounce:
		return "announce"
	case KindBye:
		return "bye"
	case KindPing:
		return "ping"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Message is one diskd message. The strings of a decoded Message are
// substrings of one private copy of its datagram's body, so keeping any of
// them keeps that copy (at most MaxDatagram bytes) alive.
type Message struct {
	Kind     Kind
	HostID   string           // stable host identity, 1..64 bytes of [A-Za-z0-9._:-]
	Hostname string           // name shown to people, 1..253 bytes
	BootID   string           // daemon instance id, same rules as HostID
	Seq      uint64           // per-sender sequence number; all parts of one announcement share it
	Interval time.Duration    // sender's announce interval, MinInterval..MaxInterval, whole ms on the wire
	SentAt   time.Time        // sender's clock when it sent the message, whole ms; zero: not given (an older sender)
	Gen      uint64           // announce only: content generation, changes only when the disk list does; 0: not given
	Part     int              // announce only: 0-based part index; set by Encode
	Parts    int              // announce only: number of parts, 1..MaxParts; set by Encode; 0 for bye and ping
	Disks    []diskstate.Disk // announce only; nil when empty; only the fields diskstate announces are set
}

// DropReason says why Decode rejected a datagram. The values are short,
// stable and meant to be used as counter labels.
type DropReason string

// Drop reasons.
const (
	// ReasonShort: shorter than the header, or sealed and shorter than nonce and tag.
	ReasonShort DropReason = "short"
	// ReasonLong: larger than MaxDatagram.
	ReasonLong DropReason = "long"
	// ReasonMagic: does not start with "DSKD".
	ReasonMagic DropReason = "magic"
	// ReasonVersion: a version other than Version.
	ReasonVersion DropReason = "version"
	// ReasonFlags: a flag bit this version does not define.
	ReasonFlags DropReason = "flags"
	// ReasonUnsealed: unsealed, but a keyring requires sealed datagrams.
	ReasonUnsealed DropReason = "unsealed"
	// ReasonSealed: sealed, but there is no keyring to open it.
	ReasonSealed DropReason = "sealed"
	// ReasonAuth: no key of the keyring opens it (wrong key or tampered).
	ReasonAuth DropReason = "auth"
	// ReasonMalformed: not a well-formed message (msgpack syntax, types,
	// truncation, trailing bytes, missing, duplicate or misplaced fields).
	ReasonMalformed DropReason = "malformed"
	// ReasonKind: a well-formed message of a kind this version does not know.
	ReasonKind DropReason = "kind"
	// ReasonLimit: a length, count or value outside its allowed range.
	ReasonLimit DropReason = "limit"
	// ReasonInvalid: a string with bytes it must not contain (invalid UTF-8,
	// NUL, or outside the identifier character set).
	ReasonInvalid DropReason = "invalid"
)

// Reasons returns every DropReason, for example to register counters up front.
func Reasons() []DropReason {
	return []DropReason{
		ReasonShort, ReasonLong, ReasonMagic, ReasonVersion, ReasonFlags,
		ReasonUnsealed, ReasonSealed, ReasonAuth, ReasonMalformed, ReasonKind,
		ReasonLimit, ReasonInvalid,
	}
}

// DropError is the error Decode returns for every rejected datagram.
type DropError struct {
	Reason DropReason
	Err    error
}

// Error returns one line: the reason and what exactly was wrong. Strings
// from the datagram appear quoted and escaped, never raw.
func (e *DropError) Error() string {
	if e.Err == nil {
		return "wire: dropped datagram (" + string(e.Reason) + ")"
	}
	return "wire: dropped datagram (" + string(e.Reason) + "): " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *DropError) Unwrap() error { return e.Err }

// ReasonOf returns the DropReason of err, or "" if err is not (or does not
// wrap) a *DropError.
func ReasonOf(err error) DropReason {
	var de *DropError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

// ErrDiskTooLarge means a single disk does not fit one datagram of the
// budget even alone. It is wrapped in a *DiskError.
var ErrDiskTooLarge = errors.New("does not fit one datagram even alone")

// DiskError is returned by Encode when one disk of the list cannot be sent:
// it is invalid or too large. Index lets the caller leave that disk out and
// encode the rest.
type DiskError struct {
	Index  int    // index into Message.Disks
	Device string // the disk's device path
	Err    error
}

// Error names the disk by index and (escaped) device path.
func (e *DiskError) Error() string {
	return "disk " + strconv.Itoa(e.Index) + " " + quote(e.Device) + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *DiskError) Unwrap() error { return e.Err }

// quote returns s quoted and escaped for one-line messages, shortened if long.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
