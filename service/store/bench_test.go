package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/diskd/diskd/service/store"
)

const (
	benchHosts    = 1000
	benchPerHost  = 16
	benchDisks    = benchHosts * benchPerHost
	benchMaxBytes = 32 << 20
)

func benchHostID(h int) string { return fmt.Sprintf("%032x", h*7919+1) }

// benchDisk is disk i of host h, with realistic string sizes.
func benchDisk(h, i int) store.DiskInfo {
	return store.DiskInfo{
		HostID:      benchHostID(h),
		Hostname:    fmt.Sprintf("node-%04d.rack%02d.example.net", h, h%40),
		Device:      fmt.Sprintf("/dev/sd%c%d", 'a'+i/4, i%4+1),
		Label:       fmt.Sprintf("DATA-%04d-%02d", h, i),
		Type:        "ext4",
		UUID:        fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", h, i, h%4096, i, h*16+i),
		PartUUID:    fmt.Sprintf("%08x-%02x", h*16+i, i),
		MountPoints: []string{fmt.Sprintf("/srv/data%02d", i)},
	}
}

func benchRound(h int) []store.DiskInfo {
	ds := make([]store.DiskInfo, benchPerHost)
	for i := range ds {
		ds[i] = benchDisk(h, i)
	}
	return ds
}

// build16k fills dir with 16,000 disks, each with sightings sightings:
// in place "same" every sighting is at the disk's own host (a restart
// or re-plug), in place "roaming" every one is at another host. The
// store commits as the daemon's would (default batch size and interval).
func build16k(tb testing.TB, dir string, sightings int, roaming bool) *store.Bolt {
	tb.Helper()
	s, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for r := range sightings {
		for h := range benchHosts {
			place := h
			if roaming {
				place = (h + r*37) % benchHosts
			}
			ds := benchRound(h)
			for i := range ds {
				ds[i].HostID, ds[i].Hostname = benchHostID(place), fmt.Sprintf("node-%04d.rack%02d.example.net", place, place%40)
			}
			if err := s.Seen(t, ds...); err != nil {
				tb.Fatal(err)
			}
			if err := s.HostGone(t.Add(time.Minute), store.ReasonTimeout, benchHostID(place)); err != nil {
				tb.Fatal(err)
			}
		}
		t = t.Add(time.Hour)
	}
	for h := range benchHosts {
		if err := s.Heard(store.Peer{HostID: benchHostID(h), Hostname: "node", Addr: "10.0.0.1:4277", LastHeard: t,
			Mark: store.Mark{BootID: "0123456789abcdef0123456789abcdef", Seq: 123456, SentAt: t}}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkFileSize16k reports the file size with 16,000 remembered disks
// (full and minimal histories): "MB" as written, "MB-maintained" after a
// maintenance pass (what the maintainer leaves within 10 minutes; it must
// be at most 32 MB), "MB-compacted" after a forced rewrite, and the heap
// the records take once loaded.
func BenchmarkFileSize16k(b *testing.B) {
	for _, c := range []struct {
		name      string
		sightings int
		roaming   bool
	}{
		{"sightings=1", 1, false},
		{"sightings=32/same-place", 32, false},
		{"sightings=32/roaming", 32, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var size, maintained, compacted int64
			var heap uint64
			for b.Loop() {
				dir := b.TempDir()
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				s := build16k(b, dir, c.sightings, c.roaming)
				size = s.Stats().FileSize
				if err := s.MaintainLogged(b); err != nil {
					b.Fatal(err)
				}
				maintained = s.Stats().FileSize
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				// Reopen to measure what the records take in memory,
				// and compact to see the content's size.
				s, err := store.Open(context.Background(), dir, store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				heap = m1.HeapAlloc - min(m1.HeapAlloc, m0.HeapAlloc)
				if err := s.CompactNow(); err != nil {
					b.Fatal(err)
				}
				compacted = s.Stats().FileSize
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size)/(1<<20), "MB")
			b.ReportMetric(float64(maintained)/(1<<20), "MB-maintained")
			b.ReportMetric(float64(compacted)/(1<<20), "MB-compacted")
			b.ReportMetric(float64(heap)/benchDisks, "heap-B/disk")
			b.Logf("sizes: written %d, maintained %d, compacted %d bytes; heap %d B/disk", size, maintained, compacted, heap/benchDisks)
			if maintained > benchMaxBytes {
				b.Errorf("file with %d disks is %d bytes after maintenance, more than %d", benchDisks, maintained, benchMaxBytes)
			}
		})
	}
}

func fileSize(tb testing.TB, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// BenchmarkAnnounceRound: one round of 1,000 peers × 16 disks (Seen and
// Heard per peer), as the caller pays for it ("caller") and including the
// commit ("commit"); "changed" changes every disk's mount points, so every
// record is rewritten.
func BenchmarkAnnounceRound(b *testing.B) {
	for _, c := range []struct {
		name            string
		commit, changed bool
	}{
		{"caller", false, false},
		{"commit", true, false},
		{"changed+commit", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := store.Open(context.Background(), b.TempDir(), store.Options{FlushInterval: time.Hour, BatchSize: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rounds := make([][]store.DiskInfo, benchHosts)
			for h := range rounds {
				rounds[h] = benchRound(h)
			}
			t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			round := func(n int) {
				t = t.Add(10 * time.Second)
				for h, ds := range rounds {
					if c.changed {
						for i := range ds {
							ds[i].MountPoints = []string{fmt.Sprintf("/srv/r%d", n)}
						}
					}
					if err := s.Seen(t, ds...); err != nil {
						b.Fatal(err)
					}
					if err := s.Heard(store.Peer{HostID: ds[0].HostID, Hostname: ds[0].Hostname, Addr: "10.0.0.1:4277",
						LastHeard: t, Mark: store.Mark{BootID: "boot", Seq: uint64(n), SentAt: t}}); err != nil {
						b.Fatal(err)
					}
					_ = h
				}
				if c.commit {
					if err := s.Flush(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			}
			round(0)
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			n := 1
			for b.Loop() {
				round(n)
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchDisks, "ns/disk")
			b.ReportMetric(float64(fileSize(b, s.Path()))/(1<<20), "MB")
		})
	}
}

// BenchmarkCompact16k: a compaction of a file with 16,000 disks of one
// sighting, as the maintainer runs it when the file has grown past 1.5
// times its content; "MB-alloc" is what it allocates on the heap.
func BenchmarkCompact16k(b *testing.B) {
	s := build16k(b, b.TempDir(), 1, false)
	defer s.Close()
	var m0, m1 runtime.MemStats
	var alloc uint64
	for b.Loop() {
		runtime.ReadMemStats(&m0)
		if err := s.CompactNow(); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		alloc += m1.TotalAlloc - m0.TotalAlloc
	}
	b.ReportMetric(float64(alloc)/float64(b.N)/1e6, "MB-alloc")
	b.ReportMetric(float64(fileSize(b, s.Path()))/(1<<20), "MB")
}

// BenchmarkOpen16k: Open (with the full consistency check and loading
// every record) and Close of a file with 16,000 disks of 32 sightings;
// "check" is bbolt's consistency check alone.
func BenchmarkOpen16k(b *testing.B) {
	dir := b.TempDir()
	s := build16k(b, dir, 32, false)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	size := fileSize(b, filepath.Join(dir, store.FileName))
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			s, err := store.Open(context.Background(), dir, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if n := len(s.Disks()); n != benchDisks {
				b.Fatalf("%d disks, want %d", n, benchDisks)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(size)/(1<<20), "MB")
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			db, err := bolt.Open(filepath.Join(dir, store.FileName), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := db.View(func(tx *bolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFind16k: a substring search over 16,000 disks.
func BenchmarkFind16k(b *testing.B) {
	s := store.NewMemory(store.Options{})
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h := range benchHosts {
		if err := s.Seen(t, benchRound(h)...); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if n := len(s.Find("rack17")); n != 25*benchPerHost {
			b.Fatalf("Find(rack17) = %d disks", n)
		}
	}
}
