package wire

import "testing"

func benchDatagram(b *testing.B, k *Keyring) []byte {
	b.Helper()
	d, err := Encode(announceMsg(realisticDisks(16)), MaxDatagram, k)
	if err != nil || len(d) != 1 {
		b.Fatalf("%d datagrams, %v", len(d), err)
	}
	return d[0]
}

// BenchmarkDecode16 decodes an unsealed 16-disk announcement.
func BenchmarkDecode16(b *testing.B) {
	d := benchDatagram(b, nil)
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(d, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode16Sealed opens and decodes a sealed 16-disk announcement.
func BenchmarkDecode16Sealed(b *testing.B) {
	k := mustKeyring(b, testKey(1))
	d := benchDatagram(b, k)
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(d, k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode16SealedRotating opens with the second key of a keyring,
// as during a key roll.
func BenchmarkDecode16SealedRotating(b *testing.B) {
	d := benchDatagram(b, mustKeyring(b, testKey(2)))
	k := mustKeyring(b, testKey(1), testKey(2))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(d, k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode16 encodes an unsealed 16-disk announcement.
func BenchmarkEncode16(b *testing.B) {
	m := announceMsg(realisticDisks(16))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m, MaxDatagram, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode16Sealed encodes and seals a 16-disk announcement.
func BenchmarkEncode16Sealed(b *testing.B) {
	m := announceMsg(realisticDisks(16))
	k := mustKeyring(b, testKey(1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m, MaxDatagram, k); err != nil {
			b.Fatal(err)
		}
	}
}

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
