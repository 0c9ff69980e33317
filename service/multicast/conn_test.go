package multicast

import (
	"bytes"
	"errors"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

var (
	testGroup4 = netip.MustParseAddrPort("239.255.77.80:4996")
	testGroup6 = netip.MustParseAddrPort("[ff15::d15e]:4996")
)

// openIn opens a Conn inside h's network namespace.
func openIn(t *testing.T, h *testbed.Host, o ConnOptions) (*Conn, error) {
	t.Helper()
	var c *Conn
	err := h.InNetns(func() error {
		var err error
		c, err = Open(o)
		return err
	})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// received is one datagram Recv returned.
type received struct {
	b   string
	src netip.Addr
}

// recvAll reads from c until it has n datagrams or wait passes, then
// closes c (which must end the blocked Recv) and returns what came.
func recvAll(t *testing.T, c *Conn, n int, wait time.Duration) []received {
	t.Helper()
	got := make(chan received, 64)
	ended := make(chan error, 1)
	go func() {
		buf := make([]byte, 9001)
		for {
			k, src, err := c.Recv(buf)
			if err != nil {
				ended <- err
				return
			}
			got <- received{string(buf[:k]), src}
		}
	}()
	var out []received
	deadline := time.After(wait)
loop:
	for len(out) < n {
		select {
		case r := <-got:
			out = append(out, r)
		case <-deadline:
			break loop
		}
	}
	time.Sleep(100 * time.Millisecond) // anything beyond n shows too
	c.Close()
	if err := testbed.Await(t, ended, 2*time.Second, "return of Recv after Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Recv after Close: %v, want net.ErrClosed", err)
	}
	for len(got) > 0 {
		out = append(out, <-got)
	}
	return out
}

func TestConnIPv6AndDualStack(t *testing.T) {
	lab := testbed.NewT(t)
	seg := lab.AddSegmentT(t, "mixed", testbed.DualStack)
	host := func(name string, fam testbed.Family) *testbed.Host {
		return lab.AddHostWithT(t, name, testbed.HostOptions{Segment: seg, Family: fam})
	}
	dual, v6, v4 := host("dual", testbed.DualStack), host("six", testbed.IPv6), host("four", testbed.IPv4)
	dual2 := host("dual2", testbed.DualStack)
	both := []netip.AddrPort{testGroup4, testGroup6}
	ifs := []string{testbed.Interface}

	var logged bytes.Buffer
	cDual, err := openIn(t, dual, ConnOptions{Groups: both, Interfaces: ifs, TTL: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Each family's budget on a 1500-byte link: 1472 (IPv4), 1452 (IPv6).
	if b := cDual.Budget(); b != 1452 {
		t.Errorf("dual-stack budget %d, want 1452 (1500 - 40 - 8)", b)
	}
	if g := cDual.Groups(); !slices.Equal(g, both) || len(cDual.Warnings()) != 0 {
		t.Errorf("dual-stack host: groups %v, warnings %q", g, cDual.Warnings())
	}
	c6, err := openIn(t, v6, ConnOptions{Groups: both, Interfaces: ifs, TTL: 1,
		Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if g := c6.Groups(); !slices.Equal(g, []netip.AddrPort{testGroup6}) || c6.Budget() != 1452 {
		t.Errorf("IPv6-only host: groups %v, budget %d", g, c6.Budget())
	}
	want := "interface e0 has no IPv4 address; not used for " + testGroup4.String()
	if w := c6.Warnings(); len(w) != 1 || w[0] != want || !strings.Contains(logged.String(), want) {
		t.Errorf("IPv6-only host: warnings %q, log %q; want one: %q", w, logged.String(), want)
	}
	c4, err := openIn(t, v4, ConnOptions{Groups: both, Interfaces: ifs, TTL: 2})
	if err != nil {
		t.Fatal(err)
	}
	if g := c4.Groups(); !slices.Equal(g, []netip.AddrPort{testGroup4}) || c4.Budget() != MinBudget {
		t.Errorf("IPv4-only host, TTL 2: groups %v, budget %d (want %d)", g, c4.Budget(), MinBudget)
	}
	cDual2, err := openIn(t, dual2, ConnOptions{Groups: both, Interfaces: ifs, TTL: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openIn(t, v4, ConnOptions{Groups: []netip.AddrPort{testGroup6}, Interfaces: ifs, TTL: 1}); err == nil ||
		!strings.Contains(err.Error(), "interface e0 has no IPv6 address") || strings.Contains(err.Error(), "\n") {
		t.Errorf("IPv6 group on an IPv4-only host: %v; want one line naming e0", err)
	}

	// The dual-stack host sends once per family: the IPv6-only host hears
	// it from its IPv6 address, the IPv4-only host from its IPv4 one, and
	// neither hears the other. The sender does not hear itself. The other
	// dual-stack host hears both copies and returns one.
	if n, err := cDual.Send([]byte("from dual")); err != nil || n != 2 {
		t.Fatalf("dual-stack Send: %d, %v; want 2 (one per family)", n, err)
	}
	if n, err := c6.Send([]byte("from six")); err != nil || n != 1 {
		t.Fatalf("IPv6 Send: %d, %v", n, err)
	}
	if n, err := c4.Send([]byte("from four")); err != nil || n != 1 {
		t.Fatalf("IPv4 Send: %d, %v", n, err)
	}
	a4, a6 := netip.MustParseAddr(dual.Addr), netip.MustParseAddr(dual.Addr6)
	s6, s4 := netip.MustParseAddr(v6.Addr6), netip.MustParseAddr(v4.Addr)
	for _, c := range []struct {
		name string
		conn *Conn
		want []received
	}{
		{"six", c6, []received{{"from dual", a6}}},
		{"four", c4, []received{{"from dual", a4}}},
		{"dual", cDual, []received{{"from six", s6}, {"from four", s4}}},
		{"dual2", cDual2, []received{{"from dual", a4}, {"from four", s4}, {"from six", s6}}},
	} {
		got := recvAll(t, c.conn, len(c.want), 3*time.Second)
		if c.name == "dual2" {
			// Whichever copy came first.
			for i := range got {
				if got[i].b == "from dual" && got[i].src == a6 {
					got[i].src = a4
				}
			}
			if d := c.conn.Duplicates(); d != 1 {
				t.Errorf("dual2 counted %d duplicates, want 1 (the second copy of dual's datagram)", d)
			}
		}
		slices.SortFunc(got, func(x, y received) int { return strings.Compare(x.b, y.b) })
		slices.SortFunc(c.want, func(x, y received) int { return strings.Compare(x.b, y.b) })
		if !slices.Equal(got, c.want) {
			t.Errorf("%s received %v, want %v", c.name, got, c.want)
		}
	}
	if err := cDual.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestValidateGroup(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{"239.255.77.77:4277", "239.255.77.77:4277", ""},
		{"[ff15::d15c]:4277", "[ff15::d15c]:4277", ""},
		{"[ff12::1]:1", "[ff12::1]:1", ""},
		{"[::ffff:239.1.2.3]:9", "239.1.2.3:9", ""},
		{"10.0.0.1:4277", "", "not an IPv4 multicast"},
		{"[fd00::1]:4277", "", "not an IPv6 multicast"},
		{"[ff01::1]:4277", "", "interface-local"},
		{"[ff15::1%eth0]:4277", "", "no zone"},
		{"239.1.1.1:0", "", "port 0"},
	} {
		got, err := ValidateGroup(netip.MustParseAddrPort(c.in))
		switch {
		case c.err == "" && (err != nil || got.String() != c.want):
			t.Errorf("%s: %v, %v; want %s", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v; want an error with %q", c.in, err, c.err)
		}
	}
	if _, err := Open(ConnOptions{Groups: []netip.AddrPort{testGroup4, netip.MustParseAddrPort("239.1.1.1:1")}, TTL: 1}); err == nil ||
		!strings.Contains(err.Error(), "one group per address family") {
		t.Errorf("two IPv4 groups: %v", err)
	}
}

func TestDuplicateAcrossFamilies(t *testing.T) {
	c := &Conn{recent: map[uint64]seen{}, seed: maphash.MakeSeed()}
	t0 := time.Now()
	a, b := []byte("datagram a"), []byte("datagram b")
	for i, s := range []struct {
		b    []byte
		fam  int
		at   time.Duration
		want bool
	}{
		{a, 0, 0, false},                    // first copy
		{a, 1, time.Millisecond, true},      // the other family's copy
		{a, 0, 2 * time.Millisecond, false}, // a third copy: the protocol's replay
		{a, 0, 3 * time.Millisecond, false}, // same family again
		{b, 1, 0, false},
		{b, 0, 3 * time.Second, false}, // too late to be a copy
	} {
		if got := c.duplicate(s.b, s.fam, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d (%q on family %d at %v): duplicate %v, want %v", i, s.b, s.fam, s.at, got, s.want)
		}
	}
	// The memory stays bounded.
	for i := range 3 * dupMemory {
		c.duplicate([]byte(strconv.Itoa(i)), 0, t0)
	}
	if len(c.recent) > dupMemory || len(c.recentRing) > dupMemory {
		t.Errorf("memory holds %d entries (ring %d), want ≤ %d", len(c.recent), len(c.recentRing), dupMemory)
	}
}
