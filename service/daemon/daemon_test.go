package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/peer"
	"github.com/diskd/diskd/service/peer/peertest"
	"github.com/diskd/diskd/service/testbed"
)

// host is one daemon run in this test process over the in-memory network.
type host struct {
	name   string
	socket string
	cancel context.CancelFunc
	done   chan error
	log    *testLog
}

// testLog collects a daemon's log for the test's output.
type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a daemon named name with the given devices over net.
func start(t *testing.T, nw *peertest.Network, name string, n int, devices ...string) *host {
	t.Helper()
	ep, err := nw.Add(name, netip.AddrFrom4([4]byte{10, 99, 0, byte(n)}))
	if err != nil {
		t.Fatal(err)
	}
	h := &host{name: name, socket: filepath.Join(t.TempDir(), name+".sock"), done: make(chan error, 1), log: &testLog{t}}
	cfg := Config{
		Version: "test", Socket: h.socket, AnnounceInterval: time.Second, ScanInterval: time.Minute,
		PeerTimeout: time.Minute, // only a goodbye drops a peer within a test's waits
		Blkid:       "blkid", BlkidTimeout: 10 * time.Second,
		Devices: append([]string{"/nonexistent/none"}, devices...), HostID: "id-" + name, Hostname: name,
		Bus: "none", NoUevents: true, Transports: []peer.Transport{ep},
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	log := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { h.done <- Run(ctx, cfg, log) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop ends the daemon and checks that Run returned nil; it may be called
// twice.
func (h *host) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
			if err != nil {
				t.Errorf("%s: Run: %v", h.name, err)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Run did not return after cancel", h.name)
	}
}

// do sends one control request, waiting for the socket to answer.
func (h *host) do(t *testing.T, line string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		c, err := control.Dial(ctx, h.socket)
		if err == nil {
			lines, err := c.Do(ctx, line)
			c.Close()
			if err != nil {
				t.Fatalf("%s: %s: %v", h.name, line, err)
			}
			return lines
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: control socket never answered: %v", h.name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitList polls `list` on h until cond holds on its output.
func (h *host) waitList(t *testing.T, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := strings.Join(h.do(t, "list"), "\n")
		if cond(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s; list:\n%s", h.name, what, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoDaemons composes two whole daemons over the in-memory transport:
// beta's disk (real blkid on a real loop device) reaches alpha, status
// counts the datagrams, and beta's clean stop removes its disk from alpha
// at once.
func TestTwoDaemons(t *testing.T) {
	testbed.RequireTools(t, "blkid", "losetup", "mkfs.ext4")
	lab := testbed.NewT(t)
	hb := lab.AddHostT(t, "beta")
	disk := hb.AddDiskT(t, testbed.DiskOpts{Label: "DAEMON-TEST", FSType: "ext4"})
	nw := peertest.NewNetwork("test", 0)
	t.Cleanup(nw.Close)
	alpha := start(t, nw, "alpha", 1)
	beta := start(t, nw, "beta", 2, disk.Path)

	alpha.waitList(t, "beta's disk", func(s string) bool {
		return strings.Contains(s, "beta") && strings.Contains(s, disk.Path) && strings.Contains(s, "DAEMON-TEST")
	})
	st := strings.Join(alpha.do(t, "status"), "\n")
	for _, want := range []string{"host: alpha", "peers: 1", "disks: 1", "packets in: "} {
		if !strings.Contains(st, want) {
			t.Errorf("alpha's status lacks %q:\n%s", want, st)
		}
	}
	if strings.Contains(st, "packets in: 0\n") {
		t.Errorf("alpha counted no datagram in:\n%s", st)
	}

	// With a peer timeout of a minute, only beta's goodbye can make its
	// disk go within waitList's 10 s.
	beta.stop(t)
	alpha.waitList(t, "beta's disk to go", func(s string) bool { return !strings.Contains(s, "DAEMON-TEST") })
}

// TestRunRefusesBeforeCreating: a configuration that cannot work fails
// with one clear error before the control socket exists.
func TestRunRefusesBeforeCreating(t *testing.T) {
	dir := t.TempDir()
	badKeys := filepath.Join(dir, "keys")
	if err := os.WriteFile(badKeys, []byte("not base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad key file", Config{KeyFile: badKeys}, "keys"},
		{"no interface", Config{Interfaces: []string{"nonexistent0"}, TTL: 1}, "nonexistent0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, tc.name+".sock")
			tc.cfg.Socket, tc.cfg.HostID, tc.cfg.Hostname, tc.cfg.Bus = sock, "id-x", "x", "none"
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, tc.cfg, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run = %v, want one line naming %q", err, tc.want)
			}
			if _, serr := os.Stat(sock); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("the control socket was created (%v) although Run failed", serr)
			}
		})
	}
}
