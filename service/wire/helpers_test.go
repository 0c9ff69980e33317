package wire

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/diskd/diskd/service/diskstate"
)

// testKey returns a deterministic 32-byte key.
func testKey(seed byte) []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = seed + byte(i)*7
	}
	return k
}

func mustKeyring(t testing.TB, keys ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// realisticDisks returns n disks like blkid reports them.
func realisticDisks(n int) []diskstate.Disk {
	disks := make([]diskstate.Disk, n)
	for i := range disks {
		disks[i] = diskstate.Disk{
			Device:      fmt.Sprintf("/dev/sd%c%d", 'a'+i/16%26, i%16+1),
			UUID:        fmt.Sprintf("%08x-1b2c-4d5e-8f90-%012x", i, i*7919),
			PartUUID:    fmt.Sprintf("%08x-0a0b-4c0d-9e0f-%012x", i*31, i),
			Label:       fmt.Sprintf("BACKUP-%04d", i),
			Type:        "ext4",
			Mountpoints: []string{fmt.Sprintf("/srv/backup/%04d", i)},
		}
	}
	return disks
}

func announceMsg(disks []diskstate.Disk) Message {
	return Message{
		Kind:     KindAnnounce,
		HostID:   "4c1f7c9a0e6d4b2f8a3e5d7c9b1a2f3e",
		Hostname: "alpha.example.org",
		BootID:   "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0",
		Seq:      42,
		Interval: 10 * time.Second,
		Parts:    1,
		Disks:    disks,
	}
}

func otherMsg(kind Kind) Message {
	m := announceMsg(nil)
	m.Kind, m.Parts = kind, 0
	return m
}

// ---- building raw msgpack bodies for hostile tests ----

// omap is an ordered msgpack map: key, value, key, value...
type omap []any

// raw is written to the body verbatim.
type raw []byte

func (o omap) with(key string, val any) omap {
	out := slices.Clone(o)
	for i := 0; i < len(out); i += 2 {
		if out[i] == key {
			out[i+1] = val
			return out
		}
	}
	return append(out, key, val)
}

func (o omap) without(key string) omap {
	var out omap
	for i := 0; i < len(o); i += 2 {
		if o[i] != key {
			out = append(out, o[i], o[i+1])
		}
	}
	return out
}

func encodeValue(t testing.TB, enc *msgpack.Encoder, buf *bytes.Buffer, v any) {
	t.Helper()
	var err error
	switch v := v.(type) {
	case omap:
		err = enc.EncodeMapLen(len(v) / 2)
		for _, x := range v {
			encodeValue(t, enc, buf, x)
		}
	case []any:
		err = enc.EncodeArrayLen(len(v))
		for _, x := range v {
			encodeValue(t, enc, buf, x)
		}
	case raw:
		buf.Write(v)
	default:
		err = enc.Encode(v)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// body encodes v with the msgpack library.
func body(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	encodeValue(t, msgpack.NewEncoder(&buf), &buf, v)
	return buf.Bytes()
}

// unsealed returns an unsealed datagram of body b.
func unsealed(b []byte) []byte {
	return append([]byte("DSKD\x01\x00"), b...)
}

// sealedDatagram returns a sealed datagram of body b.
func sealedDatagram(k *Keyring, b []byte) []byte {
	h := [HeaderSize]byte{'D', 'S', 'K', 'D', Version, FlagSealed}
	return k.seal(h[:], &h, b)
}

func baseDisk() omap {
	return omap{"d", "/dev/sda1", "u", "0b7e2a1c-1b2c-4d5e-8f90-123456789abc", "l", "DATA", "t", "ext4", "m", []any{"/srv/data"}}
}

func baseAnnounce() omap {
	return omap{"k", 1, "h", "host-1", "n", "alpha", "b", "boot-1", "s", 7, "i", 10000, "p", 0, "c", 1, "d", []any{baseDisk()}}
}

func basePing() omap {
	return omap{"k", 3, "h", "host-1", "n", "alpha", "b", "boot-1", "s", 7, "i", 10000}
}

func repeat(s string, n int) string {
	return string(bytes.Repeat([]byte(s), n))
}
