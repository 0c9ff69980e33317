package store_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskd/diskd/service/store"
	"github.com/diskd/diskd/service/store/storetest"
)

// The crash child: the test binary re-executed with these variables set.
const (
	envCrashDir   = "DISKD_STORE_CRASH_DIR"
	envCrashStart = "DISKD_STORE_CRASH_START"
	envCrashMax   = "DISKD_STORE_CRASH_MAX"
	crashPerBatch = 20
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashDir); dir != "" {
		start, err := strconv.Atoi(os.Getenv(envCrashStart))
		if err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		maxEntries, _ := strconv.Atoi(os.Getenv(envCrashMax))
		crashChild(dir, start, maxEntries)
		os.Exit(3) // crashChild only returns on error
	}
	os.Exit(m.Run())
}

func crashDisk(batch, i int) store.DiskInfo {
	return storetest.DiskAt(fmt.Sprint("host-", batch%13), fmt.Sprint("/dev/b", batch, "d", i), fmt.Sprint(batch, "-", i))
}

// crashChild writes batches from start on forever: batch n sees its disks
// at at(n), ends the even disks of batch n-1 as detached and moves the
// peer mark to n; after each Flush it prints "committed n". A background
// writer with a 1 ms interval commits parts of batches in between.
func crashChild(dir string, start, maxEntries int) {
	s, err := store.Open(context.Background(), dir, store.Options{FlushInterval: time.Millisecond, BatchSize: 7, MaxEntries: maxEntries})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return
	}
	if s.MovedAside() != "" {
		fmt.Fprintln(os.Stderr, "crash child: file moved aside:", s.MovedAside())
		return
	}
	for n := start; ; n++ {
		for i := range crashPerBatch {
			if err := s.Seen(at(n), crashDisk(n, i)); err != nil {
				fmt.Fprintln(os.Stderr, "crash child:", err)
				return
			}
			if i%2 == 0 && n > 0 {
				if err := s.Gone(at(n), store.ReasonDetached, crashDisk(n-1, i)); err != nil {
					fmt.Fprintln(os.Stderr, "crash child:", err)
					return
				}
			}
		}
		if err := s.Heard(store.Peer{HostID: "peer", LastHeard: at(n), Mark: store.Mark{BootID: "b", Seq: uint64(n), SentAt: at(n)}}); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			return
		}
		if err := s.Flush(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			return
		}
		fmt.Printf("committed %d\n", n)
	}
}

// runCrashChild starts a child at batch start, lets it commit at least
// one batch, SIGKILLs it after a random delay and returns the last batch
// it reported committed.
func runCrashChild(t *testing.T, dir string, start, maxEntries int, rng *rand.Rand) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashStart+"="+strconv.Itoa(start), envCrashMax+"="+strconv.Itoa(maxEntries))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan int, 1<<16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
				if v, err := strconv.Atoi(n); err == nil {
					lines <- v
				}
			}
		}
	}()
	var last int
	select {
	case n, ok := <-lines:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("crash child exited before committing: %s", stderr.String())
		}
		last = n
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("crash child committed nothing in 30s: %s", stderr.String())
	}
	time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for n := range lines {
		last = n
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("crash child ended with %v, not by SIGKILL: %s", err, stderr.String())
	}
	return last
}

// TestCrashSafety SIGKILLs a writing child 20 times at random moments;
// every reopen must succeed without moving the file aside, and every batch
// the child reported committed must be there, consistent.
func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	next := 0
	ends := map[int]bool{} // batches a child was killed after
	for round := range 20 {
		last := runCrashChild(t, dir, next, 0, rng)
		if last < next {
			t.Fatalf("round %d: child reported batch %d, started at %d", round, last, next)
		}
		s, err := store.Open(t.Context(), dir, store.Options{})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		if s.MovedAside() != "" {
			t.Fatalf("round %d: the file was unusable after SIGKILL and moved to %s", round, s.MovedAside())
		}
		ends[last] = true
		verifyCrash(t, s, round, last, ends)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		next = last + 1
	}
	t.Logf("%d batches of %d disks committed across 20 kills", next, crashPerBatch)
}

// verifyCrash checks the batches up to last. The even disks of batch n
// are detached by batch n+1; when the child was killed after batch n, they
// are gone for restart instead (or detached, if part of batch n+1 was
// committed before the kill).
func verifyCrash(t *testing.T, s *store.Bolt, round, last int, ends map[int]bool) {
	t.Helper()
	for n := 0; n <= last; n++ {
		for i := range crashPerBatch {
			d, ok := s.Disk(store.Identity(crashDisk(n, i)))
			if !ok {
				t.Fatalf("round %d: batch %d (committed, last %d) lacks disk %d", round, n, last, i)
			}
			if !d.FirstSeen.Equal(at(n)) || d.Present {
				t.Fatalf("round %d: disk %d of batch %d: first seen %v present %v", round, i, n, d.FirstSeen, d.Present)
			}
			want := []store.GoneReason{store.ReasonRestart}
			switch {
			case i%2 == 1:
			case !ends[n]:
				want = []store.GoneReason{store.ReasonDetached}
			default:
				want = append(want, store.ReasonDetached)
			}
			if !containsReason(want, d.GoneReason) {
				t.Fatalf("round %d: disk %d of batch %d (last %d) gone for %q, want one of %q: %+v", round, i, n, last, d.GoneReason, want, d)
			}
		}
	}
	p, ok := s.Peer("peer")
	if !ok || p.Mark.Seq < uint64(last) || p.Mark.Seq > uint64(last)+1 || !p.Mark.SentAt.Equal(at(int(p.Mark.Seq))) {
		t.Fatalf("round %d: peer mark %+v, want seq %d (or the next)", round, p.Mark, last)
	}
}

func containsReason(rs []store.GoneReason, r store.GoneReason) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// TestCrashSafetyWithEviction: the same with room for only 100 disks, so
// that disks, and with them hosts, are removed in the transactions the
// child is killed in. Every reopen must find a consistent file (no record
// refers to a missing host) with the newest committed batches in it.
func TestCrashSafetyWithEviction(t *testing.T) {
	const room = 100
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	next := 0
	for round := range 20 {
		last := runCrashChild(t, dir, next, room, rng)
		s, err := store.Open(t.Context(), dir, store.Options{MaxEntries: room})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		if s.MovedAside() != "" {
			t.Fatalf("round %d: the file was unusable after SIGKILL and moved to %s", round, s.MovedAside())
		}
		if n := len(s.Disks()); n > room {
			t.Fatalf("round %d: %d disks, at most %d", round, n, room)
		}
		// A partly committed next batch may have evicted part of the
		// oldest of the newest room/crashPerBatch batches.
		for n := max(0, last-room/crashPerBatch+2); n <= last; n++ {
			for i := range crashPerBatch {
				if _, ok := s.Disk(store.Identity(crashDisk(n, i))); !ok {
					t.Fatalf("round %d: committed batch %d (last %d) lacks disk %d", round, n, last, i)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		next = last + 1
	}
}
