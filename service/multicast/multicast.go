// Package multicast is diskd's network side: it sends this host's disk list
// to the multicast group (announcements, goodbyes, re-announce requests) and
// feeds what peers send into the inventory.
//
// It is not the format (service/wire encodes, decodes, seals and reassembles)
// and not the state (service/inventory decides what changed, refuses replays
// and caps peers). It owns the socket, the sequence numbers, the counters of
// datagrams in, out and dropped, and the rules for answering pings: an answer
// comes after a random delay of up to PingReplyDelay, at most once per
// PingPerRequester per requesting host and at most PingRateLimit answers a
// second in all, so that a rogue host cannot turn pings into a flood.
//
// Sequence numbers start at the wall clock in microseconds when the daemon
// starts and grow by one per message, so a restarted daemon moves forward and
// its peers' replay check (strictly increasing per host) accepts it at once.
package multicast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/wire"
)

// Ping answer limits.
const (
	PingReplyDelay   = 100 * time.Millisecond
	PingPerRequester = time.Second
	PingRateLimit    = 5 // answers a second, in all
	maxPingMemory    = 4096
)

// Drop reasons counted besides wire.DropReason values.
const (
	DropSelf    = "self"    // our own host id
	DropReplay  = "replay"  // sequence did not move forward
	DropPeerCap = "peercap" // too many peers
	DropDiskCap = "diskcap" // too many disks held for peers in all
	DropSize    = "size"    // larger than the largest datagram we accept
)

// Identity says who this host is on the wire.
type Identity struct {
	HostID   string
	Hostname string
	BootID   string
}

// Options configure a Service.
type Options struct {
	Identity
	Interval time.Duration // our announce interval, told to peers
	Keyring  *wire.Keyring // nil: unsealed
	Log      *slog.Logger
	// OnPing is called when a peer's ping is to be answered, with the delay
	// after which to announce. The daemon triggers its announce job with it,
	// so that several pings are answered by one announcement.
	OnPing func(delay time.Duration)
	// AssemblerPending bounds the partly received multi-part announcements
	// (default 256).
	AssemblerPending int
}

// Stats count datagrams.
type Stats struct {
	In, Out, Dropped uint64
	Drops            map[string]uint64
}

// Service sends and receives diskd datagrams on one Conn.
type Service struct {
	conn *Conn
	inv  *inventory.Inventory
	opts Options
	seq  atomic.Uint64

	in, out atomic.Uint64

	mu         sync.Mutex
	drops      map[string]uint64
	lastLogged map[string]time.Time
	pingSeen   map[string]time.Time
	pingLimit  *rate.Limiter
}

// New returns a service; call Receive to start hearing peers.
func New(conn *Conn, inv *inventory.Inventory, opts Options) *Service {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.AssemblerPending <= 0 {
		opts.AssemblerPending = 256
	}
	s := &Service{
		conn: conn, inv: inv, opts: opts,
		drops:      map[string]uint64{},
		lastLogged: map[string]time.Time{},
		pingSeen:   map[string]time.Time{},
		pingLimit:  rate.NewLimiter(PingRateLimit, PingRateLimit),
	}
	s.seq.Store(uint64(time.Now().UnixMicro()))
	return s
}

func (s *Service) header(kind wire.Kind) wire.Message {
	return wire.Message{
		Kind: kind, HostID: s.opts.HostID, Hostname: s.opts.Hostname, BootID: s.opts.BootID,
		Seq: s.seq.Add(1), Interval: s.opts.Interval,
	}
}

func (s *Service) send(m wire.Message) error {
	grams, err := encode(m, s.conn.Budget(), s.opts.Keyring, s.opts.Log)
	if err != nil {
		return err
	}
	for _, g := range grams {
		if _, err := s.conn.Send(g); err != nil {
			return err
		}
		s.out.Add(1)
	}
	return nil
}

// encode encodes m into datagrams. A disk the format cannot carry (a mount
// point list too long for one datagram, say) is left out and logged, rather
// than silencing the whole host.
func encode(m wire.Message, budget int, ring *wire.Keyring, log *slog.Logger) ([][]byte, error) {
	grams, err := wire.Encode(m, budget, ring)
	for de, ok := errors.AsType[*wire.DiskError](err); ok; de, ok = errors.AsType[*wire.DiskError](err) {
		log.Warn("disk left out of the announcement", "device", de.Device, "err", de.Err)
		m.Disks = slices.Delete(slices.Clone(m.Disks), de.Index, de.Index+1)
		grams, err = wire.Encode(m, budget, ring)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding %v: %w", m.Kind, err)
	}
	return grams, nil
}

// Announce multicasts this host's full disk list.
func (s *Service) Announce(context.Context) error {
	m := s.header(wire.KindAnnounce)
	m.Disks = s.inv.LocalDisks() // the encoder writes the announced fields only
	return s.send(m)
}

// Ping asks every peer to re-announce.
func (s *Service) Ping(context.Context) error { return s.send(s.header(wire.KindPing)) }

// Bye tells peers this host is leaving, so they drop its disks at once.
func (s *Service) Bye() error { return s.send(s.header(wire.KindBye)) }

// Receive reads datagrams until ctx is done and applies them.
func (s *Service) Receive(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	asm := wire.NewAssembler(s.opts.AssemblerPending, 5*time.Second)
	buf := make([]byte, wire.MaxDatagram+1)
	for {
		n, src, err := s.conn.Recv(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.opts.Log.Warn("multicast receive failed", "err", err)
			continue
		}
		s.in.Add(1)
		if n > wire.MaxDatagram {
			s.drop(DropSize, src, nil)
			continue
		}
		s.handle(buf[:n], src, asm, time.Now())
	}
}

func (s *Service) handle(b []byte, src netip.Addr, asm *wire.Assembler, now time.Time) {
	m, err := wire.Decode(b, s.opts.Keyring)
	if err != nil {
		reason := "malformed"
		if de, ok := errors.AsType[*wire.DropError](err); ok {
			reason = string(de.Reason)
		}
		s.drop(reason, src, err)
		return
	}
	if m.HostID == s.opts.HostID {
		s.drop(DropSelf, src, nil)
		return
	}
	switch m.Kind {
	case wire.KindAnnounce:
		whole, ok := asm.Add(m, now)
		if !ok {
			return
		}
		a := inventory.Announcement{
			HostID: whole.HostID, Hostname: whole.Hostname, BootID: whole.BootID, Seq: whole.Seq,
			Interval: whole.Interval, Address: src.String(), Authenticated: s.opts.Keyring != nil,
			Disks: whole.Disks, // the inventory keeps copies and sets the host's fields
		}
		// m is the part that completed the announcement, and its Parts is
		// how many datagrams carried it: a refusal drops every one of them.
		s.refused(s.inv.Apply(a), src, m.Parts)
	case wire.KindBye:
		s.refused(s.inv.Bye(m.HostID, m.BootID, m.Seq), src, 1)
	case wire.KindPing:
		if s.refused(s.inv.Touch(m.HostID, m.BootID, m.Seq), src, 1) {
			return
		}
		s.answerPing(m.HostID+"/"+m.BootID, now)
	}
}

// refused counts an inventory refusal of a message that n datagrams
// carried and reports whether there was one.
func (s *Service) refused(err error, src netip.Addr, n int) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, inventory.ErrReplay):
		s.dropN(DropReplay, src, err, n)
	case errors.Is(err, inventory.ErrPeerCap):
		s.dropN(DropPeerCap, src, err, n)
	case errors.Is(err, inventory.ErrDiskCap):
		s.dropN(DropDiskCap, src, err, n)
	case errors.Is(err, inventory.ErrSelf):
		s.dropN(DropSelf, src, nil, n)
	default:
		s.dropN("malformed", src, err, n)
	}
	return true
}

// answerPing applies the limits to a ping from requester (host id and daemon
// instance: a host that restarts at once is answered again) and schedules
// the answer.
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
func (s *Service) drop(reason string, src netip.Addr, err error) { s.dropN(reason, src, err, 1) }

// dropN is drop for n datagrams (n > 1: the parts of one announcement).
func (s *Service) dropN(reason string, src netip.Addr, err error, n int) {
	now := time.Now()
	s.mu.Lock()
	s.drops[reason] += uint64(max(n, 1))
	logIt := err != nil && now.Sub(s.lastLogged[reason]) >= time.Minute
	if logIt {
		s.lastLogged[reason] = now
	}
	s.mu.Unlock()
	if logIt {
		s.opts.Log.Warn("dropped datagram (logged once a minute per reason)", "reason", reason, "from", src, "err", err)
	}
}

// Stats returns the datagram counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{In: s.in.Load(), Out: s.out.Load(), Drops: make(map[string]uint64, len(s.drops))}
	for r, n := range s.drops {
		st.Drops[r] = n
		st.Dropped += n
	}
	return st
}
