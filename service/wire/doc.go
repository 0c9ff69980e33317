// Package wire is the diskd datagram format: it encodes and strictly decodes
// diskd messages, seals and opens them with AES-256-GCM, splits a long disk
// list into numbered parts that each fit one datagram, and reassembles those
// parts on the receiving side.
//
// Package wire is not networking: it opens no sockets, knows no addresses or
// interfaces, and knows nothing about the inventory. It turns a [Message]
// into datagrams ([Encode]) and a datagram into a Message ([Decode]); the
// multicast package moves the bytes and the inventory applies the result.
//
// # Datagram
//
// Every datagram starts with a 6-byte header:
//
//	offset  size  value
//	0       4     magic "DSKD"
//	4       1     version, 1 ([Version])
//	5       1     flags: bit 0 = sealed ([FlagSealed]); every other bit must be 0
//
// The rest of the datagram is the body:
//
//   - unsealed (flags 0): the msgpack-encoded message.
//   - sealed (flags 1): a 12-byte random nonce followed by the AES-256-GCM
//     ciphertext of the msgpack-encoded message and its 16-byte tag. The
//     6-byte header is the additional authenticated data, so it cannot be
//     altered (for example to clear the sealed flag) without detection.
//
// A datagram is at most [MaxDatagram] bytes, header, nonce and tag included.
// Larger datagrams are dropped before any parsing.
//
// # Message
//
// The message is one msgpack map with string keys. Keys the decoder does not
// know are skipped, whatever their value type, so later versions can add
// fields without a version bump. A known key given twice, a known key with a
// value of the wrong msgpack type, a missing required key, a key that the kind
// does not allow, or any byte after the map makes the datagram malformed.
// Integers may use any msgpack integer encoding but must not be negative;
// strings must be msgpack str (not bin, not nil).
//
//	key  type          field      rule
//	"k"  uint          Kind       1 announce, 2 bye, 3 ping; required
//	"h"  str           HostID     1..64 bytes of [A-Za-z0-9._:-]; required
//	"n"  str           Hostname   1..253 bytes; required
//	"b"  str           BootID     1..64 bytes of [A-Za-z0-9._:-]; required
//	"s"  uint          Seq        any uint64; required
//	"i"  uint          Interval   milliseconds, 100..3600000; required
//	"t"  uint          SentAt     sender's clock, ms since the Unix epoch, 0..2^53; optional
//	"g"  uint          Gen        content generation; announce only, optional
//	"p"  uint          Part       0-based part index, < Parts; announce only, required there
//	"c"  uint          Parts      1..255 ([MaxParts]); announce only, required there
//	"d"  array of map  Disks      0..64 disks ([MaxDisksPerPart]); announce only, required there
//
// Each disk is a msgpack map; the encoder omits empty optional fields:
//
//	key  type          field        rule
//	"d"  str           Device       1..255 bytes; required
//	"u"  str           UUID         0..64 bytes
//	"p"  str           PartUUID     0..64 bytes
//	"l"  str           Label        0..255 bytes
//	"t"  str           Type         0..32 bytes
//	"m"  array of str  Mountpoints  0..32 entries of 1..1024 bytes each
//	"P"  str           PartLabel    0..144 bytes
//	"v"  str           FSVersion    0..32 bytes
//	"z"  uint          Size         bytes
//	"o"  bool          ReadOnly
//	"e"  bool          Removable
//	"r"  bool          Rotational
//	"x"  str           Transport    0..16 bytes
//	"M"  str           Model        0..64 bytes
//	"V"  str           Vendor       0..64 bytes
//	"S"  str           Serial       0..128 bytes
//	"w"  str           WWN          0..64 bytes
//	"F"  uint          FSSize       bytes
//	"A"  uint          FSAvail      bytes
//	"U"  uint          FSUsed       bytes
//
// The keys and limits are those of diskstate's field table; the decoder
// and validator walk it. A bool must be msgpack true or false (not nil, not
// an integer); an empty string, a false bool and a zero size are left out
// by the encoder and read as such when missing.
//
// # Compatibility
//
// Keys a receiver does not know are skipped, in a disk map as in the
// message. So an older diskd, which knows only d u p l t m, accepts a newer
// peer's announcement and shows those fields; a newer diskd accepts an
// older announcement and leaves the attributes it lacks empty, zero or
// false. Neither needs a version bump; a key's type never changes once
// announced.
//
// Every string, in the message and in its disks, must be valid UTF-8 without
// NUL bytes. Control characters are allowed; whoever displays them escapes
// them. An announcement's parts together carry at most [MaxDisksTotal] disks.
//
// Interval and SentAt travel in whole milliseconds: [Encode] truncates
// sub-millisecond precision. Encode leaves out SentAt when it is zero and Gen
// when it is 0, so a Message without them encodes as an older diskd's did;
// an older diskd skips them as unknown keys. Sealed, both are authenticated
// with the rest of the message: a receiver can refuse a message sent too long
// ago (a replay) and tell parts of an unchanged list from those of a new one.
//
// # Drops
//
// [Decode] is strict and never trusts what it has not checked. Lengths
// declared by the sender are compared with the limits above and with the
// bytes actually present before anything is allocated, so a small datagram
// cannot make the decoder allocate much. Every rejection is a [*DropError]
// whose [DropReason] is meant as a counter label (see [Reasons]).
//
// # Keys
//
// A [Keyring] holds one or more 32-byte AES-256 keys ([LoadKeyring] reads the
// key file: one standard-base64 key a line, blank lines and lines starting
// with # ignored, mode 0600 or stricter). The first key seals; every key is
// tried when opening, so keys roll without downtime: add the new key second
// on every host, then move it first, then remove the old one. Nonces are 96
// random bits from crypto/rand, which is safe for far more datagrams than a
// key will ever seal in diskd (the usual bound is 2^32 messages per key).
//
// With a keyring, only sealed datagrams are accepted; without one, only
// unsealed datagrams are accepted (a sealed one cannot be read).
//
// # Parts
//
// [Encode] splits an announcement into as few parts as possible such that each
// datagram fits the caller's byte budget ([DefaultBudget] is 1200, safe on any
// IPv4 or IPv6 path without fragmentation). All parts share Seq. The
// [Assembler] collects parts by (HostID, BootID, Gen), or by (HostID, BootID,
// Seq) for a sender that gives no generation, and delivers an announcement
// only when every part has arrived: a lost part means the announcement is
// never half-applied. Since the parts of one generation combine whatever
// their Seq, the same part of the next periodic announcement of an unchanged
// list makes up for a lost one.
//
// [DecodeHead] decodes everything but the contents of the disks, which it
// checks for framing only and keeps as bytes ([Head.RawDisks]); a receiver
// that recognises bytes it has already applied can skip [Head.Message].
//
// # Budget arithmetic
//
// An announcement's fixed part (header, the common keys of a typical host,
// and the part/parts/disks entries) takes about 123 bytes unsealed, 151
// sealed. A typical disk with blkid's fields only (device, two UUIDs, a
// label, a type, a mount point) encodes in about 134 bytes; with every
// attribute (partlabel, fs version, size, three flags, transport, model,
// vendor, serial, wwn and the three fill-level sizes) in about 273. A size
// takes 9 bytes when above 4 GiB, a flag 3 when true and nothing when false.
//
// At DefaultBudget (1200 bytes) a part thus carries 3 fully described
// disks where it carried 8: 64 disks take 22 parts instead of 9, and
// MaxParts (255) parts carry at most 765 such disks (2040 before). A host
// with more disks than that needs a larger budget (up to MaxDatagram, on
// paths that carry such datagrams); Encode reports it rather than sending a
// partial list. The receiving side is unchanged: each part is still at most
// one datagram and MaxDisksPerPart disks. TestBudgetArithmetic holds these
// numbers to the encoder.
package wire
