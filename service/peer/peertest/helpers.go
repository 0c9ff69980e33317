package peertest

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Receiver is the receiving side of a peer.Transport: an [Endpoint] here,
// or a real multicast connection.
type Receiver interface {
	Recv(buf []byte) (int, netip.Addr, error)
	Close() error
}

// RecvWithin reads one datagram of up to 64 bytes from r and returns it
// with its source. It fails the test when Recv fails, or when nothing comes
// within 10s (then it closes r). name says which receiver in the messages.
func RecvWithin(t testing.TB, name string, r Receiver) (string, netip.Addr) {
	t.Helper()
	type result struct {
		b   string
		src netip.Addr
		err error
	}
	ch := make(chan result, 1)
	go func() {
		buf := make([]byte, 64)
		n, src, err := r.Recv(buf)
		ch <- result{string(buf[:n]), src, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("%s: Recv: %v", name, res.err)
		}
		return res.b, res.src
	case <-time.After(10 * time.Second):
		r.Close()
		<-ch
		t.Fatalf("%s: nothing received in 10s", name)
		return "", netip.Addr{}
	}
}

// Serve runs receive (a peer.Service's Receive) until the returned stop is
// called or the test ends. stop ends receive's context and fails the test
// when receive does not return within 10s or returns an error; it reports
// whether receive returned. Calling it again does nothing and reports the
// same.
func Serve(t testing.TB, receive func(context.Context) error) (stop func() (returned bool)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- receive(ctx) }()
	var once sync.Once
	var returned bool
	stop = func() bool {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				returned = true
				if err != nil {
					t.Errorf("Receive: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Receive did not return within 10s of its context's end")
			}
		})
		return returned
	}
	t.Cleanup(func() { stop() })
	return stop
}
