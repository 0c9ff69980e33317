package peer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/wire"
)

// Receive runs one receive loop per transport and applies what peers send,
// until ctx ends (then it closes every transport, so that their Recv
// returns, and returns nil once every loop has stopped). When a transport
// fails for good (closed by someone else), Receive stops the other loops
// too and returns that error. Call it once.
func (s *Service) Receive(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(s.transports))
	var wg sync.WaitGroup
	for i, t := range s.transports {
		wg.Go(func() {
			stop := context.AfterFunc(ctx, func() { t.Close() })
			defer stop()
			if errs[i] = s.receive(ctx, t); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// packet is one datagram as a transport delivered it.
type packet struct {
	data      []byte
	src       netip.Addr
	transport string // the Name of the transport it came on
}

// listener is the receive side of one transport: its own reassembly, since
// every transport cuts messages at its own budget, and its memory of the
// announcement parts it last applied.
type listener struct {
	s     *Service
	asm   *wire.Assembler
	known *knownParts
}

func (s *Service) newListener() *listener {
	return &listener{s: s, asm: wire.NewAssembler(s.opts.AssemblerPending, 5*time.Second), known: newKnownParts()}
}

// receive is the loop of one transport. It returns nil when ctx ends, and
// an error when the transport was closed while ctx had not ended.
func (s *Service) receive(ctx context.Context, t Transport) error {
	rx := s.newListener()
	name := t.Name()
	buf := make([]byte, wire.MaxDatagram+1)
	for {
		n, src, err := t.Recv(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("receiving on %s: %w", name, err)
			}
			s.opts.Log.Warn("receive failed", "transport", name, "err", err)
			continue
		}
		s.in.Add(1)
		p := packet{data: buf[:n], src: src, transport: name}
		if n > wire.MaxDatagram {
			s.drop(DropSize, p, nil)
			continue
		}
		rx.handle(p, time.Now())
	}
}

// handle decodes one datagram and applies it: a complete announcement, a
// goodbye or a ping. Every datagram that passes decoding, authentication,
// the clock-skew window and the replay rule keeps its peer alive, whatever
// it carries; a part of an announcement already applied (the same
// generation and the same bytes) does only that, without its disks being
// decoded again.
func (rx *listener) handle(p packet, now time.Time) {
	s := rx.s
	h, err := wire.DecodeHead(p.data, s.opts.Keyring)
	if err != nil {
		s.decodeDrop(p, err)
		return
	}
	m := h.Header()
	if m.HostID == s.opts.HostID {
		s.drop(DropSelf, p, nil)
		return
	}
	if err := s.checkTime(&m, now); err != nil {
		s.drop(DropStale, p, err)
		return
	}
	heard := inventory.Heard{HostID: m.HostID, BootID: m.BootID, Seq: m.Seq, Part: -1, SentAt: m.SentAt}
	switch m.Kind {
	case wire.KindAnnounce:
		heard.Part = m.Part
		sum := rx.known.sum(h.RawDisks())
		fast := rx.known.has(&m, sum)
		if !fast {
			whole, err := h.Message()
			if err != nil {
				s.decodeDrop(p, err)
				return
			}
			m = whole
		}
		live, err := s.inv.Hear(heard)
		if s.refused(err, p, 1) || fast && live {
			return
		}
		if fast { // known bytes, but the peer was lost meanwhile: apply them again
			whole, err := h.Message()
			if err != nil {
				s.decodeDrop(p, err)
				return
			}
			m = whole
		}
		rx.known.add(&m, sum)
		whole, ok := rx.asm.Add(m, now)
		if !ok {
			return
		}
		// The inventory does not record the transport (p.transport) yet;
		// when it does, it goes here, with the address.
		a := inventory.Announcement{
			HostID: whole.HostID, Hostname: whole.Hostname, BootID: whole.BootID, Seq: whole.Seq,
			Interval: whole.Interval, Address: p.src.String(), Authenticated: s.opts.Keyring != nil,
			Disks: whole.Disks, // the inventory keeps copies and sets the host's fields
		}
		if !s.refused(s.inv.Update(a), p, 1) {
			rx.known.complete(&whole)
		}
	case wire.KindBye:
		s.refused(s.inv.Bye(m.HostID, m.BootID, m.Seq), p, 1)
	case wire.KindPing:
		if _, err := s.inv.Hear(heard); s.refused(err, p, 1) {
			return
		}
		s.answerPing(m.HostID+"/"+m.BootID, now)
	}
}

// decodeDrop counts a datagram that wire refused.
func (s *Service) decodeDrop(p packet, err error) {
	reason := "malformed"
	if de, ok := errors.AsType[*wire.DropError](err); ok {
		reason = string(de.Reason)
	}
	s.drop(reason, p, err)
}

// checkTime refuses a sealed message sent at a time further than
// MaxClockSkew from now, either way. A message without a send time (from
// an older diskd) passes.
func (s *Service) checkTime(m *wire.Message, now time.Time) error {
	skew := s.opts.MaxClockSkew
	if s.opts.Keyring == nil || skew < 0 || m.SentAt.IsZero() {
		return nil
	}
	switch d := now.Sub(m.SentAt); {
	case d > skew:
		return fmt.Errorf("sent %v ago, more than the allowed clock skew of %v (replayed, or the sender's clock is behind)", d.Round(time.Millisecond), skew)
	case d < -skew:
		return fmt.Errorf("sent %v from now, more than the allowed clock skew of %v (the sender's clock is ahead)", (-d).Round(time.Millisecond), skew)
	}
	return nil
}

// refused counts an inventory refusal of a message that n datagrams
// carried and reports whether there was one.
func (s *Service) refused(err error, p packet, n int) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, inventory.ErrReplay):
		s.dropN(DropReplay, p, err, n)
	case errors.Is(err, inventory.ErrPeerCap):
		s.dropN(DropPeerCap, p, err, n)
	case errors.Is(err, inventory.ErrDiskCap):
		s.dropN(DropDiskCap, p, err, n)
	case errors.Is(err, inventory.ErrSelf):
		s.dropN(DropSelf, p, nil, n)
	default:
		s.dropN("malformed", p, err, n)
	}
	return true
}

// answerPing applies the limits to a ping from requester (host id and daemon
// instance: a host that restarts at once is answered again) and schedules
// the answer. The limits hold across transports: a ping heard on two is
// answered once.
func (s *Service) answerPing(requester string, now time.Time) {
	s.mu.Lock()
	last, seen := s.pingSeen[requester]
	if seen && now.Sub(last) < PingPerRequester {
		s.mu.Unlock()
		return
	}
	if !s.pingLimit.AllowN(now, 1) {
		s.mu.Unlock()
		return
	}
	if len(s.pingSeen) >= maxPingMemory {
		for id, t := range s.pingSeen {
			if now.Sub(t) >= PingPerRequester {
				delete(s.pingSeen, id)
			}
		}
	}
	if len(s.pingSeen) < maxPingMemory {
		s.pingSeen[requester] = now
	}
	s.mu.Unlock()
	if s.opts.OnPing != nil {
		s.opts.OnPing(rand.N(PingReplyDelay))
	}
}

// drop counts a dropped datagram and logs it, at most once a minute per
// reason, so that a flood cannot flood the journal too.
func (s *Service) drop(reason string, p packet, err error) { s.dropN(reason, p, err, 1) }

// dropN is drop for n datagrams (n > 1: the parts of one announcement).
func (s *Service) dropN(reason string, p packet, err error, n int) {
	now := time.Now()
	s.mu.Lock()
	s.drops[reason] += uint64(max(n, 1))
	logIt := err != nil && now.Sub(s.lastLogged[reason]) >= time.Minute
	if logIt {
		s.lastLogged[reason] = now
	}
	s.mu.Unlock()
	if logIt {
		s.opts.Log.Warn("dropped datagram (logged once a minute per reason)", "reason", reason,
			"from", p.src, "transport", p.transport, "err", err)
	}
}
