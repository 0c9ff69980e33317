package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// schemaVersion is the layout of the file: buckets and record encodings.
// Version 1:
//
//	meta:  "schema" → 8-byte big-endian version
//	hosts: host id → hostRec: a small number for the host and its
//	       latest hostname (places refer to hosts by that number)
//	disks: identity → diskRec (msgpack map with one-letter keys)
//	seen:  identity → 8-byte big-endian unix nanoseconds, a last-seen time
//	       newer than the one in the disk's record (written alone when
//	       only that time moved)
//	peers: host id → peerRec (msgpack map with one-letter keys)
const schemaVersion = 1

var (
	bucketMeta  = []byte("meta")
	bucketHosts = []byte("hosts")
	bucketDisks = []byte("disks")
	bucketSeen  = []byte("seen")
	bucketPeers = []byte("peers")
	keySchema   = []byte("schema")
)

// diskRec is a disk both in memory and on file. Times are unix
// nanoseconds, except in sightings (unix seconds). The current place is
// HostID/Device (its hostname is the host's, in the hosts table); Places
// holds every place a sighting refers to.
type diskRec struct {
	HostID    string     `msgpack:"h"`
	Device    string     `msgpack:"d,omitempty"`
	Label     string     `msgpack:"l,omitempty"`
	Type      string     `msgpack:"t,omitempty"`
	UUID      string     `msgpack:"u,omitempty"`
	PartUUID  string     `msgpack:"p,omitempty"`
	Mounts    []string   `msgpack:"m,omitempty"`
	First     int64      `msgpack:"f"`
	Last      int64      `msgpack:"s"`
	Present   bool       `msgpack:"a,omitempty"`
	GoneAt    int64      `msgpack:"g,omitempty"`
	Reason    uint8      `msgpack:"r,omitempty"`
	Places    []placeRec `msgpack:"P"`
	Sightings []sightRec `msgpack:"S"`
}

// placeRec is encoded as the array [Host, Device].
type placeRec struct {
	Host   uint32 // hostRec.Ref
	Device string
}

type hostRec struct {
	Ref      uint32 `msgpack:"r"`
	Hostname string `msgpack:"n,omitempty"`
}

// sightRec is encoded as the array [From, Until, Place, Reason].
type sightRec struct {
	From   int64 // unix seconds
	Until  int64 // unix seconds
	Place  uint16
	Reason uint8 // 0 while the sighting lasts
}

// Places and sightings are most of a record: they are coded by hand, as
// short arrays, which is several times faster than through reflection.

var (
	_ msgpack.CustomEncoder = (*placeRec)(nil)
	_ msgpack.CustomDecoder = (*placeRec)(nil)
	_ msgpack.CustomEncoder = (*sightRec)(nil)
	_ msgpack.CustomDecoder = (*sightRec)(nil)
)

func arrayOf(dec *msgpack.Decoder, n int, what string) error {
	got, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("%s of %d elements, want %d", what, got, n)
	}
	return nil
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (p *placeRec) EncodeMsgpack(enc *msgpack.Encoder) error {
	return errors.Join(enc.EncodeArrayLen(2), enc.EncodeUint(uint64(p.Host)), enc.EncodeString(p.Device))
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (p *placeRec) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	if err := arrayOf(dec, 2, "place"); err != nil {
		return err
	}
	if p.Host, err = dec.DecodeUint32(); err != nil {
		return err
	}
	p.Device, err = dec.DecodeString()
	return err
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *sightRec) EncodeMsgpack(enc *msgpack.Encoder) error {
	return errors.Join(enc.EncodeArrayLen(4), enc.EncodeInt(s.From), enc.EncodeInt(s.Until),
		enc.EncodeUint(uint64(s.Place)), enc.EncodeUint(uint64(s.Reason)))
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *sightRec) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	if err := arrayOf(dec, 4, "sighting"); err != nil {
		return err
	}
	if s.From, err = dec.DecodeInt64(); err != nil {
		return err
	}
	if s.Until, err = dec.DecodeInt64(); err != nil {
		return err
	}
	if s.Place, err = dec.DecodeUint16(); err != nil {
		return err
	}
	s.Reason, err = dec.DecodeUint8()
	return err
}

type peerRec struct {
	Hostname string `msgpack:"n,omitempty"`
	Addr     string `msgpack:"a,omitempty"`
	Heard    int64  `msgpack:"t"`
	BootID   string `msgpack:"b,omitempty"`
	Seq      uint64 `msgpack:"q,omitempty"`
	SentAt   int64  `msgpack:"w,omitempty"`
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func unmarshal(b []byte, v any) error {
	r := bytes.NewReader(b)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	if err := dec.Decode(v); err != nil {
		return err
	}
	if r.Len() > 0 {
		return fmt.Errorf("%d trailing bytes", r.Len())
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// decodeDisk decodes and checks one disk record stored under key.
func decodeDisk(key, val []byte) (*diskRec, error) {
	var r diskRec
	if err := unmarshal(val, &r); err != nil {
		return nil, fmt.Errorf("disk %q: %w", key, err)
	}
	if err := r.check(string(key)); err != nil {
		return nil, fmt.Errorf("disk %q: %w", key, err)
	}
	return &r, nil
}

// check verifies a record's invariants; a record breaking one is corrupt.
func (r *diskRec) check(key string) error {
	switch {
	case key != Identity(r.info()):
		return fmt.Errorf("stored under the wrong key (its identity is %q)", Identity(r.info()))
	case r.HostID == "":
		return fmt.Errorf("no host id")
	case r.First <= 0 || r.Last < r.First:
		return fmt.Errorf("first seen %d after last seen %d", r.First, r.Last)
	case len(r.Sightings) == 0 || len(r.Sightings) > maxSightingsLimit:
		return fmt.Errorf("%d sightings", len(r.Sightings))
	case len(r.Places) == 0 || len(r.Places) > len(r.Sightings):
		return fmt.Errorf("%d places for %d sightings", len(r.Places), len(r.Sightings))
	case len(r.Mounts) > MaxMountPoints:
		return fmt.Errorf("%d mount points", len(r.Mounts))
	case int(r.Reason) >= len(reasons):
		return fmt.Errorf("unknown gone reason %d", r.Reason)
	case r.Present != (r.Reason == 0):
		return fmt.Errorf("present %v with gone reason %d", r.Present, r.Reason)
	case r.Present != (r.GoneAt == 0):
		return fmt.Errorf("present %v with gone time %d", r.Present, r.GoneAt)
	}
	for _, s := range []string{r.HostID, r.Device, r.Label, r.Type, r.UUID, r.PartUUID} {
		if err := checkString("field", s); err != nil {
			return err
		}
	}
	for i, s := range r.Sightings {
		if int(s.Place) >= len(r.Places) {
			return fmt.Errorf("sighting %d refers to place %d of %d", i, s.Place, len(r.Places))
		}
		if int(s.Reason) >= len(reasons) || (s.Reason == 0) != (i == 0 && r.Present) {
			return fmt.Errorf("sighting %d has reason %d (present %v)", i, s.Reason, r.Present)
		}
		if s.Until < s.From {
			return fmt.Errorf("sighting %d ends before it starts", i)
		}
		if i > 0 && s.From > r.Sightings[i-1].From {
			return fmt.Errorf("sighting %d is newer than sighting %d", i, i-1)
		}
	}
	if p := r.Places[r.Sightings[0].Place]; p.Device != r.Device {
		return fmt.Errorf("newest sighting is at device %q, the disk at %q", p.Device, r.Device)
	}
	return nil
}

func (r *diskRec) info() DiskInfo {
	return DiskInfo{HostID: r.HostID, Device: r.Device, Label: r.Label,
		Type: r.Type, UUID: r.UUID, PartUUID: r.PartUUID, MountPoints: r.Mounts}
}

func decodePeer(key, val []byte) (*peerRec, error) {
	var p peerRec
	if err := unmarshal(val, &p); err != nil {
		return nil, fmt.Errorf("peer %q: %w", key, err)
	}
	for _, s := range []string{string(key), p.Hostname, p.Addr, p.BootID} {
		if err := checkString("field", s); err != nil {
			return nil, fmt.Errorf("peer %q: %w", key, err)
		}
	}
	if len(key) == 0 || p.Heard <= 0 {
		return nil, fmt.Errorf("peer %q: heard at %d", key, p.Heard)
	}
	return &p, nil
}

func decodeHost(key, val []byte) (*hostRec, error) {
	var h hostRec
	if err := unmarshal(val, &h); err != nil {
		return nil, fmt.Errorf("host %q: %w", key, err)
	}
	if err := errors.Join(checkString("host id", string(key)), checkString("hostname", h.Hostname)); err != nil {
		return nil, fmt.Errorf("host %q: %w", key, err)
	}
	if len(key) == 0 || h.Ref == 0 {
		return nil, fmt.Errorf("host %q: number %d", key, h.Ref)
	}
	return &h, nil
}
