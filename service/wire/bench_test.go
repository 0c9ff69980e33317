package wire

import "testing"

// benchDecode decodes a 16-disk announcement, sealed with seal (nil:
// unsealed), opening it with open.
func benchDecode(b *testing.B, seal, open *Keyring) {
	b.Helper()
	d, err := Encode(announceMsg(realisticDisks(16)), MaxDatagram, seal)
	if err != nil || len(d) != 1 {
		b.Fatalf("%d datagrams, %v", len(d), err)
	}
	b.SetBytes(int64(len(d[0])))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(d[0], open); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEncode encodes a 16-disk announcement, sealed with k unless it is
// nil.
func benchEncode(b *testing.B, k *Keyring) {
	b.Helper()
	m := announceMsg(realisticDisks(16))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m, MaxDatagram, k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode16 decodes an unsealed 16-disk announcement.
func BenchmarkDecode16(b *testing.B) { benchDecode(b, nil, nil) }

// BenchmarkDecode16Sealed opens and decodes a sealed 16-disk announcement.
func BenchmarkDecode16Sealed(b *testing.B) {
	k := mustKeyring(b, testKey(1))
	benchDecode(b, k, k)
}

// BenchmarkDecode16SealedRotating opens with the second key of a keyring,
// as during a key roll.
func BenchmarkDecode16SealedRotating(b *testing.B) {
	benchDecode(b, mustKeyring(b, testKey(2)), mustKeyring(b, testKey(1), testKey(2)))
}

// BenchmarkEncode16 encodes an unsealed 16-disk announcement.
func BenchmarkEncode16(b *testing.B) { benchEncode(b, nil) }

// BenchmarkEncode16Sealed encodes and seals a 16-disk announcement.
func BenchmarkEncode16Sealed(b *testing.B) { benchEncode(b, mustKeyring(b, testKey(1))) }

// BenchmarkDecodeHostile decodes a datagram declaring a 4 GiB string.
func BenchmarkDecodeHostile(b *testing.B) {
	d := unsealed(body(b, basePing().with("x", raw{0xdb, 0xff, 0xff, 0xff, 0xff})))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(d, nil); err == nil {
			b.Fatal("accepted")
		}
	}
}
