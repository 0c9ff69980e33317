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
	data       []byte
	src        netip.Addr
	transport  string // the Name of the transport it came on
	supervised bool   // the transport watches its peers' liveness
}

// listener is the receive side of one transport: its own reassembly, since
// every transport cuts messages at its own budget.
type listener struct {
	s   *Service
	asm *wire.Assembler
}

func (s *Service) newListener() *listener {
	return &listener{s: s, asm: wire.NewAssembler(s.opts.AssemblerPending, 5*time.Second)}
}

// receive is the loop of one transport. It returns nil when ctx ends, and
// an error when the transport was closed while ctx had not ended.
func (s *Service) receive(ctx context.Context, t Transport) error {
	rx := s.newListener()
	name := t.Name()
	sv, _ := t.(Supervisor)
	supervised := sv != nil && sv.Supervises()
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
		p := packet{data: buf[:n], src: src, transport: name, supervised: supervised}
		if n > wire.MaxDatagram {
			s.drop(DropSize, p, nil)
			continue
		}
		rx.handle(p, time.Now())
	}
}

// handle decodes one datagram and applies it: a complete announcement, a
// goodbye or a ping.
func (rx *listener) handle(p packet, now time.Time) {
	s := rx.s
	m, err := wire.Decode(p.data, s.opts.Keyring)
	if err != nil {
		reason := "malformed"
		if de, ok := errors.AsType[*wire.DropError](err); ok {
			reason = string(de.Reason)
		}
		s.drop(reason, p, err)
		return
	}
	if m.HostID == s.opts.HostID {
		s.drop(DropSelf, p, nil)
		return
	}
	switch m.Kind {
	case wire.KindAnnounce:
		whole, ok := rx.asm.Add(m, now)
		if !ok {
			return
		}
		addr := "" // a transport may not know where a relayed message came from
		if p.src.IsValid() {
			addr = p.src.String()
		}
		a := inventory.Announcement{
			HostID: whole.HostID, Hostname: whole.Hostname, BootID: whole.BootID, Seq: whole.Seq,
			Interval: whole.Interval, Address: addr, Authenticated: s.opts.Keyring != nil,
			Via: p.transport, Supervised: p.supervised,
			Disks: whole.Disks, // the inventory keeps copies and sets the host's fields
		}
		// m is the part that completed the announcement, and its Parts is
		// how many datagrams carried it: a refusal drops every one of them.
		s.refused(s.inv.Apply(a), p, m.Parts)
	case wire.KindBye:
		s.refused(s.inv.Bye(m.HostID, m.BootID, m.Seq), p, 1)
	case wire.KindPing:
		if s.refused(s.inv.Touch(m.HostID, m.BootID, m.Seq), p, 1) {
			return
		}
		s.answerPing(m.HostID+"/"+m.BootID, now)
	}
}

// refused counts an inventory refusal of a message that n datagrams
// carried and reports whether there was one.
func (s *Service) refused(err error, p packet, n int) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, inventory.ErrReplay):
		s.dropN(DropReplay, p, err, n)
	case errors.Is(err, inventory.ErrDuplicate):
		s.dropN(DropDuplicate, p, nil, n)
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
