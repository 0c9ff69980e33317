package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/diskd/diskd/service/store"
	"github.com/diskd/diskd/service/store/storetest"
	"github.com/diskd/diskd/service/testbed"
)

// logBuf is a concurrency-safe log sink.
type logBuf struct{ testbed.LockedBuffer }

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func openT(t testing.TB, dir string, opts store.Options) *store.Bolt {
	t.Helper()
	s, err := store.Open(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func at(s int) time.Time { return storetest.T0.Add(time.Duration(s) * time.Second) }

func TestBoltContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return openT(t, t.TempDir(), opts)
	})
}

// fill writes a varied history and returns the disks it used.
func fill(t *testing.T, s store.Store) []store.DiskInfo {
	t.Helper()
	a := storetest.DiskAt("h1", "/dev/sdb1", "a")
	b := storetest.DiskAt("h1", "/dev/sdc1", "b")
	c := store.DiskInfo{HostID: "h2", Hostname: "two", Device: "/dev/sdd", PartUUID: "pu-c", Label: "C"}
	d := store.DiskInfo{HostID: "h2", Hostname: "two", Device: "/dev/loop7", MountPoints: []string{"/m1", "/m 2"}}
	steps := []error{
		s.Seen(at(0), a, b, c, d),
		s.Seen(at(10), a, b, c, d),
		s.Gone(at(15), store.ReasonDetached, b),
		s.Seen(at(20), storetest.DiskAt("h3", "/dev/sde1", "a")), // a moves to h3
		s.HostGone(at(30), store.ReasonTimeout, "h2"),
		s.Seen(at(40), c),
		s.Heard(store.Peer{HostID: "h2", Hostname: "two", Addr: "10.0.0.2:4277", LastHeard: at(41),
			Mark: store.Mark{BootID: "boot", Seq: 99, SentAt: at(40).Add(123)}}),
		s.Heard(store.Peer{HostID: "h3", Hostname: "three", Addr: "10.0.0.3:4277", LastHeard: at(42)}),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return []store.DiskInfo{a, b, c, d}
}

// TestReopen: everything survives Close and Open, except that disks
// present at Close come back gone with reason restart at their last-seen
// time.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, store.Options{})
	fill(t, s)
	before, peers := s.Disks(), s.Peers()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{})
	after := s.Disks()
	if len(after) != len(before) {
		t.Fatalf("%d disks after reopening, %d before", len(after), len(before))
	}
	restarted := 0
	for i, want := range before {
		if want.Present {
			restarted++
			want.Present, want.GoneAt, want.GoneReason = false, want.LastSeen, store.ReasonRestart
			want.Sightings[0].Reason = store.ReasonRestart
		}
		storetest.EqualDisk(t, after[i], want)
	}
	if restarted != 2 {
		t.Errorf("%d disks were present at Close, want 2 (a on h3, c)", restarted)
	}
	got := s.Peers()
	if len(got) != len(peers) {
		t.Fatalf("peers %+v, want %+v", got, peers)
	}
	for i := range peers {
		p, q := got[i], peers[i]
		if p.HostID != q.HostID || p.Hostname != q.Hostname || p.Addr != q.Addr || !p.LastHeard.Equal(q.LastHeard) ||
			p.Mark.BootID != q.Mark.BootID || p.Mark.Seq != q.Mark.Seq || !p.Mark.SentAt.Equal(q.Mark.SentAt) {
			t.Errorf("peer %d after reopening %+v, want %+v", i, p, q)
		}
	}
}

// TestRestartMarking: only disks present at the end of the last run
// become gone with reason restart, at their last-seen time; disks already
// gone keep their reason.
func TestRestartMarking(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, store.Options{})
	present := storetest.DiskAt("h", "/dev/a", "present")
	gone := storetest.DiskAt("h", "/dev/b", "gone")
	if err := errors.Join(s.Seen(at(0), present, gone), s.Seen(at(50), present), s.Gone(at(20), store.ReasonBye, gone)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{})
	p, _ := s.Disk(store.Identity(present))
	if p.Present || p.GoneReason != store.ReasonRestart || !p.GoneAt.Equal(at(50)) || p.Sightings[0].Reason != store.ReasonRestart {
		t.Errorf("present disk after restart: present %v, %q at %v, sighting %+v", p.Present, p.GoneReason, p.GoneAt, p.Sightings[0])
	}
	g, _ := s.Disk(store.Identity(gone))
	if g.GoneReason != store.ReasonBye || !g.GoneAt.Equal(at(20)) {
		t.Errorf("gone disk after restart: %q at %v, want bye at %v", g.GoneReason, g.GoneAt, at(20))
	}
	// Seen again after the restart: a new sighting, the old one ended by the restart.
	if err := s.Seen(at(100), present); err != nil {
		t.Fatal(err)
	}
	p, _ = s.Disk(store.Identity(present))
	if len(p.Sightings) != 2 || p.Sightings[1].Reason != store.ReasonRestart || !p.Present {
		t.Errorf("after coming back: %+v", p.Sightings)
	}
}

// TestSecondOpen: a second store on the same directory fails after the
// lock timeout with one clear line and ErrLocked.
func TestSecondOpen(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir, store.Options{})
	start := time.Now()
	s2, err := store.Open(t.Context(), dir, store.Options{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("error %v is not ErrLocked", err)
	}
	want := fmt.Sprintf("state directory %s is in use by another diskd (its lock on %s is held)", dir, filepath.Join(dir, "diskd.db"))
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 10*time.Second {
		t.Errorf("second Open failed after %v, want about the 200ms lock timeout", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "diskd.db")); err != nil {
		t.Errorf("the first store's file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only diskd.db (nothing moved aside)", len(entries))
	}
}

// writeFile makes a valid store file with some records and returns its path.
func writeFile(t *testing.T, dir string) string {
	t.Helper()
	s := openT(t, dir, store.Options{})
	for i := range 300 {
		d := storetest.DiskAt(fmt.Sprint("host-", i%7), fmt.Sprint("/dev/sd", i), fmt.Sprint("disk-", i))
		p := store.Peer{HostID: fmt.Sprint("peer-", i), Hostname: "p", Addr: "10.1.1.1:4277", LastHeard: at(i)}
		if err := errors.Join(s.Seen(at(i), d), s.Heard(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, store.FileName)
}

// damagePage inverts every byte of the page at the root of bucket name.
func damagePage(t *testing.T, dir, name string) {
	t.Helper()
	s := openT(t, dir, store.Options{})
	root, pageSize, err := s.BucketRoot(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, store.FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := int(root) * pageSize
	if root < 2 || off+pageSize > len(b) {
		t.Fatalf("root page %d of %s outside the %d-byte file", root, name, len(b))
	}
	for i := off; i < off+pageSize; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rewrite replaces one key's value (or the schema) through bbolt itself,
// making a structurally valid file with bad content.
func rewrite(t *testing.T, path string, bucket, key string, val []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if key == "" { // the first key
			k, _ := b.Cursor().First()
			key = string(k)
		}
		return b.Put([]byte(key), val)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptFile: an unusable file is moved aside, reported once, and
// replaced by an empty store that works.
func TestCorruptFile(t *testing.T) {
	cases := []struct {
		name  string
		kind  string // in the aside file's name
		spoil func(t *testing.T, dir string)
	}{
		{"random bytes", "corrupt", func(t *testing.T, dir string) {
			b := make([]byte, 64<<10)
			for i := range b {
				b[i] = byte(rand.Uint32())
			}
			if err := os.WriteFile(filepath.Join(dir, store.FileName), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", "corrupt", func(t *testing.T, dir string) {
			path := writeFile(t, dir)
			if err := os.Truncate(path, 5000); err != nil {
				t.Fatal(err)
			}
		}},
		{"flipped disks page", "corrupt", func(t *testing.T, dir string) {
			writeFile(t, dir)
			damagePage(t, dir, "disks")
		}},
		{"flipped peers page", "corrupt", func(t *testing.T, dir string) {
			writeFile(t, dir)
			damagePage(t, dir, "peers")
		}},
		{"garbage record", "corrupt", func(t *testing.T, dir string) {
			rewrite(t, writeFile(t, dir), "disks", "", []byte{0xc1, 0x00, 0x17})
		}},
		{"record breaking an invariant", "corrupt", func(t *testing.T, dir string) {
			// A valid msgpack map of a disk with no sightings.
			rewrite(t, writeFile(t, dir), "disks", "dev:1:x:", []byte("\x83\xa1h\xa1x\xa1f\x01\xa1s\x01"))
		}},
		{"newer schema", "newer-schema", func(t *testing.T, dir string) {
			rewrite(t, writeFile(t, dir), "meta", "schema", binary.BigEndian.AppendUint64(nil, 99))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.spoil(t, dir)
			bad, err := os.ReadFile(filepath.Join(dir, store.FileName))
			if err != nil {
				t.Fatal(err)
			}
			var logs logBuf
			s := openT(t, dir, store.Options{Logger: logs.logger()})
			aside := s.MovedAside()
			if !strings.HasPrefix(filepath.Base(aside), "diskd.db."+c.kind+"-") {
				t.Fatalf("MovedAside() = %q, want diskd.db.%s-TIME", aside, c.kind)
			}
			if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, bad) {
				t.Errorf("the file moved aside is not the bad file (%v)", err)
			}
			t.Logf("log: %s", logs.String())
			if n := strings.Count(logs.String(), "moved aside"); n != 1 {
				t.Errorf("reported %d times, want once:\n%s", n, logs.String())
			}
			if n := len(s.Disks()); n != 0 {
				t.Errorf("%d disks in the fresh store", n)
			}
			d := storetest.DiskAt("h", "/dev/a", "new")
			if err := errors.Join(s.Seen(at(0), d), s.Close()); err != nil {
				t.Fatal(err)
			}
			s = openT(t, dir, store.Options{})
			if _, ok := s.Disk(store.Identity(d)); !ok || s.MovedAside() != "" {
				t.Errorf("the fresh store did not keep its disk (moved aside %q)", s.MovedAside())
			}
		})
	}
}

// TestUnreadableDirectory: a state file that cannot be opened for a
// reason other than its content is an error, not moved aside.
func TestUnreadableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(t.Context(), file, store.Options{})
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open on a file as directory: %v, want one error line", err)
	}
	if errors.Is(err, store.ErrLocked) {
		t.Errorf("reported as locked: %v", err)
	}
}

// TestSeenThrottled: a change of last-seen time alone waits for
// SeenInterval (or Flush), and is restored from the seen bucket.
func TestSeenThrottled(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, store.Options{SeenInterval: time.Hour, FlushInterval: 10 * time.Millisecond})
	d := storetest.DiskAt("h", "/dev/a", "a")
	if err := errors.Join(s.Seen(at(0), d), s.Flush(t.Context())); err != nil {
		t.Fatal(err)
	}
	commits := s.Stats().Commits
	if err := s.Seen(at(5), d); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // ten writer ticks
	if st := s.Stats(); st.Pending != 1 || st.Commits != commits {
		t.Errorf("a last-seen change was committed at once: pending %d, commits %d→%d", st.Pending, commits, st.Commits)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pending != 0 || st.Commits != commits+1 {
		t.Errorf("after Flush: pending %d, commits %d→%d", st.Pending, commits, st.Commits)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{})
	if got, _ := s.Disk(store.Identity(d)); !got.LastSeen.Equal(at(5)) || !got.GoneAt.Equal(at(5)) || !got.Sightings[0].Until.Equal(storetest.Sec(at(5))) {
		t.Errorf("last seen %v gone %v until %v after reopening, want %v", got.LastSeen, got.GoneAt, got.Sightings[0].Until, at(5))
	}
}

// TestBatchCommitsEarly: BatchSize pending records start a commit before
// the flush interval.
func TestBatchCommitsEarly(t *testing.T) {
	s := openT(t, t.TempDir(), store.Options{FlushInterval: time.Hour, BatchSize: 100})
	var ds []store.DiskInfo
	for i := range 99 {
		ds = append(ds, storetest.DiskAt("h", fmt.Sprint("/dev/", i), fmt.Sprint(i)))
	}
	// 98 disks and their host: 99 records.
	if err := s.Seen(at(0), ds[:98]...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if st := s.Stats(); st.Pending != 99 {
		t.Fatalf("pending %d below the batch size, want 99 (no commit yet)", st.Pending)
	}
	if err := s.Seen(at(0), ds[98]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Pending != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a full batch was not committed within 10s: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRetentionAndCompaction: 100,000 churn events with room for 1,000
// disks; the oldest go first and the file stays small.
func TestRetentionAndCompaction(t *testing.T) {
	const max, events = 1000, 100_000
	dir := t.TempDir()
	s := openT(t, dir, store.Options{MaxEntries: max, FlushInterval: time.Hour})
	ctx := t.Context()
	for i := range events {
		// Every event is a new disk or a host's peer record; 1 in 10 sees
		// an older disk again, which must then outlive younger ones.
		n := i
		if i%10 == 9 {
			n = i - 500
		}
		d := storetest.DiskAt(fmt.Sprint("h", n%100), fmt.Sprint("/dev/d", n), fmt.Sprint("churn-", n))
		if err := s.Seen(at(i), d); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if err := s.Heard(store.Peer{HostID: fmt.Sprint("peer-", i), LastHeard: at(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if i%1000 == 999 {
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if i%20000 == 19999 {
			if err := s.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.CompactNow(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Disks != max || st.Peers != max {
		t.Errorf("kept %d disks and %d peers, want %d each", st.Disks, st.Peers, max)
	}
	ds := s.Disks()
	oldestKept := ds[len(ds)-1].LastSeen
	if want := at(events - max); oldestKept.Before(want) {
		t.Errorf("oldest kept disk last seen %v, want none before %v", oldestKept, want)
	}
	const bound = 1 << 20
	t.Logf("file %d bytes after %d events, %d compactions", st.FileSize, events, st.Compacted)
	if st.FileSize > bound {
		t.Errorf("file is %d bytes, want at most %d", st.FileSize, bound)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{MaxEntries: max})
	if n := len(s.Disks()); n != max {
		t.Errorf("%d disks after reopening, want %d", n, max)
	}
}

// TestCompactionKeepsConcurrentWrites: writes made while the file is
// rewritten all reach the new file.
func TestCompactionKeepsConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, store.Options{FlushInterval: time.Millisecond, BatchSize: 100})
	const most = 3000 // bounds the work on a slow machine
	stop := make(chan struct{})
	var wg sync.WaitGroup
	n := 0 // disks written
	wg.Go(func() {
		for ; n < most; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Seen(at(n), storetest.DiskAt("h", fmt.Sprint("/dev/", n), fmt.Sprint(n))); err != nil {
				t.Error(err)
				return
			}
			if n%10 == 9 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	const compactions = 5
	for range compactions {
		if err := s.CompactNow(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d disks written during %d compactions", n, compactions)
	s = openT(t, dir, store.Options{})
	if got := len(s.Disks()); got != n {
		t.Errorf("%d disks after %d compactions and reopening, want %d", got, compactions, n)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries after compaction, want 1", len(entries))
	}
}

// TestCompactionMapsTheCopyOnce: a compaction maps its copy at the old
// file's size from the start, so bbolt never maps it anew in the middle
// of a transaction, which would copy every node of that transaction into
// the heap (tens of megabytes for 16,000 disks). The copy holds all the
// records, across reopening.
func TestCompactionMapsTheCopyOnce(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, store.Options{FlushInterval: time.Hour})
	const disks = 3000 // about 1 MB on file, 32 times bbolt's first map
	for n := range disks {
		if err := s.Seen(at(n), storetest.DiskAt(fmt.Sprint("h", n%100), fmt.Sprint("/dev/", n), fmt.Sprint(n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CompactNow(); err != nil {
		t.Fatal(err)
	}
	if n := s.NodeDerefs(); n != 0 {
		t.Errorf("bbolt copied %d nodes into the heap while compacting, want 0", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{})
	if got := len(s.Disks()); got != disks {
		t.Errorf("%d disks after compacting and reopening, want %d", got, disks)
	}
}

// TestOpenContextEnds: when the context of Open ends, the writer commits
// and stops; Close still commits what came later.
func TestOpenContextEnds(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	s, err := store.Open(ctx, dir, store.Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := storetest.DiskAt("h", "/dev/a", "a"), storetest.DiskAt("h", "/dev/b", "b")
	if err := s.Seen(at(0), d1); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Pending != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not commit when its context ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := errors.Join(s.Seen(at(1), d2), s.Close()); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{})
	if len(s.Disks()) != 2 {
		t.Errorf("disks after reopening: %+v", s.Disks())
	}
}

// TestPageDamagedWhileOpen: a page that goes bad after Open does not
// bring the process down: writes fail with an error (and stay pending),
// reads keep answering from memory, maintenance reports an error.
func TestPageDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir)
	var logs logBuf
	s := openT(t, dir, store.Options{Logger: logs.logger(), FlushInterval: time.Hour})
	root, pageSize, err := s.BucketRoot("disks")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, store.FileName), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, pageSize), int64(root)*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d := storetest.DiskAt("h", "/dev/new", "new")
	if err := s.Seen(at(1000), d); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err == nil {
		t.Fatal("a commit into a damaged page succeeded")
	} else {
		t.Logf("commit: %v", err)
	}
	st := s.Stats()
	if st.LastError == "" || st.Pending == 0 {
		t.Errorf("after a failed commit: last error %q, pending %d", st.LastError, st.Pending)
	}
	if got := s.Find("uuid-new"); len(got) != 1 {
		t.Errorf("Find after a failed commit: %+v", got)
	}
	if n := len(s.Disks()); n != 301 {
		t.Errorf("%d disks in memory, want 301", n)
	}
	if n := strings.Count(logs.String(), "writing failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logs.String())
	}
	_ = s.Maintain(t.Context()) // must not panic
	_ = s.Close()               // must not panic
}

// TestReopenWithSmallerMax: opening a file with more disks than
// MaxEntries keeps the newest, whatever the order of their keys.
func TestReopenWithSmallerMax(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, store.Options{})
	for i := range 30 { // keys sort u-0, u-1, u-10, ..., u-2, u-20, ...
		if err := s.Seen(at(i), store.DiskInfo{HostID: "h", Device: fmt.Sprint("/dev/", i), UUID: fmt.Sprint("u-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, store.Options{MaxEntries: 10})
	ds := s.Disks()
	if len(ds) != 10 {
		t.Fatalf("%d disks, want 10", len(ds))
	}
	for i, d := range ds {
		if want := fmt.Sprint("u-", 29-i); d.UUID != want {
			t.Errorf("disk %d is %s, want %s (the newest ten)", i, d.UUID, want)
		}
	}
}
