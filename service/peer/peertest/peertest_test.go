package peertest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diskd/diskd/service/testbed"
)

func add(t *testing.T, n *Network, name, addr string) *Endpoint {
	t.Helper()
	e, err := n.Add(name, netip.MustParseAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// recv reads one datagram from e, failing the test after 10s.
func recv(t *testing.T, e *Endpoint) (string, netip.Addr) {
	t.Helper()
	return RecvWithin(t, e.Host(), e)
}

// pending is how many datagrams wait for e, whether or not they can be read yet.
func pending(e *Endpoint) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.queue)
}

func TestEveryOtherEndpointHearsASend(t *testing.T) {
	n := NewNetwork("", 0)
	t.Cleanup(n.Close)
	a, b, c := add(t, n, "a", "10.0.0.1"), add(t, n, "b", "10.0.0.2"), add(t, n, "c", "fd00::3")
	if a.Name() != "mem" || a.Budget() != DefaultBudget || b.Addr() != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("name %q, budget %d, address %s", a.Name(), a.Budget(), b.Addr())
	}
	msg := []byte("hello")
	if k, err := a.Send(msg); err != nil || k != 2 {
		t.Fatalf("Send = %d, %v; want 2 receivers", k, err)
	}
	msg[0] = 'J' // the network holds its own copy
	for _, e := range []*Endpoint{b, c} {
		if got, src := recv(t, e); got != "hello" || src != a.Addr() {
			t.Errorf("%s got %q from %s, want \"hello\" from %s", e.Host(), got, src, a.Addr())
		}
	}
	if q := pending(a); q != 0 {
		t.Errorf("the sender heard itself: %d datagrams queued", q)
	}
	// In order, and cut to the reader's buffer.
	for _, s := range []string{"one", "two", "three"} {
		c.Send([]byte(s))
	}
	buf := make([]byte, 3)
	for _, want := range []string{"one", "two", "thr"} {
		k, src, err := a.Recv(buf)
		if err != nil || string(buf[:k]) != want || src != c.Addr() {
			t.Errorf("Recv = %q from %s, %v; want %q from %s", buf[:k], src, err, want, c.Addr())
		}
	}
}

func TestAddRefusesDuplicates(t *testing.T) {
	n := NewNetwork("gossip", 1200)
	add(t, n, "a", "10.0.0.1")
	for _, c := range []struct {
		name, addr string
		want       string
	}{
		{"a", "10.0.0.9", `already an endpoint called "a"`},
		{"b", "10.0.0.1", `"a" already has address 10.0.0.1`},
		{"", "10.0.0.2", "needs a name"},
	} {
		if _, err := n.Add(c.name, netip.MustParseAddr(c.addr)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%q, %s) = %v, want an error saying %q", c.name, c.addr, err, c.want)
		}
	}
	if _, err := n.Add("z", netip.Addr{}); err == nil || !strings.Contains(err.Error(), "needs an address") {
		t.Errorf("Add without an address: %v", err)
	}
}

func TestFilterDropsDuplicatesAndDelays(t *testing.T) {
	n := NewNetwork("mem", 0)
	t.Cleanup(n.Close)
	a, b, c := add(t, n, "a", "10.0.0.1"), add(t, n, "b", "10.0.0.2"), add(t, n, "c", "10.0.0.3")
	var seen sync.Map
	n.SetFilter(func(d Datagram) Fate {
		seen.Store(d.From+">"+d.To+":"+string(d.Data), d.Src)
		switch {
		case string(d.Data) == "lost" && d.To == "b":
			return Fate{Drop: true}
		case string(d.Data) == "twice":
			return Fate{Copies: 2}
		case string(d.Data) == "late":
			return Fate{Delay: 200 * time.Millisecond}
		}
		return Fate{}
	})
	a.Send([]byte("lost"))
	if got, _ := recv(t, c); got != "lost" {
		t.Fatalf("c got %q, want the datagram dropped only on the way to b", got)
	}
	if q := pending(b); q != 0 {
		t.Fatalf("b has %d datagrams queued, want the dropped one gone", q)
	}
	if src, ok := seen.Load("a>b:lost"); !ok || src != a.Addr() {
		t.Fatalf("the filter saw %v, %v for a>b", src, ok)
	}

	a.Send([]byte("twice"))
	for range 3 {
		if got, _ := recv(t, b); got != "twice" {
			t.Fatalf("b got %q, want the datagram and 2 copies", got)
		}
	}
	if q := pending(b); q != 0 {
		t.Fatalf("b has %d more datagrams, want 3 in all", q)
	}

	// A delayed datagram arrives after one sent later.
	start := time.Now()
	a.Send([]byte("late"))
	a.Send([]byte("early"))
	for _, want := range []string{"early", "late"} {
		if got, _ := recv(t, b); got != want {
			t.Fatalf("b got %q, want %q", got, want)
		}
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("the delayed datagram came after %v, want at least 200ms", d)
	}

	n.SetFilter(nil)
	a.Send([]byte("lost"))
	if got, _ := recv(t, b); got != "lost" {
		t.Fatalf("without a filter b got %q", got)
	}
}

func TestIdleWaitsForTheReader(t *testing.T) {
	n := NewNetwork("mem", 0)
	t.Cleanup(n.Close)
	a, b := add(t, n, "a", "10.0.0.1"), add(t, n, "b", "10.0.0.2")
	n.SetFilter(func(d Datagram) Fate {
		if string(d.Data) == "3" {
			return Fate{Delay: 100 * time.Millisecond}
		}
		return Fate{}
	})
	var handled atomic.Int32
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		for {
			if _, _, err := b.Recv(buf); err != nil {
				done <- err
				return
			}
			time.Sleep(5 * time.Millisecond) // handling takes a while
			handled.Add(1)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []string{"1", "2", "3", "4"} {
		a.Send([]byte(s))
	}
	if err := b.Idle(ctx); err != nil {
		t.Fatal(err)
	}
	if h := handled.Load(); h != 4 {
		t.Fatalf("Idle returned after %d of 4 datagrams were handled", h)
	}

	// Nobody reads a: Idle does not return while a datagram waits.
	b.Send([]byte("x"))
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := a.Idle(short); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 datagrams queued") {
		t.Errorf("Idle of an endpoint nobody reads: %v", err)
	}

	// Close ends Recv with net.ErrClosed, and Idle.
	b.Close()
	if err := testbed.Await(t, done, 10*time.Second, "return of a blocked Recv after Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Recv after Close: %v, want net.ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.Send([]byte("y")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v, want net.ErrClosed", err)
	}
	if err := b.Idle(ctx); err != nil {
		t.Errorf("Idle of a closed endpoint: %v", err)
	}
	if k, err := a.Send([]byte("z")); err != nil || k != 0 {
		t.Errorf("Send with only a closed endpoint to hear it: %d, %v; want 0, nil", k, err)
	}
}
